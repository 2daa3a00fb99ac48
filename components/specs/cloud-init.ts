// What a fresh cloud VM needs before Docker on it may be used, as data: the cloud-init document
// (public: it is readable from the metadata service, so it carries no secret) and the one remote
// command that finishes the set-up over SSH, taking the Docker TLS material on its standard input.

/** Where the block-storage volume is mounted; Postgres data lives below it. */
export const DATA_MOUNT = "/srv/webstack-data";
export const PREPARE_SCRIPT = "/usr/local/sbin/webstack-prepare";
export const DOCKER_TLS_PORT = 2376;

const SSH_HARDENING = [
  "# Managed by webstack.",
  "PasswordAuthentication no",
  "KbdInteractiveAuthentication no",
  "PermitRootLogin prohibit-password",
  "PermitEmptyPasswords no",
  "X11Forwarding no",
  "AllowAgentForwarding no",
  "MaxAuthTries 3",
  "LoginGraceTime 30",
  "",
].join("\n");

/** Docker daemon defaults: rotated logs for every container, containers survive a daemon restart. */
const DOCKER_DAEMON_JSON =
  JSON.stringify(
    { "log-driver": "json-file", "log-opts": { "max-size": "10m", "max-file": "3" }, "live-restore": true },
    null,
    2,
  ) + "\n";

/**
 * Runs as root from the readiness command, after cloud-init finished. Idempotent: a second run
 * (a re-created command, a replaced VM with the same volume) leaves a formatted volume's data alone.
 * Arguments: the data volume's block device. Standard input: CA cert, server cert, server key (PEM).
 */
const PREPARE = `#!/bin/sh
# Managed by webstack: mounts the data volume and puts the Docker API behind mutual TLS.
set -eu
device="$1"
i=0
while [ ! -b "$device" ]; do
  i=$((i + 1))
  if [ "$i" -gt 90 ]; then echo "webstack: data volume $device never appeared" >&2; exit 1; fi
  sleep 2
done
blkid "$device" >/dev/null 2>&1 || mkfs.ext4 -q -L webstack-data "$device"
mkdir -p ${DATA_MOUNT}
grep -q " ${DATA_MOUNT} " /etc/fstab || echo "$device ${DATA_MOUNT} ext4 defaults,nofail,discard 0 2" >> /etc/fstab
mountpoint -q ${DATA_MOUNT} || mount ${DATA_MOUNT}
mkdir -p ${DATA_MOUNT}/postgres

umask 077
tls=/etc/docker/tls
mkdir -p "$tls"
rm -f "$tls"/part-*.pem
awk -v dir="$tls" '/-----BEGIN /{n++} n>0 {print > (dir "/part-" n ".pem")}'
for n in 1 2 3; do
  [ -s "$tls/part-$n.pem" ] || { echo "webstack: expected 3 PEM blocks on standard input" >&2; exit 1; }
done
mv "$tls/part-1.pem" "$tls/ca.pem"
mv "$tls/part-2.pem" "$tls/server-cert.pem"
mv "$tls/part-3.pem" "$tls/server-key.pem"

dockerd="$(command -v dockerd)"
mkdir -p /etc/systemd/system/docker.service.d
cat > /etc/systemd/system/docker.service.d/webstack-tls.conf <<EOF
[Service]
ExecStart=
ExecStart=$dockerd -H fd:// -H tcp://0.0.0.0:${DOCKER_TLS_PORT} --tlsverify --tlscacert=$tls/ca.pem --tlscert=$tls/server-cert.pem --tlskey=$tls/server-key.pem --containerd=/run/containerd/containerd.sock
EOF
systemctl daemon-reload
systemctl restart docker
i=0
until docker info >/dev/null 2>&1; do
  i=$((i + 1))
  if [ "$i" -gt 60 ]; then echo "webstack: docker did not answer after restart" >&2; exit 1; fi
  sleep 1
done
docker version --format '{{.Server.Version}}'
`;

export interface CloudInitOptions {
  /** The login user the cloud image creates for the deployer's key (root on DigitalOcean, admin on Debian AMIs). */
  sshUser: string;
}

/** The cloud-init user data for a webstack host. Deterministic: same options, same bytes. */
export function cloudInit(options: CloudInitOptions): string {
  const doc = {
    package_update: true,
    package_upgrade: true,
    packages: ["docker.io", "sudo", "curl", "unattended-upgrades", "e2fsprogs"],
    write_files: [
      { path: "/etc/ssh/sshd_config.d/90-webstack.conf", permissions: "0644", content: SSH_HARDENING },
      { path: "/etc/docker/daemon.json", permissions: "0644", content: DOCKER_DAEMON_JSON },
      { path: PREPARE_SCRIPT, permissions: "0750", content: PREPARE },
    ],
    runcmd: [
      ["systemctl", "enable", "--now", "docker"],
      ["systemctl", "restart", "docker"],
      ["sh", "-c", "systemctl reload ssh || systemctl reload sshd"],
      ["sh", "-c", `usermod -aG docker ${options.sshUser} || true`],
    ],
  };
  // JSON is YAML, so the document stays byte-stable without a YAML serialiser.
  return `#cloud-config\n${JSON.stringify(doc, null, 2)}\n`;
}

/**
 * The readiness command: waits for cloud-init (exit 2 means "done, with recoverable errors"),
 * then runs the prepare script. The device path is the only variable part and is checked here.
 */
export function readinessCommand(dataDevice: string): string {
  if (!/^\/dev\/[A-Za-z0-9/_.-]+$/.test(dataDevice)) {
    throw new Error(`data device must be a /dev path of letters, digits, '/', '_', '.' or '-' (got ${JSON.stringify(dataDevice)})`);
  }
  return [
    "set -e",
    "rc=0; cloud-init status --wait >/dev/null || rc=$?",
    'if [ "$rc" -ne 0 ] && [ "$rc" -ne 2 ]; then cloud-init status --long >&2; exit "$rc"; fi',
    `sudo -n ${PREPARE_SCRIPT} ${dataDevice}`,
  ].join("\n");
}
