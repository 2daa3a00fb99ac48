// Checks that a deployed stack works: a smoke test (the proxy, the app and its data answer) and a
// bounded load that must fail no request and lose no visit. Each request opens a new connection,
// as independent clients do, so a proxy reload or a replica going away cannot hide behind reuse.
import * as http from "node:http";

export interface Visit {
  status: number;
  body: string;
  servedBy?: string;
}

/** One GET on `base` + `path`, on a fresh connection, with a 15 s timeout. */
export function visit(base: string, path = "/"): Promise<Visit> {
  const url = new URL(path, base);
  if (url.protocol !== "http:") return Promise.reject(new Error(`only http:// URLs are checked (got ${url.protocol})`));
  return new Promise((resolve, reject) => {
    const request = http.get(url, { agent: false, timeout: 15_000 }, (response) => {
      const chunks: Buffer[] = [];
      response.on("data", (chunk: Buffer) => chunks.push(chunk));
      response.on("end", () =>
        resolve({
          status: response.statusCode ?? 0,
          body: Buffer.concat(chunks).toString("utf8"),
          servedBy: response.headers["x-served-by"] as string | undefined,
        }),
      );
      response.on("error", reject);
    });
    request.on("timeout", () => request.destroy(new Error("timed out after 15 s")));
    request.on("error", reject);
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function countOf(v: Visit, what: string): number {
  if (v.status !== 200) throw new Error(`${what} answered HTTP ${v.status}: ${v.body.slice(0, 200)}`);
  const { count } = JSON.parse(v.body) as { count?: unknown };
  if (typeof count !== "number") throw new Error(`${what} answered without a count: ${v.body.slice(0, 200)}`);
  return count;
}

/**
 * The stack answers: nginx's own health, the app's health through nginx, and a visit that counts
 * exactly one more than `/count` said before. Retries for `waitSeconds` while the stack comes up.
 */
export async function smokeTest(
  base: string,
  options: { waitSeconds?: number; log?: (line: string) => void } = {},
): Promise<void> {
  const deadline = Date.now() + (options.waitSeconds ?? 60) * 1000;
  let last: unknown;
  for (;;) {
    try {
      for (const path of ["/nginx-health", "/healthz"]) {
        const v = await visit(base, path);
        if (v.status !== 200) throw new Error(`GET ${path} answered HTTP ${v.status}`);
      }
      const before = countOf(await visit(base, "/count"), "GET /count");
      const after = countOf(await visit(base, "/"), "GET /");
      if (after !== before + 1)
        throw new Error(`GET / counted ${after} after /count said ${before}: expected ${before + 1}`);
      options.log?.(`smoke test passed on ${base}: the visit counter moved from ${before} to ${after}`);
      return;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`smoke test of ${base} failed: ${(last as Error).message}`);
    await sleep(2000);
  }
}

/** The replica that answered: the app names itself in its JSON (a proxy may hide its header). */
export function replicaOf(v: Visit): string | undefined {
  try {
    const { replica } = JSON.parse(v.body) as { replica?: unknown };
    if (typeof replica === "string") return replica;
  } catch {
    // not JSON: fall back to the header
  }
  return v.servedBy;
}

export interface LoadResult {
  ok: number;
  failed: number;
  /** The first few failures, to explain a failed check. */
  failures: string[];
  /** Visit totals the app returned; all distinct when no visit is counted twice. */
  counts: number[];
  /** Requests per replica (the `replica` the app names in its answer). */
  servedBy: Map<string, number>;
  /** Milliseconds each served request took, connection included, in the order they ended. */
  latenciesMs: number[];
}

/** The `p`th percentile (0-100) of some milliseconds, nearest rank; 0 for none. */
export function percentile(ms: readonly number[], p: number): number {
  if (ms.length === 0) return 0;
  const sorted = [...ms].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

/** A load's median and 99th percentile latency, as its reports print them. */
export function latencySummary(result: LoadResult): string {
  const ms = (p: number) => percentile(result.latenciesMs, p).toFixed(1);
  return `p50 ${ms(50)} ms, p99 ${ms(99)} ms`;
}

/**
 * Runs `concurrency` clients sending GET / until `stop()` is called or `maxSeconds` pass, so a
 * hung caller still ends.
 */
export function startLoad(base: string, options: { concurrency: number; maxSeconds: number }) {
  const result: LoadResult = { ok: 0, failed: 0, failures: [], counts: [], servedBy: new Map(), latenciesMs: [] };
  let stopping = false;
  const deadline = Date.now() + options.maxSeconds * 1000;
  const client = async () => {
    while (!stopping && Date.now() < deadline) {
      try {
        const started = performance.now();
        const v = await visit(base, "/");
        result.latenciesMs.push(performance.now() - started);
        result.counts.push(countOf(v, "GET /"));
        result.ok += 1;
        const replica = replicaOf(v);
        if (replica !== undefined) result.servedBy.set(replica, (result.servedBy.get(replica) ?? 0) + 1);
      } catch (error) {
        result.failed += 1;
        if (result.failures.length < 10) result.failures.push((error as Error).message);
      }
    }
  };
  const clients = Promise.all(Array.from({ length: options.concurrency }, client));
  return {
    result,
    /** Stops the clients and waits for the requests in flight; calling it again is harmless. */
    async stop(): Promise<LoadResult> {
      stopping = true;
      await clients;
      return result;
    },
  };
}

/**
 * A load of `seconds` that must fail no request and count every visit exactly once: the counter
 * ends at its start plus the visits served.
 */
export async function loadCheck(
  base: string,
  options: { seconds: number; concurrency: number; log?: (line: string) => void },
): Promise<LoadResult> {
  const start = countOf(await visit(base, "/count"), "GET /count");
  const load = startLoad(base, { concurrency: options.concurrency, maxSeconds: options.seconds });
  await sleep(options.seconds * 1000);
  const result = await load.stop();
  options.log?.(
    `load on ${base}: ${result.ok} requests served, ${result.failed} failed, ${result.servedBy.size} replicas answered; ` +
      latencySummary(result),
  );
  if (result.failed > 0)
    throw new Error(
      `load check: ${result.failed} of ${result.ok + result.failed} requests failed: ${result.failures.join("; ")}`,
    );
  if (result.ok === 0) throw new Error("load check: no request was served");
  if (new Set(result.counts).size !== result.counts.length) throw new Error("load check: a visit was counted twice");
  const expected = start + result.ok;
  const deadline = Date.now() + 30_000;
  for (;;) {
    const now = countOf(await visit(base, "/count"), "GET /count");
    if (now === expected) return result;
    // The count is read through the Redis cache, which may trail Postgres by a moment.
    if (Date.now() > deadline)
      throw new Error(`load check: the counter reads ${now}, expected ${expected} (${result.ok} visits from ${start})`);
    await sleep(500);
  }
}
