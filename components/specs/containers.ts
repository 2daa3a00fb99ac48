// Container specs as plain data: what each container of the stack is, independent of the Docker
// provider's types and of any secret value. WebStack turns a spec into a docker.Container, filling
// the secret files it names from Pulumi secrets.
//
// No secret ever travels in an environment variable, a command line or a label: they would show in
// `docker inspect`. Secrets reach containers as files, and containers hold no more privilege than
// their image needs to start: every capability dropped and only the named ones added back, no new
// privileges, and a read-only root wherever the process writes nothing of its own.
import { createHash } from "node:crypto";

/** Docker network alias every app replica carries; nginx's upstream resolves it. */
export const APP_ALIAS = "app";
export const APP_PORT = 3000;
export const POSTGRES_ALIAS = "postgres";
export const REDIS_ALIAS = "redis";
export const POSTGRES_USER = "webstack";
export const POSTGRES_DB = "webstack";
/** A subdirectory, so a freshly formatted block volume's lost+found never confuses initdb. */
export const PGDATA = "/var/lib/postgresql/data/pgdata";
/** Where the Postgres data volume is mounted; PGDATA is inside it, so a restore can set it aside there. */
export const POSTGRES_DATA_MOUNT = "/var/lib/postgresql/data";
/** The pgBackRest stanza of every stack: its repository holds one database cluster. */
export const BACKUP_STANZA = "webstack";
export const PGBACKREST_CONF = "/etc/pgbackrest/pgbackrest.conf";
/** The repository's path: a volume on the local target, the key prefix in a cloud stack's bucket. */
export const BACKUP_REPO_PATH = "/var/lib/pgbackrest";
export const POSTGRES_SOCKET_DIR = "/var/run/postgresql";
export const REDIS_CONF = "/usr/local/etc/redis/redis.conf";
/** The numeric user the app image runs as; set on the container too, so a replaced image cannot run as root. */
export const APP_USER = "10001:10001";
/** Where secret files live in a container, as Docker's own secrets do. */
export const SECRETS_DIR = "/run/secrets";
export const POSTGRES_PASSWORD_FILE = `${SECRETS_DIR}/postgres-password`;
/** nginx reads everything of its own from here: the stack's files over the image's defaults. */
export const NGINX_DIR = "/etc/nginx";
/** Where the certificate volume and the ACME webroot volume are mounted in the nginx container. */
export const NGINX_CERTS_DIR = "/etc/webstack-certs";
export const NGINX_ACME_WEBROOT = "/var/www/acme";

/** Where a one-off files run finds what it is given, and the volume it fills. */
export const FILES_STAGING = "/webstack/files";
export const FILES_OUT = "/webstack/out";

/**
 * The one-off files run: empties the volume, copies the seed directory of its own image (if any)
 * and then the staged files into it, and hands them to the owner (if any). Arguments, each
 * optional: `seed=<directory>`, `owner=<uid:gid>` (the provider refuses empty command values). The
 * volume's own root stays root's, so the next run may empty it without more than CAP_CHOWN.
 */
export const FILES_SCRIPT = [
  "set -eu",
  'seed="" owner=""',
  'for setting in "$@"; do',
  '  case "$setting" in',
  '    seed=*) seed="${setting#seed=}" ;;',
  '    owner=*) owner="${setting#owner=}" ;;',
  '    *) echo "files run: unknown setting $setting" >&2; exit 2 ;;',
  "  esac",
  "done",
  `find ${FILES_OUT} -mindepth 1 -delete`,
  `if [ -n "$seed" ]; then cp -a "$seed/." ${FILES_OUT}/; fi`,
  `cp -a ${FILES_STAGING}/. ${FILES_OUT}/`,
  `if [ -n "$owner" ]; then find ${FILES_OUT} -mindepth 1 -exec chown "$owner" {} +; fi`,
].join("\n");

export type Role =
  | "postgres"
  | "redis"
  | "app"
  | "migrate"
  | "nginx"
  | "files-app"
  | "files-nginx"
  | "acme"
  | "backup"
  | "postgres-check";
/**
 * The ACME client's (only with HTTPS): `certs` (its account and lego's files), `tls-live` (the
 * bundle nginx reads) and `acme-webroot` (challenges nginx answers).
 */
export type VolumeRole =
  | "postgres-data"
  | "redis-data"
  | "files-app"
  | "files-nginx"
  | "certs"
  | "tls-live"
  | "acme-webroot"
  /** Postgres's unix socket directory, shared with the backup container (only with backups). */
  | "postgres-socket"
  /** The backup repository on the local target (a cloud stack's is a bucket). */
  | "backups";
/**
 * `front`: nginx ↔ app. `back` (internal, no way out): app ↔ Postgres and Redis. `acme`: the ACME
 * client's way out to its CA, shared with nothing else (only with HTTPS). `backup`: the way out to
 * a cloud stack's backup bucket, for Postgres (which archives WAL) and the backup container.
 */
export type NetworkRole = "front" | "back" | "acme" | "backup";

/** Secret documents the component builds from Pulumi secrets; a spec names them, never holds them. */
export type SecretDocument =
  | "postgresPassword"
  | "redisConf"
  | "databaseUrl"
  | "redisUrl"
  | "adminToken"
  /** nginx's private key and certificate chain, when the stack makes them (the local target's CA). */
  | "tlsBundle"
  /** pgBackRest's configuration: the repository's encryption passphrase and the bucket's key. */
  | "pgbackrestConf";

/** What a file holds: a secret document by name, or plain text that may show in a diff. */
export type FileContent = { secret: SecretDocument } | { text: string };

export interface FileSpec {
  /** Absolute path in the container. */
  path: string;
  /**
   * Octal mode. Docker extracts uploads as root (the provider asks for no other owner), so a file
   * a non-root process reads is either world-readable or handed over by a files run.
   */
  mode: "0400" | "0444" | "0555";
  content: FileContent;
}

/**
 * What a long-running container may take of its host. The provider applies a change to the
 * running container (Docker's update), without a restart, so limits stay out of the fingerprint;
 * where a process must be told its limit (the app's heap, Redis's maxmemory), that setting is part
 * of the spec and a change replaces the container.
 */
export interface ResourceLimits {
  /** Memory in MiB, swap included: the kernel kills a process of the container past it. */
  memoryMb: number;
  /** Relative CPU weight, felt only when the host's CPUs are contended (Docker's default: 1024). */
  cpuShares: number;
}

/** The containers that run for the stack's lifetime, each with limits of its own. */
export type LimitedRole = "postgres" | "redis" | "nginx" | "app" | "acme" | "backup";
export const LIMITED_ROLES: readonly LimitedRole[] = ["postgres", "redis", "nginx", "app", "acme", "backup"];

/**
 * Limits for the default VM sizes (2 GiB: s-1vcpu-2gb, t3.small): with 3 replicas and backups the
 * stack may take 1.6 GiB (1.7 with HTTPS's client), leaving the rest to the system and Docker. Postgres weighs twice the others, so a
 * busy replica cannot starve the database every replica waits on.
 */
export const DEFAULT_LIMITS: Record<LimitedRole, ResourceLimits> = {
  postgres: { memoryMb: 512, cpuShares: 2048 },
  redis: { memoryMb: 128, cpuShares: 1024 },
  nginx: { memoryMb: 128, cpuShares: 1024 },
  app: { memoryMb: 256, cpuShares: 1024 },
  // lego's run and renew need about 30 MiB; it is idle but twice a day.
  acme: { memoryMb: 96, cpuShares: 256 },
  // pgBackRest streams each file through compression and encryption with 1 MB buffers; a backup
  // never outweighs the database.
  backup: { memoryMb: 128, cpuShares: 512 },
};

/** The share of a memory limit a process is told to keep to, leaving room for what it does not count. */
export function softLimitMb(limits: ResourceLimits): number {
  return Math.floor((limits.memoryMb * 3) / 4);
}

export interface HealthcheckSpec {
  tests: string[];
  interval: string;
  timeout: string;
  startPeriod: string;
  retries: number;
}

export interface ContainerSpec {
  role: Role;
  /** The Docker container name. */
  containerName: string;
  command?: string[];
  user?: string;
  /** Environment variables; never a secret (secrets are files). */
  env: Record<string, string>;
  /** Files uploaded into the container before it starts. Needs a writable root. */
  files: FileSpec[];
  /** The stack networks the container joins, with its aliases there; none means no network at all. */
  networks: { network: NetworkRole; aliases: string[] }[];
  /** Replaces the image's entrypoint; the command is then its arguments. */
  entrypoint?: string[];
  /** Undefined only for a one-off run, which is waited for until it ends instead. */
  healthcheck?: HealthcheckSpec;
  /**
   * Whether the update waits for the container to be healthy (and fails when it is not). Off for a
   * container whose health depends on the world outside (the ACME client's CA). @default true
   */
  waitHealthy?: boolean;
  restart: "unless-stopped" | "no";
  /** Runs once to its end (the provider waits for it and records its exit code); never restarted. */
  oneOff: boolean;
  /** Published ports; only nginx has any. No `external` means a free port Docker picks. */
  ports: { internal: number; external?: number; ip: string }[];
  /** Volumes of the stack mounted into the container, by role of the volume. */
  volumes: { volume: VolumeRole; containerPath: string; readOnly: boolean }[];
  /** Capabilities added back after dropping all, as Docker names them (it stores `CAP_…`). */
  capabilities: string[];
  /** The root filesystem is read-only; `tmpfs` lists where the process writes. */
  readOnlyRoot: boolean;
  tmpfs: Record<string, string>;
  labels: Record<string, string>;
  logOpts: Record<string, string>;
  /** The signal that asks the process for its graceful shutdown. */
  stopSignal: "SIGTERM" | "SIGINT" | "SIGQUIT";
  /** Seconds Docker waits after the stop signal before killing the container. */
  stopTimeout: number;
  /** Undefined only for a one-off run. */
  limits?: ResourceLimits;
  /**
   * The most tasks (processes and threads) the container's user may have on the host (the
   * kernel's RLIMIT_NPROC, counted per user, not per container); undefined sets none.
   */
  userProcesses?: number;
  /**
   * Docker's init (tini) runs as PID 1 and starts the command: it passes signals on and reaps
   * orphaned children, which would otherwise stay zombies counted against `userProcesses`.
   */
  init?: boolean;
}

export interface StackNames {
  /** Prefix of every Docker object name, unique per stack on an engine: `webstack-<stack>`. */
  prefix: string;
  /** The stack name, recorded in labels. */
  stack: string;
}

/** Log rotation for every container: at most 3 files of 10 MB each. */
export const LOG_OPTS: Record<string, string> = { "max-size": "10m", "max-file": "3" };

/** Scratch space: no devices, no set-uid files, nothing executable. */
const TMPFS = "rw,nosuid,nodev,noexec";

function labels(names: StackNames, role: Role, extra: Record<string, string> = {}): Record<string, string> {
  return { "webstack.stack": names.stack, "webstack.role": role, ...extra };
}

/**
 * The official image's entrypoint starts as root, creates and chowns the data directory (reading
 * into a 0700 one as it goes), then drops to the postgres user; the server itself then holds no
 * capability at all.
 */
export function postgresSpec(
  names: StackNames,
  limits: ResourceLimits = DEFAULT_LIMITS.postgres,
  backups?: PostgresBackups,
): ContainerSpec {
  return {
    role: "postgres",
    containerName: `${names.prefix}-postgres`,
    ...(backups === undefined
      ? {}
      : {
          // Every finished WAL segment goes to the repository before Postgres may recycle it; a
          // failed push is retried and holds the segment, so the archive never has a gap.
          command: [
            "postgres",
            "-c",
            "archive_mode=on",
            "-c",
            `archive_command=pgbackrest --stanza=${BACKUP_STANZA} archive-push %p`,
            "-c",
            `archive_timeout=${backups.archiveTimeoutSeconds}`,
          ],
        }),
    env: { POSTGRES_USER, POSTGRES_DB, PGDATA, POSTGRES_PASSWORD_FILE },
    files: [
      // Read by the entrypoint while it is still root, before it drops to the postgres user.
      { path: POSTGRES_PASSWORD_FILE, mode: "0400", content: { secret: "postgresPassword" } },
      // Read by archive-push as the postgres user, the only user this container runs.
      ...(backups === undefined
        ? []
        : [{ path: PGBACKREST_CONF, mode: "0444" as const, content: { secret: "pgbackrestConf" as const } }]),
    ],
    networks: [
      { network: "back", aliases: [POSTGRES_ALIAS] },
      ...(backups?.bucket === true ? [{ network: "backup" as const, aliases: [] }] : []),
    ],
    healthcheck: {
      // Over TCP, so the temporary socket-only server of the image's first-run init never counts as ready.
      tests: ["CMD", "pg_isready", "-h", "127.0.0.1", "-U", POSTGRES_USER, "-d", POSTGRES_DB],
      interval: "5s",
      timeout: "3s",
      startPeriod: "60s",
      retries: 5,
    },
    restart: "unless-stopped",
    oneOff: false,
    ports: [],
    volumes: [
      { volume: "postgres-data", containerPath: POSTGRES_DATA_MOUNT, readOnly: false },
      ...(backups === undefined
        ? []
        : [{ volume: "postgres-socket" as const, containerPath: POSTGRES_SOCKET_DIR, readOnly: false }]),
      ...(backups === undefined || backups.bucket
        ? []
        : [{ volume: "backups" as const, containerPath: BACKUP_REPO_PATH, readOnly: false }]),
    ],
    capabilities: ["CAP_CHOWN", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_SETGID", "CAP_SETUID"],
    readOnlyRoot: false,
    tmpfs: {},
    labels: labels(names, "postgres"),
    logOpts: LOG_OPTS,
    // SIGINT is Postgres's "fast" shutdown; SIGTERM would wait for every pooled client to leave.
    stopSignal: "SIGINT",
    stopTimeout: 30,
    limits,
  };
}

/**
 * The check a Postgres image passes before it may run on the stack's data directory: the major
 * version the directory was made by (PG_VERSION) must be the image's (PG_MAJOR, which the official
 * images set). A new directory passes. Exit code 3 and one line on stderr when they differ.
 */
export const POSTGRES_CHECK_SCRIPT = [
  "set -eu",
  'want="${PG_MAJOR:-}"',
  "if [ -z \"$want\" ]; then want=$(postgres --version | sed -E 's/^[^0-9]* ([0-9]+)[.].*$/\\1/'); fi",
  'have=""',
  'if [ -e "$PGDATA/PG_VERSION" ]; then have=$(cat "$PGDATA/PG_VERSION"); fi',
  'if [ -n "$have" ] && [ "$have" != "$want" ]; then',
  '  echo "postgres-check: the data directory is Postgres $have and the image is Postgres $want" >&2',
  "  exit 3",
  "fi",
  'echo "postgres-check: the data directory is ${have:-new}, the image is Postgres $want"',
].join("\n");

/**
 * A one-off run of a Postgres image against the data directory, read-only, that ends well only
 * when the image's major version is the directory's (see POSTGRES_CHECK_SCRIPT). Named after the
 * image, so each new image is checked once, before the server is replaced by it.
 */
export function postgresCheckSpec(names: StackNames, image: string): ContainerSpec {
  const tag = createHash("sha256").update(image).digest("hex").slice(0, 12);
  return {
    role: "postgres-check",
    containerName: `${names.prefix}-postgres-check-${tag}`,
    entrypoint: ["/bin/sh", "-c", POSTGRES_CHECK_SCRIPT],
    // Root with the one capability to read the directory, whichever uid the image's postgres has.
    user: "0:0",
    env: { PGDATA },
    files: [],
    networks: [],
    restart: "no",
    oneOff: true,
    ports: [],
    volumes: [{ volume: "postgres-data", containerPath: POSTGRES_DATA_MOUNT, readOnly: true }],
    capabilities: ["CAP_DAC_READ_SEARCH"],
    readOnlyRoot: true,
    tmpfs: {},
    labels: labels(names, "postgres-check"),
    logOpts: LOG_OPTS,
    stopSignal: "SIGTERM",
    stopTimeout: 10,
    limits: { memoryMb: 64, cpuShares: 256 },
  };
}

/** What a failed Postgres check said: its own line, without the stream headers a raw Docker log may carry. */
export function postgresCheckFailure(logs: string | undefined): string | undefined {
  const line = (logs ?? "")
    .split("\n")
    .map((l) => l.replace(/^[\x00-\x08][\x00-\xff]{7}/, "").trim())
    .find((l) => l.startsWith("postgres-check: the data directory is Postgres"));
  return line?.replace(/^postgres-check: /, "");
}

/** What Postgres needs to know of the stack's backups. */
export interface PostgresBackups {
  archiveTimeoutSeconds: number;
  /** The repository is a bucket (cloud targets), reached over the `backup` network; else a volume. */
  bucket: boolean;
}

export interface BackupSpecOptions extends PostgresBackups {
  /** The backup container's script (postgres/backup.sh), run by the image's shell. */
  script: string;
  /** The health check's script (postgres/backup-health.sh). */
  healthScript: string;
  fullDays: number;
  diffHours: number;
  limits?: ResourceLimits;
}

/**
 * The backup container: the Postgres image's pgBackRest, as the postgres user, taking the
 * scheduled backups. It reads the data directory (read-only) and reaches the server through its
 * socket, so it needs no password and no network but the bucket's. Its health is the backups'.
 */
export function backupSpec(names: StackNames, options: BackupSpecOptions): ContainerSpec {
  const env = {
    PGDATA,
    PGUSER: POSTGRES_USER,
    PGDATABASE: POSTGRES_DB,
    BACKUP_STANZA,
    BACKUP_FULL_DAYS: String(options.fullDays),
    BACKUP_DIFF_HOURS: String(options.diffHours),
  };
  return {
    role: "backup",
    containerName: `${names.prefix}-backup`,
    entrypoint: ["/bin/sh", "-c", options.script, "webstack-backup"],
    user: "postgres",
    env,
    files: [{ path: PGBACKREST_CONF, mode: "0444", content: { secret: "pgbackrestConf" } }],
    networks: options.bucket ? [{ network: "backup", aliases: [] }] : [],
    healthcheck: {
      // The check's one line is what `docker inspect` shows: the backups' ages, or why they fail.
      tests: ["CMD", "/bin/sh", "-c", options.healthScript],
      // A file read, a directory listing and one query: cheap enough to ask often.
      interval: "15s",
      timeout: "10s",
      startPeriod: "10m",
      retries: 3,
    },
    // A bucket outage must not hold up a release; the check shows it instead.
    waitHealthy: false,
    restart: "unless-stopped",
    oneOff: false,
    ports: [],
    volumes: [
      { volume: "postgres-data", containerPath: POSTGRES_DATA_MOUNT, readOnly: true },
      { volume: "postgres-socket", containerPath: POSTGRES_SOCKET_DIR, readOnly: false },
      ...(options.bucket ? [] : [{ volume: "backups" as const, containerPath: BACKUP_REPO_PATH, readOnly: false }]),
    ],
    capabilities: [],
    // The provider uploads the configuration file into the root.
    readOnlyRoot: false,
    tmpfs: { "/tmp": `${TMPFS},size=64m` },
    labels: labels(names, "backup"),
    logOpts: LOG_OPTS,
    stopSignal: "SIGTERM",
    // An interrupted backup is resumed by the next one.
    stopTimeout: 10,
    limits: options.limits ?? DEFAULT_LIMITS.backup,
  };
}

/**
 * Redis reads its password from its config file, never from its command line. The entrypoint
 * chowns /data (reading into Redis's 0700 directories) and drops to the redis user, who must then
 * read the file: it is world-readable inside a container that runs nothing else.
 */
export function redisSpec(names: StackNames, limits: ResourceLimits = DEFAULT_LIMITS.redis): ContainerSpec {
  return {
    role: "redis",
    containerName: `${names.prefix}-redis`,
    command: ["redis-server", REDIS_CONF],
    env: {},
    files: [{ path: REDIS_CONF, mode: "0444", content: { secret: "redisConf" } }],
    networks: [{ network: "back", aliases: [REDIS_ALIAS] }],
    healthcheck: {
      // redis-cli takes the password from REDISCLI_AUTH, set for this one command from the file,
      // so it shows in no command line and in no container environment.
      tests: [
        "CMD-SHELL",
        `REDISCLI_AUTH="$(sed -n 's/^requirepass //p' ${REDIS_CONF})" redis-cli ping | grep -q PONG`,
      ],
      interval: "5s",
      timeout: "3s",
      startPeriod: "10s",
      retries: 5,
    },
    restart: "unless-stopped",
    oneOff: false,
    ports: [],
    volumes: [{ volume: "redis-data", containerPath: "/data", readOnly: false }],
    capabilities: ["CAP_CHOWN", "CAP_DAC_READ_SEARCH", "CAP_SETGID", "CAP_SETUID"],
    readOnlyRoot: false,
    tmpfs: {},
    labels: labels(names, "redis"),
    logOpts: LOG_OPTS,
    stopSignal: "SIGTERM",
    stopTimeout: 10,
    limits,
  };
}

/** The content of Redis's config file. It holds the password, so the component keeps it secret. */
export function redisConf(options: { password: string; appendOnly: boolean; maxMemoryMb: number }): string {
  if (!/^[A-Za-z0-9_-]+$/.test(options.password)) {
    // A generated password never trips this; a configured one with spaces or quotes would break the file.
    throw new Error("the Redis password may contain only letters, digits, '_' and '-'");
  }
  return [
    "bind * -::*",
    "port 6379",
    "dir /data",
    `appendonly ${options.appendOnly ? "yes" : "no"}`,
    "appendfsync everysec",
    // Past this Redis refuses writes (the app then serves from Postgres) instead of being killed.
    `maxmemory ${options.maxMemoryMb}mb`,
    "maxmemory-policy noeviction",
    `requirepass ${options.password}`,
    "",
  ].join("\n");
}

/** The app's secret files, by the variable that names each. */
export const APP_SECRET_FILES: Record<string, { file: string; secret: SecretDocument }> = {
  DATABASE_URL_FILE: { file: `${SECRETS_DIR}/database-url`, secret: "databaseUrl" },
  REDIS_URL_FILE: { file: `${SECRETS_DIR}/redis-url`, secret: "redisUrl" },
  ADMIN_TOKEN_FILE: { file: `${SECRETS_DIR}/admin-token`, secret: "adminToken" },
};

export interface AppReplicaOptions {
  release: string;
  index: number;
  shutdownGraceSeconds: number;
  /** @default DEFAULT_LIMITS.app */
  limits?: ResourceLimits;
  /** Tasks the app's user may have on the host, all its containers together. @default DEFAULT_APP_PROCESSES */
  userProcesses?: number;
}

/**
 * Tasks the app's user may have on the host by default: far above what 20 replicas of two releases
 * use (a dozen threads each), far below what exhausts the host's process table.
 */
export const DEFAULT_APP_PROCESSES = 1024;

/**
 * An app replica: read-only root, no capability, its secrets in a read-only volume its files run
 * filled (the provider cannot upload into a read-only root).
 */
export function appReplicaSpec(names: StackNames, options: AppReplicaOptions): ContainerSpec {
  const containerName = `${names.prefix}-app-${options.release}-${options.index}`;
  const limits = options.limits ?? DEFAULT_LIMITS.app;
  return {
    role: "app",
    containerName,
    user: APP_USER,
    env: {
      PORT: String(APP_PORT),
      REPLICA_ID: containerName,
      SHUTDOWN_GRACE_MS: String(options.shutdownGraceSeconds * 1000),
      // The heap stops growing (and V8 collects harder) well before the kernel would kill the replica.
      NODE_OPTIONS: `--max-old-space-size=${softLimitMb(limits)}`,
      ...Object.fromEntries(Object.entries(APP_SECRET_FILES).map(([variable, { file }]) => [variable, file])),
    },
    files: [],
    // The alias lives on the front network only: nothing on the back network needs to find the app.
    networks: [
      { network: "front", aliases: [APP_ALIAS] },
      { network: "back", aliases: [] },
    ],
    healthcheck: {
      // A bash script, not node: a check every 5 s in every replica costs a shell, not a Node start.
      tests: ["CMD", "bash", "/app/healthcheck.sh"],
      interval: "5s",
      timeout: "3s",
      startPeriod: "30s",
      retries: 3,
    },
    restart: "unless-stopped",
    oneOff: false,
    ports: [],
    volumes: [{ volume: "files-app", containerPath: SECRETS_DIR, readOnly: true }],
    capabilities: [],
    readOnlyRoot: true,
    tmpfs: { "/tmp": `${TMPFS},size=16m` },
    labels: labels(names, "app", { "webstack.release": options.release }),
    logOpts: LOG_OPTS,
    stopSignal: "SIGTERM",
    // The app drains in-flight requests within its grace period; Docker waits a little longer.
    stopTimeout: options.shutdownGraceSeconds + 5,
    limits,
    userProcesses: options.userProcesses ?? DEFAULT_APP_PROCESSES,
    // Node reaps only the children it spawned: what a shell in the replica forks and leaves is tini's.
    init: true,
  };
}

export interface MigrationRunOptions {
  release: string;
  /** The app's limits: the run is the app's own code. @default DEFAULT_LIMITS.app */
  limits?: ResourceLimits;
  /** The app's user's task limit (see AppReplicaOptions). @default DEFAULT_APP_PROCESSES */
  userProcesses?: number;
}

/** The app image's migration entry point (see app/README.md, "Migrations"). */
export const MIGRATE_COMMAND = ["node", "/app/dist/migrate.js"];

/**
 * A release's migration run: the release's own image applies the migrations the database lacks,
 * once, before any replica of the release is created, and ends. Like a replica it runs as the
 * app's user with no capability and a read-only root, and reads the database URL from the app's
 * secret files; it joins only the back network, where Postgres is.
 */
export function migrationRunSpec(names: StackNames, options: MigrationRunOptions): ContainerSpec {
  const limits = options.limits ?? DEFAULT_LIMITS.app;
  return {
    role: "migrate",
    containerName: `${names.prefix}-migrate-${options.release}`,
    command: MIGRATE_COMMAND,
    user: APP_USER,
    env: {
      DATABASE_URL_FILE: APP_SECRET_FILES.DATABASE_URL_FILE.file,
      NODE_OPTIONS: `--max-old-space-size=${softLimitMb(limits)}`,
    },
    files: [],
    networks: [{ network: "back", aliases: [] }],
    restart: "no",
    oneOff: true,
    ports: [],
    volumes: [{ volume: "files-app", containerPath: SECRETS_DIR, readOnly: true }],
    capabilities: [],
    readOnlyRoot: true,
    tmpfs: { "/tmp": `${TMPFS},size=16m` },
    labels: labels(names, "migrate", { "webstack.release": options.release }),
    logOpts: LOG_OPTS,
    stopSignal: "SIGTERM",
    stopTimeout: 10,
    limits,
    userProcesses: options.userProcesses ?? DEFAULT_APP_PROCESSES,
  };
}

/**
 * What a failed migration run said about its failure: its last error line (the app logs JSON
 * lines; level 50 is error), e.g. "migration 0003_add-index failed: …", or its last line of plain
 * text (a configuration error). Tolerates the stream headers a raw Docker log may carry.
 */
export function migrationFailure(logs: string | undefined): string | undefined {
  const lines = (logs ?? "")
    .split("\n")
    .map((line) => line.replace(/^[\x00-\x08][\x00-\xff]{7}/, "").trim())
    .filter((line) => line.length > 0)
    .reverse();
  for (const line of lines) {
    // A header split by a newline in its size leaves some of its bytes before the JSON, and one
    // of them may be "{": try each "{" (one nested further in never parses: the rest follows it).
    for (let start = line.indexOf("{"); start >= 0; start = line.indexOf("{", start + 1)) {
      const entry = parseJson(line.slice(start));
      if (typeof entry?.level === "number" && entry.level >= 50 && typeof entry.msg === "string") return entry.msg;
    }
  }
  return lines.find((line) => !line.startsWith("{"));
}

/** A JSON object from text that starts with "{", or undefined when it is not one. */
function parseJson(text: string): { level?: unknown; msg?: unknown } | undefined {
  try {
    return JSON.parse(text) as { level?: unknown; msg?: unknown };
  } catch {
    return undefined;
  }
}

export interface NginxSpecOptions {
  /** Host port; 0 lets Docker pick a free one. */
  httpPort: number;
  bindAddress: string;
  command: string[];
  /**
   * Hash of the files nginx reads only when it starts (its start script, the names it watches), so
   * a change there replaces it; its config is reloaded in place instead.
   */
  startHash: string;
  /** @default DEFAULT_LIMITS.nginx */
  limits?: ResourceLimits;
  /** HTTPS: the host port 443 is published on. @default undefined (HTTP only) */
  httpsPort?: number;
  /** nginx reads the ACME client's certificate and webroot volumes. @default false */
  acmeVolumes?: boolean;
}

/**
 * nginx: the master binds port 80, creates its temp directories for the workers' user and
 * switches the workers to it; everything it reads is in a read-only volume its files run filled.
 */
export function nginxSpec(names: StackNames, options: NginxSpecOptions): ContainerSpec {
  return {
    role: "nginx",
    containerName: `${names.prefix}-nginx`,
    command: options.command,
    env: {},
    files: [],
    networks: [{ network: "front", aliases: ["nginx"] }],
    healthcheck: {
      tests: ["CMD", "curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1/nginx-health"],
      interval: "5s",
      timeout: "3s",
      startPeriod: "10s",
      retries: 3,
    },
    restart: "unless-stopped",
    oneOff: false,
    ports: [
      options.httpPort === 0
        ? { internal: 80, ip: options.bindAddress }
        : { internal: 80, external: options.httpPort, ip: options.bindAddress },
      ...(options.httpsPort === undefined
        ? []
        : [{ internal: 443, external: options.httpsPort, ip: options.bindAddress }]),
    ],
    volumes: [
      { volume: "files-nginx", containerPath: NGINX_DIR, readOnly: true },
      ...(!options.acmeVolumes
        ? []
        : [
            { volume: "tls-live" as const, containerPath: NGINX_CERTS_DIR, readOnly: true },
            { volume: "acme-webroot" as const, containerPath: NGINX_ACME_WEBROOT, readOnly: true },
          ]),
    ],
    capabilities: ["CAP_CHOWN", "CAP_NET_BIND_SERVICE", "CAP_SETGID", "CAP_SETUID"],
    readOnlyRoot: true,
    // Request bodies and proxy buffers go to /var/cache/nginx, the pid file to /run.
    tmpfs: { "/var/cache/nginx": TMPFS, "/run": `${TMPFS},size=1m` },
    labels: labels(names, "nginx", { "webstack.start-files": options.startHash }),
    logOpts: LOG_OPTS,
    // SIGQUIT is nginx's graceful shutdown: open requests finish.
    stopSignal: "SIGQUIT",
    stopTimeout: 15,
    limits: options.limits ?? DEFAULT_LIMITS.nginx,
  };
}

export interface AcmeSpecOptions {
  /** The client's script (acme/acme.sh), run by the image's /bin/sh. */
  script: string;
  /** ACME_* settings for the script; none is a secret. */
  env: Record<string, string>;
  /** @default DEFAULT_LIMITS.acme */
  limits?: ResourceLimits;
}

/** Where the ACME client keeps its state file; the health check reads it. */
export const ACME_STATE_FILE = "/tmp/acme-state";

/**
 * The ACME client (lego): root in its container, for the root-owned volumes, with no capability;
 * a read-only root; the only way out its own network. Healthy while its last attempt succeeded;
 * the update does not wait for that, since it depends on the CA.
 */
export function acmeSpec(names: StackNames, options: AcmeSpecOptions): ContainerSpec {
  return {
    role: "acme",
    containerName: `${names.prefix}-acme`,
    entrypoint: ["/bin/sh", "-c", options.script, "webstack-acme"],
    env: options.env,
    files: [],
    networks: [{ network: "acme", aliases: [] }],
    healthcheck: {
      // The state line is the check's output, so `docker inspect` shows why it fails.
      tests: ["CMD", "/bin/sh", "-c", `cat ${ACME_STATE_FILE} && grep -q '^ok ' ${ACME_STATE_FILE}`],
      interval: "10s",
      timeout: "3s",
      startPeriod: "60s",
      retries: 3,
    },
    waitHealthy: false,
    restart: "unless-stopped",
    oneOff: false,
    ports: [],
    volumes: [
      { volume: "certs", containerPath: "/certs", readOnly: false },
      { volume: "tls-live", containerPath: "/live", readOnly: false },
      { volume: "acme-webroot", containerPath: "/webroot", readOnly: false },
    ],
    capabilities: [],
    readOnlyRoot: true,
    tmpfs: { "/tmp": `${TMPFS},size=1m` },
    labels: labels(names, "acme"),
    logOpts: LOG_OPTS,
    stopSignal: "SIGTERM",
    stopTimeout: 10,
    limits: options.limits ?? DEFAULT_LIMITS.acme,
  };
}

export interface FilesRunOptions {
  /** The container whose read-only files this run writes. */
  consumer: "app" | "nginx";
  /** Files relative to the consumer's mount point. */
  files: { path: string; mode: FileSpec["mode"]; content: FileContent }[];
  /** A directory of the image copied first, so the stack's files lie over the image's own. */
  seed?: string;
  /** "uid:gid" the files are handed to; root keeps them otherwise. */
  owner?: string;
}

/**
 * A one-off run of the consumer's own image that fills the consumer's files volume and ends. It
 * has no network and only CAP_CHOWN (to hand files over); its exit code gates the consumer.
 */
export function filesRunSpec(names: StackNames, options: FilesRunOptions): ContainerSpec {
  const role: Role = `files-${options.consumer}`;
  for (const f of options.files) {
    if (!/^[A-Za-z0-9][A-Za-z0-9._/-]*$/.test(f.path) || f.path.split("/").includes("..")) {
      throw new Error(
        `${role}: ${JSON.stringify(f.path)} is not a relative path of letters, digits, '.', '_', '-' and '/'`,
      );
    }
  }
  return {
    role,
    containerName: `${names.prefix}-${role}`,
    command: [
      "/bin/sh",
      "-c",
      FILES_SCRIPT,
      role,
      ...(options.seed === undefined ? [] : [`seed=${options.seed}`]),
      ...(options.owner === undefined ? [] : [`owner=${options.owner}`]),
    ],
    user: "0:0",
    env: {},
    files: options.files.map((f) => ({ path: `${FILES_STAGING}/${f.path}`, mode: f.mode, content: f.content })),
    networks: [],
    restart: "no",
    oneOff: true,
    ports: [],
    volumes: [{ volume: role, containerPath: FILES_OUT, readOnly: false }],
    capabilities: options.owner === undefined ? [] : ["CAP_CHOWN"],
    readOnlyRoot: false,
    tmpfs: {},
    labels: labels(names, role),
    logOpts: LOG_OPTS,
    stopSignal: "SIGTERM",
    stopTimeout: 10,
  };
}

/**
 * A hash of everything a spec asks of Docker. WebStack puts it in a label, and labels force a
 * replacement: a change the provider would otherwise apply in place or not at all (health check,
 * tmpfs) takes effect. Secret files contribute their names, never their values. Resource limits
 * are left out: the provider applies them to the running container.
 */
export function specFingerprint(spec: ContainerSpec): string {
  const hashed: Partial<ContainerSpec> = { ...spec };
  delete hashed.limits;
  return createHash("sha256").update(JSON.stringify(hashed)).digest("hex").slice(0, 16);
}

/** Connection URLs the app receives; built only inside a secret Output by the component. */
export function databaseUrl(password: string): string {
  return `postgres://${POSTGRES_USER}:${encodeURIComponent(password)}@${POSTGRES_ALIAS}:5432/${POSTGRES_DB}`;
}

export function redisUrl(password: string): string {
  return `redis://:${encodeURIComponent(password)}@${REDIS_ALIAS}:6379`;
}
