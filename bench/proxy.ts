// What the proxy costs: requests/s and latency for GET / (counts a visit: the realistic path)
// (a) straight to one app replica, (b) through nginx to one replica, (c) through nginx to three,
// (d) through nginx to three over HTTPS (TLS 1.3, keep-alive, the stack's TLS settings and a
// P-256 certificate like the ACME client's), all on loopback with real Postgres and Redis,
// measured with wrk in one run.
//
//   npm run bench                       (defaults: 10 s, 32 connections, 2 threads)
//   BENCH_DURATION=20 BENCH_CONNECTIONS=64 BENCH_THREADS=2 npm run bench
//   BENCH_PATH=/healthz npm run bench   (no database work: shows what the proxy itself costs)
//
// Every request carries a unique X-Request-Id in all three cases (nginx passes a well-formed one
// through), so the app does the same work per request whether nginx is in front or not.
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import {
  type AppReplica,
  type NginxInstance,
  ensureAppBuilt,
  migrateDatabase,
  startAppReplica,
  startNginx,
} from "../test/nginx/harness";
import { http2Style, renderTlsServer, type TlsVars } from "../nginx/render";
import {
  type PostgresServer,
  type RedisServer,
  ensureDebianPackages,
  freePort,
  startPostgres,
  startRedis,
} from "../test/support/services";
import { type Row, type WrkResult, type WrkRun, execText, intSetting, printRows, rowOf, wrkRunner } from "./wrk";

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

type Wrk = (run: WrkRun) => Promise<WrkResult>;

async function measure(label: string, wrk: Wrk, port: number, scheme: "http" | "https" = "http"): Promise<Row> {
  const run = (seconds: number) =>
    wrk({
      origin: `${scheme}://127.0.0.1:${port}`,
      path: settings.path,
      threads: settings.threads,
      connections: settings.connections,
      seconds,
    });
  if (settings.warmupSeconds > 0) await run(settings.warmupSeconds);
  const row = rowOf(label, await run(settings.durationSeconds));
  process.stderr.write(`measured ${label}: ${row.rps.toFixed(0)} req/s\n`);
  return row;
}

function printTable(rows: Row[], nginxVersion: string): void {
  console.log(
    `\nGET ${settings.path}${settings.path === "/" ? " (counts a visit)" : ""}, wrk ${settings.threads} threads, ${settings.connections} connections, ` +
      `${settings.durationSeconds} s each after ${settings.warmupSeconds} s warm-up; ${nginxVersion}; ` +
      `${availableParallelism()} cores shared by wrk, nginx, the app, Postgres and Redis\n`,
  );
  printRows(rows);
  const [a, b, c, d] = rows;
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
  console.log(
    `d/c (HTTPS)   ${ratio(d.rps, c.rps).padStart(5)}  ${ratio(d.result.p99_us, c.result.p99_us).padStart(5)}`,
  );
}

/**
 * nginx's HTTPS part put in place as the container's start script does, with a self-signed
 * P-256 certificate for 127.0.0.1 (wrk does not verify it).
 */
async function tlsFor(dir: string): Promise<TlsVars> {
  await ensureDebianPackages("openssl");
  const tls: TlsVars = {
    listenPort: await freePort(),
    publicPort: 443,
    bundlePath: join(dir, "bundle.pem"),
    activeDir: join(dir, "tls-active"),
    challengeRoot: join(dir, "acme"),
    hstsSeconds: 31536000,
    names: ["127.0.0.1"],
    http2: http2Style((await execText("nginx", ["-v"], 10_000)).split("/")[1]),
  };
  const key = join(dir, "key.pem");
  const cert = join(dir, "cert.pem");
  await execText("openssl", ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key], 30_000);
  await execText(
    "openssl",
    ["req", "-x509", "-new", "-key", key, "-subj", "/CN=127.0.0.1", "-days", "1", "-out", cert],
    30_000,
  );
  const bundle = (await readFile(key, "utf8")) + (await readFile(cert, "utf8"));
  await writeFile(tls.bundlePath, bundle);
  // nginx serves the start script's copy of the bundle, beside the HTTPS part it includes.
  await mkdir(tls.activeDir);
  await writeFile(join(tls.activeDir, "bundle.pem"), bundle);
  await writeFile(join(tls.activeDir, "https.conf"), renderTlsServer(tls, "127.0.0.1"));
  return tls;
}

async function main(): Promise<void> {
  await ensureDebianPackages("wrk", "nginx");
  await ensureAppBuilt();
  const stops: (() => Promise<void>)[] = [];
  const dir = await mkdtemp(join(tmpdir(), "webstack-bench-"));
  stops.push(() => rm(dir, { recursive: true, force: true }));
  try {
    const wrk = await wrkRunner(dir);
    const [postgres, redis]: [PostgresServer, RedisServer] = await Promise.all([startPostgres(), startRedis()]);
    stops.push(
      () => postgres.stop(),
      () => redis.stop(),
    );
    await migrateDatabase(postgres.url);
    const replicas: AppReplica[] = [];
    for (const id of ["replica-1", "replica-2", "replica-3"]) {
      // warn: per-request info lines would add log-piping work the Docker stack does elsewhere.
      const replica = await startAppReplica(id, postgres.url, redis.url, "warn");
      stops.push(() => replica.stop());
      replicas.push(replica);
    }
    const upstream = (replica: AppReplica): string => `127.0.0.1:${replica.port}`;
    // Worker count and access log as in the Docker stack ("auto": one per core; lines in batches).
    const deployed = { workerProcesses: "auto", accessLogBuffered: true } as const;
    const proxyOne: NginxInstance = await startNginx([upstream(replicas[0])], deployed);
    stops.push(() => proxyOne.stop());
    const proxyThree: NginxInstance = await startNginx(replicas.map(upstream), deployed);
    stops.push(() => proxyThree.stop());
    const tls = await tlsFor(dir);
    const proxyTls: NginxInstance = await startNginx(replicas.map(upstream), { ...deployed, tls });
    stops.push(() => proxyTls.stop());
    const nginxVersion = (await execText("nginx", ["-v"], 10_000)).trim().replace("nginx version: ", "");

    const rows = [
      await measure("a  direct -> 1 replica", wrk, replicas[0].port),
      await measure("b  nginx -> 1 replica", wrk, proxyOne.port),
      await measure("c  nginx -> 3 replicas", wrk, proxyThree.port),
      await measure("d  nginx -> 3, HTTPS", wrk, tls.listenPort, "https"),
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
