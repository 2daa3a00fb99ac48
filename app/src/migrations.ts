// Versioned schema migrations: ordered SQL files in app/migrations, applied by node-pg-migrate under
// its advisory lock, in one transaction, and recorded in `schema_migrations`. A release's one-off
// migration run (`node dist/migrate.js`) applies them before any of its replicas starts; replicas
// never change the schema, they only check that every migration they ship with has been applied.
import { readdirSync } from "node:fs";
import * as path from "node:path";
import { runner } from "node-pg-migrate";

/** Where the build keeps the migration files (next to dist/ in the image). */
export const MIGRATIONS_DIR = path.join(__dirname, "..", "migrations");
/** The table node-pg-migrate records applied migrations in, one row per migration name. */
export const MIGRATIONS_TABLE = "schema_migrations";
/**
 * How long a migration statement may wait for a table lock. Past it the run is rolled back rather
 * than holding up every visit queued behind its lock request, and tried again a little later.
 */
export const MIGRATION_LOCK_TIMEOUT_MS = 5000;

export interface MigrateOptions {
  /** The migration files (default: the build's own, app/migrations). */
  dir?: string;
  /** Runs in all when a migration keeps timing out on a lock (default 5). */
  lockAttempts?: number;
  /** The wait before the second run; it doubles for each further one (default 1000 ms). */
  retryDelayMs?: number;
}

const MIGRATION_FILE = /^(\d{4})_[a-z0-9][a-z0-9-]*\.sql$/;

/** The subset of a pino logger migrations write to. */
export interface MigrationLog {
  debug(fields: object, message: string): void;
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
  error(fields: object, message: string): void;
}

/** Anything that runs a query: a pg Pool or Client. */
export interface Queryable {
  query<R extends object>(text: string): Promise<{ rows: R[] }>;
}

/** A migration that could not be applied; nothing of the run it belonged to was applied. */
export class MigrationFailed extends Error {
  constructor(
    readonly migration: string | undefined,
    readonly cause: unknown,
  ) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    super(migration === undefined ? `migrations failed: ${reason}` : `migration ${migration} failed: ${reason}`);
    this.name = "MigrationFailed";
  }
}

/**
 * The migrations in `dir`, in the order they apply: file names without `.sql`. Every file must be
 * named `NNNN_name.sql` (four digits, then lower-case letters, digits and '-'), each number once.
 */
export function knownMigrations(dir = MIGRATIONS_DIR): string[] {
  // Sorted: a directory lists its files in no promised order.
  const files = readdirSync(dir)
    .filter((name) => !name.startsWith("."))
    .sort();
  const bad = files.filter((name) => !MIGRATION_FILE.test(name));
  if (bad.length > 0) {
    throw new Error(`${dir}: ${bad.join(", ")}: a migration file is named NNNN_name.sql (e.g. 0002_add-column.sql)`);
  }
  const numbers = files.map((name) => name.slice(0, 4));
  const repeated = numbers.filter((n, i) => numbers.indexOf(n) !== i);
  if (repeated.length > 0) throw new Error(`${dir}: more than one migration numbered ${repeated.join(", ")}`);
  return files.map((name) => name.slice(0, -".sql".length));
}

/**
 * The migrations of `known` that the database has not applied, in order. An empty database (no
 * migrations table yet) has applied none. Migrations the database has and `known` lacks (applied
 * by a newer release) do not count: expand/contract keeps the schema usable by the release before.
 */
export async function missingMigrations(db: Queryable, known = knownMigrations()): Promise<string[]> {
  let applied: Set<string>;
  try {
    const { rows } = await db.query<{ name: string }>(`SELECT name FROM ${MIGRATIONS_TABLE}`);
    applied = new Set(rows.map((row) => row.name));
  } catch (error) {
    if ((error as { code?: unknown }).code !== "42P01") throw error;
    applied = new Set();
  }
  return known.filter((name) => !applied.has(name));
}

/** Postgres's lock_not_available: a statement waited longer than lock_timeout. */
function isLockTimeout(error: MigrationFailed): boolean {
  return (error.cause as { code?: unknown } | undefined)?.code === "55P03";
}

/**
 * Applies every migration in `dir` the database lacks, all in one transaction, under an advisory
 * lock: concurrent runs take turns, and the later ones find nothing left to do. Returns the names
 * applied. A failure rolls the whole run back and names the migration that failed; a run that
 * timed out on a table lock is tried again (`lockAttempts` runs in all, the wait doubling).
 */
export async function migrate(databaseUrl: string, log: MigrationLog, options: MigrateOptions = {}): Promise<string[]> {
  const dir = options.dir ?? MIGRATIONS_DIR;
  // Refuses a directory the library would order differently, before anything runs.
  knownMigrations(dir);
  const attempts = options.lockAttempts ?? 5;
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await migrateOnce(databaseUrl, log, dir);
    } catch (error) {
      if (!(error instanceof MigrationFailed) || !isLockTimeout(error) || attempt >= attempts) throw error;
      const retryInMs = (options.retryDelayMs ?? 1000) * 2 ** (attempt - 1);
      log.warn({ migration: error.migration, attempt, retryInMs }, `${error.message}; trying again`);
      await new Promise((resolve) => setTimeout(resolve, retryInMs));
    }
  }
}

async function migrateOnce(databaseUrl: string, log: MigrationLog, dir: string): Promise<string[]> {
  let current: string | undefined;
  const library = (level: "debug" | "info" | "warn" | "error") => (message: string) => {
    // The library announces each migration before it runs it, which is how a failure is named.
    const started = /^### MIGRATION (.+) \(UP\) ###$/.exec(message);
    if (started !== null) current = started[1];
    log[level === "info" ? "debug" : level]({ library: "node-pg-migrate" }, message);
  };
  try {
    const ran = await runner({
      databaseUrl: {
        connectionString: databaseUrl,
        lock_timeout: MIGRATION_LOCK_TIMEOUT_MS,
        application_name: "webstack-migrate",
      },
      dir,
      direction: "up",
      migrationsTable: MIGRATIONS_TABLE,
      checkOrder: true,
      singleTransaction: true,
      advisoryLockMode: "wait",
      logger: { debug: library("debug"), info: library("info"), warn: library("warn"), error: library("error") },
    });
    return ran.map((migration) => migration.name);
  } catch (error) {
    throw new MigrationFailed(current, error);
  }
}
