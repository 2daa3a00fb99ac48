// What a fresh cloud VM needs before Docker on it may be used, as data: the cloud-init document
// and the one remote command that finishes the set-up over SSH, taking the Docker TLS material on
// its standard input.
//
// The document is readable from the metadata service and the cloud API. The one secret it holds is
// the VM's own SSH host key, so that the first connection can already verify the host (see README,
// "Security"); the Docker API's keys never enter it.

/** Where the block-storage volume is mounted; Postgres data lives below it. */
export const DATA_MOUNT = "/srv/webstack-data";
export const PREPARE_SCRIPT = "/usr/local/sbin/webstack-prepare";
export const DOCKER_TLS_PORT = 2376;
/** The clouds' instance metadata service (DigitalOcean's and AWS's alike). */
export const METADATA_ADDRESS = "169.254.169.254";

/**
 * sshd keeps the first value it reads for most settings, and Debian's sshd_config includes
 * sshd_config.d/*.conf (sorted) before its own lines: this file sorts first, so it wins over
 * anything the image or cloud-init drops in (50-cloud-init.conf).
 */
export const SSHD_DROP_IN = "/etc/ssh/sshd_config.d/00-webstack.conf";
export const HOST_KEY_PATH = "/etc/ssh/ssh_host_ed25519_key";

function sshHardening(sshUser: string): string {
  return [
    "# Managed by webstack.",
    // Only the pinned key: a client that verifies it must not be offered another.
    `HostKey ${HOST_KEY_PATH}`,
    `AllowUsers ${sshUser}`,
    "PermitRootLogin no",
    "PasswordAuthentication no",
    "KbdInteractiveAuthentication no",
    "PermitEmptyPasswords no",
    "X11Forwarding no",
    "AllowAgentForwarding no",
    "AllowTcpForwarding no",
    "MaxAuthTries 3",
    "LoginGraceTime 30",
    "",
  ].join("\n");
}

/**
 * Docker daemon defaults: rotated logs for every container, containers survive a daemon restart,
 * and published ports by iptables alone. Clients from outside reach nginx through Docker's DNAT
 * either way; the userland proxy (a docker-proxy process per published port) would only carry the
 * host's own connections, at three or more descriptors each, and stops accepting at its limit.
 */
const DOCKER_DAEMON_JSON =
  JSON.stringify(
    {
      "log-driver": "json-file",
      "log-opts": { "max-size": "10m", "max-file": "3" },
      "live-restore": true,
      "userland-proxy": false,
    },
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
# Containers never reach the metadata service: it serves the user data, which holds the host key.
cat > /etc/systemd/system/docker.service.d/webstack-tls.conf <<EOF
[Service]
ExecStart=
ExecStart=$dockerd -H fd:// -H tcp://0.0.0.0:${DOCKER_TLS_PORT} --tlsverify --tlscacert=$tls/ca.pem --tlscert=$tls/server-cert.pem --tlskey=$tls/server-key.pem --containerd=/run/containerd/containerd.sock
ExecStartPost=/bin/sh -c 'iptables -C DOCKER-USER -d ${METADATA_ADDRESS}/32 -j DROP 2>/dev/null || iptables -I DOCKER-USER -d ${METADATA_ADDRESS}/32 -j DROP'
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
  /** The one login: a non-root user with passwordless sudo, created here on every cloud. @example "admin" */
  sshUser: string;
  /** The deployer's public key (OpenSSH), the only way in as `sshUser`. */
  authorizedKey: string;
  /** The VM's SSH host key (ED25519, OpenSSH format), pinned by the deployer's connection. */
  hostKey: { privateKey: string; publicKey: string };
  /** Extra Debian packages. @example ["amazon-ecr-credential-helper"] */
  extraPackages?: string[];
}

const USER = /^[a-z_][a-z0-9_-]{0,31}$/;

/** The cloud-init user data for a webstack host. Deterministic: same options, same bytes. */
export function cloudInit(options: CloudInitOptions): string {
  if (!USER.test(options.sshUser))
    throw new Error(`sshUser must be a Linux user name (got ${JSON.stringify(options.sshUser)})`);
  if (!/^ssh-ed25519 [A-Za-z0-9+/=]+$/.test(options.hostKey.publicKey.trim())) {
    throw new Error("hostKey.publicKey must be an OpenSSH ssh-ed25519 public key");
  }
  const doc = {
    package_update: true,
    package_upgrade: true,
    packages: ["docker.io", "sudo", "curl", "unattended-upgrades", "e2fsprogs", ...(options.extraPackages ?? [])],
    // The deployer's connection pins this key; nothing else is generated or kept.
    ssh_deletekeys: true,
    ssh_genkeytypes: [],
    ssh_keys: { ed25519_private: options.hostKey.privateKey, ed25519_public: options.hostKey.publicKey.trim() },
    ssh_pwauth: false,
    disable_root: true,
    users: [
      {
        name: options.sshUser,
        groups: ["sudo"],
        shell: "/bin/bash",
        sudo: "ALL=(ALL) NOPASSWD:ALL",
        lock_passwd: true,
        ssh_authorized_keys: [options.authorizedKey.trim()],
      },
    ],
    write_files: [
      { path: SSHD_DROP_IN, permissions: "0644", content: sshHardening(options.sshUser) },
      { path: "/etc/docker/daemon.json", permissions: "0644", content: DOCKER_DAEMON_JSON },
      { path: PREPARE_SCRIPT, permissions: "0750", content: PREPARE },
    ],
    runcmd: [
      ["systemctl", "enable", "--now", "docker"],
      ["systemctl", "restart", "docker"],
      ["sh", "-c", "systemctl reload ssh || systemctl reload sshd"],
      ["usermod", "-aG", "docker", options.sshUser],
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
    throw new Error(
      `data device must be a /dev path of letters, digits, '/', '_', '.' or '-' (got ${JSON.stringify(dataDevice)})`,
    );
  }
  return [
    "set -e",
    "rc=0; cloud-init status --wait >/dev/null || rc=$?",
    'if [ "$rc" -ne 0 ] && [ "$rc" -ne 2 ]; then cloud-init status --long >&2; exit "$rc"; fi',
    `sudo -n ${PREPARE_SCRIPT} ${dataDevice}`,
  ].join("\n");
}

/** A pushed image the host pulls: a registry, a repository and a digest, nothing a shell reads otherwise. */
const PUSHED_IMAGE = /^([a-z0-9.-]+(:[0-9]+)?)(\/[a-z0-9]+([._-][a-z0-9]+)*)+@sha256:[a-f0-9]{64}$/;

/** A release id as the image tag it becomes (see `releaseId`). */
const RELEASE_TAG = /^[a-z0-9][a-z0-9_.-]{0,39}$/;

/**
 * The command that pulls a pushed image onto the host with read-only rights, into a Docker config of
 * its own that is gone afterwards, and tags it with its release there, so that a rollback finds it
 * on the host by release. `stdin`: the credential arrives as a Docker config.json on standard input
 * (DigitalOcean's read-only registry credential). `ecr-login`: the ECR credential helper signs in
 * with the instance profile's repository-scoped rights (AWS).
 */
export function pullCommand(image: string, credentials: "stdin" | "ecr-login", release: string): string {
  const match = PUSHED_IMAGE.exec(image);
  if (match === null) {
    throw new Error(`the image to pull must be <registry>/<repository>@sha256:<digest> (got ${JSON.stringify(image)})`);
  }
  if (!RELEASE_TAG.test(release)) {
    throw new Error(`the release to tag the pulled image with must be a release id (got ${JSON.stringify(release)})`);
  }
  const registry = match[1];
  const repository = image.slice(0, image.indexOf("@"));
  return [
    "set -eu",
    "umask 077",
    'config="$(mktemp -d)"',
    `trap 'rm -rf "$config"' EXIT`,
    credentials === "stdin"
      ? 'cat > "$config/config.json"'
      : `printf '{"credHelpers":{"%s":"ecr-login"}}\\n' '${registry}' > "$config/config.json"`,
    `docker --config "$config" pull '${image}'`,
    `docker tag '${image}' '${repository}:${release}'`,
  ].join("\n");
}
