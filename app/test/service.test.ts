// The service in process, read through its own log: what it logs (and never logs), how it answers
// errors, its request-id bounds, its prune timer, its database pool, and its shutdown — against
// real Postgres and Redis. The built server's process behaviour is in process.test.ts.
import assert from "node:assert/strict";
import http from "node:http";
import { createServer, type Server, type Socket } from "node:net";
import { after, before, describe, it } from "node:test";
import { Client } from "pg";
import {
  freePort,
  startPostgres,
  startPostgresAndRedis,
  type PostgresServer,
  type RedisServer,
} from "../../test/support/services";
import { buildServer, type App } from "../src/app";
import type { AppConfig } from "../src/config";
import { CounterStore, isMissingSchema } from "../src/counter-store";
import {
  call,
  migratedDatabase,
  resetCounter,
  sleep,
  startApp,
  testConfig,
  waitFor,
  waitForLockWaiter,
  whileCounterLocked,
  type RunningApp,
  type StartOptions,
} from "./helpers";

type LogLine = Record<string, unknown> & { msg?: string; level?: number };

/** A log destination that keeps every JSON line the app writes. */
class LogLines {
  readonly lines: LogLine[] = [];
  raw = "";

  write(chunk: string): void {
    this.raw += chunk;
    for (const line of chunk.split("\n")) {
      if (line.trim() !== "") this.lines.push(JSON.parse(line) as LogLine);
    }
  }

  with(msg: string): LogLine[] {
    return this.lines.filter((line) => line.msg === msg);
  }
}

interface HttpOutcome {
  status: number;
  headers: http.IncomingHttpHeaders;
}

/** A GET over node:http, so the test controls the keep-alive agent and sees the raw headers. */
function httpGet(url: string, agent: http.Agent): Promise<HttpOutcome> {
  return new Promise((resolve, reject) => {
    const request = http.get(url, { agent }, (response) => {
      response.resume();
      response.on("end", () => resolve({ status: response.statusCode ?? 0, headers: response.headers }));
      response.on("error", reject);
    });
    request.on("error", reject);
    request.setTimeout(15_000, () => request.destroy(new Error(`GET ${url} timed out`)));
  });
}

describe("the app in process", () => {
  let pg: PostgresServer;
  let redisServer: RedisServer;
  const cleanups: Array<() => Promise<void>> = [];

  before(async () => {
    ({ postgres: pg, redis: redisServer } = await startPostgresAndRedis());
  });

  after(async () => {
    await Promise.allSettled(cleanups.map((cleanup) => cleanup()));
    await Promise.allSettled([pg?.stop(), redisServer?.stop()]);
  });

  /** A database of its own for each test, and a client on it. */
  const database = async (name: string): Promise<{ url: string; db: Client }> => {
    const url = await migratedDatabase(pg, name);
    const db = new Client({ connectionString: url });
    await db.connect();
    cleanups.push(() => db.end());
    return { url, db };
  };

  const launch = (
    databaseUrl: string,
    overrides: Partial<AppConfig>,
    options: StartOptions = {},
  ): Promise<RunningApp> =>
    startApp(testConfig({ databaseUrl, redisUrl: redisServer.url, ...overrides }), {
      ...options,
      track: (stop) => cleanups.push(stop),
    });

  it("logs JSON lines with its replica and the request id, one per request at debug, and never a request header", async () => {
    const { url } = await database("logs");
    const logs = new LogLines();
    const { baseUrl } = await launch(url, { replicaId: "svc-1", logLevel: "debug" }, { build: { logStream: logs } });

    const secrets = { authorization: "Bearer header-secret-1", cookie: "session=cookie-secret-1" };
    assert.equal((await call(`${baseUrl}/`, { headers: { "x-request-id": "log-check-1", ...secrets } })).status, 200);
    assert.equal((await resetCounter(baseUrl)).status, 200);

    const about = logs.lines.filter((line) => line.reqId === "log-check-1");
    assert.deepEqual(
      about.map((line) => [line.msg, line.level]),
      [["request completed", 20]],
      `one debug line for the request, in:\n${logs.raw}`,
    );
    assert.equal(about[0].replica, "svc-1");
    assert.deepEqual(about[0].req, { method: "GET", url: "/", remoteAddress: "127.0.0.1" });
    assert.deepEqual(about[0].res, { statusCode: 200 });
    assert.equal(typeof about[0].responseTime, "number");
    assert.equal(logs.with("database schema is current").length, 1);
    assert.equal(logs.with("visit counter reset by an admin request").length, 1);
    assert.ok(logs.lines.every((line) => line.replica === "svc-1"));
    assert.doesNotMatch(logs.raw, /header-secret-1|cookie-secret-1|test-admin-token/);
  });

  it("de-duplicates by request ids of 1 to 128 characters, and counts empty or longer ones every time", async () => {
    const { url } = await database("request_ids");
    const { baseUrl } = await launch(url, {});
    const countWith = async (id: string): Promise<number> =>
      (await call(`${baseUrl}/`, { headers: { "x-request-id": id } })).body.count as number;

    for (const id of ["x", "a".repeat(128)]) {
      const first = await countWith(id);
      assert.equal(await countWith(id), first, `a retry with an id of ${id.length} characters was counted again`);
    }
    for (const id of ["", "b".repeat(129)]) {
      const first = await countWith(id);
      assert.equal(await countWith(id), first + 1, `two visits with an id of ${id.length} characters counted once`);
    }
  });

  it("answers a 4xx with its message, and any other error with a bare 500 that only the log explains", async () => {
    const { url } = await database("errors");
    const logs = new LogLines();
    const fail = (message: string, statusCode?: number): never => {
      throw Object.assign(new Error(message), statusCode === undefined ? {} : { statusCode });
    };
    const { baseUrl } = await launch(
      url,
      { logLevel: "info" },
      {
        build: { logStream: logs },
        beforeStart: ({ server }) => {
          server.get("/test/teapot", () => fail("short and stout", 418));
          server.get("/test/server-error", () => fail("upstream detail 7", 500));
          server.get("/test/crash", () => fail("internal detail 42"));
          server.get("/test/slow-ok", async () => {
            await sleep(1100);
            return { slow: true };
          });
        },
      },
    );

    assert.deepEqual(await call(`${baseUrl}/test/teapot`).then((r) => [r.status, r.body]), [
      418,
      { error: "short and stout" },
    ]);
    const malformed = await call(`${baseUrl}/reset`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{",
    });
    assert.equal(malformed.status, 400);
    assert.deepEqual(Object.keys(malformed.body), ["error"]);
    assert.match(String(malformed.body.error), /JSON/);
    for (const path of ["/test/server-error", "/test/crash"]) {
      const answer = await call(`${baseUrl}${path}`);
      assert.deepEqual([answer.status, answer.body], [500, { error: "internal error" }], path);
    }
    const logged = logs.with("unexpected error").map((line) => (line.err as { message?: string }).message);
    assert.deepEqual(logged.sort(), ["internal detail 42", "upstream detail 7"]);
    assert.equal(logs.lines.filter((line) => line.level === 50).length, 2, "only the 500s are logged as errors");

    // At info, a request gets a line of its own only when it failed (warn) or was slow (info).
    assert.equal((await call(`${baseUrl}/test/slow-ok`)).status, 200);
    const requestLines = logs
      .with("request completed")
      .map((line) => [(line.req as { url: string }).url, (line.res as { statusCode: number }).statusCode, line.level]);
    assert.deepEqual(requestLines, [
      ["/test/server-error", 500, 40],
      ["/test/crash", 500, 40],
      ["/test/slow-ok", 200, 30],
    ]);
    const slow = logs.with("request completed").at(-1);
    assert.ok(typeof slow?.responseTime === "number" && slow.responseTime >= 1000, JSON.stringify(slow));
  });

  it("without a database: answers 503, reports not ready, retries from 100 ms up to 2 s, prunes nothing, and a shutdown ends its start", async () => {
    const [postgresPort, redisPort] = [await freePort(), await freePort()];
    const logs = new LogLines();
    const config = testConfig({
      databaseUrl: `postgres://app:unused@127.0.0.1:${postgresPort}/app`,
      redisUrl: `redis://127.0.0.1:${redisPort}`,
      logLevel: "info",
    });
    const app: App = buildServer(config, { logStream: logs, pruneIntervalMs: 20 });
    cleanups.push(() => app.shutdown().then(() => undefined));
    const started = app.start().then(
      () => "listening",
      (error: Error) => error.message,
    );

    const visit = await app.server.inject({ url: "/" });
    assert.deepEqual([visit.statusCode, visit.json()], [503, { error: "database not ready" }]);
    const ready = await app.server.inject({ url: "/readyz" });
    assert.deepEqual([ready.statusCode, ready.json()], [503, { postgres: "down", redis: "down" }]);

    const retries = (): number[] =>
      logs.lines.filter((line) => line.retryInMs !== undefined).map((line) => line.retryInMs as number);
    await waitFor("six attempts to reach the database", () => (retries().length >= 6 ? true : undefined), 15_000);
    assert.deepEqual(retries().slice(0, 6), [100, 200, 400, 800, 1600, 2000]);
    assert.deepEqual(logs.with("pruning counted request ids failed"), [], "pruned before the schema was there");

    assert.equal(await app.shutdown(), true);
    assert.equal(await started, "shut down before the database was ready");
  });

  it("prunes request ids older than 15 minutes on its timer, and logs when pruning fails", async () => {
    const { url, db } = await database("pruning");
    const logs = new LogLines();
    await launch(url, { logLevel: "debug" }, { build: { logStream: logs, pruneIntervalMs: 50 } });
    await db.query(
      `INSERT INTO counted_requests (request_id, count, counted_at)
       VALUES ('16-minutes-old', 1, now() - interval '16 minutes'), ('14-minutes-old', 2, now() - interval '14 minutes')`,
    );
    const ids = async (): Promise<string[]> =>
      (await db.query<{ request_id: string }>("SELECT request_id FROM counted_requests")).rows.map(
        (row) => row.request_id,
      );
    await waitFor(
      "the old id pruned",
      async () => ((await ids()).includes("16-minutes-old") ? undefined : true),
      10_000,
    );
    const pruned = await waitFor("pruning logged", () =>
      logs.with("pruned counted request ids").find((line) => line.removed === 1),
    );
    assert.ok(pruned);
    const rounds = logs.with("pruned counted request ids").length;
    await waitFor("two more rounds", () =>
      logs.with("pruned counted request ids").length >= rounds + 2 ? true : undefined,
    );
    assert.deepEqual(await ids(), ["14-minutes-old"]);

    await db.query("DROP TABLE counted_requests");
    const failure = await waitFor("a failed round logged", () => logs.with("pruning counted request ids failed")[0]);
    assert.match(String(failure.error), /counted_requests/);
  });

  it("answers 503 'database unavailable' when a query fails, logs why, and does not check the schema again", async () => {
    const { url, db } = await database("query_failures");
    const logs = new LogLines();
    const { baseUrl } = await launch(
      url,
      { logLevel: "info", statementTimeoutMs: 300 },
      { build: { logStream: logs } },
    );
    assert.equal((await call(`${baseUrl}/`)).status, 200);

    const blocked = await whileCounterLocked(db, () => call(`${baseUrl}/`));
    assert.deepEqual([blocked.status, blocked.body], [503, { error: "database unavailable" }]);
    const failed = logs.with("database query failed");
    assert.equal(failed.length, 1);
    assert.match(String(failed[0].error), /statement timeout/);
    assert.equal(failed[0].level, 50);
    await sleep(300);
    assert.equal(
      logs.with("database schema is current").length,
      1,
      "a failed query that was not a missing table checked the schema again",
    );
    assert.equal((await call(`${baseUrl}/`)).body.count, 2);
  });

  it("answers 503 busy with Retry-After past its limit of waiting visits, and counts those it let wait", async () => {
    const { url, db } = await database("busy");
    const { baseUrl } = await launch(url, { statementTimeoutMs: 30_000 }, { build: { maxWaitingVisits: 1 } });
    assert.equal((await call(`${baseUrl}/`)).body.count, 1);
    const visit = () =>
      call(`${baseUrl}/`).then((r) => ({ status: r.status, retryAfter: r.headers.get("retry-after"), body: r.body }));
    const visits = await whileCounterLocked(db, async () => {
      // One visit is written (waiting for the lock), one waits for the next batch, the third is refused.
      const first = visit();
      await waitForLockWaiter(url);
      const started = [first, visit(), visit()];
      // Only the refused one can answer while the lock is held.
      await Promise.race(started);
      return started;
    });
    const answers = await Promise.all(visits);
    const refused = answers.filter((a) => a.status === 503);
    assert.deepEqual(refused, [
      { status: 503, retryAfter: "1", body: { error: "busy: too many visits waiting, try again" } },
    ]);
    assert.deepEqual(
      answers
        .filter((a) => a.status === 200)
        .map((a) => a.body.count)
        .sort(),
      [2, 3],
    );
  });

  it("survives Postgres closing its idle connections: logs it and serves on", async () => {
    const { url, db } = await database("idle_loss");
    const logs = new LogLines();
    const { baseUrl } = await launch(url, { logLevel: "info" }, { build: { logStream: logs } });
    assert.equal((await call(`${baseUrl}/`)).status, 200);
    const terminated = await db.query(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'webstack-app' AND datname = current_database()",
    );
    assert.ok(terminated.rowCount !== null && terminated.rowCount > 0, "the app had no connection of its own to close");
    await waitFor("the loss logged", () => logs.with("idle postgres connection lost")[0]);
    assert.equal((await call(`${baseUrl}/`)).body.count, 2);
  });

  it("shuts down once: finishes the in-flight request with Connection: close, and cuts off what outlives the grace period", async () => {
    const { url } = await database("shutdown");
    const logs = new LogLines();
    let arrived = 0;
    const slowRoute = (ms: number) => async (): Promise<{ slept: number }> => {
      arrived += 1;
      await sleep(ms);
      return { slept: ms };
    };
    const agent = new http.Agent({ keepAlive: true });
    cleanups.push(() => Promise.resolve(agent.destroy()));

    const graceful = await launch(
      url,
      { logLevel: "info", shutdownGraceMs: 5000 },
      { build: { logStream: logs }, beforeStart: ({ server }) => server.get("/test/slow", slowRoute(300)) },
    );
    const inFlight = httpGet(`${graceful.baseUrl}/test/slow`, agent);
    await waitFor("the slow request to arrive", () => (arrived === 1 ? true : undefined));
    const first = graceful.app.shutdown();
    assert.equal(await graceful.app.shutdown(), false, "a second shutdown ran again");
    assert.equal(await first, true);
    const answered = await inFlight;
    assert.equal(answered.status, 200);
    assert.equal(answered.headers.connection, "close");
    assert.equal(logs.with("shutting down: no new connections, finishing in-flight requests")[0]?.graceMs, 5000);
    assert.equal(logs.with("shutdown complete").length, 1);

    const cut = await launch(
      url,
      { logLevel: "info", shutdownGraceMs: 200 },
      { build: { logStream: logs }, beforeStart: ({ server }) => server.get("/test/stuck", slowRoute(2000)) },
    );
    const stuck = httpGet(`${cut.baseUrl}/test/stuck`, agent).then(
      (outcome) => outcome,
      (error: Error) => error,
    );
    await waitFor("the stuck request to arrive", () => (arrived === 2 ? true : undefined));
    assert.equal(await cut.app.shutdown(), false);
    assert.equal(logs.with("shutdown grace period over: closing the remaining connections").length, 1);
    assert.equal(logs.with("shutdown complete").length, 1);
    assert.ok((await stuck) instanceof Error, "the request outlived the grace period and was still answered");
  });
});

describe("CounterStore's pool and schema", () => {
  let pg: PostgresServer;
  let silent: Server | undefined;
  const sockets = new Set<Socket>();

  before(async () => {
    pg = await startPostgres();
  });

  after(async () => {
    for (const socket of sockets) socket.destroy();
    silent?.close();
    await pg?.stop();
  });

  it("names its connections webstack-app and lets Postgres enforce the statement timeout", async () => {
    const store = new CounterStore(await migratedDatabase(pg, "pool"), { statementTimeoutMs: 200 });
    try {
      const { rows } = await store.pool.query<{ application_name: string }>(
        "SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()",
      );
      assert.equal(rows[0].application_name, "webstack-app");
      await assert.rejects(store.pool.query("SELECT pg_sleep(3)"), (error: Error & { code?: string }) => {
        assert.equal(error.code, "57014", `expected Postgres's statement timeout, got ${error.message}`);
        return true;
      });
      const indexes = await store.pool.query<{ indexname: string }>(
        "SELECT indexname FROM pg_indexes WHERE tablename = 'counted_requests' ORDER BY indexname",
      );
      assert.deepEqual(
        indexes.rows.map((row) => row.indexname),
        ["counted_requests_counted_at", "counted_requests_pkey"],
        "pruning by age needs its index",
      );
    } finally {
      await store.close();
    }
  });

  it("gives up on a server that accepts but never answers, by default", async () => {
    silent = createServer((socket) => {
      sockets.add(socket);
    });
    await new Promise<void>((resolve) => silent?.listen(0, "127.0.0.1", resolve));
    const address = silent.address();
    assert.ok(address !== null && typeof address === "object");
    const store = new CounterStore(`postgres://app:unused@127.0.0.1:${address.port}/app`);
    try {
      const outcome = await Promise.race([
        store.ping().then(
          () => "answered",
          (error: Error) => error.message,
        ),
        sleep(10_000).then(() => "still waiting after 10 s"),
      ]);
      assert.match(outcome, /timeout/i);
    } finally {
      await store.close();
    }
  });

  it("tells a missing table or function from every other failure", () => {
    assert.equal(isMissingSchema({ code: "42P01" }), true);
    assert.equal(isMissingSchema({ code: "42883" }), true);
    for (const other of [{ code: "42P02" }, { code: 42 }, {}, null, undefined, "42P01", new Error("42P01")]) {
      assert.equal(isMissingSchema(other), false, JSON.stringify(other));
    }
  });
});
