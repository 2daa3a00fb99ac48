// The built artifact as real processes: `node app/dist/server.js`, `node app/dist/migrate.js` and
// the image's health check, `bash app/healthcheck.sh`.
import assert from "node:assert/strict";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { Agent, createServer, request, type IncomingHttpHeaders, type Server, type ServerResponse } from "node:http";
import { createConnection, type AddressInfo, type Socket } from "node:net";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { Client } from "pg";
import { startPostgresAndRedis, type PostgresServer, type RedisServer } from "../../test/support/services";
import { call, migratedDatabase, waitFor, waitForLockWaiter } from "./helpers";

const APP_DIR = path.resolve(__dirname, "..");
const SERVER_JS = path.join(APP_DIR, "dist", "server.js");
const HEALTHCHECK_SH = path.join(APP_DIR, "healthcheck.sh");
const MIGRATE_JS = path.join(APP_DIR, "dist", "migrate.js");

function runFile(
  file: string,
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { env, timeout: 60_000 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === "number" ? error.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

function runNode(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  return runFile(process.execPath, args, env);
}

/** The image's health check against `port`, as Docker runs it. */
function healthCheck(port: number): Promise<{ code: number; stdout: string; stderr: string }> {
  return runFile("bash", [HEALTHCHECK_SH], { PATH: process.env.PATH, PORT: String(port) });
}

/** Builds dist/ when it is missing or older than any source file. */
async function ensureBuilt(): Promise<void> {
  const sources = [
    ...(await readdir(path.join(APP_DIR, "src"))).map((name) => path.join(APP_DIR, "src", name)),
    path.join(APP_DIR, "tsconfig.json"),
    path.join(APP_DIR, "tsconfig.build.json"),
  ];
  const newestSource = Math.max(...(await Promise.all(sources.map(async (file) => (await stat(file)).mtimeMs))));
  const built = await stat(SERVER_JS).then(
    (info) => info.mtimeMs,
    () => 0,
  );
  if (built >= newestSource) return;
  const tsc = path.join(APP_DIR, "node_modules", "typescript", "bin", "tsc");
  const result = await runNode([tsc, "-p", path.join(APP_DIR, "tsconfig.build.json")], process.env);
  assert.equal(result.code, 0, `building the app failed:\n${result.stdout}${result.stderr}`);
}

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

interface AppProcess {
  child: ChildProcess;
  stdout: () => string;
  /** Resolves once the process has exited and its output has been read to the end. */
  exited: Promise<Exit>;
}

function spawnApp(env: Record<string, string>): AppProcess {
  const child = spawn(process.execPath, [SERVER_JS], {
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout?.on("data", (chunk: Buffer) => (out += chunk.toString("utf8")));
  child.stderr?.on("data", (chunk: Buffer) => (out += chunk.toString("utf8")));
  // "close", not "exit": at "exit" the pipes may still hold the last log lines.
  const exited = new Promise<Exit>((resolve) => child.once("close", (code, signal) => resolve({ code, signal })));
  return { child, stdout: () => out, exited };
}

/**
 * The app listens on PORT=0 (a port picked at bind time cannot be taken by anyone else in the
 * meantime); its port comes from Fastify's "Server listening at http://host:port" log line.
 */
async function listeningPort(app: AppProcess): Promise<number> {
  return waitFor("the app to log the port it listens on", () => {
    const match = /Server listening at http:\/\/127\.0\.0\.1:(\d+)/.exec(app.stdout());
    if (match) return Number(match[1]);
    if (app.child.exitCode !== null || app.child.signalCode !== null) {
      throw new Error(`the app exited before listening:\n${app.stdout()}`);
    }
    return undefined;
  });
}

/** Resolves "refused" when nothing accepts connections on the port any more, else "accepted". */
function tryConnect(port: number): Promise<"refused" | "accepted"> {
  return new Promise((resolve, reject) => {
    const socket: Socket = createConnection({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve("accepted");
    });
    socket.once("error", (error: NodeJS.ErrnoException) => {
      if (error.code === "ECONNREFUSED") resolve("refused");
      else reject(error);
    });
  });
}

function get(
  port: number,
  urlPath: string,
  agent: Agent,
  headers: Record<string, string> = {},
  onSocket?: (socket: Socket) => void,
): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path: urlPath, agent, headers }, (res) => {
      let body = "";
      res.on("data", (chunk: Buffer) => (body += chunk.toString("utf8")));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    if (onSocket) req.once("socket", onSocket);
    req.setTimeout(30_000, () => req.destroy(new Error(`GET ${urlPath} timed out`)));
    req.once("error", reject);
    req.end();
  });
}

/** `promise`, or a rejection naming `what` after `ms`: keeps a broken shutdown from hanging the suite. */
function bounded<T>(what: string, promise: Promise<T>, ms = 20_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`gave up waiting for ${what} after ${ms} ms`)), ms);
  });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

describe("the image's health check (bash app/healthcheck.sh)", () => {
  /** A server on a free loopback port that answers every request with `handle`. */
  async function serving(handle: (res: ServerResponse) => void): Promise<Server> {
    const server = createServer((_req, res) => handle(res));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return server;
  }
  const portOf = (server: Server): number => (server.address() as AddressInfo).port;

  it("passes on 200 and fails on any other status, on silence past 2 s and on a closed port", async () => {
    const ok = await serving((res) => res.writeHead(200).end("{}"));
    const failing = await serving((res) => res.writeHead(503).end("{}"));
    const redirect = await serving((res) => res.writeHead(302, { location: "/" }).end());
    // Accepts the connection and never answers.
    const silent = await serving(() => undefined);
    const closedPort = portOf(ok);
    try {
      assert.equal((await healthCheck(portOf(ok))).code, 0);
      assert.equal((await healthCheck(portOf(failing))).code, 1);
      assert.equal((await healthCheck(portOf(redirect))).code, 1);
      const started = Date.now();
      assert.equal((await healthCheck(portOf(silent))).code, 1);
      const waited = Date.now() - started;
      assert.ok(waited >= 1900 && waited < 10_000, `a silent server fails the check after its 2 s, not ${waited} ms`);
    } finally {
      silent.closeAllConnections();
      await Promise.all(
        [ok, failing, redirect, silent].map((server) => new Promise((resolve) => server.close(resolve))),
      );
    }
    assert.equal((await healthCheck(closedPort)).code, 1, "nothing listens on the port any more");
  });
});

describe("app process", () => {
  let pg: PostgresServer;
  let redisServer: RedisServer;
  const children: ChildProcess[] = [];

  before(async () => {
    await ensureBuilt();
    ({ postgres: pg, redis: redisServer } = await startPostgresAndRedis());
  });

  after(async () => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await Promise.allSettled([pg?.stop(), redisServer?.stop()]);
  });

  it("exits 1 with one line naming the bad variables, without echoing a password", async () => {
    const result = await runNode([SERVER_JS], {
      PATH: process.env.PATH,
      PORT: "eighty",
      REDIS_URL: "http://:top-secret-value@redis:6379",
    });
    assert.equal(result.code, 1);
    assert.equal(result.stdout, "");
    assert.equal(
      result.stderr,
      "webstack-app: invalid configuration: " +
        'PORT must be an integer from 0 to 65535, got "eighty"; ' +
        "DATABASE_URL or DATABASE_URL_FILE is required (e.g. postgres://user:password@postgres:5432/app); " +
        "REDIS_URL must start with redis:// or rediss://, got http://:***@redis:6379/\n",
    );
  });

  it("the migration run exits 1 naming the migration that failed, or the bad setting, and never the password", async () => {
    const misconfigured = await runNode([MIGRATE_JS], { PATH: process.env.PATH, LOG_LEVEL: "loud" });
    assert.equal(misconfigured.code, 1);
    assert.equal(
      misconfigured.stderr,
      "webstack-migrate: invalid configuration: " +
        "DATABASE_URL or DATABASE_URL_FILE is required (e.g. postgres://user:password@postgres:5432/app); " +
        'LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent, got "loud"\n',
    );

    // A table in the way that the first migration cannot adopt: its insert names a missing column.
    const databaseUrl = await pg.createDatabase("migrate_fails");
    const db = new Client({ connectionString: databaseUrl });
    await db.connect();
    try {
      await db.query("CREATE TABLE visit_counter (id smallint PRIMARY KEY)");
    } finally {
      await db.end();
    }
    const failed = await runNode([MIGRATE_JS], { PATH: process.env.PATH, DATABASE_URL: databaseUrl });
    assert.equal(failed.code, 1);
    const lines = failed.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { level: number; msg: string; migration?: string });
    assert.deepEqual(lines.at(-1) && [lines.at(-1)?.level, lines.at(-1)?.migration, lines.at(-1)?.msg], [
      50,
      "0001_visit-counter",
      'migration 0001_visit-counter failed: column "count" of relation "visit_counter" does not exist',
    ]);
    assert.ok(!(failed.stdout + failed.stderr).includes(pg.password));
  });

  it("reads its secrets from files, guards /reset with the admin token, and logs none of them", async () => {
    const secrets = await mkdtemp(path.join(tmpdir(), "webstack-secrets-"));
    try {
      const databaseUrl = await pg.createDatabase("file_secrets");
      const token = "process-admin-token-5f0c9e2a71d4";
      const wrongToken = "process-wrong-token-8b3d6a0e94c2";
      const files = {
        DATABASE_URL_FILE: path.join(secrets, "database-url"),
        REDIS_URL_FILE: path.join(secrets, "redis-url"),
        ADMIN_TOKEN_FILE: path.join(secrets, "admin-token"),
      };
      await writeFile(files.DATABASE_URL_FILE, `${databaseUrl}\n`, { mode: 0o400 });
      await writeFile(files.REDIS_URL_FILE, `${redisServer.url}\n`, { mode: 0o400 });
      await writeFile(files.ADMIN_TOKEN_FILE, `${token}\n`, { mode: 0o400 });
      // The release's migration run, as the stack starts it: the database URL from its file.
      const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", DATABASE_URL_FILE: files.DATABASE_URL_FILE };
      const migrated = await runNode([MIGRATE_JS], env);
      assert.equal(migrated.code, 0, migrated.stdout + migrated.stderr);
      assert.match(migrated.stdout, /"msg":"applied 0001_visit-counter"/);
      const again = await runNode([MIGRATE_JS], env);
      assert.match(again.stdout, /"msg":"schema is up to date"/);
      for (const output of [migrated, again]) assert.ok(!(output.stdout + output.stderr).includes(pg.password));
      const app = spawnApp({ PORT: "0", HOST: "127.0.0.1", REPLICA_ID: "proc-files", LOG_LEVEL: "debug", ...files });
      children.push(app.child);
      const port = await listeningPort(app);
      const base = `http://127.0.0.1:${port}`;
      await waitFor("the app to be ready", async () =>
        (await call(`${base}/readyz`)).body.redis === "up" ? true : undefined,
      );
      assert.deepEqual((await call(`${base}/`)).body, { count: 1, replica: "proc-files" });

      const post = (headers: Record<string, string>) => call(`${base}/reset`, { method: "POST", headers });
      assert.equal((await post({})).status, 401);
      assert.equal((await post({ authorization: `Bearer ${wrongToken}` })).status, 401);
      assert.equal((await post({ authorization: `Bearer ${token}`, origin: "http://attacker.example" })).status, 403);
      assert.deepEqual((await call(`${base}/count`)).body, { count: 1 });
      const done = await post({ authorization: `Bearer ${token}` });
      assert.equal(done.status, 200);
      assert.deepEqual(done.body, { count: 0 });

      assert.ok(app.child.kill("SIGTERM"));
      assert.deepEqual(await bounded("the process to exit", app.exited), { code: 0, signal: null });
      const log = app.stdout();
      assert.match(log, /"msg":"admin request refused"/);
      assert.match(log, /"msg":"visit counter reset by an admin request"/);
      for (const secret of [token, wrongToken, redisServer.password, pg.password]) {
        assert.ok(!log.includes(secret), `a secret appears in the log: ${secret.slice(0, 8)}…`);
      }
    } finally {
      await rm(secrets, { recursive: true, force: true });
    }
  });

  it("on SIGTERM refuses new connections, finishes the in-flight request, and exits 0", async () => {
    const databaseUrl = await migratedDatabase(pg, "sigterm");
    const app = spawnApp({
      PORT: "0",
      HOST: "127.0.0.1",
      DATABASE_URL: databaseUrl,
      REDIS_URL: redisServer.url,
      REPLICA_ID: "proc-1",
      // A line for every request, fast or slow.
      LOG_LEVEL: "debug",
      // Far longer than the test needs: a clean exit must not depend on the grace period running out.
      SHUTDOWN_GRACE_MS: "30000",
      // The test holds the row lock for as long as it needs: no statement timeout may end it first.
      STATEMENT_TIMEOUT_MS: "60000",
    });
    children.push(app.child);
    const port = await listeningPort(app);
    await waitFor("the app to be ready", async () =>
      (await call(`http://127.0.0.1:${port}/readyz`)).status === 200 ? true : undefined,
    );

    const healthy = await healthCheck(port);
    assert.equal(healthy.code, 0);

    // An idle keep-alive connection must not hold up the shutdown.
    const idleAgent = new Agent({ keepAlive: true });
    let idleSocket: Socket | undefined;
    const idle = await get(port, "/healthz", idleAgent, {}, (socket) => (idleSocket = socket));
    assert.equal(idle.status, 200);
    assert.ok(idleSocket);
    const idleClosed = new Promise<void>((resolve) => idleSocket?.once("close", () => resolve()));

    // Make one visit genuinely slow: hold the counter's row lock from the test's own connection.
    const locker = new Client({ connectionString: databaseUrl });
    await locker.connect();
    const busyAgent = new Agent({ keepAlive: true });
    try {
      await locker.query("BEGIN");
      await locker.query("SELECT count FROM visit_counter WHERE id = 1 FOR UPDATE");
      const inFlight = get(port, "/", busyAgent, { "x-request-id": "slow-request-1" });
      await waitForLockWaiter(databaseUrl);

      assert.ok(app.child.kill("SIGTERM"));
      assert.equal(
        await waitFor("new connections to be refused", async () =>
          (await tryConnect(port)) === "refused" ? ("refused" as const) : undefined,
        ),
        "refused",
      );
      await bounded("the idle keep-alive connection to be closed", idleClosed);
      assert.equal(app.child.exitCode, null, "the process must wait for the in-flight request");

      await locker.query("COMMIT");
      const response = await bounded("the in-flight response", inFlight);
      assert.equal(response.status, 200);
      assert.deepEqual(JSON.parse(response.body), { count: 1, replica: "proc-1" });
      assert.equal(response.headers["x-served-by"], "proc-1");
      assert.equal(response.headers.connection, "close");
    } finally {
      await locker.end().catch(() => undefined);
      idleAgent.destroy();
      busyAgent.destroy();
    }

    assert.deepEqual(await bounded("the process to exit", app.exited), { code: 0, signal: null });
    const unhealthy = await healthCheck(port);
    assert.equal(unhealthy.code, 1);

    const check = new Client({ connectionString: databaseUrl });
    await check.connect();
    try {
      assert.equal((await check.query<{ count: string }>("SELECT count FROM visit_counter")).rows[0]?.count, "1");
    } finally {
      await check.end();
    }

    // Logs are JSON lines; the proxy's request id shows up as reqId.
    const lines = app
      .stdout()
      .split("\n")
      .filter((line) => line.trim() !== "");
    const entries = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    assert.ok(
      entries.some((entry) => entry.reqId === "slow-request-1" && entry.msg === "request completed"),
      "expected an access log line with reqId slow-request-1",
    );
    assert.ok(!app.stdout().includes(redisServer.password), "the Redis password must not be logged");
    assert.ok(!app.stdout().includes(pg.password), "the Postgres password must not be logged");
  });

  it("cuts off a request still running when the grace period ends, and exits 1", async () => {
    const databaseUrl = await migratedDatabase(pg, "grace");
    const app = spawnApp({
      PORT: "0",
      HOST: "127.0.0.1",
      DATABASE_URL: databaseUrl,
      REDIS_URL: redisServer.url,
      SHUTDOWN_GRACE_MS: "500",
      // The request must still be waiting on the lock when the grace period ends.
      STATEMENT_TIMEOUT_MS: "60000",
    });
    children.push(app.child);
    const port = await listeningPort(app);
    await waitFor("the app to be ready", async () =>
      (await call(`http://127.0.0.1:${port}/readyz`)).status === 200 ? true : undefined,
    );
    const locker = new Client({ connectionString: databaseUrl });
    await locker.connect();
    const agent = new Agent({ keepAlive: false });
    try {
      await locker.query("BEGIN");
      await locker.query("SELECT count FROM visit_counter WHERE id = 1 FOR UPDATE");
      const stuck = get(port, "/", agent).then(
        () => "answered",
        (error: NodeJS.ErrnoException) => error.code ?? error.message,
      );
      await waitForLockWaiter(databaseUrl);
      assert.ok(app.child.kill("SIGTERM"));
      assert.deepEqual(await bounded("the process to exit", app.exited), { code: 1, signal: null });
      assert.equal(await bounded("the cut-off request to fail", stuck), "ECONNRESET");
      assert.match(app.stdout(), /shutdown grace period over/);
    } finally {
      await locker.end().catch(() => undefined);
      agent.destroy();
    }
  });
});
