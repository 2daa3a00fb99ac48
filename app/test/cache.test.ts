// The Redis cache on its own, against a real Redis that goes away and comes back: what it logs
// (transitions, not every retry), how it behaves while Redis is away, and what it clears on return.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { FastifyBaseLogger } from "fastify";
import Redis from "ioredis";
import { startRedis, type RedisServer } from "../../test/support/services";
import { CACHE_KEY, CounterCache } from "../src/counter-cache";
import { waitFor } from "./helpers";

interface Line {
  level: string;
  message: string;
}

/** A logger that keeps what it is given: level and message. */
function recordingLogger(): { log: FastifyBaseLogger; lines: Line[] } {
  const lines: Line[] = [];
  const at =
    (level: string) =>
    (first: unknown, second?: unknown): void => {
      lines.push({ level, message: typeof first === "string" ? first : String(second) });
    };
  const log = {
    level: "debug",
    fatal: at("fatal"),
    error: at("error"),
    warn: at("warn"),
    info: at("info"),
    debug: at("debug"),
    trace: at("trace"),
    silent: () => undefined,
    child: () => log,
  };
  return { log, lines };
}

const messages = (lines: Line[], level: string) => lines.filter((l) => l.level === level).map((l) => l.message);

describe("CounterCache against a Redis that comes and goes", () => {
  let server: RedisServer;
  let other: Redis;

  before(async () => {
    server = await startRedis();
    other = new Redis(server.url, { maxRetriesPerRequest: 1, retryStrategy: () => 100 });
    other.on("error", () => undefined);
  });
  after(async () => {
    other?.disconnect();
    await server?.stop();
  });

  it("connects only when asked, says so once, and starts from an empty cache", async () => {
    await other.hset(CACHE_KEY, "version", "7", "count", "41");
    const { log, lines } = recordingLogger();
    const cache = new CounterCache(server.url, log, { commandTimeoutMs: 5000 });
    try {
      // Not connected before connect(): a command now fails at once instead of waiting.
      assert.equal(cache.isReady, false);
      assert.equal(await cache.read(), undefined);
      cache.connect();
      await waitFor("the cache to be ready", () => (cache.isReady ? true : undefined));
      await waitFor("the stale entry to be cleared", async () =>
        (await other.exists(CACHE_KEY)) === 0 ? true : undefined,
      );
      assert.deepEqual(messages(lines, "info"), ["redis connected"]);
      await cache.store({ count: 42, version: 8 });
      assert.equal(await cache.read(), 42);
      assert.equal(await cache.ping(), true);
    } finally {
      await cache.close();
    }
    await waitFor("the close to be logged", () =>
      messages(lines, "info").includes("redis connection closed") ? true : undefined,
    );
  });

  it("stores that arrive while one is written become one write of the newest; each caller waits for a state as new as its own", async () => {
    const { log } = recordingLogger();
    const cache = new CounterCache(server.url, log, { commandTimeoutMs: 5000 });
    cache.connect();
    try {
      await waitFor("the cache to be ready", () => (cache.isReady ? true : undefined));
      await waitFor("the stale entry to be cleared", async () =>
        (await other.exists(CACHE_KEY)) === 0 ? true : undefined,
      );
      await other.config("RESETSTAT");
      // Versions out of order, as replies from a batch of visits and another replica's can come.
      const newest = (version: number) =>
        cache.store({ count: version * 10, version }).then(async () => Number(await other.hget(CACHE_KEY, "version")));
      const first = newest(3);
      // Once the first write has been sent, the other nine wait for it together.
      await new Promise((resolve) => setImmediate(resolve));
      const versions = [1, 7, 2, 50, 9, 49, 4, 48, 5];
      const seen = await Promise.all(versions.map(newest));
      assert.ok((await first) >= 3);
      versions.forEach((version, i) => assert.ok(seen[i] >= version, `store of ${version} resolved at ${seen[i]}`));
      assert.equal(await cache.read(), 500);
      const stats = await other.info("commandstats");
      // Calls that ran the script (a first EVALSHA that Redis didn't know yet fails, and is resent as EVAL).
      const calls = [...stats.matchAll(/^cmdstat_(?:eval|evalsha):calls=(\d+),.*failed_calls=(\d+)/gm)].reduce(
        (n, m) => n + Number(m[1]) - Number(m[2]),
        0,
      );
      assert.equal(calls, 2, "one script call for the first store, one for the nine after it");

      // An older state than the cached one changes nothing, and a newer one after a pause is written.
      await cache.store({ count: 1, version: 1 });
      assert.equal(await cache.read(), 500);
      await cache.store({ count: 510, version: 51 });
      assert.equal(await cache.read(), 510);
    } finally {
      await cache.close();
    }
  });

  it("a write that times out while Redis stays connected is logged, and the store still resolves", async () => {
    const { log, lines } = recordingLogger();
    const cache = new CounterCache(server.url, log, { commandTimeoutMs: 300 });
    cache.connect();
    try {
      await waitFor("the cache to be ready", () => (cache.isReady ? true : undefined));
      // Redis holds every write for a while; reads and the connection itself are unaffected, so
      // only the write's own failure can say that the cache was not updated.
      await other.call("CLIENT", "PAUSE", "5000", "WRITE");
      await cache.store({ count: 5, version: 5 });
      assert.equal(cache.isReady, true);
      assert.deepEqual(messages(lines, "warn"), ["redis unavailable, serving from postgres only"]);
    } finally {
      await other.call("CLIENT", "UNPAUSE");
      await cache.close();
    }
  });

  it("logs an outage once, retries quietly, and reports the return once", async () => {
    const { log, lines } = recordingLogger();
    const cache = new CounterCache(server.url, log, { commandTimeoutMs: 5000 });
    cache.connect();
    try {
      await waitFor("the cache to be ready", () => (cache.isReady ? true : undefined));
      await server.halt();
      await waitFor("the outage to be noticed", () => (messages(lines, "warn").length > 0 ? true : undefined));
      // Commands fail fast while Redis is away: nothing is queued for later.
      const started = Date.now();
      assert.equal(await cache.read(), undefined);
      await cache.store({ count: 1, version: 1 });
      assert.equal(await cache.ping(), false);
      assert.ok(Date.now() - started < 4000, "commands did not wait for Redis to come back");
      await waitFor("a few quiet retries", () => (messages(lines, "debug").length >= 3 ? true : undefined));
      assert.deepEqual(messages(lines, "warn"), ["redis unavailable, serving from postgres only"]);
      assert.ok(messages(lines, "debug").every((m) => m === "redis still unavailable"));
      await server.resume();
      // The backoff is capped at 2 s, so the return is seen within a few seconds.
      await waitFor("the cache to reconnect", () => (cache.isReady ? true : undefined), 10_000);
      assert.deepEqual(messages(lines, "info"), ["redis connected", "redis connected"]);
      assert.deepEqual(messages(lines, "warn"), ["redis unavailable, serving from postgres only"]);
    } finally {
      await cache.close();
    }
  });
});
