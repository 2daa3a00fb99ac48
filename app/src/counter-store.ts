// The visit counter in Postgres, the source of truth. Every change bumps `version`, which only
// ever grows (a reset included), so the cache can tell a newer value from an older one.
import { Pool } from "pg";

/** A counter value together with the version of the change that produced it. */
export interface CounterState {
  count: number;
  version: number;
}

export interface VisitResult extends CounterState {
  /** True when this request id was counted before: the visit was not counted again. */
  duplicate: boolean;
}

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
   * Visits that may wait behind a batch being written; one more is refused with CounterBusy at
   * once rather than queued behind a database that cannot keep up (default 2000). Visits going into
   * a batch about to start wait behind nothing and are not counted.
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
  /**
   * True between a batch being due and it taking its visits (the rest of the event loop's turn):
   * the visits that arrive then go into it, so they wait behind nothing.
   */
  private starting = false;

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

  /**
   * Counts one visit. With a request id, a repeat of an id already counted (a proxy retrying the
   * same request on another replica) is not counted again and gets the original count back.
   *
   * Visits that arrive while a batch is being written wait for the next one: one transaction
   * counts them all (group commit), so a busy replica holds the counter's row lock once per batch
   * instead of once per visit. Each visit still gets its own number, in arrival order.
   */
  recordVisit(requestId: string | undefined): Promise<VisitResult> {
    const behind = this.starting ? Math.max(0, this.waiting.length - MAX_BATCH) : this.waiting.length;
    if (behind >= this.maxWaiting) {
      return Promise.reject(new CounterBusy(`${behind} visits are already waiting for the database`));
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
        // A batch takes its visits once this turn of the event loop has handled every request it
        // read: visits that arrive together are written together, not the first one alone.
        this.starting = true;
        await new Promise<void>((resolve) => setImmediate(resolve));
        this.starting = false;
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
