// Redis as a cache in front of Postgres. It is never the source of truth: every failure here is
// swallowed by the caller's fallback, commands fail fast instead of queueing while Redis is away,
// and the client keeps reconnecting with backoff on its own.
import Redis from "ioredis";
import type { FastifyBaseLogger } from "fastify";
import type { CounterState } from "./counter-store";

/** The Redis hash holding the cached count and its version. */
export const CACHE_KEY = "webstack:visit-counter";

// Writes only when the incoming version is newer than the cached one, so replicas whose writes
// arrive out of order can never put an older count over a newer one.
const SET_IF_NEWER = `
local cached = tonumber(redis.call('HGET', KEYS[1], 'version'))
local incoming = tonumber(ARGV[1])
if cached ~= nil and cached >= incoming then
  return 0
end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'count', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`;

export interface CounterCacheOptions {
  /** Per-command limit: a slow or unreachable Redis must not hold up a request. */
  commandTimeoutMs?: number;
  /**
   * A bound on how long a cached value can outlive a cache write that failed after Postgres
   * changed: the key expires and the next read refills it from Postgres.
   */
  ttlMs?: number;
}

/** The client with SET_IF_NEWER as a command of its own (sent by its hash once Redis knows it). */
type CacheClient = Redis & {
  setIfNewer(key: string, version: number, count: number, ttlMs: number): Promise<number>;
};

export class CounterCache {
  private readonly client: CacheClient;
  private readonly ttlMs: number;
  private lastReportedUp: boolean | undefined;
  /** The write in progress (or the last one, settled). */
  private writing: Promise<void> = Promise.resolve();
  /** The newest state waiting for the write in progress, and the promise its callers wait on. */
  private queued: { state: CounterState; written: Promise<void> } | undefined;

  constructor(
    redisUrl: string,
    private readonly log: FastifyBaseLogger,
    options: CounterCacheOptions = {},
  ) {
    this.ttlMs = options.ttlMs ?? 60_000;
    const client = new Redis(redisUrl, {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: options.commandTimeoutMs ?? 500,
      connectTimeout: 2000,
      // Never give up: the cache comes back by itself whenever Redis does.
      retryStrategy: (attempt) => Math.min(100 * 2 ** Math.min(attempt, 5), 2000),
    });
    client.defineCommand("setIfNewer", { numberOfKeys: 1, lua: SET_IF_NEWER });
    this.client = client as CacheClient;
    this.client.on("error", (error: Error) => this.reportDown(error));
    this.client.on("ready", () => {
      this.reportUp();
      // While this replica could not reach Redis, others may have changed the count and Redis
      // may have restarted with old data; start from an empty cache rather than trust it.
      this.client.del(CACHE_KEY).catch((error: Error) => this.reportDown(error));
    });
    this.client.on("end", () => this.log.info("redis connection closed"));
  }

  /** Starts connecting in the background; never throws. */
  connect(): void {
    this.client.connect().catch((error: Error) => this.reportDown(error));
  }

  get isReady(): boolean {
    return this.client.status === "ready";
  }

  async ping(): Promise<boolean> {
    try {
      return (await this.client.ping()) === "PONG";
    } catch {
      return false;
    }
  }

  /** The cached count, or undefined when there is none or Redis is unavailable. */
  async read(): Promise<number | undefined> {
    try {
      const count = await this.client.hget(CACHE_KEY, "count");
      return count === null ? undefined : Number(count);
    } catch (error) {
      this.reportDown(error as Error);
      return undefined;
    }
  }

  /**
   * Stores the state unless the cache already holds a newer one; resolves once a state at least
   * this new has been written (or has failed to be). Failures are logged only.
   *
   * Writes go one at a time: states that arrive while one is in progress wait for it and are
   * written together as the newest of them, one command for a whole batch of visits.
   */
  store(state: CounterState): Promise<void> {
    const queued = this.queued;
    if (queued !== undefined) {
      if (state.version > queued.state.version) queued.state = state;
      return queued.written;
    }
    const next: { state: CounterState; written: Promise<void> } = {
      state,
      written: this.writing.then((): Promise<void> => {
        // From here on, newer states queue behind this write.
        this.queued = undefined;
        return this.write(next.state);
      }),
    };
    this.queued = next;
    this.writing = next.written;
    return next.written;
  }

  private async write(state: CounterState): Promise<void> {
    try {
      await this.client.setIfNewer(CACHE_KEY, state.version, state.count, this.ttlMs);
    } catch (error) {
      this.reportDown(error as Error);
    }
  }

  async close(): Promise<void> {
    try {
      await this.client.quit();
    } catch {
      this.client.disconnect();
    }
  }

  // Log transitions, not every failed reconnect attempt.
  private reportDown(error: Error): void {
    if (this.lastReportedUp !== false) {
      this.log.warn({ error: error.message }, "redis unavailable, serving from postgres only");
      this.lastReportedUp = false;
    } else {
      this.log.debug({ error: error.message }, "redis still unavailable");
    }
  }

  private reportUp(): void {
    if (this.lastReportedUp !== true) this.log.info("redis connected");
    this.lastReportedUp = true;
  }
}
