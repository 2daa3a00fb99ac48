// The HTTP service: routes, readiness, the schema check and graceful shutdown.
import Fastify, { LogController, type FastifyInstance, type FastifyReply } from "fastify";
import { requireAdmin } from "./admin";
import type { AppConfig } from "./config";
import { CounterCache } from "./counter-cache";
import { CounterBusy, CounterStore, isMissingSchema } from "./counter-store";
import { knownMigrations, MIGRATIONS_DIR, missingMigrations } from "./migrations";

/** Request ids remembered for de-duplication; a proxy retries within seconds, not minutes. */
const COUNTED_REQUEST_RETENTION_SECONDS = 15 * 60;
const PRUNE_INTERVAL_MS = 60_000;
const SCHEMA_RETRY_MAX_MS = 2000;
/** A request that took this long is logged even when it succeeded. */
const SLOW_REQUEST_MS = 1000;
/** Longer ids are not used for de-duplication (nginx's $request_id has 32 characters). */
const MAX_REQUEST_ID_LENGTH = 128;

export interface App {
  readonly server: FastifyInstance;
  readonly config: AppConfig;
  /** Waits until the database has every migration this build ships with, then starts listening; returns the bound port. */
  start(): Promise<number>;
  /** Resolves once every migration is applied (checked again and again while it is not, or Postgres is unreachable). */
  schemaReady(): Promise<void>;
  /**
   * Stops accepting connections, lets in-flight requests finish within `shutdownGraceMs`, then
   * closes the database pool and the Redis client. Resolves true when nothing had to be cut off.
   */
  shutdown(): Promise<boolean>;
}

class ServiceUnavailable extends Error {}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** What a caller other than the server's entry point may change; the defaults are production's. */
export interface BuildOptions {
  /** Where the JSON log lines go (default: standard output). */
  logStream?: { write(line: string): void };
  /** How often request ids past their retention are deleted (default: a minute). */
  pruneIntervalMs?: number;
  /** Visits one replica lets wait for the database before it answers 503 busy (default 2000). */
  maxWaitingVisits?: number;
  /** The migrations this instance requires (default: the build's own, app/migrations). */
  migrationsDir?: string;
}

export function buildServer(config: AppConfig, options: BuildOptions = {}): App {
  const server = Fastify({
    logger: {
      ...(options.logStream === undefined ? {} : { stream: options.logStream }),
      level: config.logLevel,
      base: { replica: config.replicaId },
      // Never log request headers or URLs with credentials; method, url and ids are enough.
      serializers: {
        req: (req) => ({ method: req.method, url: req.url, remoteAddress: req.ip }),
      },
    },
    // nginx sends X-Request-Id; fastify logs it as `reqId` on every line about the request.
    requestIdHeader: "x-request-id",
    // Requests that arrive on an already open keep-alive connection during shutdown are served
    // (with `Connection: close`) rather than refused with a 503 nginx may not retry.
    return503OnClosing: false,
    // nginx's JSON access log is the request log of record; the app's own line per request is
    // the onResponse hook's below.
    logController: new LogController({ disableRequestLogging: true }),
    // A HEAD request must not count a visit.
    exposeHeadRoutes: false,
    forceCloseConnections: "idle",
  });
  const log = server.log;
  const store = new CounterStore(config.databaseUrl, {
    statementTimeoutMs: config.statementTimeoutMs,
    maxWaiting: options.maxWaitingVisits,
  });
  const cache = new CounterCache(config.redisUrl, log, { commandTimeoutMs: config.redisCommandTimeoutMs });
  let shuttingDown = false;
  const requiredMigrations = knownMigrations(options.migrationsDir ?? MIGRATIONS_DIR);
  let schemaIsReady = false;
  /** Migrations found missing by the last check; empty when none were, or the check failed. */
  let missing: string[] = [];
  let schemaTask: Promise<void> | undefined;
  let pruneTimer: NodeJS.Timeout | undefined;

  // An idle pooled connection that Postgres drops emits "error" on the pool; without this
  // listener that would crash the process.
  store.pool.on("error", (error) => log.warn({ error: error.message }, "idle postgres connection lost"));

  // The release's migration run applies migrations; a replica only waits until they are there,
  // and never serves against a schema older than its code needs.
  const checkSchemaWithRetry = (): Promise<void> => {
    schemaTask ??= (async () => {
      for (let attempt = 0; !shuttingDown; attempt += 1) {
        const delay = Math.min(100 * 2 ** attempt, SCHEMA_RETRY_MAX_MS);
        try {
          missing = await missingMigrations(store.pool, requiredMigrations);
          if (missing.length === 0) {
            schemaIsReady = true;
            log.info({ migrations: requiredMigrations.length }, "database schema is current");
            return;
          }
          log.warn(
            { missing, retryInMs: delay },
            "database schema is older than this release needs: its migrations have not run",
          );
        } catch (error) {
          missing = [];
          log.warn({ error: (error as Error).message, retryInMs: delay }, "database not ready");
        }
        await sleep(delay);
      }
    })().finally(() => {
      schemaTask = undefined;
    });
    return schemaTask;
  };

  const withDatabase = async <T>(work: () => Promise<T>): Promise<T> => {
    if (!schemaIsReady) throw new ServiceUnavailable("database not ready");
    try {
      return await work();
    } catch (error) {
      if (error instanceof CounterBusy) throw error;
      if (isMissingSchema(error)) {
        // Postgres came back without our schema (a fresh data directory, a restore): stop serving
        // from it until its migrations are there again.
        schemaIsReady = false;
        void checkSchemaWithRetry();
      }
      log.error({ error: (error as Error).message }, "database query failed");
      throw new ServiceUnavailable("database unavailable");
    }
  };

  const requestIdOf = (header: string | string[] | undefined): string | undefined =>
    typeof header === "string" && header.length > 0 && header.length <= MAX_REQUEST_ID_LENGTH ? header : undefined;

  server.addHook("onRequest", async (_request, reply) => {
    reply.header("x-served-by", config.replicaId);
  });
  // Checked when the response goes out, so requests already in flight when shutdown began also
  // tell their keep-alive client to go elsewhere next time.
  server.addHook("onSend", async (_request, reply) => {
    if (shuttingDown) reply.header("connection", "close");
  });

  // One line per request that needs a look (a 5xx at warn, a slow one at info); every request at
  // debug. Through Docker's log driver, a line per request costs as much CPU as counting it.
  server.addHook("onResponse", async (request, reply) => {
    const responseTime = Math.round(reply.elapsedTime);
    const level = reply.statusCode >= 500 ? "warn" : responseTime >= SLOW_REQUEST_MS ? "info" : "debug";
    request.log[level]({ req: request, res: reply, responseTime }, "request completed");
  });

  server.setErrorHandler(async (error: Error & { statusCode?: number }, request, reply: FastifyReply) => {
    if (error instanceof ServiceUnavailable) {
      return reply.code(503).send({ error: error.message });
    }
    if (error instanceof CounterBusy) {
      // Deliberate and cheap: the client (or nginx's caller) may come back in a second.
      return reply.code(503).header("retry-after", "1").send({ error: "busy: too many visits waiting, try again" });
    }
    const statusCode = error.statusCode;
    if (statusCode !== undefined && statusCode >= 400 && statusCode < 500) {
      return reply.code(statusCode).send({ error: error.message });
    }
    request.log.error({ err: error }, "unexpected error");
    return reply.code(500).send({ error: "internal error" });
  });

  server.get("/", async (request) => {
    const visit = await withDatabase(() => store.recordVisit(requestIdOf(request.headers["x-request-id"])));
    if (!visit.duplicate) await cache.store(visit);
    return { count: visit.count, replica: config.replicaId };
  });

  server.get("/count", async () => {
    const cached = await cache.read();
    if (cached !== undefined) return { count: cached };
    const state = await withDatabase(() => store.read());
    await cache.store(state);
    return { count: state.count };
  });

  // Without a token the route does not exist (404), so nobody can zero the count by accident.
  const adminToken = config.adminToken;
  if (adminToken !== undefined) {
    server.post("/reset", { preHandler: requireAdmin(adminToken) }, async (request) => {
      const state = await withDatabase(() => store.reset());
      await cache.store(state);
      request.log.info("visit counter reset by an admin request");
      return { count: state.count };
    });
  }

  server.get("/healthz", () => ({ status: "ok" }));

  server.get("/readyz", async (_request, reply) => {
    const [postgresUp, redisUp] = await Promise.all([
      store.ping().then(
        () => true,
        () => false,
      ),
      cache.ping(),
    ]);
    const body = {
      postgres: postgresUp ? "up" : "down",
      redis: redisUp ? "up" : "down",
      // Why a reachable database is not used: the migrations this release needs are not applied.
      ...(missing.length === 0 ? {} : { schema: `missing migrations: ${missing.join(", ")}` }),
    };
    return reply.code(postgresUp && schemaIsReady ? 200 : 503).send(body);
  });

  server.addHook("onClose", async () => {
    clearInterval(pruneTimer);
    await Promise.allSettled([store.close(), cache.close()]);
  });

  return {
    server,
    config,
    async start(): Promise<number> {
      cache.connect();
      pruneTimer = setInterval(() => {
        if (!schemaIsReady) return;
        store.pruneCountedRequests(COUNTED_REQUEST_RETENTION_SECONDS).then(
          (removed) => log.debug({ removed }, "pruned counted request ids"),
          (error: Error) => log.warn({ error: error.message }, "pruning counted request ids failed"),
        );
      }, options.pruneIntervalMs ?? PRUNE_INTERVAL_MS);
      pruneTimer.unref();
      // Open the port only once the database is usable. nginx sends traffic to every replica
      // the `app` alias resolves to, with no health checks of its own: a replica that listened
      // early would answer 503 to requests a ready replica could have served. Refused
      // connections, instead, nginx retries on another replica.
      await checkSchemaWithRetry();
      if (shuttingDown) throw new Error("shut down before the database was ready");
      await server.listen({ port: config.port, host: config.host });
      const address = server.server.address();
      if (address === null || typeof address === "string") throw new Error("server is not bound to a TCP port");
      return address.port;
    },
    schemaReady(): Promise<void> {
      return schemaIsReady ? Promise.resolve() : checkSchemaWithRetry();
    },
    async shutdown(): Promise<boolean> {
      if (shuttingDown) return false;
      shuttingDown = true;
      log.info({ graceMs: config.shutdownGraceMs }, "shutting down: no new connections, finishing in-flight requests");
      let timer: NodeJS.Timeout | undefined;
      const graceExpired = new Promise<"expired">((resolve) => {
        timer = setTimeout(() => resolve("expired"), config.shutdownGraceMs);
      });
      // server.close() stops listening at once, closes idle keep-alive sockets, waits for the rest,
      // then runs the onClose hook that closes the pool and the Redis client.
      const closed = server.close().then(() => "closed" as const);
      const outcome = await Promise.race([closed, graceExpired]);
      clearTimeout(timer);
      if (outcome === "expired") {
        log.warn("shutdown grace period over: closing the remaining connections");
        server.server.closeAllConnections();
        // Not awaited: closing the pool waits for queries still running, which is what the
        // grace period was meant to bound.
        closed.catch((error: Error) => log.error({ error: error.message }, "closing after the grace period failed"));
        return false;
      }
      log.info("shutdown complete");
      return true;
    },
  };
}
