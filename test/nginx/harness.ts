// Real nginx and real app replicas on loopback, shared by the proxy tests and the benchmark.
// Every process started here is stopped by its `stop()`, and as a safety net when the Node process
// exits, so a failing test never leaves nginx or a replica behind.
import { type ChildProcess, execFile, spawn, spawnSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type NginxVars, renderNginxConfig } from "../../nginx/render";
import { ensureDebianPackages, freePort } from "../support/services";

const REPO_ROOT = join(__dirname, "..", "..");
const APP_DIR = join(REPO_ROOT, "app");

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function run(file: string, args: string[], timeoutMs = 300_000): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${file} ${args.join(" ")} failed: ${error.message}\n${stdout}${stderr}`));
      else resolve({ stdout, stderr });
    });
  });
}

const exitCleanups = new Set<() => void>();
process.once("exit", () => {
  for (const cleanup of exitCleanups) cleanup();
});

function killGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // Already gone.
  }
}

function waitForExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

// ---------------------------------------------------------------------------------------------
// HTTP client

export interface Response {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export interface RequestOptions {
  method?: string;
  path?: string;
  headers?: http.OutgoingHttpHeaders;
  body?: string | Buffer;
  agent?: http.Agent;
  timeoutMs?: number;
  /** Source address of the connection: another loopback address is another client to nginx. */
  localAddress?: string;
}

/** One HTTP request to 127.0.0.1:port; the body is returned as sent (no decompression). */
export function request(port: number, options: RequestOptions = {}): Promise<Response> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: "127.0.0.1",
        port,
        method: options.method ?? "GET",
        path: options.path ?? "/",
        headers: options.headers,
        agent: options.agent ?? false,
        timeout: options.timeoutMs ?? 15_000,
        localAddress: options.localAddress,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
        );
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`request to port ${port} timed out`)));
    req.on("error", reject);
    req.end(options.body);
  });
}

async function waitForStatus(
  port: number,
  path: string,
  status: number,
  what: string,
  output: () => string,
): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const answered = await request(port, { path, timeoutMs: 2000 }).then(
      (res) => res.status,
      () => 0,
    );
    if (answered === status) return;
    if (Date.now() > deadline) throw new Error(`${what} did not answer ${status} on ${path} within 30 s:\n${output()}`);
    await sleep(100);
  }
}

// ---------------------------------------------------------------------------------------------
// nginx

export interface NginxInstance {
  port: number;
  dir: string;
  configPath: string;
  /** Parsed JSON access log lines so far (nginx writes them as each request ends). */
  accessLog(): Record<string, unknown>[];
  errorLog(): string;
  /** `nginx -s reload`: what the container's upstream watcher does when replicas change. */
  reload(): Promise<void>;
  stop(): Promise<void>;
}

/** Vars for a loopback nginx in `dir`; the caller picks upstreams and may override the rest. */
export function loopbackNginxVars(dir: string, port: number, upstreams: string[]): NginxVars {
  return {
    listenPort: port,
    listenAddress: "127.0.0.1",
    upstreams,
    resolver: null,
    clientMaxBodySize: "1m",
    user: null,
    pidPath: join(dir, "nginx.pid"),
    tempDir: join(dir, "tmp"),
    mimeTypesPath: "/etc/nginx/mime.types",
    accessLogPath: join(dir, "access.log"),
    // Tests read a request's line as soon as it is answered.
    accessLogBuffered: false,
    workerProcesses: 1,
    workerConnections: 1024,
    adminRoutes: false,
    limitConnPerIp: 0,
    limitRatePerIp: 0,
    limitBurst: 0,
    tls: null,
  };
}

export async function nginxPrefix(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "webstack-nginx-"));
  // Workers run as an unprivileged user when the master is root; they must reach tmp/.
  await chmod(dir, 0o755);
  await mkdir(join(dir, "tmp"));
  return dir;
}

/** `nginx -t` on a config file; resolves with nginx's output, rejects when the test fails. */
export async function nginxTest(dir: string, configPath: string): Promise<string> {
  const { stderr } = await run("nginx", ["-t", "-e", "stderr", "-p", `${dir}/`, "-c", configPath]);
  return stderr;
}

/**
 * Renders the config for `upstreams` (with `overrides`), checks it with `nginx -t`, starts nginx in
 * the foreground in its own temporary prefix (Debian's default site and service are never used),
 * and waits for /nginx-health.
 */
export async function startNginx(upstreams: string[], overrides: Partial<NginxVars> = {}): Promise<NginxInstance> {
  await ensureDebianPackages("nginx");
  const dir = await nginxPrefix();
  const port = await freePort();
  const vars = { ...loopbackNginxVars(dir, port, upstreams), ...overrides };
  const configPath = join(dir, "nginx.conf");
  await writeFile(configPath, renderNginxConfig(vars));
  await nginxTest(dir, configPath);

  const child = spawn("nginx", ["-e", "stderr", "-p", `${dir}/`, "-c", configPath, "-g", "daemon off;"], {
    detached: true,
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
  const exitCleanup = (): void => {
    killGroup(child.pid, "SIGKILL");
    spawnSync("rm", ["-rf", dir]);
  };
  exitCleanups.add(exitCleanup);

  const instance: NginxInstance = {
    port,
    dir,
    configPath,
    accessLog: () =>
      readFileSync(vars.accessLogPath, "utf8")
        .split("\n")
        .filter((line) => line.startsWith("{"))
        .map((line) => JSON.parse(line) as Record<string, unknown>),
    errorLog: () => stderr,
    async reload() {
      await run("nginx", ["-e", "stderr", "-p", `${dir}/`, "-c", configPath, "-s", "reload"]);
    },
    async stop() {
      // SIGTERM is nginx's fast shutdown: the master stops its workers, then exits.
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        if (!(await waitForExit(child, 10_000))) killGroup(child.pid, "SIGKILL");
      }
      killGroup(child.pid, "SIGKILL");
      exitCleanups.delete(exitCleanup);
      await rm(dir, { recursive: true, force: true });
    },
  };
  try {
    await waitForStatus(port, "/nginx-health", 200, "nginx", () => stderr);
  } catch (error) {
    await instance.stop();
    throw error;
  }
  return instance;
}

// ---------------------------------------------------------------------------------------------
// App replicas

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(path) : statSync(path).mtimeMs);
  }
  return newest;
}

/** Builds app/dist when it is missing or older than app/src. */
export async function ensureAppBuilt(): Promise<void> {
  const server = join(APP_DIR, "dist", "server.js");
  if (existsSync(server) && statSync(server).mtimeMs >= newestMtime(join(APP_DIR, "src"))) return;
  if (!existsSync(join(APP_DIR, "node_modules")))
    await run("npm", ["ci", "--prefix", APP_DIR, "--no-audit", "--no-fund"]);
  await run("npm", ["run", "build", "--prefix", APP_DIR]);
}

/** Applies the app's migrations to `databaseUrl` with `app/dist/migrate.js`, as a release's migration run does. */
export function migrateDatabase(databaseUrl: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [join(APP_DIR, "dist", "migrate.js")],
      { env: { PATH: process.env.PATH, DATABASE_URL: databaseUrl }, timeout: 60_000 },
      (error, stdout, stderr) =>
        error ? reject(new Error(`the app's migrations failed: ${error.message}\n${stdout}${stderr}`)) : resolve(),
    );
  });
}

export interface AppReplica {
  id: string;
  port: number;
  /** Everything the replica wrote to stdout (its JSON log lines). */
  output(): string;
  /** SIGKILL, no goodbye: what a crashed replica looks like to nginx. */
  crash(): Promise<void>;
  stop(): Promise<void>;
}

/** Starts `app/dist/server.js` on a free port; `env` adds variables (e.g. ADMIN_TOKEN_FILE). */
export async function startAppReplica(
  id: string,
  databaseUrl: string,
  redisUrl: string,
  logLevel = "info",
  env: Record<string, string> = {},
): Promise<AppReplica> {
  const port = await freePort();
  const child = spawn(process.execPath, [join(APP_DIR, "dist", "server.js")], {
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    env: {
      PATH: process.env.PATH,
      PORT: String(port),
      HOST: "127.0.0.1",
      DATABASE_URL: databaseUrl,
      REDIS_URL: redisUrl,
      REPLICA_ID: id,
      SHUTDOWN_GRACE_MS: "2000",
      LOG_LEVEL: logLevel,
      ...env,
    },
  });
  let output = "";
  child.stdout?.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")));
  child.stderr?.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")));
  const exitCleanup = (): void => killGroup(child.pid, "SIGKILL");
  exitCleanups.add(exitCleanup);

  const replica: AppReplica = {
    id,
    port,
    output: () => output,
    async crash() {
      child.kill("SIGKILL");
      await waitForExit(child, 10_000);
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        if (!(await waitForExit(child, 10_000))) child.kill("SIGKILL");
      }
      exitCleanups.delete(exitCleanup);
    },
  };
  try {
    // /readyz answers 200 once the schema exists and Postgres is reachable.
    await waitForStatus(port, "/readyz", 200, `app replica ${id}`, () => output);
  } catch (error) {
    await replica.stop();
    throw error;
  }
  return replica;
}
