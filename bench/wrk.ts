// wrk as the benchmarks drive it: a Lua script that gives every request a unique X-Request-Id and
// prints one JSON result line, a runner, settings read from the environment, and a table printer.
import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";

/** An integer setting from the environment, with its allowed range named when it is wrong. */
export function intSetting(name: string, fallback: number, min: number, max: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new Error(`${name} is ${JSON.stringify(raw)}; allowed: an integer from ${min} to ${max}`);
  }
  return value;
}

// Runs inside wrk. Each request gets an id unique across threads and runs; done() prints one
// JSON line so nothing depends on wrk's human-readable layout.
const WRK_SCRIPT = `
local thread_count = 0
setup = function(thread)
  thread_count = thread_count + 1
  thread:set("thread_id", thread_count)
end

local prefix
local counter = 0
local path
init = function(args)
  prefix = "bench-" .. args[1] .. "-" .. thread_id .. "-"
  path = args[2]
end

request = function()
  counter = counter + 1
  return wrk.format("GET", path, { ["X-Request-Id"] = prefix .. counter })
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
`;

export interface WrkResult {
  requests: number;
  duration_us: number;
  connect_errors: number;
  read_errors: number;
  write_errors: number;
  /** Responses with a status of 400 or more. */
  status_errors: number;
  timeouts: number;
  p50_us: number;
  p99_us: number;
  max_us: number;
}

export interface WrkRun {
  /** Scheme, host and port, e.g. http://127.0.0.1:8080 */
  origin: string;
  path: string;
  threads: number;
  connections: number;
  seconds: number;
  /** wrk's per-request timeout (default 5 s). */
  timeoutSeconds?: number;
}

export function execText(file: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: timeoutMs, maxBuffer: 4 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${file} ${args.join(" ")} failed: ${error.message}\n${stdout}${stderr}`));
      else resolve(stdout + stderr);
    });
  });
}

/** Writes the Lua script into `dir` and returns a runner that uses it. */
export async function wrkRunner(dir: string): Promise<(run: WrkRun) => Promise<WrkResult>> {
  const scriptPath = join(dir, "report.lua");
  await writeFile(scriptPath, WRK_SCRIPT);
  let runNumber = 0;
  return async (run) => {
    runNumber += 1;
    const runId = `${process.pid}-${Date.now()}-${runNumber}`;
    const output = await execText(
      "wrk",
      [
        ...["-t", String(run.threads), "-c", String(run.connections), "-d", `${run.seconds}s`],
        ...["--timeout", `${run.timeoutSeconds ?? 5}s`, "-s", scriptPath, `${run.origin}/`, "--", runId, run.path],
      ],
      (run.seconds + 60) * 1000,
    );
    const line = output.split("\n").find((l) => l.startsWith("WRK_RESULT "));
    if (!line) throw new Error(`wrk printed no result line:\n${output}`);
    return JSON.parse(line.slice("WRK_RESULT ".length)) as WrkResult;
  };
}

export interface Row {
  label: string;
  result: WrkResult;
  rps: number;
  errors: number;
}

export function errorsOf(result: WrkResult): number {
  return result.connect_errors + result.read_errors + result.write_errors + result.status_errors + result.timeouts;
}

export function rowOf(label: string, result: WrkResult): Row {
  return { label, result, rps: result.requests / (result.duration_us / 1e6), errors: errorsOf(result) };
}

/**
 * Several wrk runs at the same time (e.g. one per replica) as one row: requests and errors added,
 * the worst p50, p99 and max, the longest duration.
 */
export function combined(results: WrkResult[]): WrkResult {
  const sum = (key: keyof WrkResult) => results.reduce((total, r) => total + r[key], 0);
  const worst = (key: keyof WrkResult) => Math.max(...results.map((r) => r[key]));
  return {
    requests: sum("requests"),
    duration_us: worst("duration_us"),
    connect_errors: sum("connect_errors"),
    read_errors: sum("read_errors"),
    write_errors: sum("write_errors"),
    status_errors: sum("status_errors"),
    timeouts: sum("timeouts"),
    p50_us: worst("p50_us"),
    p99_us: worst("p99_us"),
    max_us: worst("max_us"),
  };
}

const ms = (us: number): string => (us / 1000).toFixed(2);

export function printRows(rows: Row[]): void {
  const header = ["scenario", "req/s", "p50 ms", "p99 ms", "max ms", "requests", "errors"];
  const body = rows.map((row) => [
    row.label,
    row.rps.toFixed(0),
    ms(row.result.p50_us),
    ms(row.result.p99_us),
    ms(row.result.max_us),
    String(row.result.requests),
    String(row.errors),
  ]);
  printTable(header, body);
}

/** A table: the first column left-aligned, the others right-aligned, each line after `indent`. */
export function printTable(header: string[], body: string[][], indent = ""): void {
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((cells) => cells[i].length)));
  for (const cells of [header, ...body]) {
    console.log(
      indent + cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join("  "),
    );
  }
}
