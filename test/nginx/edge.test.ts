// What the edge keeps from the internet, in a real nginx in front of real app replicas: admin
// routes, the replica header, readiness, one client's flood (per-address limits), and clients that
// trickle or idle (timeouts).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  type PostgresServer,
  type RedisServer,
  ensureDebianPackages,
  startPostgres,
  startRedis,
} from "../support/services";
import {
  type AppReplica,
  type NginxInstance,
  type Response,
  ensureAppBuilt,
  migrateDatabase,
  request,
  sleep,
  startAppReplica,
  startNginx,
} from "./harness";

const ADMIN_TOKEN = "edge-test-admin-token-3c9f1e7a";
const AUTHORIZED = { authorization: `Bearer ${ADMIN_TOKEN}` };
const NOT_FOUND_AT_EDGE = '{"error":"not found"}\n';

function json(res: Response): Record<string, unknown> {
  return JSON.parse(res.body.toString("utf8")) as Record<string, unknown>;
}

const cleanups: (() => Promise<void>)[] = [];
let postgres: PostgresServer;
let redis: RedisServer;
const replicas: AppReplica[] = [];
let upstreams: string[];

before(async () => {
  await ensureAppBuilt();
  [postgres, redis] = await Promise.all([startPostgres(), startRedis()]);
  cleanups.push(
    () => postgres.stop(),
    () => redis.stop(),
  );
  await migrateDatabase(postgres.url);
  const secrets = await mkdtemp(join(tmpdir(), "webstack-edge-"));
  cleanups.push(() => rm(secrets, { recursive: true, force: true }));
  const tokenFile = join(secrets, "admin-token");
  await writeFile(tokenFile, `${ADMIN_TOKEN}\n`, { mode: 0o400 });
  for (const id of ["edge-1", "edge-2"]) {
    const replica = await startAppReplica(id, postgres.url, redis.url, "info", { ADMIN_TOKEN_FILE: tokenFile });
    cleanups.push(() => replica.stop());
    replicas.push(replica);
  }
  upstreams = replicas.map((replica) => `127.0.0.1:${replica.port}`);
});

after(async () => {
  for (const cleanup of cleanups.reverse()) {
    await cleanup().catch((error: Error) => process.stderr.write(`cleanup failed: ${error.message}\n`));
  }
});

async function edge(overrides: Parameters<typeof startNginx>[1] = {}): Promise<NginxInstance> {
  const instance = await startNginx(upstreams, overrides);
  cleanups.push(() => instance.stop());
  return instance;
}

/** The access-log line of a request nginx has answered (written just after the response). */
async function logged(instance: NginxInstance, requestId: string): Promise<Record<string, unknown>> {
  for (let waited = 0; waited < 5000; waited += 50) {
    const line = instance.accessLog().find((entry) => entry.request_id === requestId);
    if (line) return line;
    await sleep(50);
  }
  throw new Error(`no access-log line for request ${requestId}`);
}

async function visits(port: number): Promise<number> {
  const res = await request(port, { path: "/count" });
  assert.equal(res.status, 200);
  return json(res).count as number;
}

describe("admin routes at the edge", () => {
  it("are answered 404 by nginx by default, however spelled, and never reach the app", async () => {
    const closed = await edge();
    await request(closed.port, { path: "/" });
    const before = await visits(closed.port);
    const spellings = [
      "/reset",
      "/reset?now=1",
      "/reset/",
      "/RESET",
      "/Reset",
      "/%72eset",
      "/%2Freset",
      "//reset",
      "/./reset",
      "/nothing/../reset",
      "/admin",
      "/admin/",
      "/admin/users",
    ];
    for (const [i, path] of spellings.entries()) {
      const requestId = `blocked-admin-${i}`;
      const res = await request(closed.port, {
        method: "POST",
        path,
        headers: { ...AUTHORIZED, "x-request-id": requestId },
      });
      assert.equal(res.status, 404, `POST ${path}`);
      assert.equal(res.body.toString("utf8"), NOT_FOUND_AT_EDGE, `POST ${path}`);
      assert.equal(res.headers["content-type"], "application/json");
      assert.equal(res.headers["www-authenticate"], undefined, `POST ${path} reached the app`);
      const line = await logged(closed, requestId);
      assert.equal(line.upstream_addr, "", `POST ${path} was proxied to ${String(line.upstream_addr)}`);
    }
    assert.equal(await visits(closed.port), before, "the count did not change");
    // Nearby paths are the app's business, not blocked.
    const nearby = await request(closed.port, {
      method: "POST",
      path: "/resetting",
      headers: { "x-request-id": "near-admin" },
    });
    assert.equal(nearby.status, 404);
    assert.match(String((await logged(closed, "near-admin")).upstream_addr), /^127\.0\.0\.1:\d+$/);
  });

  it("reach the app when adminRoutes is on, and the app still wants its token", async () => {
    const open = await edge({ adminRoutes: true });
    await request(open.port, { path: "/" });
    assert.ok((await visits(open.port)) > 0);

    const missing = await request(open.port, { method: "POST", path: "/reset" });
    assert.equal(missing.status, 401);
    assert.equal(missing.headers["www-authenticate"], 'Bearer realm="webstack"');
    const wrong = await request(open.port, {
      method: "POST",
      path: "/reset",
      headers: { authorization: "Bearer not-the-admin-token" },
    });
    assert.equal(wrong.status, 401);
    const crossSite = await request(open.port, {
      method: "POST",
      path: "/reset",
      headers: { ...AUTHORIZED, host: "shop.example", origin: "https://attacker.example" },
    });
    assert.equal(crossSite.status, 403);
    assert.ok((await visits(open.port)) > 0, "nothing was reset yet");

    // A browser on the site itself: nginx forwards Host without the port the origin carries.
    const done = await request(open.port, {
      method: "POST",
      path: "/reset",
      headers: {
        ...AUTHORIZED,
        host: `shop.example:${open.port}`,
        origin: `http://shop.example:${open.port}`,
        "sec-fetch-site": "same-origin",
      },
    });
    assert.equal(done.status, 200);
    assert.deepEqual(json(done), { count: 0 });
    assert.equal(await visits(open.port), 0);
  });
});

describe("what the edge hides", () => {
  it("drops X-Served-By from responses; the replicas still send it", async () => {
    const closed = await edge();
    for (let i = 0; i < 4; i += 1) {
      const res = await request(closed.port, { path: "/" });
      assert.equal(res.status, 200);
      assert.equal(res.headers["x-served-by"], undefined);
      assert.ok(["edge-1", "edge-2"].includes(String(json(res).replica)));
    }
    const notFound = await request(closed.port, { path: "/no-such-page" });
    assert.equal(notFound.status, 404);
    assert.equal(notFound.headers["x-served-by"], undefined);
    const direct = await request(replicas[0].port, { path: "/" });
    assert.equal(direct.headers["x-served-by"], "edge-1");
  });

  it("answers /readyz 404 itself, however spelled; the replicas still answer it directly", async () => {
    const closed = await edge();
    for (const [i, path] of ["/readyz", "/readyz?full=1", "//readyz", "/ready%7A", "/./readyz"].entries()) {
      const requestId = `hidden-readyz-${i}`;
      const res = await request(closed.port, { path, headers: { "x-request-id": requestId } });
      assert.equal(res.status, 404, `GET ${path}`);
      assert.equal(res.body.toString("utf8"), NOT_FOUND_AT_EDGE);
      assert.equal((await logged(closed, requestId)).upstream_addr, "");
    }
    const direct = await request(replicas[1].port, { path: "/readyz" });
    assert.equal(direct.status, 200);
    assert.deepEqual(json(direct), { postgres: "up", redis: "up" });
    assert.equal((await request(closed.port, { path: "/nginx-health" })).status, 200);
    assert.equal((await request(closed.port, { path: "/healthz" })).status, 200);
  });
});

// ---------------------------------------------------------------------------------------------

interface Tally {
  statuses: Map<number, number>;
  errors: string[];
  total: number;
  slowestMs: number;
}

function tally(): Tally {
  return { statuses: new Map(), errors: [], total: 0, slowestMs: 0 };
}

async function count(t: Tally, outcome: () => Promise<Response>): Promise<void> {
  const startedAt = performance.now();
  try {
    const res = await outcome();
    t.statuses.set(res.status, (t.statuses.get(res.status) ?? 0) + 1);
  } catch (error) {
    t.errors.push((error as Error).message);
  }
  t.total += 1;
  t.slowestMs = Math.max(t.slowestMs, performance.now() - startedAt);
}

function describeTally(t: Tally): string {
  const statuses = [...t.statuses.entries()].sort(([a], [b]) => a - b).map(([status, n]) => `${n}×${status}`);
  return `${t.total} requests: ${[...statuses, `${t.errors.length} errors`].join(", ")}; slowest ${t.slowestMs.toFixed(0)} ms`;
}

// Runs inside wrk: done() prints one JSON line so nothing depends on wrk's human-readable layout.
const WRK_SCRIPT = `
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout))
end
`;

interface WrkSummary {
  requests: number;
  duration_us: number;
  connect_errors: number;
  read_errors: number;
  write_errors: number;
  /** Responses other than 2xx and 3xx. */
  status_errors: number;
  timeouts: number;
}

async function runWrk(port: number, path: string, connections: number, seconds: number): Promise<WrkSummary> {
  const dir = await mkdtemp(join(tmpdir(), "webstack-wrk-"));
  try {
    const script = join(dir, "summary.lua");
    await writeFile(script, WRK_SCRIPT);
    const args = [
      "-t",
      "2",
      "-c",
      String(connections),
      "-d",
      `${seconds}s`,
      "--timeout",
      "10s",
      "-s",
      script,
      `http://127.0.0.1:${port}${path}`,
    ];
    const output = await new Promise<string>((resolve, reject) => {
      execFile("wrk", args, { timeout: (seconds + 60) * 1000, maxBuffer: 4 * 1024 * 1024 }, (error, stdout, stderr) => {
        if (error) reject(new Error(`wrk ${args.join(" ")} failed: ${error.message}\n${stdout}${stderr}`));
        else resolve(stdout + stderr);
      });
    });
    const line = output.split("\n").find((l) => l.startsWith("WRK_RESULT "));
    if (!line) throw new Error(`wrk printed no result line:\n${output}`);
    return JSON.parse(line.slice("WRK_RESULT ".length)) as WrkSummary;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Requests from 127.0.0.2, paced well below the limits, until `stop` says so. */
async function politeClient(port: number, stop: () => boolean, t: Tally): Promise<void> {
  const loop = async (): Promise<void> => {
    while (!stop()) {
      await count(t, () => request(port, { path: "/count", localAddress: "127.0.0.2" }));
      await sleep(100);
    }
  };
  await Promise.all([loop(), loop()]);
}

describe("per-address limits", () => {
  it("limit one client opening 2,000 connections at once, while another address is served without a failure", async (t) => {
    await ensureDebianPackages("wrk");
    const rate = 50;
    const burst = 100;
    // Room for every connection at once: this is the per-address limit under test, not the
    // total capacity (see nginx/README.md on what worker_connections bounds).
    const limited = await edge({
      limitConnPerIp: 20,
      limitRatePerIp: rate,
      limitBurst: burst,
      workerConnections: 8192,
    });
    const connections = 2000;
    const floodSeconds = 4;
    const polite = tally();
    let flooding = true;
    const politeDone = politeClient(limited.port, () => !flooding, polite);
    let flood: WrkSummary;
    try {
      // wrk in its own process, from 127.0.0.1: the test's event loop stays free for the other client.
      flood = await runWrk(limited.port, "/count", connections, floodSeconds);
    } finally {
      flooding = false;
      await politeDone;
    }

    const fromFlood = limited.accessLog().filter((line) => line.remote_addr === "127.0.0.1");
    const statuses = new Map<number, number>();
    for (const line of fromFlood) statuses.set(Number(line.status), (statuses.get(Number(line.status)) ?? 0) + 1);
    const served = statuses.get(200) ?? 0;
    const refused = statuses.get(429) ?? 0;
    const seconds = flood.duration_us / 1e6;
    t.diagnostic(
      `flood from 127.0.0.1: wrk, ${connections} connections for ${seconds.toFixed(2)} s: ${flood.requests} requests answered ` +
        `(nginx logged ${[...statuses].map(([status, n]) => `${n}×${status}`).join(", ")}); ` +
        `socket errors: connect ${flood.connect_errors}, read ${flood.read_errors}, write ${flood.write_errors}, timeouts ${flood.timeouts}`,
    );
    t.diagnostic(`other client from 127.0.0.2 meanwhile: ${describeTally(polite)}`);
    assert.equal(flood.connect_errors, 0, "every connection of the flood was opened");
    assert.ok(flood.requests >= connections, `the flood sent ${flood.requests} requests`);
    // 499: requests wrk still had in flight when it stopped and closed its connections.
    assert.deepEqual(
      [...statuses.keys()].filter((status) => ![200, 429, 499].includes(status)),
      [],
      "the flood got only 200s and 429s",
    );
    assert.ok(
      refused >= (served + refused) * 0.9,
      `expected nearly all of the flood refused with 429: ${served}×200, ${refused}×429`,
    );
    // The bucket lets through the burst plus the rate for as long as the flood lasted.
    assert.ok(served >= 1 && served <= burst + Math.ceil(rate * (seconds + 1)), `served ${served} of the flood`);
    assert.ok(flood.status_errors >= flood.requests - served, "wrk saw the refusals too");

    assert.deepEqual(polite.errors, []);
    assert.deepEqual([...polite.statuses.keys()], [200], describeTally(polite));
    assert.ok(polite.total >= floodSeconds, `the other client made only ${polite.total} requests during the flood`);
    assert.equal(limited.accessLog().filter((line) => line.remote_addr === "127.0.0.2").length, polite.total);

    // A limit is not a ban: once the bucket has drained, the same address is served again,
    // and nginx's own health never counted against it.
    assert.equal((await request(limited.port, { path: "/nginx-health" })).status, 200);
    await sleep(1500);
    assert.equal((await request(limited.port, { path: "/count" })).status, 200);
  });

  it("refuse a client's requests beyond limitConnPerIp in progress at once, and no one else's", async () => {
    // An upstream that takes its time, so requests are in progress together.
    const slow = http.createServer((_req, res) => {
      setTimeout(() => res.end("slow\n"), 1500);
    });
    await new Promise<void>((resolve) => slow.listen(0, "127.0.0.1", resolve));
    cleanups.push(
      () =>
        new Promise((resolve) => {
          slow.closeAllConnections();
          slow.close(() => resolve());
        }),
    );
    const slowPort = (slow.address() as net.AddressInfo).port;
    const instance = await startNginx([`127.0.0.1:${slowPort}`], { limitConnPerIp: 5 });
    cleanups.push(() => instance.stop());

    const greedy = tally();
    const other = tally();
    await Promise.all([
      ...Array.from({ length: 20 }, () => count(greedy, () => request(instance.port, { localAddress: "127.0.0.1" }))),
      ...Array.from({ length: 5 }, () => count(other, () => request(instance.port, { localAddress: "127.0.0.2" }))),
    ]);
    assert.deepEqual(Object.fromEntries(greedy.statuses), { 200: 5, 429: 15 }, describeTally(greedy));
    assert.deepEqual(Object.fromEntries(other.statuses), { 200: 5 }, describeTally(other));
    assert.deepEqual([...greedy.errors, ...other.errors], []);
  });
});

// ---------------------------------------------------------------------------------------------

/** Seconds from now until the server ends the connection (closed or reset). */
function secondsUntilClosed(socket: net.Socket): Promise<number> {
  const startedAt = performance.now();
  return new Promise((resolve) => {
    socket.on("data", () => undefined);
    socket.on("error", () => undefined);
    socket.once("close", () => resolve((performance.now() - startedAt) / 1000));
  });
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection({ host: "127.0.0.1", port }, () => resolve(socket));
    socket.once("error", reject);
  });
}

describe("timeouts", () => {
  it("drop a client that trickles its headers or its body, or idles, after about 10 s (not nginx's 60 s)", async () => {
    const closed = await edge();
    const sockets: net.Socket[] = [];
    try {
      const slowHeader = await connect(closed.port);
      const slowBody = await connect(closed.port);
      const idle = await connect(closed.port);
      sockets.push(slowHeader, slowBody, idle);

      const headerClosed = secondsUntilClosed(slowHeader);
      slowHeader.write("GET /count HTTP/1.1\r\nHost: webstack\r\n");

      const bodyClosed = secondsUntilClosed(slowBody);
      slowBody.write("POST /upload HTTP/1.1\r\nHost: webstack\r\nContent-Length: 100\r\n\r\n0123456789");

      // A complete request on a kept-alive connection, answered; then nothing more.
      const answered = new Promise<string>((resolve) =>
        idle.once("data", (chunk: Buffer) => resolve(chunk.toString("latin1"))),
      );
      idle.write("GET /nginx-health HTTP/1.1\r\nHost: webstack\r\n\r\n");
      assert.match(await answered, /^HTTP\/1\.1 200 /);
      const idleClosed = secondsUntilClosed(idle);

      const [header, body, kept] = await Promise.all([headerClosed, bodyClosed, idleClosed]);
      for (const [what, seconds] of [
        ["trickled header", header],
        ["trickled body", body],
        ["idle keep-alive", kept],
      ] as const) {
        assert.ok(seconds >= 9 && seconds < 15, `${what} connection closed after ${seconds.toFixed(1)} s`);
      }
    } finally {
      for (const socket of sockets) socket.destroy();
    }
  });
});
