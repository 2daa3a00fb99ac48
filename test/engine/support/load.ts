// The stack's published nginx port on loopback, loaded and visited with the same client CI's
// smoke and load checks use (ci/smoke.ts): a new connection per request, every failure counted.
import * as smoke from "../../../ci/smoke";

export type { LoadResult } from "../../../ci/smoke";

const base = (port: number) => `http://127.0.0.1:${port}`;

/**
 * One GET through nginx on a fresh connection: the status, the body, and the replica that served
 * it (as the app names itself in its answer; `header` is nginx's X-Served-By, if it passes it on).
 */
export async function visit(port: number, path = "/"): Promise<smoke.Visit & { header: string | undefined }> {
  const v = await smoke.visit(base(port), path);
  return { ...v, header: v.servedBy, servedBy: smoke.replicaOf(v) };
}

/** `concurrency` clients sending GET / until `stop()` (or `maxSeconds`, so a hung scenario still ends). */
export function startLoad(port: number, options: { concurrency: number; maxSeconds: number }) {
  return smoke.startLoad(base(port), options);
}
