// The pure helpers: exact data in, exact data out.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, test } from "node:test";
import { amiArchitecture, ebsDevicePath } from "../../components/hosts/aws";
import { parseDockerAuth } from "../../components/hosts/digitalocean";
import { cloudInit, PREPARE_SCRIPT, pullCommand, readinessCommand } from "../../components/specs/cloud-init";
import {
  acmeSpec,
  appReplicaSpec,
  ContainerSpec,
  databaseUrl,
  FILES_SCRIPT,
  DEFAULT_LIMITS,
  filesRunSpec,
  migrationFailure,
  migrationRunSpec,
  nginxSpec,
  postgresCheckSpec,
  postgresSpec,
  redisConf,
  redisSpec,
  redisUrl,
  specFingerprint,
} from "../../components/specs/containers";
import { cloudName, dnsNames, inboundRules } from "../../components/specs/firewall";
import { imagePruneScript, imageRemoveAllScript, releaseImage } from "../../components/specs/images";
import { hashTree, releaseId } from "../../components/specs/release";
import { isThrowawayStack, PR_STACK, shortStackName } from "../../components/specs/stacks";
import { dockerNginxVars } from "../../nginx/render";

const names = { prefix: "webstack-dev", stack: "dev" };
const LOGS = { "max-size": "10m", "max-file": "3" };

describe("container specs", () => {
  const SAFE = { capabilities: [], readOnlyRoot: false, tmpfs: {} };

  test("postgres reads its password from a root-only file; it keeps only what its entrypoint needs to start", () => {
    assert.deepEqual(postgresSpec(names), {
      role: "postgres",
      containerName: "webstack-dev-postgres",
      env: {
        POSTGRES_USER: "webstack",
        POSTGRES_DB: "webstack",
        PGDATA: "/var/lib/postgresql/data/pgdata",
        POSTGRES_PASSWORD_FILE: "/run/secrets/postgres-password",
      },
      files: [{ path: "/run/secrets/postgres-password", mode: "0400", content: { secret: "postgresPassword" } }],
      networks: [{ network: "back", aliases: ["postgres"] }],
      healthcheck: {
        tests: ["CMD", "pg_isready", "-h", "127.0.0.1", "-U", "webstack", "-d", "webstack"],
        interval: "5s",
        timeout: "3s",
        startPeriod: "60s",
        retries: 5,
      },
      restart: "unless-stopped",
      oneOff: false,
      ports: [],
      volumes: [{ volume: "postgres-data", containerPath: "/var/lib/postgresql/data", readOnly: false }],
      capabilities: ["CAP_CHOWN", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_SETGID", "CAP_SETUID"],
      readOnlyRoot: false,
      tmpfs: {},
      labels: { "webstack.stack": "dev", "webstack.role": "postgres" },
      logOpts: LOGS,
      stopSignal: "SIGINT",
      stopTimeout: 30,
      limits: { memoryMb: 512, cpuShares: 2048 },
    });
  });

  test("redis takes its password from its config file, and so does its health check", () => {
    const spec = redisSpec(names);
    assert.deepEqual(spec.command, ["redis-server", "/usr/local/etc/redis/redis.conf"]);
    assert.deepEqual(spec.env, {});
    assert.deepEqual(spec.files, [
      { path: "/usr/local/etc/redis/redis.conf", mode: "0444", content: { secret: "redisConf" } },
    ]);
    assert.deepEqual(spec.healthcheck?.tests, [
      "CMD-SHELL",
      `REDISCLI_AUTH="$(sed -n 's/^requirepass //p' /usr/local/etc/redis/redis.conf)" redis-cli ping | grep -q PONG`,
    ]);
    assert.deepEqual(spec.networks, [{ network: "back", aliases: ["redis"] }]);
    assert.deepEqual(spec.volumes, [{ volume: "redis-data", containerPath: "/data", readOnly: false }]);
    assert.deepEqual(spec.capabilities, ["CAP_CHOWN", "CAP_DAC_READ_SEARCH", "CAP_SETGID", "CAP_SETUID"]);
    assert.deepEqual(spec.ports, []);
    // A long-running service whose health gates the app's start; it writes its dump under /data.
    assert.deepEqual(
      [spec.containerName, spec.restart, spec.oneOff, spec.readOnlyRoot],
      ["webstack-dev-redis", "unless-stopped", false, false],
    );
    assert.deepEqual(
      { ...spec.healthcheck, tests: undefined },
      { tests: undefined, interval: "5s", timeout: "3s", startPeriod: "10s", retries: 5 },
    );
  });

  test("redis's health check reads the password from the file, in a shell", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "webstack-redis-"));
    try {
      const conf = path.join(dir, "redis.conf");
      fs.writeFileSync(conf, redisConf({ password: "abc_DEF-123", appendOnly: true, maxMemoryMb: 96 }));
      // The test with the config path swapped and redis-cli replaced by a printer of what it got.
      const command = String(redisSpec(names).healthcheck?.tests[1])
        .replaceAll("/usr/local/etc/redis/redis.conf", conf)
        .replace("redis-cli ping", "sh -c 'echo \"$REDISCLI_AUTH PONG\"'")
        .replace("| grep -q PONG", "");
      assert.equal(execFileSync("sh", ["-c", command], { cwd: dir }).toString(), "abc_DEF-123 PONG\n");
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("redis.conf", () => {
    assert.equal(
      redisConf({ password: "abc_DEF-123", appendOnly: true, maxMemoryMb: 96 }),
      "bind * -::*\nport 6379\ndir /data\nappendonly yes\nappendfsync everysec\nmaxmemory 96mb\nmaxmemory-policy noeviction\nrequirepass abc_DEF-123\n",
    );
    assert.match(redisConf({ password: "x", appendOnly: false, maxMemoryMb: 96 }), /^appendonly no$/m);
    assert.throws(() => redisConf({ password: "a b", appendOnly: true, maxMemoryMb: 96 }), /only letters, digits/);
  });

  test("an app replica is named after its release and index; read-only, no capability, secrets as files on both networks", () => {
    const limits = { memoryMb: 400, cpuShares: 512 };
    assert.deepEqual(appReplicaSpec(names, { release: "abc123", index: 2, shutdownGraceSeconds: 10, limits }), {
      role: "app",
      containerName: "webstack-dev-app-abc123-2",
      user: "10001:10001",
      env: {
        PORT: "3000",
        REPLICA_ID: "webstack-dev-app-abc123-2",
        SHUTDOWN_GRACE_MS: "10000",
        DATABASE_URL_FILE: "/run/secrets/database-url",
        REDIS_URL_FILE: "/run/secrets/redis-url",
        ADMIN_TOKEN_FILE: "/run/secrets/admin-token",
        // Three quarters of the container's limit.
        NODE_OPTIONS: "--max-old-space-size=300",
      },
      files: [],
      networks: [
        { network: "front", aliases: ["app"] },
        { network: "back", aliases: [] },
      ],
      healthcheck: {
        tests: ["CMD", "bash", "/app/healthcheck.sh"],
        interval: "5s",
        timeout: "3s",
        startPeriod: "30s",
        retries: 3,
      },
      restart: "unless-stopped",
      oneOff: false,
      ports: [],
      volumes: [{ volume: "files-app", containerPath: "/run/secrets", readOnly: true }],
      capabilities: [],
      readOnlyRoot: true,
      tmpfs: { "/tmp": "rw,nosuid,nodev,noexec,size=16m" },
      labels: { "webstack.stack": "dev", "webstack.role": "app", "webstack.release": "abc123" },
      logOpts: LOGS,
      stopSignal: "SIGTERM",
      stopTimeout: 15,
      limits,
      userProcesses: 1024,
      init: true,
    });
  });

  test("nginx is the one container with a published port; read-only, on the front network only", () => {
    const spec = nginxSpec(names, { httpPort: 8080, bindAddress: "127.0.0.1", command: ["nginx"], startHash: "0123" });
    assert.deepEqual(spec.ports, [{ internal: 80, external: 8080, ip: "127.0.0.1" }]);
    const anyPort = nginxSpec(names, { httpPort: 0, bindAddress: "127.0.0.1", command: ["nginx"], startHash: "0123" });
    assert.deepEqual(anyPort.ports, [{ internal: 80, ip: "127.0.0.1" }], "port 0: no external port, Docker picks");
    assert.equal(spec.stopSignal, "SIGQUIT");
    assert.deepEqual(spec.labels, {
      "webstack.stack": "dev",
      "webstack.role": "nginx",
      "webstack.start-files": "0123",
    });
    assert.deepEqual(spec.healthcheck?.tests, [
      "CMD",
      "curl",
      "-fsS",
      "-o",
      "/dev/null",
      "http://127.0.0.1/nginx-health",
    ]);
    assert.deepEqual(
      { ...spec.healthcheck, tests: undefined },
      { tests: undefined, interval: "5s", timeout: "3s", startPeriod: "10s", retries: 3 },
    );
    assert.deepEqual([spec.containerName, spec.restart, spec.oneOff], ["webstack-dev-nginx", "unless-stopped", false]);
    assert.deepEqual(spec.networks, [{ network: "front", aliases: ["nginx"] }]);
    assert.deepEqual(spec.volumes, [{ volume: "files-nginx", containerPath: "/etc/nginx", readOnly: true }]);
    assert.deepEqual(
      [spec.capabilities, spec.readOnlyRoot, spec.tmpfs, spec.files],
      [
        ["CAP_CHOWN", "CAP_NET_BIND_SERVICE", "CAP_SETGID", "CAP_SETUID"],
        true,
        { "/var/cache/nginx": "rw,nosuid,nodev,noexec", "/run": "rw,nosuid,nodev,noexec,size=1m" },
        [],
      ],
    );
  });

  test("a files run: the consumer's image as root with CAP_CHOWN at most, no network, run once", () => {
    const app = filesRunSpec(names, {
      consumer: "app",
      files: [{ path: "database-url", mode: "0400", content: { secret: "databaseUrl" } }],
      owner: "10001:10001",
    });
    assert.deepEqual(app, {
      ...SAFE,
      role: "files-app",
      containerName: "webstack-dev-files-app",
      command: ["/bin/sh", "-c", FILES_SCRIPT, "files-app", "owner=10001:10001"],
      user: "0:0",
      env: {},
      files: [{ path: "/webstack/files/database-url", mode: "0400", content: { secret: "databaseUrl" } }],
      networks: [],
      restart: "no",
      oneOff: true,
      ports: [],
      volumes: [{ volume: "files-app", containerPath: "/webstack/out", readOnly: false }],
      capabilities: ["CAP_CHOWN"],
      labels: { "webstack.stack": "dev", "webstack.role": "files-app" },
      logOpts: LOGS,
      stopSignal: "SIGTERM",
      stopTimeout: 10,
    });
    const nginx = filesRunSpec(names, {
      consumer: "nginx",
      files: [{ path: "webstack/start.sh", mode: "0555", content: { text: "#!/bin/sh\n" } }],
      seed: "/etc/nginx",
    });
    assert.deepEqual(nginx.command, ["/bin/sh", "-c", FILES_SCRIPT, "files-nginx", "seed=/etc/nginx"]);
    assert.ok(
      nginx.command?.every((part) => part !== ""),
      "the provider refuses empty command values",
    );
    assert.deepEqual(nginx.capabilities, [], "nothing to hand over: no capability");
    for (const bad of ["/etc/passwd", "../x", "a/../../x", "a b"]) {
      assert.throws(
        () => filesRunSpec(names, { consumer: "app", files: [{ path: bad, mode: "0400", content: { text: "" } }] }),
        /files-app: .* is not a relative path/,
      );
    }
  });

  test("the files script writes seed, files and owner, and empties what an earlier run left", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "webstack-files-"));
    try {
      const [staging, out, seed] = ["files", "out", "seed"].map((d) => path.join(dir, d));
      for (const d of [staging, out, path.join(seed, "conf.d"), path.join(staging, "webstack")])
        fs.mkdirSync(d, { recursive: true });
      fs.writeFileSync(path.join(seed, "mime.types"), "types {}\n");
      fs.writeFileSync(path.join(seed, "nginx.conf"), "the image's own\n");
      fs.writeFileSync(path.join(staging, "nginx.conf"), "the stack's\n");
      fs.writeFileSync(path.join(staging, "webstack", "start.sh"), "#!/bin/sh\n", { mode: 0o555 });
      fs.writeFileSync(path.join(out, "stale"), "left by an earlier run\n");
      const script = FILES_SCRIPT.replaceAll("/webstack/files", staging).replaceAll("/webstack/out", out);
      // Run inside the scratch directory: a script whose paths went wrong (say, an empty one, which
      // find reads as ".") then deletes scratch files, never the working tree.
      const run = { cwd: dir, stdio: "pipe" as const };
      const uid = `${process.getuid?.()}:${process.getgid?.()}`;
      execFileSync("sh", ["-c", script, "files-nginx", `seed=${seed}`, `owner=${uid}`], run);
      const listing = (d: string): string[] =>
        fs
          .readdirSync(d, { withFileTypes: true })
          .flatMap((e) => (e.isDirectory() ? listing(path.join(d, e.name)).map((n) => `${e.name}/${n}`) : [e.name]));
      assert.deepEqual(listing(out).sort(), ["mime.types", "nginx.conf", "webstack/start.sh"]);
      assert.equal(
        fs.readFileSync(path.join(out, "nginx.conf"), "utf8"),
        "the stack's\n",
        "the stack's files lie over the seed",
      );
      assert.equal(fs.statSync(path.join(out, "webstack", "start.sh")).mode & 0o777, 0o555, "modes are kept");
      assert.throws(
        () => execFileSync("sh", ["-c", script, "files-nginx", "sead=/etc"], run),
        /unknown setting sead=\/etc/,
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("the migration run: the app's image and user, once, on the back network only, told of the database URL file alone", () => {
    const spec = migrationRunSpec(names, { release: "abc123", limits: { memoryMb: 400, cpuShares: 512 } });
    assert.deepEqual(spec, {
      role: "migrate",
      containerName: "webstack-dev-migrate-abc123",
      command: ["node", "/app/dist/migrate.js"],
      user: "10001:10001",
      env: { DATABASE_URL_FILE: "/run/secrets/database-url", NODE_OPTIONS: "--max-old-space-size=300" },
      files: [],
      networks: [{ network: "back", aliases: [] }],
      restart: "no",
      oneOff: true,
      ports: [],
      volumes: [{ volume: "files-app", containerPath: "/run/secrets", readOnly: true }],
      capabilities: [],
      readOnlyRoot: true,
      tmpfs: { "/tmp": "rw,nosuid,nodev,noexec,size=16m" },
      labels: { "webstack.stack": "dev", "webstack.role": "migrate", "webstack.release": "abc123" },
      logOpts: LOGS,
      stopSignal: "SIGTERM",
      stopTimeout: 10,
      limits: { memoryMb: 400, cpuShares: 512 },
      userProcesses: 1024,
    });
    assert.deepEqual(migrationRunSpec(names, { release: "abc123" }).limits, DEFAULT_LIMITS.app);
    assert.equal(migrationRunSpec(names, { release: "abc123", userProcesses: 96 }).userProcesses, 96);
    assert.equal(
      appReplicaSpec(names, { release: "abc123", index: 1, shutdownGraceSeconds: 10, userProcesses: 96 }).userProcesses,
      96,
    );
  });

  test("a failed migration run's log gives its last error line, or its last line of text", () => {
    const header = (size: number) => Buffer.from([1, 0, 0, 0, 0, 0, size >> 8, size & 255]).toString("latin1");
    const error = '{"level":50,"migration":"0002_x","msg":"migration 0002_x failed: boom"}';
    const cases: [string | undefined, string | undefined][] = [
      [undefined, undefined],
      ["", undefined],
      [
        `{"level":30,"msg":"> Migrating files:"}\n${error}\n{"level":30,"msg":"later, not an error"}\n`,
        "migration 0002_x failed: boom",
      ],
      // Docker's stream headers: a plain one (size 300), one holding "{" (size 123), one a newline (size 10).
      [`${header(300)}${error}\n`, "migration 0002_x failed: boom"],
      [`${header(123)}${error}\n`, "migration 0002_x failed: boom"],
      [`${header(10)}{"level":60,"msg":"fatal"}\n`, "fatal"],
      [`${header(300)}${error}\n${header(10)}{"level":60,"msg":"fatal"}\n`, "fatal"],
      // A newline in the size's first byte (2,560 + 65): the line starts with the byte after it, "A".
      [`${header(2560 + 65)}${error}\n`, "migration 0002_x failed: boom"],
      // An error nested in an info line is not the run's error.
      ['{"level":30,"msg":"info","detail":{"level":50,"msg":"nested"}}\n', undefined],
      [
        "webstack-migrate: invalid configuration: DATABASE_URL or DATABASE_URL_FILE is required\n",
        "webstack-migrate: invalid configuration: DATABASE_URL or DATABASE_URL_FILE is required",
      ],
      [`${header(40)}webstack-migrate: invalid configuration: x\r\n`, "webstack-migrate: invalid configuration: x"],
      [`webstack-migrate: x\n${header(20)}  \n`, "webstack-migrate: x"],
      ['{"level":40,"msg":"a warning"}\n{"level":"50","msg":"not a pino level"}\n{"level":50,"msg":7}\n', undefined],
    ];
    for (const [logs, expected] of cases) assert.equal(migrationFailure(logs), expected, JSON.stringify(logs));
  });

  test("a spec's fingerprint changes with every field of every container's spec, except the limits Docker applies in place", () => {
    // Every field, named here so that a new field fails to compile until it is listed.
    const FIELDS: Record<keyof ContainerSpec, true> = {
      role: true,
      containerName: true,
      command: true,
      entrypoint: true,
      user: true,
      env: true,
      files: true,
      networks: true,
      healthcheck: true,
      waitHealthy: true,
      restart: true,
      oneOff: true,
      ports: true,
      volumes: true,
      capabilities: true,
      readOnlyRoot: true,
      tmpfs: true,
      labels: true,
      logOpts: true,
      stopSignal: true,
      stopTimeout: true,
      limits: true,
      userProcesses: true,
      init: true,
    };
    const altered = (value: unknown): unknown => {
      if (value === undefined) return "set";
      if (typeof value === "string") return `${value}x`;
      if (typeof value === "number") return value + 1;
      if (typeof value === "boolean") return !value;
      if (Array.isArray(value)) return [...(value as unknown[]), "more"];
      return { ...(value as object), more: "x" };
    };
    const specs: ContainerSpec[] = [
      postgresSpec(names),
      redisSpec(names),
      appReplicaSpec(names, { release: "r1", index: 1, shutdownGraceSeconds: 10 }),
      nginxSpec(names, { httpPort: 8080, bindAddress: "127.0.0.1", command: ["nginx"], startHash: "0123" }),
      filesRunSpec(names, { consumer: "app", files: [{ path: "a", mode: "0400", content: { secret: "adminToken" } }] }),
      filesRunSpec(names, { consumer: "nginx", files: [{ path: "b", mode: "0444", content: { text: "b" } }] }),
      migrationRunSpec(names, { release: "r1" }),
      postgresCheckSpec(names, "postgres:17.6-bookworm"),
      acmeSpec(names, { script: "echo", env: { ACME_SERVER: "https://acme.test/dir" } }),
    ];
    for (const spec of specs) {
      const print = specFingerprint(spec);
      assert.match(print, /^[0-9a-f]{16}$/);
      assert.equal(specFingerprint(structuredClone(spec)), print, `${spec.role}: the same spec, the same fingerprint`);
      for (const field of Object.keys(FIELDS) as (keyof ContainerSpec)[]) {
        const changed: ContainerSpec = { ...spec, [field]: altered(spec[field]) };
        if (field === "limits") {
          assert.equal(
            specFingerprint(changed),
            print,
            `${spec.role}: limits are applied in place, not by replacement`,
          );
        } else {
          assert.notEqual(specFingerprint(changed), print, `${spec.role}: a changed ${field} changes the fingerprint`);
        }
      }
    }
    // Nested fields count as well: a health check's interval, a limit given to the app's heap.
    const app = specs[2];
    assert.notEqual(
      specFingerprint({ ...app, healthcheck: { ...app.healthcheck!, interval: "10s" } }),
      specFingerprint(app),
    );
    assert.notEqual(
      specFingerprint(
        appReplicaSpec(names, {
          release: "r1",
          index: 1,
          shutdownGraceSeconds: 10,
          limits: { memoryMb: 512, cpuShares: 1024 },
        }),
      ),
      specFingerprint(app),
      "the app's memory limit sets its heap, so it replaces the replica",
    );
  });

  test("connection URLs escape the password", () => {
    assert.equal(databaseUrl("p@ss/word"), "postgres://webstack:p%40ss%2Fword@postgres:5432/webstack");
    assert.equal(redisUrl("secret"), "redis://:secret@redis:6379");
  });

  test("nginx variables of the Docker stack", () => {
    const vars = dockerNginxVars({ clientMaxBodySize: "2m" });
    assert.deepEqual(vars.upstreams, ["app:3000"]);
    assert.equal(vars.resolver, "127.0.0.11");
    assert.equal(vars.listenPort, 80);
    assert.equal(vars.clientMaxBodySize, "2m");
  });
});

describe("cloud-init and the readiness command", () => {
  const HOST_KEY = {
    privateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
    publicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKey\n",
  };
  const options = {
    sshUser: "admin",
    authorizedKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDeployer\n",
    hostKey: HOST_KEY,
  };
  const doc = cloudInit(options);
  const parsed = JSON.parse(doc.slice("#cloud-config\n".length)) as {
    packages: string[];
    ssh_keys: Record<string, string>;
    ssh_deletekeys: boolean;
    ssh_genkeytypes: string[];
    ssh_pwauth: boolean;
    disable_root: boolean;
    users: Record<string, unknown>[];
    write_files: { path: string; permissions: string; content: string }[];
    runcmd: string[][];
    package_update: boolean;
    package_upgrade: boolean;
  };

  test("installs Docker, hardens SSH, ships the prepare script, and is byte-stable", () => {
    assert.ok(doc.startsWith("#cloud-config\n"));
    assert.equal(cloudInit(options), doc);
    assert.deepEqual(parsed.packages, ["docker.io", "sudo", "curl", "unattended-upgrades", "e2fsprogs"]);
    assert.deepEqual(
      cloudInit({ ...options, extraPackages: ["amazon-ecr-credential-helper"] }).includes(
        '"amazon-ecr-credential-helper"',
      ),
      true,
    );
    assert.deepEqual(
      parsed.write_files.map((f) => [f.path, f.permissions]),
      [
        ["/etc/ssh/sshd_config.d/00-webstack.conf", "0644"],
        ["/etc/docker/daemon.json", "0644"],
        [PREPARE_SCRIPT, "0750"],
      ],
    );
    assert.deepEqual(JSON.parse(parsed.write_files[1].content), {
      "log-driver": "json-file",
      "log-opts": { "max-size": "10m", "max-file": "3" },
      "live-restore": true,
      "userland-proxy": false,
    });
    // Docker restarted so daemon.json applies; sshd reloaded so the drop-in does (the unit is
    // "ssh" on Debian and Ubuntu, "sshd" elsewhere); the login user may use Docker.
    assert.deepEqual(parsed.runcmd, [
      ["systemctl", "enable", "--now", "docker"],
      ["systemctl", "restart", "docker"],
      ["sh", "-c", "systemctl reload ssh || systemctl reload sshd"],
      ["usermod", "-aG", "docker", "admin"],
    ]);
    // Security updates before anything runs, and unattended-upgrades (installed) keeps them coming.
    assert.deepEqual([parsed.package_update, parsed.package_upgrade], [true, true]);
    assert.ok(parsed.write_files[1].content.endsWith("}\n"), "daemon.json ends with a newline");
  });

  test("sshd: the drop-in sorts before any other, so its values win; one non-root sudo user, no root, no passwords", () => {
    const dropIn = parsed.write_files[0];
    // sshd keeps the first value it reads and Debian includes sshd_config.d/*.conf sorted, first.
    const others = ["01-local.conf", "50-cloud-init.conf", "50-redhat.conf", "99-zzz.conf", "AAA.conf"];
    assert.equal([...others, "00-webstack.conf"].sort()[0], "00-webstack.conf");
    assert.deepEqual(
      dropIn.content.split("\n").filter((l) => l !== "" && !l.startsWith("#")),
      [
        "HostKey /etc/ssh/ssh_host_ed25519_key",
        "AllowUsers admin",
        "PermitRootLogin no",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitEmptyPasswords no",
        "X11Forwarding no",
        "AllowAgentForwarding no",
        "AllowTcpForwarding no",
        "MaxAuthTries 3",
        "LoginGraceTime 30",
      ],
    );
    assert.deepEqual([parsed.ssh_pwauth, parsed.disable_root], [false, true]);
    assert.deepEqual(parsed.users, [
      {
        name: "admin",
        groups: ["sudo"],
        shell: "/bin/bash",
        sudo: "ALL=(ALL) NOPASSWD:ALL",
        lock_passwd: true,
        ssh_authorized_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDeployer"],
      },
    ]);
    // Each bad name holds a valid one inside it: the pattern must match the whole name.
    for (const sshUser of ["root; rm -rf /", "Admin", "9admin", "admin;reboot", "admin\n", "a".repeat(33)]) {
      assert.throws(() => cloudInit({ ...options, sshUser }), /sshUser must be a Linux user name/, sshUser);
    }
    assert.doesNotThrow(() => cloudInit({ ...options, sshUser: "_deploy-01" }));
  });

  test("the host key: the one given, and only it (no other generated, old ones deleted); the only key material in user data", () => {
    assert.deepEqual(parsed.ssh_keys, {
      ed25519_private: HOST_KEY.privateKey,
      ed25519_public: HOST_KEY.publicKey.trim(),
    });
    assert.deepEqual([parsed.ssh_deletekeys, parsed.ssh_genkeytypes], [true, []]);
    assert.deepEqual(doc.match(/-----BEGIN [A-Z ]+-----/g), ["-----BEGIN OPENSSH PRIVATE KEY-----"]);
    for (const publicKey of ["ssh-rsa AAAA", "x ssh-ed25519 AAAA", "ssh-ed25519 AAAA comment", "ssh-ed25519 AAAA;id"]) {
      assert.throws(
        () => cloudInit({ ...options, hostKey: { ...HOST_KEY, publicKey } }),
        /ssh-ed25519 public key/,
        publicKey,
      );
    }
  });

  test("the prepare script keeps containers away from the metadata service (it serves the user data)", () => {
    assert.match(
      parsed.write_files[2].content,
      /^ExecStartPost=\/bin\/sh -c 'iptables -C DOCKER-USER -d 169\.254\.169\.254\/32 -j DROP 2>\/dev\/null \|\| iptables -I DOCKER-USER -d 169\.254\.169\.254\/32 -j DROP'$/m,
    );
  });

  test("the host pulls a pushed image by digest only, with a credential on stdin or the ECR helper, in a config of its own, and tags it with its release", () => {
    const image = `123456789012.dkr.ecr.us-east-1.amazonaws.com/webstack-prod-app@sha256:${"a".repeat(64)}`;
    assert.equal(
      pullCommand(image, "ecr-login", "4f1c2ab9e0d3"),
      [
        "set -eu",
        "umask 077",
        'config="$(mktemp -d)"',
        `trap 'rm -rf "$config"' EXIT`,
        `printf '{"credHelpers":{"%s":"ecr-login"}}\\n' '123456789012.dkr.ecr.us-east-1.amazonaws.com' > "$config/config.json"`,
        `docker --config "$config" pull '${image}'`,
        `docker tag '${image}' '123456789012.dkr.ecr.us-east-1.amazonaws.com/webstack-prod-app:4f1c2ab9e0d3'`,
      ].join("\n"),
    );
    assert.match(
      pullCommand(`registry.digitalocean.com/acme/webstack-prod-app@sha256:${"b".repeat(64)}`, "stdin", "r1"),
      /^cat > "\$config\/config.json"$/m,
    );
    for (const bad of [
      "webstack-prod-app:latest",
      `x/y@sha256:${"a".repeat(64)}'; rm -rf /`,
      `sha256:${"a".repeat(64)}`,
      // A valid reference inside: the pattern must match the whole string.
      `'; reboot; x/y@sha256:${"a".repeat(64)}`,
      `x/y@sha256:${"a".repeat(64)}0`,
      `Registry.example/y@sha256:${"a".repeat(64)}`,
    ]) {
      assert.throws(
        () => pullCommand(bad, "stdin", "r1"),
        /the image to pull must be <registry>\/<repository>@sha256:<digest>/,
        bad,
      );
    }
    for (const bad of ["", "R1", "r1'; reboot", "-r1", "a".repeat(41)]) {
      assert.throws(
        () => pullCommand(image, "stdin", bad),
        /the release to tag the pulled image with must be a release id/,
        bad,
      );
    }
  });

  test("the prepare script and the readiness command are valid sh", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "webstack-sh-"));
    try {
      const script = path.join(dir, "prepare");
      fs.writeFileSync(script, parsed.write_files[2].content);
      execFileSync("sh", ["-n", script]);
      // The block volume is mounted where the hosts bind Postgres's data (<mount>/postgres).
      assert.match(
        parsed.write_files[2].content,
        /^mountpoint -q \/srv\/webstack-data \|\| mount \/srv\/webstack-data$/m,
      );
      assert.match(parsed.write_files[2].content, /^mkdir -p \/srv\/webstack-data\/postgres$/m);
      const command = path.join(dir, "ready");
      fs.writeFileSync(command, readinessCommand("/dev/disk/by-id/scsi-0DO_Volume_webstack-dev-data"));
      execFileSync("sh", ["-n", command]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("the readiness command tolerates cloud-init's 'recoverable errors' exit and refuses odd device paths", () => {
    assert.equal(
      readinessCommand("/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0abc"),
      [
        "set -e",
        "rc=0; cloud-init status --wait >/dev/null || rc=$?",
        'if [ "$rc" -ne 0 ] && [ "$rc" -ne 2 ]; then cloud-init status --long >&2; exit "$rc"; fi',
        "sudo -n /usr/local/sbin/webstack-prepare /dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0abc",
      ].join("\n"),
    );
    for (const device of ["/dev/sdf; rm -rf /", "x/dev/sdf", ";/dev/sdf", "/dev/sdf\nreboot", "/dev/"]) {
      assert.throws(() => readinessCommand(device), /data device must be a \/dev path/, device);
    }
  });
});

describe("cloud hosts", () => {
  test("firewall: HTTP from anywhere, HTTPS from anywhere only when served, SSH and Docker TLS from admin CIDRs only", () => {
    assert.deepEqual(inboundRules(["198.51.100.0/24"]), [
      { port: 80, sources: ["0.0.0.0/0", "::/0"], description: "HTTP" },
      { port: 22, sources: ["198.51.100.0/24"], description: "SSH from admin CIDRs" },
      { port: 2376, sources: ["198.51.100.0/24"], description: "Docker API (mutual TLS) from admin CIDRs" },
    ]);
    assert.deepEqual(inboundRules(["198.51.100.0/24"], 80, 443).slice(0, 2), [
      { port: 80, sources: ["0.0.0.0/0", "::/0"], description: "HTTP" },
      { port: 443, sources: ["0.0.0.0/0", "::/0"], description: "HTTPS" },
    ]);
    assert.deepEqual(
      inboundRules(["198.51.100.0/24"], 8080, 8443).map((r) => r.port),
      [8080, 8443, 22, 2376],
    );
  });

  test("DNS names relative to their zone; a name outside it is refused", () => {
    assert.deepEqual(dnsNames("example.com", ["app.example.com", "example.com", "a.b.example.com"]), [
      { fqdn: "app.example.com", relative: "app" },
      { fqdn: "example.com", relative: "@" },
      { fqdn: "a.b.example.com", relative: "a.b" },
    ]);
    assert.throws(() => dnsNames("example.com", ["app.badexample.com"]), /does not contain app.badexample.com/);
  });

  test("cloud names, AMI architecture, EBS device paths, DOCR credentials", () => {
    assert.equal(cloudName("webstack-PR_42.preview"), "webstack-pr-42-preview");
    assert.equal(cloudName(`webstack-${"x".repeat(80)}`).length, 63);
    // Runs of other characters become one '-', none at either end, even after the cut at 63.
    assert.equal(cloudName("--Web__Stack..pr-1--"), "web-stack-pr-1");
    assert.equal(cloudName("a!!!b"), "a-b");
    assert.equal(cloudName(`${"a".repeat(62)}--b`), "a".repeat(62));
    assert.equal(cloudName(`${"a".repeat(61)}---b`), "a".repeat(61));
    assert.equal(amiArchitecture("t3.small"), "x86_64");
    assert.equal(amiArchitecture("t4g.micro"), "arm64");
    assert.equal(amiArchitecture("c6gn.large"), "arm64");
    assert.equal(amiArchitecture("m7i.large"), "x86_64");
    // Graviton whatever the family's prefix or suffix; GPU (g5) and other families stay x86_64.
    for (const type of ["im4gn.large", "is4gen.medium", "x2gd.xlarge", "g5g.xlarge", "hpc7g.4xlarge"]) {
      assert.equal(amiArchitecture(type), "arm64", type);
    }
    for (const type of ["g5.xlarge", "c5n.large", "mac2.metal", "u-6tb1.metal"]) {
      assert.equal(amiArchitecture(type), "x86_64", type);
    }
    assert.equal(ebsDevicePath("vol-0abc123"), "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0abc123");
    const json = JSON.stringify({
      auths: { "registry.digitalocean.com": { auth: Buffer.from("u:p:w").toString("base64") } },
    });
    assert.deepEqual(parseDockerAuth(json, "registry.digitalocean.com"), { username: "u", password: "p:w" });
    assert.throws(
      () => parseDockerAuth("{}", "registry.digitalocean.com"),
      /no credentials for registry.digitalocean.com/,
    );
  });
});

describe("release ids", () => {
  test("a given release is shortened to 12 characters; otherwise a content hash", () => {
    assert.equal(releaseId("0123456789ABCDEF", "x", {}), "0123456789ab");
    assert.equal(releaseId(undefined, "source", { a: 1 }), releaseId(undefined, "source", { a: 1 }));
    assert.notEqual(releaseId(undefined, "source", { a: 1 }), releaseId(undefined, "source", { a: 2 }));
    assert.notEqual(releaseId(undefined, "source", { a: 1 }), releaseId(undefined, "other", { a: 1 }));
    assert.match(releaseId(undefined, "source", {}), /^[0-9a-f]{12}$/);
  });

  test("hashTree is the hash of the sorted listing: each path, its bytes; .git, coverage, node_modules and dist left out", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "webstack-tree-"));
    try {
      // Created in reverse order, so a listing in creation order would differ from the sorted one.
      const names = Array.from({ length: 40 }, (_, i) => `f${String(i).padStart(2, "0")}`).reverse();
      for (const name of names) fs.writeFileSync(path.join(dir, name), name);
      for (const ignored of [".git", "coverage", "node_modules", "dist"]) {
        fs.mkdirSync(path.join(dir, ignored));
        fs.writeFileSync(path.join(dir, ignored, "x"), "ignored");
      }
      const expected = createHash("sha256");
      for (const name of [...names].sort()) expected.update(`${name}\0`).update(name).update("\0");
      assert.equal(hashTree(dir), expected.digest("hex"));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("throwaway stacks are pr-<number>, with or without an organisation and project", () => {
    for (const name of ["pr-1", "pr-42", "pr-123456789", "acme/webstack/pr-3", "org/proj/pr-10"]) {
      assert.equal(isThrowawayStack(name), true, name);
    }
    for (const name of [
      "pr-0",
      "pr-01",
      "pr-1234567890",
      "xpr-1",
      "pr-1x",
      "pr-",
      "pr-a",
      "staging",
      "acme/webstack/staging",
      "pr-3/x",
    ]) {
      assert.equal(isThrowawayStack(name), false, name);
    }
    assert.equal(shortStackName("acme/webstack/pr-3"), "pr-3");
    assert.equal(shortStackName("pr-3"), "pr-3");
    assert.deepEqual("pr-77".match(PR_STACK)?.[1], "77");
  });

  test("hashTree follows content and ignores node_modules and dist", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "webstack-tree-"));
    try {
      fs.mkdirSync(path.join(dir, "src"));
      fs.writeFileSync(path.join(dir, "src", "a.ts"), "one");
      const first = hashTree(dir);
      fs.mkdirSync(path.join(dir, "node_modules"));
      fs.writeFileSync(path.join(dir, "node_modules", "x.js"), "ignored");
      fs.mkdirSync(path.join(dir, "dist"));
      fs.writeFileSync(path.join(dir, "dist", "a.js"), "ignored");
      assert.equal(hashTree(dir), first);
      fs.writeFileSync(path.join(dir, "src", "a.ts"), "two");
      assert.notEqual(hashTree(dir), first);
      fs.writeFileSync(path.join(dir, "src", "a.ts"), "one");
      fs.renameSync(path.join(dir, "src", "a.ts"), path.join(dir, "src", "b.ts"));
      assert.notEqual(hashTree(dir), first, "a rename is a change");
      // Paths are hashed with '/' between their parts, so moving a file across a folder boundary
      // that keeps the letters in order (src/b.ts and srcb/.ts) changes the hash.
      const nested = hashTree(dir);
      fs.mkdirSync(path.join(dir, "srcb"));
      fs.renameSync(path.join(dir, "src", "b.ts"), path.join(dir, "srcb", ".ts"));
      fs.rmdirSync(path.join(dir, "src"));
      assert.notEqual(hashTree(dir), nested, "src/b.ts and srcb/.ts are different trees");
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("release images on the host", () => {
  test("a release's image is its repository tagged with the release; the scripts take only a plain repository and a keep of at least 1", () => {
    assert.equal(
      releaseImage("registry.digitalocean.com/acme/webstack-prod-app", "r1"),
      "registry.digitalocean.com/acme/webstack-prod-app:r1",
    );
    assert.equal(releaseImage("webstack-dev-app", "4f1c2ab9e0d3"), "webstack-dev-app:4f1c2ab9e0d3");
    for (const bad of ["", "App", "a b", "a'; rm -rf /", "a/", "a:", "-a", "a--", "a/b/", ".a"]) {
      assert.throws(
        () => releaseImage(bad, "r1"),
        /an image repository must be lower-case letters, digits and \. _ - \/ :/,
        bad,
      );
      assert.throws(() => imagePruneScript(bad, 3), /an image repository must be/, bad);
      assert.throws(() => imageRemoveAllScript(bad), /an image repository must be/, bad);
    }
    for (const bad of [0, -1, 1.5])
      assert.throws(
        () => imagePruneScript("a", bad),
        new RegExp(`keep must be a whole number of at least 1 \\(got ${bad}\\)`),
      );
  });

  /**
   * Runs a script with a stand-in `docker` first on PATH: the engine's images (newest first), each
   * with the digests it was pulled by, and which of them a container uses. Returns what the script
   * printed and the references it removed. The real engine runs the same scripts in the engine tier.
   */
  function runWithImages(
    script: string,
    images: { tag: string; digests?: string[]; inUse?: boolean }[],
  ): { printed: string[]; removed: string[] } {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "webstack-docker-"));
    try {
      const log = path.join(dir, "removed");
      fs.writeFileSync(log, "");
      const digests = images.flatMap((i) => (i.digests ?? []).map((d) => `${i.tag} ${d}`));
      fs.writeFileSync(
        path.join(dir, "docker"),
        [
          "#!/bin/sh",
          'case "$1 $2" in',
          `"image ls") [ "$4" = "--format" ] || [ "$3" = "--format" ] || exit 9; printf '%s\\n' ${images.map((i) => `'${i.tag}'`).join(" ")} '<none>' ;;`,
          `"image inspect") tag="\${5##*:}"; printf '%s\\n' ${digests.map((d) => `'${d}'`).join(" ") || "''"} | while read -r t d; do [ "$t" = "$tag" ] && echo "$d"; done; exit 0 ;;`,
          `"image rm") case " ${images
            .filter((i) => i.inUse)
            .map((i) => `app:${i.tag}`)
            .join(" ")} " in *" $3 "*) exit 1 ;; esac; echo "$3" >> "${log}" ;;`,
          "*) exit 9 ;;",
          "esac",
        ].join("\n"),
        { mode: 0o755 },
      );
      const printed = execFileSync("/bin/sh", ["-c", script], {
        encoding: "utf8",
        env: { ...process.env, PATH: `${dir}:${process.env.PATH}` },
      });
      return {
        printed: printed.split("\n").filter((line) => line !== ""),
        removed: fs
          .readFileSync(log, "utf8")
          .split("\n")
          .filter((line) => line !== ""),
      };
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }

  test("the prune keeps the newest `keep` release images, removes the rest with their digests, and leaves one in use", () => {
    const images = [
      { tag: "r5" },
      { tag: "r4" },
      { tag: "r3", inUse: true },
      { tag: "r2", digests: ["app@sha256:22"] },
      { tag: "r1" },
    ];
    assert.deepEqual(runWithImages(imagePruneScript("app", 2), images), {
      printed: ["kept app:r3: in use", "removed app:r2", "removed app:r1"],
      removed: ["app:r2", "app@sha256:22", "app:r1"],
    });
    assert.deepEqual(runWithImages(imagePruneScript("app", 5), images), { printed: [], removed: [] });
    assert.deepEqual(runWithImages(imagePruneScript("app", 1), images).removed, [
      "app:r4",
      "app:r2",
      "app@sha256:22",
      "app:r1",
    ]);
    assert.deepEqual(runWithImages(imageRemoveAllScript("app"), images).removed, [
      "app:r5",
      "app:r4",
      "app:r2",
      "app@sha256:22",
      "app:r1",
    ]);
  });
});
