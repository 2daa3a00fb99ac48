// Counting, reset, the cache, request-id de-duplication and several replicas on one database,
// against real Postgres and Redis.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import Redis from "ioredis";
import { Client } from "pg";
import { startPostgresAndRedis, type PostgresServer, type RedisServer } from "../../test/support/services";
import { CACHE_KEY } from "../src/counter-cache";
import { CounterBusy, CounterStore } from "../src/counter-store";
import {
  call,
  migratedDatabase,
  resetCounter,
  startApp,
  testConfig,
  whileCounterLocked,
  type JsonResponse,
  type RunningApp,
} from "./helpers";

describe("visit counter", () => {
  let pg: PostgresServer;
  let redisServer: RedisServer;
  let databaseUrl: string;
  let redis: Redis;
  let db: Client;
  const apps: RunningApp[] = [];

  const launch = async (replicaId: string): Promise<RunningApp> => {
    const running = await startApp(testConfig({ databaseUrl, redisUrl: redisServer.url, replicaId }));
    apps.push(running);
    return running;
  };

  before(async () => {
    ({ postgres: pg, redis: redisServer } = await startPostgresAndRedis());
    databaseUrl = await migratedDatabase(pg, "counter");
    redis = new Redis(redisServer.url, { maxRetriesPerRequest: 1 });
    db = new Client({ connectionString: databaseUrl });
    await db.connect();
  });

  after(async () => {
    await Promise.allSettled(apps.map((running) => running.stop()));
    await db?.end().catch(() => undefined);
    redis?.disconnect();
    await Promise.allSettled([pg?.stop(), redisServer?.stop()]);
  });

  it("counts visits, reads without counting, and resets", async () => {
    const { baseUrl } = await launch("r1");
    assert.deepEqual((await resetCounter(baseUrl)).body, { count: 0 });

    const first = await call(`${baseUrl}/`);
    assert.equal(first.status, 200);
    assert.deepEqual(first.body, { count: 1, replica: "r1" });
    assert.equal(first.headers.get("x-served-by"), "r1");
    assert.deepEqual((await call(`${baseUrl}/`)).body, { count: 2, replica: "r1" });

    assert.deepEqual((await call(`${baseUrl}/count`)).body, { count: 2 });
    assert.deepEqual((await call(`${baseUrl}/count`)).body, { count: 2 });

    const reset = await resetCounter(baseUrl);
    assert.equal(reset.status, 200);
    assert.deepEqual(reset.body, { count: 0 });
    assert.deepEqual((await call(`${baseUrl}/count`)).body, { count: 0 });
    assert.deepEqual((await call(`${baseUrl}/`)).body, { count: 1, replica: "r1" });

    const stored = await db.query<{ count: string }>("SELECT count FROM visit_counter WHERE id = 1");
    assert.equal(stored.rows[0]?.count, "1");
  });

  it("answers health and readiness probes, with X-Served-By on every response", async () => {
    const { baseUrl } = apps[0];
    const health = await call(`${baseUrl}/healthz`);
    assert.equal(health.status, 200);
    assert.deepEqual(health.body, { status: "ok" });
    const ready = await call(`${baseUrl}/readyz`);
    assert.equal(ready.status, 200);
    assert.deepEqual(ready.body, { postgres: "up", redis: "up" });
    const head = await fetch(`${baseUrl}/`, { method: "HEAD" });
    assert.equal(head.status, 404, "HEAD / must not count a visit");
    const missing = await call(`${baseUrl}/no-such-page`);
    assert.equal(missing.status, 404);
    assert.equal(missing.headers.get("x-served-by"), "r1");
  });

  it("keeps the cache current and reads /count from it first", async () => {
    const { baseUrl } = apps[0];
    const visit = await call(`${baseUrl}/`);
    assert.equal(await redis.hget(CACHE_KEY, "count"), String(visit.body.count));

    // A value only the cache can know proves /count did not go to Postgres.
    await redis.hset(CACHE_KEY, "count", "424242");
    assert.deepEqual((await call(`${baseUrl}/count`)).body, { count: 424242 });

    // Without a cached value /count falls back to Postgres and fills the cache again.
    await redis.del(CACHE_KEY);
    assert.deepEqual((await call(`${baseUrl}/count`)).body, { count: visit.body.count });
    assert.equal(await redis.hget(CACHE_KEY, "count"), String(visit.body.count));
  });

  it("never lets an older value overwrite a newer one in the cache", async () => {
    const { baseUrl } = apps[0];
    await call(`${baseUrl}/`);
    const version = Number(await redis.hget(CACHE_KEY, "version"));
    // Simulate a replica whose write for a later change arrived first.
    await redis.hset(CACHE_KEY, "version", String(version + 1), "count", "777");
    assert.deepEqual((await resetCounter(baseUrl)).body, { count: 0 });
    // The reset had version + 1 as well (same as the planted value), so it must not replace it...
    assert.equal(await redis.hget(CACHE_KEY, "count"), "777");
    // ...while the next change, with a higher version, does.
    const next = await call(`${baseUrl}/`);
    assert.equal(next.body.count, 1);
    assert.equal(await redis.hget(CACHE_KEY, "count"), "1");
  });

  it("counts a request id once, even when retried on other replicas at the same time", async () => {
    const [r1, r2, r3] = [apps[0], await launch("r2"), await launch("r3")];
    await resetCounter(r1.baseUrl);

    const first = await call(`${r1.baseUrl}/`, { headers: { "x-request-id": "retry-1" } });
    const again = await call(`${r2.baseUrl}/`, { headers: { "x-request-id": "retry-1" } });
    assert.deepEqual(first.body, { count: 1, replica: "r1" });
    assert.deepEqual(again.body, { count: 1, replica: "r2" });

    const burst = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        call(`${[r1, r2, r3][i % 3].baseUrl}/`, { headers: { "x-request-id": "retry-2" } }),
      ),
    );
    assert.deepEqual(new Set(burst.map((response) => response.body.count)), new Set([2]));
    assert.deepEqual((await call(`${r3.baseUrl}/`)).body, { count: 3, replica: "r3" });
    assert.deepEqual((await call(`${r3.baseUrl}/count`)).body, { count: 3 });
  });

  it("forgets old request ids when pruning", async () => {
    const store = new CounterStore(databaseUrl);
    try {
      await call(`${apps[0].baseUrl}/`, { headers: { "x-request-id": "prune-me" } });
      assert.equal(await store.pruneCountedRequests(3600), 0);
      await db.query("UPDATE counted_requests SET counted_at = now() - interval '2 hours' WHERE request_id = $1", [
        "prune-me",
      ]);
      assert.equal(await store.pruneCountedRequests(3600), 1);
      const before = (await call(`${apps[0].baseUrl}/count`)).body.count as number;
      const recounted = await call(`${apps[0].baseUrl}/`, { headers: { "x-request-id": "prune-me" } });
      assert.equal(recounted.body.count, before + 1);
    } finally {
      await store.close();
    }
  });

  it("counts a burst in few transactions, each visit its own number in arrival order, a retry in the burst once", async () => {
    const store = new CounterStore(databaseUrl);
    try {
      const before = await store.read();
      // Every tenth visit without an id, and the first id again at the end.
      const ids = Array.from({ length: 40 }, (_, i) => (i % 10 === 9 ? undefined : `burst-${i}`));
      const results = await Promise.all([...ids, "burst-0"].map((id) => store.recordVisit(id)));
      assert.deepEqual(
        results.slice(0, 40),
        ids.map((_, i) => ({ count: before.count + i + 1, version: before.version + i + 1, duplicate: false })),
      );
      assert.deepEqual(results[40], { count: before.count + 1, version: -1, duplicate: true });
      assert.deepEqual(await store.read(), { count: before.count + 40, version: before.version + 40 });
      // Asked for in one turn of the event loop, the 41 visits are one batch: one transaction.
      const stamps = await db.query<{ n: string }>(
        "SELECT count(DISTINCT counted_at) AS n FROM counted_requests WHERE request_id LIKE 'burst-%'",
      );
      assert.equal(stamps.rows[0].n, "1");
    } finally {
      await store.close();
    }
  });

  it("fails every visit of a batch that fails, and counts the next batch from where it was", async () => {
    const store = new CounterStore(databaseUrl, { statementTimeoutMs: 300 });
    try {
      const before = await store.read();
      const outcomes = await whileCounterLocked(db, () =>
        Promise.allSettled(["f-1", undefined, "f-2"].map((id) => store.recordVisit(id))),
      );
      assert.deepEqual(
        outcomes.map((o) => o.status),
        ["rejected", "rejected", "rejected"],
      );
      assert.deepEqual(await store.recordVisit("f-1"), {
        count: before.count + 1,
        version: before.version + 1,
        duplicate: false,
      });
    } finally {
      await store.close();
    }
  });

  it("refuses a visit at once when its limit of waiting visits is reached, and counts the ones it let wait", async () => {
    const store = new CounterStore(databaseUrl, { maxWaiting: 3 });
    try {
      const before = await store.read();
      const visits = await whileCounterLocked(db, async () => {
        // The first is written (and waits for the lock) once this turn of the event loop is over;
        // then three wait for the next batch and two are refused.
        const first = store.recordVisit(undefined);
        await new Promise<void>((resolve) => setImmediate(resolve));
        const started = [first, ...Array.from({ length: 5 }, () => store.recordVisit(undefined))];
        const refused = await Promise.allSettled(started.slice(4));
        assert.ok(refused.every((o) => o.status === "rejected" && o.reason instanceof CounterBusy));
        return started;
      });
      const outcomes = await Promise.allSettled(visits);
      assert.deepEqual(
        outcomes.map((o) => o.status),
        ["fulfilled", "fulfilled", "fulfilled", "fulfilled", "rejected", "rejected"],
      );
      assert.deepEqual(await store.read(), { count: before.count + 4, version: before.version + 4 });
    } finally {
      await store.close();
    }
  });

  it("lets the visits asked for in one turn into the batch about to start, and limits only those past it", async () => {
    const store = new CounterStore(databaseUrl, { maxWaiting: 3 });
    try {
      const before = await store.read();
      // A batch holds 500: of 505 visits asked for at once, 500 go into the starting batch, three
      // may wait behind it, and the last two are refused.
      const outcomes = await Promise.allSettled(Array.from({ length: 505 }, () => store.recordVisit(undefined)));
      assert.ok(outcomes.slice(0, 503).every((o) => o.status === "fulfilled"));
      // Each refusal is CounterBusy, and says how many wait.
      assert.deepEqual(
        outcomes
          .slice(503)
          .map((o) => (o.status === "rejected" && o.reason instanceof CounterBusy ? o.reason.message : o)),
        ["3 visits are already waiting for the database", "3 visits are already waiting for the database"],
      );
      assert.deepEqual(await store.read(), { count: before.count + 503, version: before.version + 503 });
    } finally {
      await store.close();
    }
  });

  it("loses no visit and counts none twice: 600 requests, 30 at a time, over 3 replicas", async () => {
    const replicas = apps.slice(0, 3);
    await resetCounter(replicas[0].baseUrl);
    const total = 600;
    // Enough in flight to keep every replica's pool contending on the row lock, yet bounded, so a
    // slow machine does not queue hundreds of requests past the pool's connection timeout.
    const concurrency = 30;
    const responses: JsonResponse[] = new Array<JsonResponse>(total);
    let next = 0;
    const worker = async (): Promise<void> => {
      for (let i = next++; i < total; i = next++) {
        responses[i] = await call(`${replicas[i % 3].baseUrl}/`, { headers: { "x-request-id": `load-${i}` } });
      }
    };
    const startedAt = performance.now();
    await Promise.all(Array.from({ length: concurrency }, worker));
    const elapsedMs = performance.now() - startedAt;
    console.log(`${total} counted requests, ${concurrency} in flight, over 3 replicas: ${elapsedMs.toFixed(0)} ms`);

    assert.deepEqual(
      responses.filter((response) => response.status !== 200).map((response) => response.body),
      [],
    );
    const counts = responses.map((response) => response.body.count as number).sort((a, b) => a - b);
    assert.deepEqual(
      counts,
      Array.from({ length: total }, (_, i) => i + 1),
    );
    const served = new Set(responses.map((response) => response.headers.get("x-served-by")));
    assert.deepEqual(served, new Set(["r1", "r2", "r3"]));

    const stored = await db.query<{ count: string }>("SELECT count FROM visit_counter WHERE id = 1");
    assert.equal(stored.rows[0]?.count, String(total));
    // Out-of-order cache writes from three replicas still leave the newest value in the cache.
    assert.equal(await redis.hget(CACHE_KEY, "count"), String(total));
    for (const replica of replicas) {
      assert.deepEqual((await call(`${replica.baseUrl}/count`)).body, { count: total });
    }
  });

  it("without request ids too (the path browsers take): 300 requests, 30 at a time, over 3 replicas, each counted once", async () => {
    const replicas = apps.slice(0, 3);
    const before = (await call(`${replicas[0].baseUrl}/count`)).body.count as number;
    const total = 300;
    const responses: JsonResponse[] = new Array<JsonResponse>(total);
    let next = 0;
    const worker = async (): Promise<void> => {
      for (let i = next++; i < total; i = next++) responses[i] = await call(`${replicas[i % 3].baseUrl}/`);
    };
    await Promise.all(Array.from({ length: 30 }, worker));
    assert.deepEqual(
      responses.filter((response) => response.status !== 200).map((response) => response.body),
      [],
    );
    const counts = responses.map((response) => response.body.count as number).sort((a, b) => a - b);
    assert.deepEqual(
      counts,
      Array.from({ length: total }, (_, i) => before + i + 1),
    );
    const stored = await db.query<{ count: string }>("SELECT count FROM visit_counter WHERE id = 1");
    assert.equal(stored.rows[0]?.count, String(before + total));
  });
});
