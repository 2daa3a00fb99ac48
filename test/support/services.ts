// Real Postgres and Redis servers for tests: Debian packages, started on loopback, on free ports,
// in temporary directories, with random passwords. Every server is stopped by its `stop()`, and as
// a safety net also when the test process exits, so a failing test does not leave one running.
import { execFile, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmod, chown, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { createConnection, createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";

const REPO_ROOT = path.resolve(__dirname, "..", "..");
const ENSURE_PACKAGES_SCRIPT = path.join(REPO_ROOT, "scripts", "ensure-debian-packages.sh");

interface RunResult {
  stdout: string;
  stderr: string;
}

function run(
  file: string,
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      { env: options.env ?? process.env, timeout: options.timeoutMs ?? 120_000, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error) {
          reject(new Error(`${file} ${args.join(" ")} failed: ${error.message}\n${stderr}`));
          return;
        }
        resolve({ stdout, stderr });
      },
    );
  });
}

/** Installs the Debian packages that are missing (no-op when all are present). */
export async function ensureDebianPackages(...packages: string[]): Promise<void> {
  if (packages.length === 0) return;
  await run("sh", [ENSURE_PACKAGES_SCRIPT, ...packages], { timeoutMs: 900_000 });
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      if (address === null || typeof address === "string") {
        server.close();
        reject(new Error("could not determine a free port"));
        return;
      }
      server.close(() => resolve(address.port));
    });
  });
}

function randomPassword(): string {
  return randomBytes(18).toString("hex");
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// A server re-bound to its old port (halt/resume) can find it briefly taken, e.g. as the local
// end of some outgoing connection: retry a bounded number of times before giving up.
const BIND_ATTEMPTS = 20;
const BIND_RETRY_DELAY_MS = 250;
const ADDRESS_IN_USE = /address already in use|could not bind|EADDRINUSE/i;

// Synchronous clean-up callbacks run on process exit: the last line of defence when a test file
// throws before its `after` hook gets to stop a server.
const exitCleanups = new Set<() => void>();
function runExitCleanups(): void {
  for (const cleanup of exitCleanups) {
    try {
      cleanup();
    } catch {
      // Nothing more can be done while the process is exiting.
    }
  }
  exitCleanups.clear();
}
process.once("exit", runExitCleanups);
// A test process killed by a signal (a CI timeout, Ctrl-C) skips "exit" handlers: clean up, then
// die from the same signal as if nobody had listened.
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    runExitCleanups();
    process.kill(process.pid, signal);
  });
}

// ---------------------------------------------------------------------------------------------
// Postgres

export interface PostgresServer {
  /** postgres://postgres:<password>@127.0.0.1:<port>/postgres */
  url: string;
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  /** A URL for another database on this server (see `createDatabase`). */
  urlFor(database: string): string;
  /** Creates an empty database and returns its URL. Names: [a-z_][a-z0-9_]*. */
  createDatabase(name: string): Promise<string>;
  /** Stops the server but keeps its data, to simulate an outage. */
  halt(): Promise<void>;
  /** Starts the halted server again on the same port with the same data. */
  resume(): Promise<void>;
  /** Stops the server and removes its directory. Safe to call more than once. */
  stop(): Promise<void>;
}

async function postgresBinDir(): Promise<string> {
  const base = "/usr/lib/postgresql";
  const versions = (await readdir(base)).filter((name) => /^\d+$/.test(name)).sort((a, b) => Number(b) - Number(a));
  if (versions.length === 0) throw new Error(`no PostgreSQL server found under ${base}`);
  return path.join(base, versions[0], "bin");
}

async function lookupUserIds(user: string): Promise<{ uid: number; gid: number }> {
  const uid = Number((await run("id", ["-u", user])).stdout.trim());
  const gid = Number((await run("id", ["-g", user])).stdout.trim());
  return { uid, gid };
}

export async function startPostgres(): Promise<PostgresServer> {
  await ensureDebianPackages("postgresql");
  const bin = await postgresBinDir();
  const asRoot = process.getuid?.() === 0;
  // The server refuses to run as root, so under root it runs as Debian's `postgres` account.
  const asServerUser = (command: string, args: string[]): [string, string[]] =>
    asRoot ? ["runuser", ["-u", "postgres", "--", command, ...args]] : [command, args];

  const dir = await mkdtemp(path.join(tmpdir(), "webstack-pg-"));
  const dataDir = path.join(dir, "data");
  const logFile = path.join(dir, "server.log");
  const password = randomPassword();
  const port = await freePort();
  const pwFile = path.join(dir, "pwfile");
  await writeFile(pwFile, `${password}\n`, { mode: 0o600 });
  if (asRoot) {
    const { uid, gid } = await lookupUserIds("postgres");
    await chown(dir, uid, gid);
    await chown(pwFile, uid, gid);
  }

  const initdb = asServerUser(path.join(bin, "initdb"), [
    "-D",
    dataDir,
    "-U",
    "postgres",
    "--pwfile",
    pwFile,
    "--auth=scram-sha-256",
    "-E",
    "UTF8",
    "--locale=C",
  ]);
  await run(initdb[0], initdb[1]);
  await rm(pwFile, { force: true });

  const serverOptions = [
    `-p ${port}`,
    `-k ${dir}`,
    "-c listen_addresses=127.0.0.1",
    // Test data is throw-away: skip the disk flushes that make a 2-core machine crawl.
    "-c fsync=off",
    "-c synchronous_commit=off",
    "-c full_page_writes=off",
    "-c max_connections=200",
  ].join(" ");
  const pgCtl = (args: string[]): [string, string[]] =>
    asServerUser(path.join(bin, "pg_ctl"), ["-D", dataDir, ...args]);
  let running = false;
  let removed = false;

  const logSince = async (offset: number): Promise<string> =>
    (await readFile(logFile).catch(() => Buffer.alloc(0))).subarray(offset).toString("utf8");
  const startServer = async (): Promise<void> => {
    const [cmd, args] = pgCtl(["-l", logFile, "-o", serverOptions, "-w", "-t", "60", "start"]);
    for (let attempt = 1; ; attempt += 1) {
      const logOffset = (await readFile(logFile).catch(() => Buffer.alloc(0))).length;
      // Set before starting: a start that times out may leave a server running, and stop() and
      // the exit clean-up must still stop it (stopping a server that is not running is harmless).
      running = true;
      try {
        await run(cmd, args);
        return;
      } catch (error) {
        const log = await logSince(logOffset);
        if (attempt >= BIND_ATTEMPTS || !ADDRESS_IN_USE.test(log)) {
          throw new Error(`${(error as Error).message}\nserver log:\n${log}`);
        }
        // The postmaster gave up on the port and exited; make sure of it before the next try.
        stopServerSync();
        running = false;
        await sleep(BIND_RETRY_DELAY_MS);
      }
    }
  };
  const stopServerSync = (): void => {
    const [cmd, args] = pgCtl(["-m", "immediate", "-w", "-t", "30", "stop"]);
    spawnSync(cmd, args, { stdio: "ignore", timeout: 35_000 });
  };
  const exitCleanup = (): void => {
    if (running) stopServerSync();
    spawnSync("rm", ["-rf", dir], { stdio: "ignore" });
  };
  exitCleanups.add(exitCleanup);
  await startServer();

  const host = "127.0.0.1";
  const database = "postgres";
  const urlFor = (db: string): string =>
    `postgres://postgres:${encodeURIComponent(password)}@${host}:${port}/${encodeURIComponent(db)}`;

  return {
    url: urlFor(database),
    host,
    port,
    user: "postgres",
    password,
    database,
    urlFor,
    async createDatabase(name: string): Promise<string> {
      if (!/^[a-z_][a-z0-9_]*$/.test(name)) {
        throw new Error(`invalid database name '${name}' (allowed: [a-z_][a-z0-9_]*)`);
      }
      await run(
        "psql",
        [
          "-h",
          host,
          "-p",
          String(port),
          "-U",
          "postgres",
          "-d",
          "postgres",
          "-v",
          "ON_ERROR_STOP=1",
          "-qc",
          `CREATE DATABASE "${name}"`,
        ],
        { env: { ...process.env, PGPASSWORD: password } },
      );
      return urlFor(name);
    },
    async halt(): Promise<void> {
      if (!running) return;
      const [cmd, args] = pgCtl(["-m", "fast", "-w", "-t", "60", "stop"]);
      await run(cmd, args);
      running = false;
    },
    async resume(): Promise<void> {
      if (running || removed) return;
      await startServer();
    },
    async stop(): Promise<void> {
      if (removed) return;
      if (running) {
        const [cmd, args] = pgCtl(["-m", "fast", "-w", "-t", "60", "stop"]);
        await run(cmd, args).catch(() => stopServerSync());
        running = false;
      }
      removed = true;
      exitCleanups.delete(exitCleanup);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Redis

export interface RedisServer {
  /** redis://:<password>@127.0.0.1:<port> */
  url: string;
  host: string;
  port: number;
  password: string;
  /** Stops the server (no persistence: the data is gone), to simulate an outage. */
  halt(): Promise<void>;
  /** Starts the server again on the same port with the same password. */
  resume(): Promise<void>;
  /** Stops the server and removes its directory. Safe to call more than once. */
  stop(): Promise<void>;
}

/** Sends AUTH + PING over a raw socket; resolves true when the server answers PONG. */
function redisPing(port: number, password: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: "127.0.0.1", port });
    let reply = "";
    const finish = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => finish(false));
    socket.once("error", () => finish(false));
    socket.on("data", (chunk) => {
      reply += chunk.toString("utf8");
      if (reply.includes("+PONG")) finish(true);
      else if (reply.includes("-")) finish(false);
    });
    socket.once("connect", () => {
      socket.write(`AUTH ${password}\r\nPING\r\n`);
    });
  });
}

function waitForExit(child: ChildProcess, timeoutMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
    }, timeoutMs);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

export async function startRedis(): Promise<RedisServer> {
  await ensureDebianPackages("redis-server");
  const dir = await mkdtemp(path.join(tmpdir(), "webstack-redis-"));
  const password = randomPassword();
  const port = await freePort();
  const configFile = path.join(dir, "redis.conf");
  // The password goes into a private file, never onto the command line (visible in `ps`).
  await writeFile(
    configFile,
    [
      `port ${port}`,
      "bind 127.0.0.1",
      "protected-mode yes",
      `requirepass ${password}`,
      `dir ${dir}`,
      'save ""',
      "appendonly no",
      "daemonize no",
      "loglevel warning",
      "",
    ].join("\n"),
    { mode: 0o600 },
  );
  await chmod(configFile, 0o600);

  let child: ChildProcess | undefined;
  let removed = false;
  let output = "";

  const startServer = async (): Promise<void> => {
    for (let attempt = 1; ; attempt += 1) {
      try {
        await startServerOnce();
        return;
      } catch (error) {
        if (attempt >= BIND_ATTEMPTS || !ADDRESS_IN_USE.test(output)) throw error;
        await sleep(BIND_RETRY_DELAY_MS);
      }
    }
  };
  const startServerOnce = async (): Promise<void> => {
    output = "";
    const proc = spawn("redis-server", [configFile], { stdio: ["ignore", "pipe", "pipe"] });
    child = proc;
    proc.stdout?.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")));
    proc.stderr?.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")));
    // A server the test forgot to stop must not keep the test process alive: the process then
    // exits, and the exit clean-up kills the server.
    proc.unref();
    for (const stream of [proc.stdout, proc.stderr]) (stream as unknown as { unref?: () => void } | null)?.unref?.();
    for (let attempt = 0; attempt < 200; attempt += 1) {
      if (proc.exitCode !== null) break;
      if (await redisPing(port, password)) return;
      await sleep(50);
    }
    proc.kill("SIGKILL");
    // Until "close" the pipes may still hold the reason it failed (e.g. the port was taken).
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 10_000);
      timer.unref();
      proc.once("close", () => {
        clearTimeout(timer);
        resolve();
      });
      const streamsDone = [proc.stdout, proc.stderr].every((stream) => stream === null || stream.readableEnded);
      if (streamsDone && (proc.exitCode !== null || proc.signalCode !== null)) {
        clearTimeout(timer);
        resolve();
      }
    });
    if (child === proc) child = undefined;
    throw new Error(`redis-server did not become ready on port ${port}:\n${output}`);
  };
  const haltServer = async (): Promise<void> => {
    const proc = child;
    child = undefined;
    if (!proc) return;
    proc.kill("SIGTERM");
    await waitForExit(proc, 10_000);
  };
  const exitCleanup = (): void => {
    child?.kill("SIGKILL");
    spawnSync("rm", ["-rf", dir], { stdio: "ignore" });
  };
  exitCleanups.add(exitCleanup);
  await startServer();

  const host = "127.0.0.1";
  return {
    url: `redis://:${encodeURIComponent(password)}@${host}:${port}`,
    host,
    port,
    password,
    halt: haltServer,
    async resume(): Promise<void> {
      if (child || removed) return;
      await startServer();
    },
    async stop(): Promise<void> {
      if (removed) return;
      removed = true;
      await haltServer();
      exitCleanups.delete(exitCleanup);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Starts Postgres and Redis side by side. Either both start or neither is left running, so an
 * `after` hook never has to clean up a half-finished `before`.
 */
export async function startPostgresAndRedis(): Promise<{ postgres: PostgresServer; redis: RedisServer }> {
  const [postgres, redis] = await Promise.allSettled([startPostgres(), startRedis()]);
  if (postgres.status === "fulfilled" && redis.status === "fulfilled") {
    return { postgres: postgres.value, redis: redis.value };
  }
  await Promise.allSettled([
    postgres.status === "fulfilled" ? postgres.value.stop() : undefined,
    redis.status === "fulfilled" ? redis.value.stop() : undefined,
  ]);
  throw postgres.status === "rejected" ? postgres.reason : (redis as PromiseRejectedResult).reason;
}
