// Configuration comes only from environment variables, and from the files some of them name.
// Every problem is reported at once, each naming its variable; values that may hold a password
// (the URLs, the admin token) are never echoed.
import { closeSync, fstatSync, openSync, readFileSync } from "node:fs";
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
  /**
   * The bearer token `POST /reset` requires, read from the file `ADMIN_TOKEN_FILE` names;
   * undefined disables the route (it answers 404).
   */
  adminToken: string | undefined;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join("; "));
    this.name = "ConfigError";
  }
}

type Env = Record<string, string | undefined>;

const REPLICA_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
/** Visible ASCII only: the token travels in an HTTP header, and a short one could be guessed. */
const ADMIN_TOKEN_PATTERN = /^[\x21-\x7e]{16,4096}$/;
/** A secret is a line, not a document: a bigger file is the wrong file (or a device like /dev/zero). */
const MAX_SECRET_FILE_BYTES = 64 * 1024;

/** A variable set to nothing counts as unset, as in a container spec that leaves it blank. */
function valueOf(env: Env, name: string): string | undefined {
  const value = env[name];
  return value === undefined || value.trim() === "" ? undefined : value;
}

/**
 * The trimmed content of the file the variable `name` names, or undefined after recording why
 * it cannot be used. Only the path appears in a problem, never the content.
 */
function readSecretFile(name: string, path: string, problems: string[]): string | undefined {
  const shown = `${name} ${JSON.stringify(path)}`;
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (error) {
    problems.push(`${shown} cannot be read (${(error as NodeJS.ErrnoException).code ?? "error"})`);
    return undefined;
  }
  try {
    const info = fstatSync(fd);
    if (!info.isFile()) {
      problems.push(`${shown} is not a regular file`);
      return undefined;
    }
    if (info.size > MAX_SECRET_FILE_BYTES) {
      problems.push(`${shown} is larger than ${MAX_SECRET_FILE_BYTES} bytes`);
      return undefined;
    }
    const content = readFileSync(fd, "utf8").trim();
    if (content === "") {
      problems.push(`${shown} is empty`);
      return undefined;
    }
    return content;
  } catch (error) {
    problems.push(`${shown} cannot be read (${(error as NodeJS.ErrnoException).code ?? "error"})`);
    return undefined;
  } finally {
    closeSync(fd);
  }
}

/**
 * A secret given either in the variable `name` or in the file `${name}_FILE` names — exactly one.
 * The file keeps it out of `docker inspect`; the variable stays for local runs.
 * `label` says where the value came from, for the messages about the value itself.
 */
function readSecret(
  env: Env,
  name: string,
  example: string,
  problems: string[],
): { value: string; label: string } | undefined {
  const fileVariable = `${name}_FILE`;
  const direct = valueOf(env, name);
  const path = valueOf(env, fileVariable);
  if (direct !== undefined && path !== undefined) {
    problems.push(`set ${name} or ${fileVariable}, not both`);
    return undefined;
  }
  if (direct !== undefined) return { value: direct.trim(), label: name };
  if (path === undefined) {
    problems.push(`${name} or ${fileVariable} is required (e.g. ${example})`);
    return undefined;
  }
  const value = readSecretFile(fileVariable, path, problems);
  return value === undefined ? undefined : { value, label: `${name} (from ${fileVariable} ${JSON.stringify(path)})` };
}

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
  env: Env,
  name: string,
  protocols: readonly string[],
  example: string,
  problems: string[],
): string | undefined {
  const secret = readSecret(env, name, example, problems);
  if (secret === undefined) return undefined;
  const { value, label } = secret;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    problems.push(`${label} is not a valid URL (value not shown: it may contain a password); expected e.g. ${example}`);
    return undefined;
  }
  if (!protocols.includes(url.protocol)) {
    problems.push(`${label} must start with ${protocols.map((p) => `${p}//`).join(" or ")}, got ${describeUrl(url)}`);
    return undefined;
  }
  if (url.hostname === "") {
    problems.push(`${label} must name a host, got ${describeUrl(url)}`);
    return undefined;
  }
  return value;
}

/** The admin token, or undefined when `ADMIN_TOKEN_FILE` is not set (the admin route is off). */
function readAdminToken(env: Env, problems: string[]): string | undefined {
  if (valueOf(env, "ADMIN_TOKEN") !== undefined) {
    // Refused rather than ignored: a token in the environment shows in `docker inspect`, and an
    // ignored one would leave the operator wondering why /reset answers 404.
    problems.push("ADMIN_TOKEN is not read: put the token in a file and set ADMIN_TOKEN_FILE to its path");
  }
  const path = valueOf(env, "ADMIN_TOKEN_FILE");
  if (path === undefined) return undefined;
  const token = readSecretFile("ADMIN_TOKEN_FILE", path, problems);
  if (token === undefined) return undefined;
  if (!ADMIN_TOKEN_PATTERN.test(token)) {
    problems.push(
      `ADMIN_TOKEN_FILE ${JSON.stringify(path)} must hold 16 to 4096 visible ASCII characters without spaces (value not shown)`,
    );
    return undefined;
  }
  return token;
}

function parseDatabaseUrl(env: Env, problems: string[]): string | undefined {
  return parseServiceUrl(
    env,
    "DATABASE_URL",
    ["postgres:", "postgresql:"],
    "postgres://user:password@postgres:5432/app",
    problems,
  );
}

function parseLogLevel(env: Env, problems: string[]): LogLevel {
  const logLevel = env.LOG_LEVEL ?? "info";
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    problems.push(`LOG_LEVEL must be one of ${LOG_LEVELS.join(", ")}, got ${JSON.stringify(logLevel)}`);
  }
  return logLevel as LogLevel;
}

/** What the one-off migration run (`node dist/migrate.js`) reads: the database and the log level. */
export interface MigrateConfig {
  databaseUrl: string;
  logLevel: LogLevel;
}

/** The migration run's configuration: `DATABASE_URL` or `DATABASE_URL_FILE`, and `LOG_LEVEL`, as the server reads them. */
export function loadMigrateConfig(env: Env = process.env): MigrateConfig {
  const problems: string[] = [];
  const databaseUrl = parseDatabaseUrl(env, problems);
  const logLevel = parseLogLevel(env, problems);
  if (problems.length > 0 || databaseUrl === undefined) throw new ConfigError(problems);
  return { databaseUrl, logLevel };
}

export function loadConfig(env: Env = process.env): AppConfig {
  const problems: string[] = [];

  const port = parseInteger("PORT", env.PORT ?? "3000", 0, 65535, problems);

  const host = env.HOST ?? "0.0.0.0";
  if (host.trim() === "") problems.push('HOST must not be empty (e.g. "0.0.0.0" or "127.0.0.1")');

  const databaseUrl = parseDatabaseUrl(env, problems);
  const redisUrl = parseServiceUrl(env, "REDIS_URL", ["redis:", "rediss:"], "redis://:password@redis:6379", problems);

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

  const logLevel = parseLogLevel(env, problems);

  const adminToken = readAdminToken(env, problems);

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
    logLevel,
    adminToken,
  };
}
