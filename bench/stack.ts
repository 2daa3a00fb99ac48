// What the deployed stack serves: the dev stack (local target, 3 replicas) realised on the real
// Docker engine by the engine tier's machinery, then loaded with wrk from the host, each path three
// ways: through the published port (Docker's proxy, then nginx), to nginx's container address, and
// straight to replicas' addresses. Prints the figures, where each row's CPU went (by container, and
// the machine's in all), the ratios the project holds itself to, then the many-clients run, and
// tears the stack down. A benchmark, not a test: it fails only when it cannot measure.
//
//   npm run bench:stack
//   BENCH_DURATION=10 BENCH_CONNECTIONS=32 BENCH_MANY_SECONDS=0 npm run bench:stack
//
// Each row is measured BENCH_ROUNDS times (default 3), the rows taking turns, and its median run
// (by req/s) is the figure the table and the ratios use; the spread of each row is printed too,
// so a ratio can be told from the noise of a shared 2-core machine.
//
// Settings: BENCH_DURATION (s per row, default 8), BENCH_WARMUP (s before each row, 2),
// BENCH_CONNECTIONS (32), BENCH_THREADS (2), BENCH_REPLICAS (3), BENCH_MANY_CLIENTS (1000),
// BENCH_MANY_SECONDS (60; 0 skips the many-clients run), BENCH_IDLE (5000 idle connections held
// during one more counter row; 0 skips it), BENCH_KEEP=1 (leave the stack running).
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { connect, type Socket } from "node:net";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { APP_PORT } from "../components/specs/containers";
import { ensureStandinImages, startEngine, type Engine } from "../test/engine/support/engine";
import { EngineRealiser } from "../test/engine/support/realiser";
import { deploy, eventually, STANDIN_SETTINGS } from "../test/engine/support/scenario";
import { ensureDebianPackages, freePort } from "../test/support/services";
import {
  combined,
  errorsOf,
  intSetting,
  printRows,
  printTable,
  rowOf,
  wrkRunner,
  execText,
  type Row,
  type WrkResult,
  type WrkRun,
} from "./wrk";

const settings = {
  durationSeconds: intSetting("BENCH_DURATION", 8, 1, 600),
  warmupSeconds: intSetting("BENCH_WARMUP", 2, 0, 60),
  connections: intSetting("BENCH_CONNECTIONS", 32, 3, 10_000),
  threads: intSetting("BENCH_THREADS", 2, 1, 64),
  replicas: intSetting("BENCH_REPLICAS", 3, 1, 10),
  manyClients: intSetting("BENCH_MANY_CLIENTS", 1000, 1, 15_000),
  manySeconds: intSetting("BENCH_MANY_SECONDS", 60, 0, 600),
  idle: intSetting("BENCH_IDLE", 5000, 0, 15_000),
  rounds: intSetting("BENCH_ROUNDS", 3, 1, 20),
};

const STACK = "bench";
/** BENCH_KEEP=1 leaves the stack and the engine running afterwards, to look into a figure. */
const keep = process.env.BENCH_KEEP === "1";
const PREFIX = `webstack-${STACK}`;

type Wrk = (run: WrkRun) => Promise<WrkResult>;

/** The addresses a row can load: the published port, nginx's container, and each replica's. */
interface Targets {
  published: string;
  nginx: string;
  replicas: string[];
}

/** A container's address on the network it shares with nginx (the front network). */
async function addressOn(engine: Engine, container: string, network: string): Promise<string> {
  const info = await engine.docker.getContainer(container).inspect();
  const address = info.NetworkSettings.Networks[network]?.IPAddress;
  if (address === undefined || address === "") throw new Error(`${container} has no address on ${network}`);
  return address;
}

async function targetsOf(engine: Engine, port: number): Promise<Targets> {
  const nginx = await engine.docker.getContainer(`${PREFIX}-nginx`).inspect();
  const networks = Object.keys(nginx.NetworkSettings.Networks);
  if (networks.length !== 1) throw new Error(`nginx is on ${networks.length} networks, expected its front one only`);
  const front = networks[0];
  const replicas: string[] = [];
  for (let i = 1; i <= settings.replicas; i += 1) {
    replicas.push(`http://${await addressOn(engine, `${PREFIX}-app-r1-${i}`, front)}:${APP_PORT}`);
  }
  return {
    published: `http://127.0.0.1:${port}`,
    nginx: `http://${await addressOn(engine, `${PREFIX}-nginx`, front)}:80`,
    replicas,
  };
}

/** CPU time so far, in ns: each of the stack's running containers' (by name), and the machine's busy time. */
interface CpuSample {
  containers: Map<string, number>;
  machine: number;
}

/** CPU time a row's measured run cost, in µs per request: by role (the replicas together), and the machine's. */
interface CpuShare {
  roles: Map<string, number>;
  machine: number;
}

/** USER_HZ: /proc/stat counts in hundredths of a second on Linux. */
const CLOCK_TICK_NS = 10_000_000;

async function cpuSample(engine: Engine): Promise<CpuSample> {
  const listed = await engine.docker.listContainers({ filters: { name: [`${PREFIX}-`] } });
  const containers = new Map<string, number>();
  await Promise.all(
    listed.map(async (c) => {
      // One sample, not the default two a second apart: the cumulative figure is all this needs.
      const stats = await engine.docker.getContainer(c.Id).stats({ stream: false, "one-shot": true });
      containers.set(c.Names[0].replace(/^\//, ""), stats.cpu_stats.cpu_usage.total_usage);
    }),
  );
  // "cpu  user nice system idle iowait irq softirq steal ...": busy is all but idle and iowait.
  const fields = (await readFile("/proc/stat", "utf8")).split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
  const busy = fields.slice(0, 8).reduce((sum, ticks, i) => (i === 3 || i === 4 ? sum : sum + ticks), 0);
  return { containers, machine: busy * CLOCK_TICK_NS };
}

/** The replicas' names end in the release and their number; every other container is its role. */
function roleOf(container: string): string {
  const role = container.slice(PREFIX.length + 1);
  return role.startsWith("app-") ? "replicas" : role;
}

function cpuShare(before: CpuSample, after: CpuSample, requests: number): CpuShare {
  const perRequestUs = (ns: number) => ns / 1000 / Math.max(1, requests);
  const roles = new Map<string, number>();
  for (const [name, ns] of after.containers) {
    const role = roleOf(name);
    roles.set(role, (roles.get(role) ?? 0) + perRequestUs(ns - (before.containers.get(name) ?? ns)));
  }
  return { roles, machine: perRequestUs(after.machine - before.machine) };
}

/** A row and the CPU its run cost. */
type Measured = Row & { cpu: CpuShare };

/** One row: a warm-up, then the measured run; `origins` share the connections (one wrk each). */
async function measure(wrk: Wrk, engine: Engine, label: string, path: string, origins: string[]): Promise<Measured> {
  const each = Math.max(1, Math.floor(settings.connections / origins.length));
  const run = (seconds: number) =>
    Promise.all(
      origins.map((origin) =>
        wrk({
          origin,
          path,
          threads: origins.length > 1 ? 1 : settings.threads,
          connections: each,
          seconds,
        }),
      ),
    );
  if (settings.warmupSeconds > 0) await run(settings.warmupSeconds);
  const before = await cpuSample(engine);
  const row = rowOf(label, combined(await run(settings.durationSeconds)));
  const cpu = cpuShare(before, await cpuSample(engine), row.result.requests);
  process.stderr.write(`measured ${label}: ${row.rps.toFixed(0)} req/s\n`);
  return { ...row, cpu };
}

/** Where each row's CPU went, indented so that no line reads as a row of the main table. */
function printCpu(rows: Measured[]): void {
  const roles = ["replicas", "postgres", "nginx", "redis", "backup"];
  const header = ["scenario", ...roles, "containers", "machine"];
  const body = rows.map((row) => {
    const containers = [...row.cpu.roles.values()].reduce((sum, us) => sum + us, 0);
    return [
      row.label,
      ...roles.map((role) => (row.cpu.roles.get(role) ?? 0).toFixed(0)),
      containers.toFixed(0),
      row.cpu.machine.toFixed(0),
    ];
  });
  printTable(header, body, "  ");
}

/** Opens `count` connections that never send a request; resolves once each is open or failed. */
async function holdIdle(port: number, count: number): Promise<{ sockets: Socket[]; failed: number }> {
  const sockets: Socket[] = [];
  let failed = 0;
  const opening: Promise<void>[] = [];
  for (let i = 0; i < count; i += 1) {
    opening.push(
      new Promise<void>((resolve) => {
        const socket = connect({ host: "127.0.0.1", port });
        socket.once("connect", () => {
          sockets.push(socket);
          resolve();
        });
        socket.once("error", () => {
          failed += 1;
          resolve();
        });
      }),
    );
    // A few hundred at a time, as many clients would arrive, not all in one instant.
    if (i % 250 === 249) await Promise.all(opening.slice(-250));
  }
  await Promise.all(opening);
  for (const socket of sockets) socket.on("error", () => undefined);
  return { sockets, failed };
}

interface Goal {
  what: string;
  value: number;
  /** True when the value meets the goal. */
  met: boolean;
  goal: string;
}

/** The run with the median req/s (the lower middle one of an even count). */
function medianRow<R extends Row>(runs: R[]): R {
  if (runs.length === 0) throw new Error("no run to take a median of");
  const sorted = [...runs].sort((a, b) => a.rps - b.rps);
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

function goals(rows: Record<string, Row>): Goal[] {
  const ratio = (a: number, b: number) => (b === 0 ? 0 : a / b);
  const counterPublished = rows["counter published"];
  const p99OverP50 = ratio(counterPublished.result.p99_us, counterPublished.result.p50_us);
  const list: Goal[] = [
    {
      what: "counter / healthz, both through the published port",
      value: ratio(counterPublished.rps, rows["healthz published"].rps),
      met: false,
      goal: ">= 0.60",
    },
    {
      what: "healthz through nginx's address / direct to one replica",
      value: ratio(rows["healthz nginx"].rps, rows["healthz one replica"].rps),
      met: false,
      goal: ">= 0.50",
    },
    {
      what: `counter direct to ${settings.replicas} replicas at once / to one`,
      value: ratio(rows["counter all replicas"].rps, rows["counter one replica"].rps),
      met: false,
      goal: ">= 1.00",
    },
    { what: "counter through the published port: p99 / p50", value: p99OverP50, met: false, goal: "<= 3.00" },
  ];
  return list.map((g) => {
    const bound = Number(g.goal.slice(3));
    return { ...g, met: g.goal.startsWith(">=") ? g.value >= bound : g.value <= bound };
  });
}

async function main(): Promise<void> {
  await ensureDebianPackages("wrk");
  const cleanups: Array<() => Promise<unknown>> = [];
  try {
    const dir = await mkdtemp(join(tmpdir(), "webstack-bench-stack-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const wrk = await wrkRunner(dir);

    const engine = await startEngine();
    if (!keep) cleanups.push(() => engine.stop());
    await ensureStandinImages(engine);
    const realiser = new EngineRealiser({ docker: engine.docker, stack: STACK });
    await realiser.destroy();
    if (!keep) cleanups.push(() => realiser.destroy());
    const port = await freePort();
    const started = Date.now();
    await deploy(realiser, {
      target: "local",
      replicas: String(settings.replicas),
      httpPort: String(port),
      release: "r1",
      ...STANDIN_SETTINGS,
    });
    const targets = await targetsOf(engine, port);
    // Docker publishes a port through a docker-proxy process per port, or (userland-proxy off, as on
    // webstack's cloud hosts) by iptables alone.
    const viaProxy = (await execText("ps", ["-eo", "args"], 10_000)).includes(`-host-port ${port} `);
    await eventually("the stack to count a visit through its published port", 90, async () => {
      const response = await fetch(`${targets.published}/`, { signal: AbortSignal.timeout(5000) });
      return response.status === 200 ? true : undefined;
    });
    process.stderr.write(`stack up in ${((Date.now() - started) / 1000).toFixed(0)} s\n`);

    const plan: [key: string, label: string, path: string, origins: string[]][] = [];
    for (const [name, path] of [
      ["counter", "/"],
      ["healthz", "/healthz"],
    ] as const) {
      plan.push(
        [`${name} published`, `${name}  published port`, path, [targets.published]],
        [`${name} nginx`, `${name}  nginx's address`, path, [targets.nginx]],
        [`${name} one replica`, `${name}  one replica`, path, [targets.replicas[0]]],
        [`${name} all replicas`, `${name}  ${settings.replicas} replicas at once`, path, targets.replicas],
      );
    }
    // Rows take turns, so a slow spell of the machine spreads over all of them, not one.
    const runs: Record<string, Measured[]> = {};
    for (let round = 1; round <= settings.rounds; round += 1) {
      process.stderr.write(`round ${round} of ${settings.rounds}\n`);
      for (const [key, label, path, origins] of plan) {
        (runs[key] ??= []).push(await measure(wrk, engine, label, path, origins));
      }
    }
    const rows: Record<string, Measured> = Object.fromEntries(
      Object.entries(runs).map(([key, measured]) => [key, medianRow(measured)]),
    );

    let idle: { held: number; failed: number; stillOpen: number; row: Row } | undefined;
    if (settings.idle > 0) {
      process.stderr.write(`idle connections: opening ${settings.idle}\n`);
      const { sockets, failed } = await holdIdle(port, settings.idle);
      // Shorter than nginx's 10 s client_header_timeout, which closes a connection that never sends.
      const row = rowOf(
        `counter  published port, ${sockets.length} idle connections held`,
        await wrk({
          origin: targets.published,
          path: "/",
          threads: settings.threads,
          connections: settings.connections,
          seconds: 5,
        }),
      );
      const stillOpen = sockets.filter((socket) => !socket.destroyed && socket.readyState === "open").length;
      for (const socket of sockets) socket.destroy();
      idle = { held: sockets.length, failed, stillOpen, row };
    }

    let many: WrkResult | undefined;
    if (settings.manySeconds > 0) {
      process.stderr.write(`many clients: ${settings.manyClients} for ${settings.manySeconds} s\n`);
      many = await wrk({
        origin: targets.published,
        path: "/",
        threads: settings.threads,
        connections: settings.manyClients,
        seconds: settings.manySeconds,
        timeoutSeconds: 10,
      });
    }

    console.log(
      `\nThe dev stack on the real engine (local target, ${settings.replicas} replicas, stand-in images), ` +
        `loaded from the host by wrk: ${settings.threads} threads, ${settings.connections} keep-alive connections, ` +
        `${settings.durationSeconds} s per row after ${settings.warmupSeconds} s warm-up, the median of ` +
        `${settings.rounds} run${settings.rounds === 1 ? "" : "s"} of each; ` +
        `${availableParallelism()} cores shared by wrk and every container; the published port ` +
        `${viaProxy ? "through docker-proxy (Docker's userland proxy)" : "by iptables (userland proxy off)"}. ` +
        `"counter" is GET / (counts a visit, ` +
        `each request with its own X-Request-Id); "healthz" is GET /healthz.\n`,
    );
    printRows(Object.values(rows));
    if (settings.rounds > 1) {
      console.log("\nspread of each row's runs (req/s, lowest to highest)");
      for (const [key, measured] of Object.entries(runs)) {
        const rps = measured.map((r) => r.rps).sort((a, b) => a - b);
        console.log(`  ${rows[key].label.padEnd(34)} ${rps.map((r) => r.toFixed(0)).join(" / ")}`);
      }
    }
    console.log(
      "\nCPU per request in µs, each row's median run: each container's (its cgroup's, through the engine's " +
        "stats), and the machine's busy time (/proc/stat: wrk, dockerd and the kernel's network work too)",
    );
    printCpu(Object.values(rows));
    console.log("\nratios (of the medians)");
    for (const g of goals(rows)) {
      console.log(`  ${g.value.toFixed(2).padStart(6)}  ${g.met ? "meets" : "BELOW"} ${g.goal}  ${g.what}`);
    }
    if (idle !== undefined) {
      console.log(
        `\n${idle.held} idle connections opened to the published port (${idle.failed} failed to open), ` +
          `${idle.stillOpen} still open after 5 s of counter load alongside them:`,
      );
      printRows([idle.row]);
    }
    if (many !== undefined) {
      const rps = many.requests / (many.duration_us / 1e6);
      console.log(
        `\n${settings.manyClients} keep-alive clients on the counter through the published port for ${settings.manySeconds} s: ` +
          `${many.requests} responses (${rps.toFixed(0)} req/s), p50 ${(many.p50_us / 1000).toFixed(0)} ms, ` +
          `p99 ${(many.p99_us / 1000).toFixed(0)} ms; connect errors ${many.connect_errors}, ` +
          `read errors (resets) ${many.read_errors}, write errors ${many.write_errors}, ` +
          `responses >= 400 ${many.status_errors}, timeouts ${many.timeouts} (errors in all: ${errorsOf(many)})`,
      );
    }
  } finally {
    for (const cleanup of cleanups.reverse()) {
      await cleanup().catch((error: Error) => process.stderr.write(`cleanup failed: ${error.message}\n`));
    }
  }
}

main().catch((error: Error) => {
  process.stderr.write(`bench:stack failed: ${error.stack ?? error.message}\n`);
  process.exitCode = 1;
});
