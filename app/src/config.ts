// Configuration comes only from environment variables. Every problem is reported at once, each
// naming its variable; values that may hold a password (the URLs) are never echoed.
import { hostname } from "node:os";

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface AppConfig {
  /** TCP port to listen on; 0 picks a free port (useful in tests). */
  port: number;
  host: string;
  databaseUrl: string;
  redisUrl: string;
  /** Identifies this replica in responses (`X-Served-By`) and logs. */
  replicaId: string;
  /** How long in-flight requests may run after SIGTERM before the process gives up on them. */
  shutdownGraceMs: number;
  /** Upper bound for one database statement, so a request never waits forever on a lock. */
  statementTimeoutMs: number;
  /** Upper bound for one Redis command; past it the request falls back to Postgres. */
  redisCommandTimeoutMs: number;
  logLevel: LogLevel;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join("; "));
    this.name = "ConfigError";
  }
}

type Env = Record<string, string | undefined>;

const REPLICA_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

function parseInteger(name: string, raw: string, min: number, max: number, problems: string[]): number | undefined {
  const trimmed = raw.trim();
  if (!/^\d+$/.test(trimmed) || Number(trimmed) < min || Number(trimmed) > max) {
    problems.push(`${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(raw)}`);
    return undefined;
  }
  return Number(trimmed);
}

/** The URL with any password replaced, so it can appear in an error message. */
function describeUrl(url: URL): string {
  const copy = new URL(url.href);
  if (copy.password !== "") copy.password = "***";
  return copy.href;
}

function parseServiceUrl(
  name: string,
  raw: string | undefined,
  protocols: readonly string[],
  example: string,
  problems: string[],
): string | undefined {
  if (raw === undefined || raw.trim() === "") {
    problems.push(`${name} is required (e.g. ${example})`);
    return undefined;
  }
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch {
    problems.push(`${name} is not a valid URL (value not shown: it may contain a password); expected e.g. ${example}`);
    return undefined;
  }
  if (!protocols.includes(url.protocol)) {
    problems.push(`${name} must start with ${protocols.map((p) => `${p}//`).join(" or ")}, got ${describeUrl(url)}`);
    return undefined;
  }
  if (url.hostname === "") {
    problems.push(`${name} must name a host, got ${describeUrl(url)}`);
    return undefined;
  }
  return raw.trim();
}

export function loadConfig(env: Env = process.env): AppConfig {
  const problems: string[] = [];

  const port = parseInteger("PORT", env.PORT ?? "3000", 0, 65535, problems);

  const host = env.HOST ?? "0.0.0.0";
  if (host.trim() === "") problems.push('HOST must not be empty (e.g. "0.0.0.0" or "127.0.0.1")');

  const databaseUrl = parseServiceUrl(
    "DATABASE_URL",
    env.DATABASE_URL,
    ["postgres:", "postgresql:"],
    "postgres://user:password@postgres:5432/app",
    problems,
  );
  const redisUrl = parseServiceUrl(
    "REDIS_URL",
    env.REDIS_URL,
    ["redis:", "rediss:"],
    "redis://:password@redis:6379",
    problems,
  );

  const replicaId = env.REPLICA_ID ?? hostname();
  if (!REPLICA_ID_PATTERN.test(replicaId)) {
    problems.push(
      `REPLICA_ID must be 1-63 characters of letters, digits, '.', '_' or '-' starting with a letter or digit, got ${JSON.stringify(replicaId)}`,
    );
  }

  const shutdownGraceMs = parseInteger("SHUTDOWN_GRACE_MS", env.SHUTDOWN_GRACE_MS ?? "10000", 0, 600_000, problems);

  const statementTimeoutMs = parseInteger(
    "STATEMENT_TIMEOUT_MS",
    env.STATEMENT_TIMEOUT_MS ?? "5000",
    1,
    600_000,
    problems,
  );
  const redisCommandTimeoutMs = parseInteger(
    "REDIS_COMMAND_TIMEOUT_MS",
    env.REDIS_COMMAND_TIMEOUT_MS ?? "500",
    1,
    60_000,
    problems,
  );

  const logLevel = env.LOG_LEVEL ?? "info";
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    problems.push(`LOG_LEVEL must be one of ${LOG_LEVELS.join(", ")}, got ${JSON.stringify(logLevel)}`);
  }

  if (
    problems.length > 0 ||
    port === undefined ||
    databaseUrl === undefined ||
    redisUrl === undefined ||
    shutdownGraceMs === undefined ||
    statementTimeoutMs === undefined ||
    redisCommandTimeoutMs === undefined
  ) {
    throw new ConfigError(problems);
  }
  return {
    port,
    host,
    databaseUrl,
    redisUrl,
    replicaId,
    shutdownGraceMs,
    statementTimeoutMs,
    redisCommandTimeoutMs,
    logLevel: logLevel as LogLevel,
  };
}
