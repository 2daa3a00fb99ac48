// The visit counter in Postgres, the source of truth. Every change bumps `version`, which only
// ever grows (a reset included), so the cache can tell a newer value from an older one.
import { Pool, type PoolClient } from "pg";

/** A counter value together with the version of the change that produced it. */
export interface CounterState {
  count: number;
  version: number;
}

export interface VisitResult extends CounterState {
  /** True when this request id was counted before: the visit was not counted again. */
  duplicate: boolean;
}

// Any constant works, as long as every replica uses the same one.
const SCHEMA_LOCK_KEY = 7_351_240_118;

const SCHEMA_STATEMENTS = [
  `CREATE TABLE IF NOT EXISTS visit_counter (
     id smallint PRIMARY KEY CHECK (id = 1),
     count bigint NOT NULL CHECK (count >= 0),
     version bigint NOT NULL
   )`,
  `INSERT INTO visit_counter (id, count, version) VALUES (1, 0, 0) ON CONFLICT (id) DO NOTHING`,
  `CREATE TABLE IF NOT EXISTS counted_requests (
     request_id text PRIMARY KEY,
     count bigint NOT NULL,
     counted_at timestamptz NOT NULL DEFAULT now()
   )`,
  `CREATE INDEX IF NOT EXISTS counted_requests_counted_at ON counted_requests (counted_at)`,
  // One batch of visits in one statement: the counter's row is locked only while Postgres runs it
  // and commits, never across round trips to a replica whose event loop is busy serving. In a
  // function each statement reads a fresh snapshot, so ids counted by a batch that held the lock
  // just before are seen (a single plain statement would read them from before its lock wait).
  `CREATE OR REPLACE FUNCTION count_visits(request_ids text[])
   RETURNS TABLE (ordinal integer, visit_count bigint, visit_version bigint, duplicate boolean)
   LANGUAGE plpgsql AS $fn$
   DECLARE
     base_count bigint;
     base_version bigint;
     added bigint := 0;
     original bigint;
     i integer;
   BEGIN
     SELECT c.count, c.version INTO base_count, base_version FROM visit_counter c WHERE c.id = 1 FOR UPDATE;
     IF NOT FOUND THEN
       RAISE EXCEPTION 'visit_counter row is missing';
     END IF;
     FOR i IN 1 .. coalesce(array_length(request_ids, 1), 0) LOOP
       original := NULL;
       IF request_ids[i] IS NOT NULL THEN
         SELECT r.count INTO original FROM counted_requests r WHERE r.request_id = request_ids[i];
       END IF;
       IF original IS NOT NULL THEN
         -- Version -1: nothing changed, so there is nothing newer for the cache.
         RETURN QUERY SELECT i, original, -1::bigint, true;
       ELSE
         added := added + 1;
         IF request_ids[i] IS NOT NULL THEN
           INSERT INTO counted_requests (request_id, count) VALUES (request_ids[i], base_count + added);
         END IF;
         RETURN QUERY SELECT i, base_count + added, base_version + added, false;
       END IF;
     END LOOP;
     IF added > 0 THEN
       UPDATE visit_counter SET count = count + added, version = version + added WHERE id = 1;
     END IF;
   END
   $fn$`,
];

const COUNT_VISITS = `SELECT visit_count, visit_version, duplicate FROM count_visits($1::text[]) ORDER BY ordinal`;
const RESET = `UPDATE visit_counter SET count = 0, version = version + 1 WHERE id = 1 RETURNING count, version`;
const READ = `SELECT count, version FROM visit_counter WHERE id = 1`;

export interface CounterStoreOptions {
  /** Upper bound for any single statement, so a request never waits forever on the database. */
  statementTimeoutMs?: number;
  /** How long to wait for a connection (new, or free in the pool). */
  connectTimeoutMs?: number;
  poolSize?: number;
  /**
   * Visits that may wait for the next batch; one more is refused with CounterBusy at once rather
   * than queued behind a database that cannot keep up (default 2000).
   */
  maxWaiting?: number;
}

/** Too many visits already waiting for the database: the caller should try again shortly. */
export class CounterBusy extends Error {}

/** Visits counted in one transaction at most; more wait for the next. */
const MAX_BATCH = 500;

interface WaitingVisit {
  requestId: string | undefined;
  resolve(result: VisitResult): void;
  reject(error: unknown): void;
}

function toState(row: { count: string; version: string } | undefined): CounterState {
  if (row === undefined) throw new Error("visit_counter row is missing");
  return { count: Number(row.count), version: Number(row.version) };
}

export class CounterStore {
  readonly pool: Pool;
  /** Visits waiting for the next batch, in arrival order. */
  private readonly waiting: WaitingVisit[] = [];
  /** True while a batch is being written; the visits that arrive meanwhile wait for the next. */
  private writing = false;

  private readonly maxWaiting: number;

  constructor(databaseUrl: string, options: CounterStoreOptions = {}) {
    this.maxWaiting = options.maxWaiting ?? 2000;
    this.pool = new Pool({
      connectionString: databaseUrl,
      max: options.poolSize ?? 10,
      connectionTimeoutMillis: options.connectTimeoutMs ?? 3000,
      idleTimeoutMillis: 30_000,
      statement_timeout: options.statementTimeoutMs ?? 5000,
      query_timeout: (options.statementTimeoutMs ?? 5000) + 1000,
      application_name: "webstack-app",
    });
  }

  /** Creates the tables and the counter row; safe when many replicas run it at the same moment. */
  async ensureSchema(): Promise<void> {
    await this.transaction(async (client) => {
      // CREATE TABLE IF NOT EXISTS is not safe against a concurrent twin (both may pass the check
      // and one then fails on the catalog's unique index), so replicas take turns.
      await client.query("SELECT pg_advisory_xact_lock($1)", [SCHEMA_LOCK_KEY]);
      for (const statement of SCHEMA_STATEMENTS) await client.query(statement);
      return { value: undefined, commit: true };
    });
  }

  /**
   * Counts one visit. With a request id, a repeat of an id already counted (a proxy retrying the
   * same request on another replica) is not counted again and gets the original count back.
   *
   * Visits that arrive while a batch is being written wait for the next one: one transaction
   * counts them all (group commit), so a busy replica holds the counter's row lock once per batch
   * instead of once per visit. Each visit still gets its own number, in arrival order.
   */
  recordVisit(requestId: string | undefined): Promise<VisitResult> {
    if (this.waiting.length >= this.maxWaiting) {
      return Promise.reject(new CounterBusy(`${this.waiting.length} visits are already waiting for the database`));
    }
    return new Promise<VisitResult>((resolve, reject) => {
      this.waiting.push({ requestId, resolve, reject });
      if (!this.writing) void this.writeBatches();
    });
  }

  private async writeBatches(): Promise<void> {
    this.writing = true;
    try {
      while (this.waiting.length > 0) {
        const batch = this.waiting.splice(0, MAX_BATCH);
        try {
          const results = await this.countBatch(batch.map((visit) => visit.requestId));
          batch.forEach((visit, i) => visit.resolve(results[i]));
        } catch (error) {
          for (const visit of batch) visit.reject(error);
        }
      }
    } finally {
      this.writing = false;
    }
  }

  private async countBatch(requestIds: (string | undefined)[]): Promise<VisitResult[]> {
    // Each counted visit is its own change: count and version move together, one per visit. A
    // repeat of a counted id (also within the batch) gets the original count and version -1.
    const result = await this.pool.query<{ visit_count: string; visit_version: string; duplicate: boolean }>(
      COUNT_VISITS,
      [requestIds.map((id) => id ?? null)],
    );
    return result.rows.map((row) => ({
      count: Number(row.visit_count),
      version: Number(row.visit_version),
      duplicate: row.duplicate,
    }));
  }

  async read(): Promise<CounterState> {
    const result = await this.pool.query<{ count: string; version: string }>(READ);
    return toState(result.rows[0]);
  }

  async reset(): Promise<CounterState> {
    const result = await this.pool.query<{ count: string; version: string }>(RESET);
    return toState(result.rows[0]);
  }

  /** Forgets request ids counted longer ago than `maxAgeSeconds`; returns how many. */
  async pruneCountedRequests(maxAgeSeconds: number): Promise<number> {
    const result = await this.pool.query(
      "DELETE FROM counted_requests WHERE counted_at < now() - make_interval(secs => $1)",
      [maxAgeSeconds],
    );
    return result.rowCount ?? 0;
  }

  async ping(): Promise<void> {
    await this.pool.query("SELECT 1");
  }

  async close(): Promise<void> {
    await this.pool.end();
  }

  private async transaction<T>(work: (client: PoolClient) => Promise<{ value: T; commit: boolean }>): Promise<T> {
    const client = await this.pool.connect();
    try {
      await client.query("BEGIN");
      const { value, commit } = await work(client);
      await client.query(commit ? "COMMIT" : "ROLLBACK");
      client.release();
      return value;
    } catch (error) {
      // Roll back; a connection that cannot even do that is discarded instead of pooled.
      await client.query("ROLLBACK").then(
        () => client.release(),
        (rollbackError: Error) => client.release(rollbackError),
      );
      throw error;
    }
  }
}

/**
 * True for "a table or the counting function is not there" (undefined_table, undefined_function),
 * e.g. after Postgres came back with an empty data directory.
 */
export function isMissingSchema(error: unknown): boolean {
  if (typeof error !== "object" || error === null) return false;
  const code = (error as { code?: unknown }).code;
  return code === "42P01" || code === "42883";
}
