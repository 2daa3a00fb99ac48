// Container specs as plain data: what each container of the stack is, independent of the Docker
// provider's types and of any secret value. WebStack turns a spec into a docker.Container, filling
// the secret environment variables it names from Pulumi secrets.

/** Docker network alias every app replica carries; nginx's upstream resolves it. */
export const APP_ALIAS = "app";
export const APP_PORT = 3000;
export const POSTGRES_ALIAS = "postgres";
export const REDIS_ALIAS = "redis";
export const POSTGRES_USER = "webstack";
export const POSTGRES_DB = "webstack";
/** A subdirectory, so a freshly formatted block volume's lost+found never confuses initdb. */
export const PGDATA = "/var/lib/postgresql/data/pgdata";
export const REDIS_CONF = "/usr/local/etc/redis/redis.conf";
/** The numeric user the app image runs as; set on the container too, so a replaced image cannot run as root. */
export const APP_USER = "10001:10001";

export type Role = "postgres" | "redis" | "app" | "nginx";

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
  /** Plain environment variables. */
  env: Record<string, string>;
  /** Names of environment variables whose values are secrets the component supplies. */
  secretEnv: string[];
  /** Aliases on the stack's network. */
  aliases: string[];
  healthcheck: HealthcheckSpec;
  restart: "unless-stopped";
  /** Published ports; only nginx has any. No `external` means a free port Docker picks. */
  ports: { internal: number; external?: number; ip: string }[];
  /** Named volumes of the stack mounted into the container, by role of the volume. */
  volumes: { volume: "postgres-data" | "redis-data"; containerPath: string }[];
  labels: Record<string, string>;
  logOpts: Record<string, string>;
  /** The signal that asks the process for its graceful shutdown. */
  stopSignal: "SIGTERM" | "SIGINT" | "SIGQUIT";
  /** Seconds Docker waits after the stop signal before killing the container. */
  stopTimeout: number;
}

export interface StackNames {
  /** Prefix of every Docker object name, unique per stack on an engine: `webstack-<stack>`. */
  prefix: string;
  /** The stack name, recorded in labels. */
  stack: string;
}

/** Log rotation for every container: at most 3 files of 10 MB each. */
export const LOG_OPTS: Record<string, string> = { "max-size": "10m", "max-file": "3" };

function labels(names: StackNames, role: Role, extra: Record<string, string> = {}): Record<string, string> {
  return { "webstack.stack": names.stack, "webstack.role": role, ...extra };
}

export function postgresSpec(names: StackNames): ContainerSpec {
  return {
    role: "postgres",
    containerName: `${names.prefix}-postgres`,
    env: { POSTGRES_USER, POSTGRES_DB, PGDATA },
    secretEnv: ["POSTGRES_PASSWORD"],
    aliases: [POSTGRES_ALIAS],
    healthcheck: {
      // Over TCP, so the temporary socket-only server of the image's first-run init never counts as ready.
      tests: ["CMD", "pg_isready", "-h", "127.0.0.1", "-U", POSTGRES_USER, "-d", POSTGRES_DB],
      interval: "5s",
      timeout: "3s",
      startPeriod: "60s",
      retries: 5,
    },
    restart: "unless-stopped",
    ports: [],
    volumes: [{ volume: "postgres-data", containerPath: "/var/lib/postgresql/data" }],
    labels: labels(names, "postgres"),
    logOpts: LOG_OPTS,
    // SIGINT is Postgres's "fast" shutdown; SIGTERM would wait for every pooled client to leave.
    stopSignal: "SIGINT",
    stopTimeout: 30,
  };
}

/** Redis reads its password from an uploaded config file, never from its command line. */
export function redisSpec(names: StackNames): ContainerSpec {
  return {
    role: "redis",
    containerName: `${names.prefix}-redis`,
    command: ["redis-server", REDIS_CONF],
    env: {},
    // redis-cli reads REDISCLI_AUTH, so the health check needs no password argument.
    secretEnv: ["REDISCLI_AUTH"],
    aliases: [REDIS_ALIAS],
    healthcheck: {
      tests: ["CMD-SHELL", "redis-cli ping | grep -q PONG"],
      interval: "5s",
      timeout: "3s",
      startPeriod: "10s",
      retries: 5,
    },
    restart: "unless-stopped",
    ports: [],
    volumes: [{ volume: "redis-data", containerPath: "/data" }],
    labels: labels(names, "redis"),
    logOpts: LOG_OPTS,
    stopSignal: "SIGTERM",
    stopTimeout: 10,
  };
}

/** The content of Redis's config file. It holds the password, so the component keeps it secret. */
export function redisConf(options: { password: string; appendOnly: boolean }): string {
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
    "maxmemory-policy noeviction",
    `requirepass ${options.password}`,
    "",
  ].join("\n");
}

export interface AppReplicaOptions {
  release: string;
  index: number;
  shutdownGraceSeconds: number;
}

export function appReplicaSpec(names: StackNames, options: AppReplicaOptions): ContainerSpec {
  const containerName = `${names.prefix}-app-${options.release}-${options.index}`;
  return {
    role: "app",
    containerName,
    user: APP_USER,
    env: {
      PORT: String(APP_PORT),
      REPLICA_ID: containerName,
      SHUTDOWN_GRACE_MS: String(options.shutdownGraceSeconds * 1000),
    },
    secretEnv: ["DATABASE_URL", "REDIS_URL"],
    aliases: [APP_ALIAS],
    healthcheck: {
      tests: ["CMD", "node", "/app/dist/healthcheck.js"],
      interval: "5s",
      timeout: "3s",
      startPeriod: "30s",
      retries: 3,
    },
    restart: "unless-stopped",
    ports: [],
    volumes: [],
    labels: labels(names, "app", { "webstack.release": options.release }),
    logOpts: LOG_OPTS,
    stopSignal: "SIGTERM",
    // The app drains in-flight requests within its grace period; Docker waits a little longer.
    stopTimeout: options.shutdownGraceSeconds + 5,
  };
}

export interface NginxSpecOptions {
  /** Host port; 0 lets Docker pick a free one. */
  httpPort: number;
  bindAddress: string;
  command: string[];
  /** Hash of the rendered config, so a config change is visible in a diff. */
  configHash: string;
}

export function nginxSpec(names: StackNames, options: NginxSpecOptions): ContainerSpec {
  return {
    role: "nginx",
    containerName: `${names.prefix}-nginx`,
    command: options.command,
    env: {},
    secretEnv: [],
    aliases: ["nginx"],
    healthcheck: {
      tests: ["CMD", "curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1/nginx-health"],
      interval: "5s",
      timeout: "3s",
      startPeriod: "10s",
      retries: 3,
    },
    restart: "unless-stopped",
    ports: [
      options.httpPort === 0
        ? { internal: 80, ip: options.bindAddress }
        : { internal: 80, external: options.httpPort, ip: options.bindAddress },
    ],
    volumes: [],
    labels: labels(names, "nginx", { "webstack.config-hash": options.configHash }),
    logOpts: LOG_OPTS,
    // SIGQUIT is nginx's graceful shutdown: open requests finish.
    stopSignal: "SIGQUIT",
    stopTimeout: 15,
  };
}

/** Connection URLs the app receives; built only inside a secret Output by the component. */
export function databaseUrl(password: string): string {
  return `postgres://${POSTGRES_USER}:${encodeURIComponent(password)}@${POSTGRES_ALIAS}:5432/${POSTGRES_DB}`;
}

export function redisUrl(password: string): string {
  return `redis://:${encodeURIComponent(password)}@${REDIS_ALIAS}:6379`;
}
