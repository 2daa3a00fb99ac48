// Redis and Postgres going away and coming back while the app keeps running.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import Redis from "ioredis";
import { Client } from "pg";
import { startPostgresAndRedis, type PostgresServer, type RedisServer } from "../../test/support/services";
import { CACHE_KEY } from "../src/counter-cache";
import { migrate } from "../src/migrations";
import {
  call,
  migratedDatabase,
  resetCounter,
  SILENT_LOG,
  sleep,
  startApp,
  testConfig,
  waitFor,
  type RunningApp,
  type StartOptions,
} from "./helpers";

describe("outages", () => {
  let pg: PostgresServer;
  let redisServer: RedisServer;
  let databaseUrl: string;
  let redis: Redis;
  const apps: RunningApp[] = [];
  const cleanups: Array<() => Promise<void>> = [];

  before(async () => {
    ({ postgres: pg, redis: redisServer } = await startPostgresAndRedis());
    databaseUrl = await migratedDatabase(pg, "outages");
    // The test's own client must survive the Redis restart below.
    redis = new Redis(redisServer.url, { maxRetriesPerRequest: 1, retryStrategy: () => 100 });
    redis.on("error", () => undefined);
  });

  after(async () => {
    await Promise.allSettled(cleanups.map((cleanup) => cleanup()));
    redis?.disconnect();
    await Promise.allSettled([pg?.stop(), redisServer?.stop()]);
  });

  const launch = async (options: StartOptions = {}): Promise<RunningApp> => {
    // Tracked from the start, so `after` also stops an instance whose start never finished.
    const running = await startApp(testConfig({ databaseUrl, redisUrl: redisServer.url }), {
      ...options,
      track: (stop) => cleanups.push(stop),
    });
    apps.push(running);
    return running;
  };

  it("keeps counting without Redis and uses the cache again when Redis returns", async () => {
    const { baseUrl } = await launch();
    await waitFor("redis to be up", async () =>
      (await call(`${baseUrl}/readyz`)).body.redis === "up" ? true : undefined,
    );
    assert.deepEqual((await resetCounter(baseUrl)).body, { count: 0 });
    assert.equal((await call(`${baseUrl}/`)).body.count, 1);

    await redisServer.halt();
    const withoutRedis = await call(`${baseUrl}/`);
    assert.equal(withoutRedis.status, 200);
    assert.equal(withoutRedis.body.count, 2);
    const ready = await call(`${baseUrl}/readyz`);
    assert.equal(ready.status, 200);
    assert.deepEqual(ready.body, { postgres: "up", redis: "down" });
    assert.deepEqual((await call(`${baseUrl}/count`)).body, { count: 2 });
    assert.equal((await call(`${baseUrl}/`)).body.count, 3);

    await redisServer.resume();
    await waitFor("the app to reconnect to redis", async () =>
      (await call(`${baseUrl}/readyz`)).body.redis === "up" ? true : undefined,
    );
    assert.equal((await call(`${baseUrl}/`)).body.count, 4);
    await waitFor("the test's client to reconnect", async () => ((await redis.ping()) === "PONG" ? true : undefined));
    assert.equal(await redis.hget(CACHE_KEY, "count"), "4");
    // Served from the cache again: a value only the cache holds comes back.
    await redis.hset(CACHE_KEY, "count", "99");
    assert.deepEqual((await call(`${baseUrl}/count`)).body, { count: 99 });
    await redis.del(CACHE_KEY);
    assert.deepEqual((await call(`${baseUrl}/count`)).body, { count: 4 });
  });

  it("answers 503 with a JSON error while Postgres is down and recovers when it returns", async () => {
    const { baseUrl } = apps[0];
    await pg.halt();
    try {
      const visit = await call(`${baseUrl}/`);
      assert.equal(visit.status, 503);
      assert.equal(typeof visit.body.error, "string");
      const reset = await resetCounter(baseUrl);
      assert.equal(reset.status, 503);
      const ready = await call(`${baseUrl}/readyz`);
      assert.equal(ready.status, 503);
      assert.deepEqual(ready.body, { postgres: "down", redis: "up" });
      await redis.del(CACHE_KEY);
      const count = await call(`${baseUrl}/count`);
      assert.equal(count.status, 503);
      assert.equal(typeof count.body.error, "string");
      const health = await call(`${baseUrl}/healthz`);
      assert.equal(health.status, 200);
    } finally {
      await pg.resume();
    }
    const recovered = await waitFor("counting to work again", async () => {
      const response = await call(`${baseUrl}/`);
      return response.status === 200 ? response : undefined;
    });
    // The refused requests counted nothing.
    assert.equal(recovered.body.count, 5);
    assert.deepEqual((await call(`${baseUrl}/readyz`)).body, { postgres: "up", redis: "up" });
  });

  it("does not open its port while Postgres is unreachable, and serves once it is there", async () => {
    await pg.halt();
    let starting: Promise<RunningApp> | undefined;
    try {
      starting = launch({ waitForSchema: false });
      const early = await Promise.race([starting.then(() => "listening"), sleep(2000).then(() => "waiting")]);
      assert.equal(early, "waiting", "the app listened before its database was usable");
    } finally {
      await pg.resume();
    }
    const { baseUrl } = await starting;
    assert.equal((await call(`${baseUrl}/readyz`)).status, 200);
    assert.equal((await call(`${baseUrl}/`)).body.count, 6);
  });

  // Tables gone while the function stays fail inside it (undefined_table); a fresh data directory
  // has no function either (undefined_function). Either way the replica stops counting and waits
  // for the migrations, which only a release's migration run applies.
  for (const [what, drop] of [
    ["its tables", "DROP TABLE visit_counter, counted_requests, schema_migrations"],
    ["its tables and counting function", "DROP SCHEMA public CASCADE; CREATE SCHEMA public"],
  ]) {
    it(`answers 503 when ${what} disappear, and counts again once the migrations ran`, async () => {
      const { baseUrl } = apps[0];
      const client = new Client({ connectionString: databaseUrl });
      await client.connect();
      try {
        await client.query(drop);
      } finally {
        await client.end();
      }
      const failed = await call(`${baseUrl}/`);
      assert.equal(failed.status, 503);
      await waitFor("/readyz to name the missing migration", async () =>
        (await call(`${baseUrl}/readyz`)).body.schema === "missing migrations: 0001_visit-counter" ? true : undefined,
      );
      assert.equal((await call(`${baseUrl}/`)).status, 503, "no count from a database without its schema");
      await migrate(databaseUrl, SILENT_LOG);
      const recovered = await waitFor("counting to work again", async () => {
        const response = await call(`${baseUrl}/`);
        return response.status === 200 ? response : undefined;
      });
      assert.equal(recovered.body.count, 1);
    });
  }
});
