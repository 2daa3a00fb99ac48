// A bounded HTTP load against the stack's published nginx port (loopback only), counting every
// failure. Each request uses a new connection, as independent clients do; nginx closes idle
// keep-alive connections on a graceful reload, which a real client retries but a test must not hide.
import * as http from "node:http";

export interface LoadResult {
  ok: number;
  failed: number;
  /** The first few failures, for the assertion message. */
  failures: string[];
  /** Visit totals the app returned; each must be unique if no visit is counted twice. */
  counts: number[];
  /** Requests per replica (X-Served-By). */
  servedBy: Map<string, number>;
}

/** One GET / through nginx: resolves with the app's JSON and the replica that served it. */
export function visit(port: number, path = "/"): Promise<{ status: number; body: string; servedBy: string | undefined }> {
  return new Promise((resolve, reject) => {
    const request = http.get({ host: "127.0.0.1", port, path, agent: false, timeout: 15_000 }, (response) => {
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

/**
 * Runs `concurrency` clients sending GET / until `stop` resolves (or `maxSeconds` pass, so a hung
 * scenario still ends), and reports what happened.
 */
export function startLoad(port: number, options: { concurrency: number; maxSeconds: number }) {
  const result: LoadResult = { ok: 0, failed: 0, failures: [], counts: [], servedBy: new Map() };
  let stopping = false;
  const deadline = Date.now() + options.maxSeconds * 1000;
  const client = async () => {
    while (!stopping && Date.now() < deadline) {
      try {
        const { status, body, servedBy } = await visit(port);
        if (status !== 200) throw new Error(`HTTP ${status}: ${body.slice(0, 200)}`);
        const { count } = JSON.parse(body) as { count: number };
        result.ok += 1;
        result.counts.push(count);
        if (servedBy !== undefined) result.servedBy.set(servedBy, (result.servedBy.get(servedBy) ?? 0) + 1);
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
