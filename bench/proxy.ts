// What the proxy costs: requests/s and latency for GET / (counts a visit: the realistic path)
// (a) straight to one app replica, (b) through nginx to one replica, (c) through nginx to three,
// all on loopback with real Postgres and Redis, measured with wrk in one run.
//
//   npm run bench                       (defaults: 10 s, 32 connections, 2 threads)
//   BENCH_DURATION=20 BENCH_CONNECTIONS=64 BENCH_THREADS=2 npm run bench
//   BENCH_PATH=/healthz npm run bench   (no database work: shows what the proxy itself costs)
//
// Every request carries a unique X-Request-Id in all three cases (nginx passes a well-formed one
// through), so the app does the same work per request whether nginx is in front or not.
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import {
  type AppReplica,
  type NginxInstance,
  ensureAppBuilt,
  startAppReplica,
  startNginx,
} from "../test/nginx/harness";
import {
  type PostgresServer,
  type RedisServer,
  ensureDebianPackages,
  startPostgres,
  startRedis,
} from "../test/support/services";

function intSetting(name: string, fallback: number, min: number, max: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new Error(`${name} is ${JSON.stringify(raw)}; allowed: an integer from ${min} to ${max}`);
  }
  return value;
}

const settings = {
  durationSeconds: intSetting("BENCH_DURATION", 10, 1, 600),
  connections: intSetting("BENCH_CONNECTIONS", 32, 1, 10_000),
  threads: intSetting("BENCH_THREADS", 2, 1, 64),
  warmupSeconds: intSetting("BENCH_WARMUP", 3, 0, 60),
  path: benchPath(),
};

function benchPath(): string {
  const raw = process.env.BENCH_PATH ?? "/";
  if (!/^\/[A-Za-z0-9._~/-]*$/.test(raw)) {
    throw new Error(`BENCH_PATH is ${JSON.stringify(raw)}; allowed: a URL path such as "/" or "/healthz"`);
  }
  return raw;
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

interface WrkResult {
  requests: number;
  duration_us: number;
  connect_errors: number;
  read_errors: number;
  write_errors: number;
  status_errors: number;
  timeouts: number;
  p50_us: number;
  p99_us: number;
  max_us: number;
}

function execText(file: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: timeoutMs, maxBuffer: 4 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${file} ${args.join(" ")} failed: ${error.message}\n${stdout}${stderr}`));
      else resolve(stdout + stderr);
    });
  });
}

let runNumber = 0;
async function wrk(scriptPath: string, port: number, seconds: number): Promise<WrkResult> {
  runNumber += 1;
  const runId = `${process.pid}-${runNumber}`;
  const output = await execText(
    "wrk",
    [
      "-t",
      String(settings.threads),
      "-c",
      String(settings.connections),
      "-d",
      `${seconds}s`,
      "--timeout",
      "5s",
      "-s",
      scriptPath,
      `http://127.0.0.1:${port}/`,
      "--",
      runId,
      settings.path,
    ],
    (seconds + 60) * 1000,
  );
  const line = output.split("\n").find((l) => l.startsWith("WRK_RESULT "));
  if (!line) throw new Error(`wrk printed no result line:\n${output}`);
  return JSON.parse(line.slice("WRK_RESULT ".length)) as WrkResult;
}

interface Row {
  label: string;
  result: WrkResult;
  rps: number;
  errors: number;
}

async function measure(label: string, scriptPath: string, port: number): Promise<Row> {
  if (settings.warmupSeconds > 0) await wrk(scriptPath, port, settings.warmupSeconds);
  const result = await wrk(scriptPath, port, settings.durationSeconds);
  const errors =
    result.connect_errors + result.read_errors + result.write_errors + result.status_errors + result.timeouts;
  const row = { label, result, rps: result.requests / (result.duration_us / 1e6), errors };
  process.stderr.write(`measured ${label}: ${row.rps.toFixed(0)} req/s\n`);
  return row;
}

const ms = (us: number): string => (us / 1000).toFixed(2);

function printTable(rows: Row[], nginxVersion: string): void {
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
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((cells) => cells[i].length)));
  const format = (cells: string[]): string =>
    cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join("  ");
  console.log(
    `\nGET ${settings.path}${settings.path === "/" ? " (counts a visit)" : ""}, wrk ${settings.threads} threads, ${settings.connections} connections, ` +
      `${settings.durationSeconds} s each after ${settings.warmupSeconds} s warm-up; ${nginxVersion}; ` +
      `${availableParallelism()} cores shared by wrk, nginx, the app, Postgres and Redis\n`,
  );
  console.log(format(header));
  for (const cells of body) console.log(format(cells));
  const [a, b, c] = rows;
  const ratio = (x: number, y: number): string => (x / y).toFixed(2);
  console.log("\nratios        req/s    p99");
  console.log(
    `b/a           ${ratio(b.rps, a.rps).padStart(5)}  ${ratio(b.result.p99_us, a.result.p99_us).padStart(5)}`,
  );
  console.log(
    `c/a           ${ratio(c.rps, a.rps).padStart(5)}  ${ratio(c.result.p99_us, a.result.p99_us).padStart(5)}`,
  );
  console.log(
    `c/b           ${ratio(c.rps, b.rps).padStart(5)}  ${ratio(c.result.p99_us, b.result.p99_us).padStart(5)}`,
  );
}

async function main(): Promise<void> {
  await ensureDebianPackages("wrk", "nginx");
  await ensureAppBuilt();
  const stops: (() => Promise<void>)[] = [];
  const dir = await mkdtemp(join(tmpdir(), "webstack-bench-"));
  stops.push(() => rm(dir, { recursive: true, force: true }));
  try {
    const scriptPath = join(dir, "report.lua");
    await writeFile(scriptPath, WRK_SCRIPT);
    const [postgres, redis]: [PostgresServer, RedisServer] = await Promise.all([startPostgres(), startRedis()]);
    stops.push(
      () => postgres.stop(),
      () => redis.stop(),
    );
    const replicas: AppReplica[] = [];
    for (const id of ["replica-1", "replica-2", "replica-3"]) {
      // warn: per-request info lines would add log-piping work the Docker stack does elsewhere.
      const replica = await startAppReplica(id, postgres.url, redis.url, "warn");
      stops.push(() => replica.stop());
      replicas.push(replica);
    }
    const upstream = (replica: AppReplica): string => `127.0.0.1:${replica.port}`;
    // Worker count as in the Docker stack ("auto": one per core).
    const proxyOne: NginxInstance = await startNginx([upstream(replicas[0])], { workerProcesses: "auto" });
    stops.push(() => proxyOne.stop());
    const proxyThree: NginxInstance = await startNginx(replicas.map(upstream), { workerProcesses: "auto" });
    stops.push(() => proxyThree.stop());
    const nginxVersion = (await execText("nginx", ["-v"], 10_000)).trim().replace("nginx version: ", "");

    const rows = [
      await measure("a  direct -> 1 replica", scriptPath, replicas[0].port),
      await measure("b  nginx -> 1 replica", scriptPath, proxyOne.port),
      await measure("c  nginx -> 3 replicas", scriptPath, proxyThree.port),
    ];
    printTable(rows, nginxVersion);
  } finally {
    for (const stop of stops.reverse()) {
      await stop().catch((error: Error) => process.stderr.write(`cleanup failed: ${error.message}\n`));
    }
  }
}

main().catch((error: Error) => {
  process.stderr.write(`bench failed: ${error.stack ?? error.message}\n`);
  process.exitCode = 1;
});
