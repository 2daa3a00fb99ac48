// Shared by the app's tests: start in-process instances, make HTTP calls, wait (boundedly).
import { buildServer, type App, type BuildOptions } from "../src/app";
import assert from "node:assert/strict";
import { Client } from "pg";
import { ConfigError, loadConfig, type AppConfig } from "../src/config";
import { migrate } from "../src/migrations";

export interface RunningApp {
  app: App;
  baseUrl: string;
  stop(): Promise<void>;
}

/** The smallest environment loadConfig accepts. */
export const VALID_ENV = {
  DATABASE_URL: "postgres://app:db-secret@postgres:5432/app",
  REDIS_URL: "redis://:cache-secret@redis:6379",
};

/** The problems loadConfig reports for `env`, or none when it accepts it. */
export function configProblems(env: Record<string, string | undefined>): string[] {
  try {
    loadConfig(env);
    return [];
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
    return error.problems;
  }
}

/** The admin token test instances get unless a test says otherwise. */
export const TEST_ADMIN_TOKEN = "test-admin-token-0123456789abcdef";

export function testConfig(overrides: Partial<AppConfig> & Pick<AppConfig, "databaseUrl" | "redisUrl">): AppConfig {
  return {
    port: 0,
    host: "127.0.0.1",
    replicaId: "test-replica",
    shutdownGraceMs: 5000,
    statementTimeoutMs: 5000,
    // A busy CI machine can stall a Redis round trip past the production limit, and a timed-out
    // command silently falls back to Postgres, which would defeat the tests of the cache.
    redisCommandTimeoutMs: 5000,
    logLevel: "silent",
    adminToken: TEST_ADMIN_TOKEN,
    ...overrides,
  };
}

export interface StartOptions {
  /** Wait until the instance can count (default true). */
  waitForSchema?: boolean;
  /** Wait until `/readyz` reports Redis up, so cache tests do not race the connect (default true). */
  waitForRedis?: boolean;
  /**
   * Receives the instance's shutdown as soon as it exists, before it listens: a test can then
   * stop an instance whose start is still waiting (e.g. for Postgres) or failed an assertion.
   */
  track?: (stop: () => Promise<void>) => void;
  /** Passed to buildServer (a log stream to read, a shorter prune interval). */
  build?: BuildOptions;
  /** Runs before the instance listens, e.g. to add a route only a test needs. */
  beforeStart?: (app: App) => void;
}

/** Starts an instance on a free loopback port; on any failure it is shut down again before rethrowing. */
export async function startApp(config: AppConfig, options: StartOptions = {}): Promise<RunningApp> {
  const app = buildServer(config, options.build);
  options.beforeStart?.(app);
  const stop = async (): Promise<void> => {
    await app.shutdown();
  };
  options.track?.(stop);
  try {
    const port = await app.start();
    const baseUrl = `http://127.0.0.1:${port}`;
    if (options.waitForSchema ?? true) await app.schemaReady();
    if (options.waitForRedis ?? true) {
      await waitFor("the app to report redis up", async () =>
        (await call(`${baseUrl}/readyz`)).body.redis === "up" ? true : undefined,
      );
    }
    return { app, baseUrl, stop };
  } catch (error) {
    // Otherwise the Redis client keeps reconnecting and the test process never exits.
    await app.shutdown();
    throw error;
  }
}

export interface JsonResponse {
  status: number;
  headers: Headers;
  body: Record<string, unknown>;
}

export async function call(url: string, init: RequestInit = {}): Promise<JsonResponse> {
  const response = await fetch(url, { ...init, signal: AbortSignal.timeout(15_000) });
  const text = await response.text();
  let body: Record<string, unknown>;
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw new Error(`${init.method ?? "GET"} ${url} answered ${response.status} with non-JSON body: ${text}`);
  }
  return { status: response.status, headers: response.headers, body };
}

/** `POST /reset` with the test token, as an operator would send it. */
export function resetCounter(baseUrl: string): Promise<JsonResponse> {
  return call(`${baseUrl}/reset`, { method: "POST", headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}` } });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `probe` until it returns something other than undefined, or fails after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  probe: () => T | undefined | Promise<T | undefined>,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    await sleep(100);
  }
  const detail = lastError instanceof Error ? ` (last error: ${lastError.message})` : "";
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${detail}`);
}

/**
 * Runs `work` while `db` holds the counter's row lock, so every visit that needs it waits (or
 * times out); the lock is released however `work` ends.
 */
export async function whileCounterLocked<T>(db: Client, work: () => Promise<T>): Promise<T> {
  await db.query("BEGIN");
  try {
    await db.query("SELECT count FROM visit_counter WHERE id = 1 FOR UPDATE");
    return await work();
  } finally {
    await db.query("COMMIT");
  }
}

/** Waits until a visit is blocked on the counter's row lock, i.e. a request is in flight. */
export async function waitForLockWaiter(databaseUrl: string): Promise<void> {
  // A connection of its own: inside the lock holder's transaction pg_stat_activity would be one
  // frozen snapshot.
  const observer = new Client({ connectionString: databaseUrl });
  await observer.connect();
  try {
    await waitFor("a visit waiting on the row lock", async () => {
      const waiting = await observer.query<{ n: string }>(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%count_visits%'",
      );
      return waiting.rows[0]?.n === "1" ? true : undefined;
    });
  } finally {
    await observer.end();
  }
}

/** Discards what migrations log. */
export const SILENT_LOG = { debug() {}, info() {}, warn() {}, error() {} };

/** A new database on `pg` with every migration applied, as a release's migration run leaves it. */
export async function migratedDatabase(
  pg: { createDatabase(name: string): Promise<string> },
  name: string,
): Promise<string> {
  const url = await pg.createDatabase(name);
  await migrate(url, SILENT_LOG);
  return url;
}
