// Runs one of the benchmarks as a user would (`npx tsx bench/<name>.ts`), with short settings, and
// reads its table: the tests keep the benchmarks runnable, they do not judge their figures.
import { execFile } from "node:child_process";
import { join } from "node:path";

const ROOT = join(__dirname, "..", "..");

export interface BenchOutput {
  code: number;
  stdout: string;
  stderr: string;
  /** Each table row (scenario, then its numbers) by its scenario name. */
  rows: Map<string, { rps: number; requests: number; errors: number }>;
}

export function runBench(script: string, env: Record<string, string>, timeoutMs: number): Promise<BenchOutput> {
  return new Promise((resolve) => {
    execFile(
      "npx",
      ["tsx", join("bench", script)],
      { cwd: ROOT, env: { ...process.env, ...env }, timeout: timeoutMs, maxBuffer: 16 << 20 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === "number" ? error.code : -1;
        const rows = new Map<string, { rps: number; requests: number; errors: number }>();
        // A row: the scenario's name, then req/s, p50, p99, max, requests and errors.
        for (const match of stdout.matchAll(/^(\S.*?)\s+(\d+)\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+(\d+)\s+(\d+)$/gm)) {
          rows.set(match[1], { rps: Number(match[2]), requests: Number(match[3]), errors: Number(match[4]) });
        }
        resolve({ code, stdout, stderr, rows });
      },
    );
  });
}
