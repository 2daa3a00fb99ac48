// The rendered config in a real nginx (Debian's package) in front of three real app replicas
// sharing one real Postgres and Redis, plus small upstreams that misbehave on purpose.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { rm, writeFile } from "node:fs/promises";
import http from "node:http";
import net from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { gunzipSync } from "node:zlib";
import { dockerNginxVars, renderNginxConfig } from "../../nginx/render";
import { type PostgresServer, type RedisServer, freePort, startPostgres, startRedis } from "../support/services";
import {
  type AppReplica,
  type NginxInstance,
  type Response,
  ensureAppBuilt,
  migrateDatabase,
  nginxPrefix,
  nginxTest,
  request,
  startAppReplica,
  startNginx,
} from "./harness";

// ---------------------------------------------------------------------------------------------
// Upstreams under the test's control

interface SeenRequest {
  method: string;
  url: string;
  httpVersion: string;
  headers: http.IncomingHttpHeaders;
  remotePort: number;
  bodyBytes: number;
}

interface EchoServer {
  port: number;
  seen: SeenRequest[];
  close(): Promise<void>;
}

const BIG_BODY = JSON.stringify({
  items: Array.from({ length: 400 }, (_, i) => ({ id: i, name: `item number ${i}` })),
});

/**
 * Answers with what it received as JSON; /big answers a large JSON document instead, and /slow
 * answers after 200 ms, so that many requests are in flight at once.
 */
async function startEcho(): Promise<EchoServer> {
  const seen: SeenRequest[] = [];
  const server = http.createServer((req, res) => {
    let bodyBytes = 0;
    req.on("data", (chunk: Buffer) => (bodyBytes += chunk.length));
    req.on("end", () => {
      const record = {
        method: req.method ?? "",
        url: req.url ?? "",
        httpVersion: req.httpVersion,
        headers: req.headers,
        remotePort: req.socket.remotePort ?? 0,
        bodyBytes,
      };
      seen.push(record);
      res.setHeader("content-type", "application/json");
      res.setHeader("x-powered-by", "echo");
      const body = req.url === "/big" ? BIG_BODY : JSON.stringify(record);
      if (req.url === "/slow") setTimeout(() => res.end(body), 200);
      else res.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address() as net.AddressInfo;
  return {
    port: address.port,
    seen,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

interface DroppingServer {
  port: number;
  /** Complete requests received (each then dropped without an answer). */
  attempts(): number;
  close(): Promise<void>;
}

/** Accepts a connection, reads one complete request head, then closes without answering. */
async function startDropper(): Promise<DroppingServer> {
  let attempts = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    let head = "";
    socket.on("data", (chunk: Buffer) => {
      head += chunk.toString("latin1");
      if (head.includes("\r\n\r\n")) {
        attempts += 1;
        socket.destroy();
      }
    });
    socket.on("error", () => socket.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    attempts: () => attempts,
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

function header(res: Response, name: string): string | undefined {
  const value = res.headers[name];
  return Array.isArray(value) ? value.join(", ") : value;
}

function json(res: Response): Record<string, unknown> {
  return JSON.parse(res.body.toString("utf8")) as Record<string, unknown>;
}

function assertSecurityHeaders(res: Response): void {
  assert.equal(header(res, "x-content-type-options"), "nosniff");
  assert.equal(header(res, "x-frame-options"), "DENY");
  assert.equal(header(res, "referrer-policy"), "strict-origin-when-cross-origin");
  assert.equal(header(res, "server"), "nginx");
}

// ---------------------------------------------------------------------------------------------

const cleanups: (() => Promise<void>)[] = [];
function track<T extends { stop?: () => Promise<void>; close?: () => Promise<void> }>(thing: T): T {
  const stop = thing.stop ?? thing.close;
  if (stop) cleanups.push(() => stop.call(thing));
  return thing;
}

let postgres: PostgresServer;
let redis: RedisServer;
const replicas: AppReplica[] = [];
let proxy: NginxInstance;

before(async () => {
  await ensureAppBuilt();
  [postgres, redis] = await Promise.all([startPostgres().then(track), startRedis().then(track)]);
  await migrateDatabase(postgres.url);
  for (const id of ["replica-1", "replica-2", "replica-3"]) {
    replicas.push(track(await startAppReplica(id, postgres.url, redis.url, "debug")));
  }
  proxy = track(await startNginx(replicas.map((replica) => `127.0.0.1:${replica.port}`)));
});

after(async () => {
  // Newest first: nginx before the replicas, the replicas before Postgres and Redis.
  for (const cleanup of cleanups.reverse()) {
    await cleanup().catch((error: Error) => process.stderr.write(`cleanup failed: ${error.message}\n`));
  }
});

describe("the rendered config in nginx 1.22", () => {
  it("passes nginx -t for the loopback config and for the Docker config with local paths", async () => {
    assert.match(await nginxTest(proxy.dir, proxy.configPath), /test is successful/);

    // The Docker variant, changed only where this machine differs from the container (the user
    // is Debian's www-data, the app name is localhost), so the user and resolver lines are checked too.
    const dir = await nginxPrefix();
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const configPath = join(dir, "docker.conf");
    const config = renderNginxConfig({
      ...dockerNginxVars(),
      user: "www-data",
      upstreams: ["localhost:3000"],
      listenPort: await freePort(),
      pidPath: join(dir, "nginx.pid"),
      tempDir: join(dir, "tmp"),
      // /dev/stdout cannot be opened when stdout is a socket, as under Node's child_process.
      accessLogPath: join(dir, "access.log"),
    });
    assert.match(config, /^user www-data;$/m);
    assert.match(config, /^ {4}resolver 127\.0\.0\.11 valid=5s ipv6=off;$/m);
    await writeFile(configPath, config);
    assert.match(await nginxTest(dir, configPath), /test is successful/);
  });

  it("spreads requests over all three replicas", async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
    const servedBy = new Set<string>();
    for (let i = 0; i < 30; i += 1) {
      const res = await request(proxy.port, { agent });
      assert.equal(res.status, 200);
      // The edge hides X-Served-By; the app's answer names the replica.
      assert.equal(header(res, "x-served-by"), undefined);
      servedBy.add(String(json(res).replica));
    }
    agent.destroy();
    assert.deepEqual([...servedBy].sort(), ["replica-1", "replica-2", "replica-3"]);
  });

  it("answers /nginx-health itself, even when no upstream is up", async () => {
    const closedPort = await freePort();
    const lonely = track(await startNginx([`127.0.0.1:${closedPort}`]));
    const health = await request(lonely.port, { path: "/nginx-health" });
    assert.equal(health.status, 200);
    assert.equal(health.body.toString("utf8"), '{"status":"ok"}\n');
    assert.equal(header(health, "content-type"), "application/json");
    assertSecurityHeaders(health);
    // The same nginx cannot reach any app: proof the 200 above did not involve one.
    assert.equal((await request(lonely.port, { path: "/" })).status, 502);
  });
});

describe("headers", () => {
  let echo: EchoServer;
  let edge: NginxInstance;

  before(async () => {
    echo = track(await startEcho());
    edge = track(await startNginx([`127.0.0.1:${echo.port}`], { clientMaxBodySize: "8k" }));
  });

  it("replaces client-supplied forwarding headers and keeps the Host", async () => {
    const res = await request(edge.port, {
      path: "/whoami",
      headers: { host: "shop.example", "x-forwarded-for": "203.0.113.9", "x-forwarded-proto": "https" },
    });
    assert.equal(res.status, 200);
    const seen = json(res) as unknown as SeenRequest;
    assert.equal(seen.headers["x-forwarded-for"], "127.0.0.1");
    assert.equal(seen.headers["x-forwarded-proto"], "http");
    assert.equal(seen.headers.host, "shop.example");
    assert.equal(seen.httpVersion, "1.1");
    assert.equal(seen.headers.connection, undefined);
    assertSecurityHeaders(res);
    assert.equal(header(res, "x-powered-by"), undefined);
  });

  it("reuses upstream connections", async () => {
    const first = json(await request(edge.port, { path: "/a" })) as unknown as SeenRequest;
    const second = json(await request(edge.port, { path: "/b" })) as unknown as SeenRequest;
    assert.equal(second.remotePort, first.remotePort);
  });

  it("keeps the upstream connections a burst opened for the next burst", async () => {
    // 100 requests in flight at once open 100 connections to the app; a pool smaller than that
    // (nginx's per-worker idle limit) closes the rest once they are done, and the next burst
    // connects again. Every connect is a handshake and an accept on the app's event loop.
    const burst = async (): Promise<Set<number>> => {
      const answers = await Promise.all(Array.from({ length: 100 }, () => request(edge.port, { path: "/slow" })));
      return new Set(answers.map((res) => (json(res) as unknown as SeenRequest).remotePort));
    };
    const first = await burst();
    assert.ok(first.size >= 90, `the first burst used ${first.size} connections, expected about 100 in flight`);
    const second = await burst();
    const opened = [...second].filter((port) => !first.has(port));
    assert.ok(opened.length <= 10, `the second burst opened ${opened.length} new upstream connections`);
  });

  it("gives each request an id, passes a well-formed incoming one through, and returns it", async () => {
    const generated = await request(edge.port, { path: "/id" });
    const generatedId = header(generated, "x-request-id");
    assert.match(String(generatedId), /^[0-9a-f]{32}$/);
    assert.equal((json(generated) as unknown as SeenRequest).headers["x-request-id"], generatedId);

    const incoming = await request(edge.port, { path: "/id", headers: { "x-request-id": "client-req-0001" } });
    assert.equal(header(incoming, "x-request-id"), "client-req-0001");
    assert.equal((json(incoming) as unknown as SeenRequest).headers["x-request-id"], "client-req-0001");

    const malformed = await request(edge.port, { path: "/id", headers: { "x-request-id": 'x"}, "forged": "1' } });
    assert.match(String(header(malformed, "x-request-id")), /^[0-9a-f]{32}$/);

    const logged = edge.accessLog().find((line) => line.request_id === "client-req-0001");
    assert.ok(logged, "access log line with the incoming request id");
    assert.equal(logged.status, 200);
    assert.equal(logged.upstream_addr, `127.0.0.1:${echo.port}`);
    assert.equal(typeof logged.request_time, "number");
    assert.match(String(logged.upstream_response_time), /^\d+\.\d{3}$/);
  });

  it("compresses large text and JSON answers when the client accepts gzip, and only then", async () => {
    const zipped = await request(edge.port, { path: "/big", headers: { "accept-encoding": "gzip" } });
    assert.equal(zipped.status, 200);
    assert.equal(header(zipped, "content-encoding"), "gzip");
    assert.equal(header(zipped, "vary"), "Accept-Encoding");
    assert.equal(gunzipSync(zipped.body).toString("utf8"), BIG_BODY);
    assert.ok(zipped.body.length < BIG_BODY.length / 2);

    const plain = await request(edge.port, { path: "/big" });
    assert.equal(header(plain, "content-encoding"), undefined);
    assert.equal(plain.body.toString("utf8"), BIG_BODY);

    // The app's own answers are a few bytes: not worth compressing.
    const small = await request(proxy.port, { path: "/count", headers: { "accept-encoding": "gzip" } });
    assert.equal(small.status, 200);
    assert.equal(header(small, "content-encoding"), undefined);
  });

  it("refuses a body over the limit with 413 before the app sees it", async () => {
    const before = echo.seen.length;
    const tooBig = await request(edge.port, { method: "POST", path: "/upload", body: Buffer.alloc(9 * 1024, 97) });
    assert.equal(tooBig.status, 413);
    assertSecurityHeaders(tooBig);
    assert.equal(echo.seen.length, before);

    const fits = await request(edge.port, { method: "POST", path: "/upload", body: Buffer.alloc(4 * 1024, 97) });
    assert.equal(fits.status, 200);
    assert.equal((json(fits) as unknown as SeenRequest).bodyBytes, 4 * 1024);
  });

  it("hands the request id to the app, which logs it", async () => {
    const id = `webstack-${randomBytes(8).toString("hex")}`;
    const res = await request(proxy.port, { path: "/", headers: { "x-request-id": id } });
    assert.equal(res.status, 200);
    assert.equal(header(res, "x-request-id"), id);
    const replica = replicas.find((r) => r.id === json(res).replica);
    assert.ok(replica);
    // The replica's log reaches us through a pipe, a moment after the response.
    const logged = new RegExp(`"reqId":"${id}"`);
    for (let waited = 0; !logged.test(replica.output()) && waited < 5000; waited += 50) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.match(replica.output(), logged);
  });
});

describe("retries", () => {
  it("never retries a POST that reached a replica which then died, but does retry a GET", async () => {
    const [a, b, c, d] = await Promise.all([startDropper(), startDropper(), startDropper(), startDropper()]);
    for (const dropper of [a, b, c, d]) track(dropper);
    const postProxy = track(await startNginx([`127.0.0.1:${a.port}`, `127.0.0.1:${b.port}`]));
    const getProxy = track(await startNginx([`127.0.0.1:${c.port}`, `127.0.0.1:${d.port}`]));

    const post = await request(postProxy.port, { method: "POST", path: "/orders" });
    assert.equal(post.status, 502);
    assert.equal(a.attempts() + b.attempts(), 1);

    const get = await request(getProxy.port, { path: "/" });
    assert.equal(get.status, 502);
    assert.equal(c.attempts(), 1);
    assert.equal(d.attempts(), 1);
    // nginx writes the access-log line just after the response.
    let getLog = getProxy.accessLog().find((line) => line.uri === "/");
    for (let waited = 0; getLog === undefined && waited < 5000; waited += 50) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      getLog = getProxy.accessLog().find((line) => line.uri === "/");
    }
    assert.ok(getLog);
    assert.match(String(getLog.upstream_addr), /^127\.0\.0\.1:\d+, 127\.0\.0\.1:\d+$/);
  });

  it("sends a POST elsewhere when a replica refuses the connection (nothing was sent)", async () => {
    const echo = track(await startEcho());
    const closedPort = await freePort();
    const edge = track(await startNginx([`127.0.0.1:${closedPort}`, `127.0.0.1:${echo.port}`]));
    for (let i = 0; i < 4; i += 1) {
      const res = await request(edge.port, { method: "POST", path: "/orders" });
      assert.equal(res.status, 200);
    }
    assert.equal(echo.seen.length, 4);
  });

  it("loses no request when a replica is killed under load", async () => {
    const total = 2000;
    const concurrency = 20;
    const killAfter = 400;
    const victim = replicas[1];
    const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
    const countBefore = json(await request(proxy.port, { path: "/count" })).count as number;

    let issued = 0;
    let completed = 0;
    let killed: Promise<void> | undefined;
    const failures: string[] = [];
    const servedBy = new Map<string, number>();
    const worker = async (): Promise<void> => {
      while (issued < total) {
        issued += 1;
        try {
          const res = await request(proxy.port, { agent });
          if (res.status === 200) {
            const replica = String(json(res).replica);
            servedBy.set(replica, (servedBy.get(replica) ?? 0) + 1);
          } else {
            failures.push(`status ${res.status}: ${res.body.toString("utf8").slice(0, 200)}`);
          }
        } catch (error) {
          failures.push(`error: ${(error as Error).message}`);
        }
        completed += 1;
        if (completed === killAfter) killed = victim.crash();
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    agent.destroy();
    await killed;

    assert.deepEqual(failures, []);
    assert.equal(
      [...servedBy.values()].reduce((sum, n) => sum + n, 0),
      total,
    );
    assert.ok((servedBy.get(victim.id) ?? 0) > 0, "the victim served requests before it was killed");
    assert.ok((servedBy.get("replica-1") ?? 0) > 0 && (servedBy.get("replica-3") ?? 0) > 0);
    // Every visit counted exactly once: a GET retried after the crash carries the same request id.
    const count = await request(proxy.port, { path: "/count" });
    assert.deepEqual(json(count), { count: countBefore + total });
    const retried = proxy.accessLog().filter((line) => String(line.upstream_addr).includes(", "));
    assert.ok(retried.length > 0, "some requests were retried on another replica");
  });
});

describe("reloads (what the upstream watcher does when replicas come and go)", () => {
  // Requests started per socket, to tell a reused keep-alive connection from a fresh one (Node's
  // req.reusedSocket misses sockets handed straight to a queued request).
  const socketUses = new WeakMap<net.Socket, number>();

  function get(port: number, agent: http.Agent | false): Promise<{ status: number }> {
    return new Promise((resolve, reject) => {
      let reused = false;
      const req = http.request({ host: "127.0.0.1", port, path: "/", agent, timeout: 15_000 }, (res) => {
        res.resume();
        res.on("end", () => resolve({ status: res.statusCode ?? 0 }));
      });
      req.on("socket", (socket) => {
        const uses = socketUses.get(socket) ?? 0;
        reused = uses > 0;
        socketUses.set(socket, uses + 1);
      });
      req.on("timeout", () => req.destroy(new Error("timed out")));
      req.on("error", (error) => reject(Object.assign(error, { reused })));
      req.end();
    });
  }

  async function loadWithReloads(edge: NginxInstance, agent: http.Agent | false, retryReused: boolean) {
    const total = 2000;
    const reloadEvery = 400;
    let issued = 0;
    let completed = 0;
    const reloads: Promise<void>[] = [];
    const failures: string[] = [];
    let retriedReused = 0;
    const worker = async (): Promise<void> => {
      while (issued < total) {
        issued += 1;
        for (let attempt = 0; ; attempt += 1) {
          try {
            // A retry goes out on a new connection, as browsers and curl do.
            const res = await get(edge.port, attempt === 0 ? agent : false);
            if (res.status !== 200) failures.push(`status ${res.status}`);
            break;
          } catch (error) {
            const { message, reused } = error as Error & { reused: boolean };
            // RFC 9112 9.3.1: a client may retry an idempotent request when a reused connection
            // closes before any response, which is what browsers do.
            if (retryReused && reused && attempt === 0) {
              retriedReused += 1;
              continue;
            }
            failures.push(`${message} (reused connection: ${reused}, attempt ${attempt + 1})`);
            break;
          }
        }
        completed += 1;
        if (completed % reloadEvery === 0 && completed < total) reloads.push(edge.reload());
      }
    };
    await Promise.all(Array.from({ length: 20 }, worker));
    await Promise.all(reloads);
    return { failures, retriedReused, reloads: reloads.length };
  }

  let edge: NginxInstance;
  before(async () => {
    edge = track(await startNginx([`127.0.0.1:${replicas[0].port}`, `127.0.0.1:${replicas[2].port}`]));
  });

  it("lose no request on new connections", async () => {
    const result = await loadWithReloads(edge, false, false);
    assert.equal(result.reloads, 4);
    assert.deepEqual(result.failures, []);
  });

  it("only close idle keep-alive connections, so a client that retries those loses nothing", async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 20 });
    const result = await loadWithReloads(edge, agent, true);
    agent.destroy();
    assert.equal(result.reloads, 4);
    assert.deepEqual(result.failures, []);
    process.stderr.write(
      `keep-alive requests retried after a reload closed their connection: ${result.retriedReused}\n`,
    );
  });
});
