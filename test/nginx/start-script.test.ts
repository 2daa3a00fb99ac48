// The container's start script, run for real with /bin/sh, against a fake `nginx` on PATH that
// records how it is called and a fake lookup command whose answers the test controls.
import assert from "node:assert/strict";
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { copyFile, mkdir, mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { after, describe, it } from "node:test";
import { promisify } from "node:util";
import { http2Style, nginxContainerFiles, renderNginxConfig, type TlsVars } from "../../nginx/render";
import { loopbackNginxVars, nginxPrefix, request } from "./harness";
import { ensureDebianPackages, freePort } from "../support/services";

const START_SCRIPT = join(__dirname, "../../nginx/start.sh");
const START_CALL = "-g daemon off;";
const RELOAD_CALL = "-s reload";

// Records every call; a reload exits with the next code queued in reload-exits (default 0); the
// start call becomes a long sleep, keeping the pid the start script exec'd into, like nginx does.
const FAKE_NGINX = `#!/bin/sh
printf '%s\\n' "$*" >> "$FAKE_DIR/nginx-calls"
if [ "$*" = "${RELOAD_CALL}" ]; then
  code=$(head -n 1 "$FAKE_DIR/reload-exits" 2>/dev/null)
  sed -i 1d "$FAKE_DIR/reload-exits" 2>/dev/null
  exit "\${code:-0}"
fi
exec sleep 300
`;

// Answers from answer-<name> (like getent: nothing and exit 2 when the name is unknown); a file
// once-<name> is served a single time instead, to imitate one odd DNS answer.
const FAKE_LOOKUP = `#!/bin/sh
echo "$1" >> "$FAKE_DIR/lookups"
if [ -f "$FAKE_DIR/once-$1" ]; then
  cat "$FAKE_DIR/once-$1"
  rm -f "$FAKE_DIR/once-$1"
  echo served >> "$FAKE_DIR/once-served-$1"
  exit 0
fi
cat "$FAKE_DIR/answer-$1" 2>/dev/null || exit 2
`;

function getentOutput(name: string, addresses: string[]): string {
  return (
    addresses
      .flatMap((address) => [`${address}      STREAM ${name}`, `${address}      DGRAM  `, `${address}      RAW    `])
      .join("\n") + "\n"
  );
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function readLines(file: string): Promise<string[]> {
  try {
    return (await readFile(file, "utf8")).split("\n").filter((line) => line !== "");
  } catch {
    return [];
  }
}

async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** Child pids of a process (nginx master: its workers, plus the watcher's shell). */
async function childPids(pid: number): Promise<number[]> {
  const children = (await readFile(`/proc/${pid}/task/${pid}/children`, "utf8")).trim().split(/\s+/).filter(Boolean);
  const workers: number[] = [];
  for (const child of children) {
    const comm = await readFile(`/proc/${child}/cmdline`, "utf8").catch(() => "");
    if (comm.startsWith("nginx: worker process")) workers.push(Number(child));
  }
  return workers;
}

class Harness {
  private child: ChildProcess | null = null;

  constructor(readonly dir: string) {}

  static async create(names: string[], nginxScript = FAKE_NGINX): Promise<Harness> {
    const dir = await mkdtemp(join(tmpdir(), "webstack-start-"));
    await copyFile(START_SCRIPT, join(dir, "start.sh"));
    await writeFile(join(dir, "upstream-names"), names.map((name) => `${name}\n`).join(""));
    await writeFile(join(dir, "nginx"), nginxScript, { mode: 0o755 });
    await writeFile(join(dir, "lookup"), FAKE_LOOKUP, { mode: 0o755 });
    await writeFile(join(dir, "nginx.conf"), "events {}\n");
    return new Harness(dir);
  }

  start(): void {
    this.child = spawn("/bin/sh", [join(this.dir, "start.sh")], {
      // Own process group, so the watcher running in the background can be stopped with it.
      detached: true,
      stdio: ["ignore", "ignore", "inherit"],
      env: {
        PATH: `${this.dir}:/usr/bin:/bin`,
        FAKE_DIR: this.dir,
        WATCH_LOOKUP: join(this.dir, "lookup"),
        WATCH_INTERVAL: "0.05",
        WATCH_RELOAD_GAP: "0.2",
        WATCH_START_WAIT: "30",
        WATCH_CONFIG: join(this.dir, "nginx.conf"),
      },
    });
  }

  get pid(): number {
    assert.ok(this.child?.pid, "start script not started");
    return this.child.pid;
  }

  /** Files the fake scripts read appear whole (write, then rename), never half written. */
  private async put(file: string, content: string): Promise<void> {
    const temporary = join(this.dir, `.${file}.tmp`);
    await writeFile(temporary, content);
    await rename(temporary, join(this.dir, file));
  }

  answer(name: string, addresses: string[]): Promise<void> {
    return this.put(`answer-${name}`, getentOutput(name, addresses));
  }

  unresolvable(name: string): Promise<void> {
    return rm(join(this.dir, `answer-${name}`), { force: true });
  }

  answerOnce(name: string, addresses: string[]): Promise<void> {
    return this.put(`once-${name}`, getentOutput(name, addresses));
  }

  /** A new config, written whole as the files run writes it (after emptying the directory). */
  async rewriteConfig(content: string): Promise<void> {
    await rm(join(this.dir, "nginx.conf"), { force: true });
    await this.put("nginx.conf", content);
  }

  removeConfig(): Promise<void> {
    return rm(join(this.dir, "nginx.conf"), { force: true });
  }

  failNextReloads(count: number): Promise<void> {
    return this.put("reload-exits", "1\n".repeat(count));
  }

  nginxCalls(): Promise<string[]> {
    return readLines(join(this.dir, "nginx-calls"));
  }

  async lookupCount(): Promise<number> {
    return (await readLines(join(this.dir, "lookups"))).length;
  }

  /** Waits until the watcher has polled `polls` more times, so a reload it would do has happened. */
  async letPolls(polls: number): Promise<void> {
    const target = (await this.lookupCount()) + polls;
    await waitFor(`${polls} lookups`, async () => (await this.lookupCount()) >= target);
  }

  async waitForCalls(count: number): Promise<void> {
    await waitFor(`${count} nginx calls`, async () => (await this.nginxCalls()).length >= count);
  }

  groupAlive(): boolean {
    try {
      process.kill(-this.pid, 0);
      return true;
    } catch {
      return false;
    }
  }

  async stop(): Promise<void> {
    if (this.child?.pid !== undefined && this.groupAlive()) process.kill(-this.child.pid, "SIGKILL");
    await rm(this.dir, { recursive: true, force: true });
  }
}

const harnesses: Harness[] = [];
async function harness(names: string[], nginxScript?: string): Promise<Harness> {
  const created = await Harness.create(names, nginxScript);
  harnesses.push(created);
  return created;
}

after(async () => {
  await Promise.all(harnesses.map((h) => h.stop()));
});

describe("nginx/start.sh", () => {
  it("reloads nginx exactly once per change of addresses, and never otherwise", async () => {
    const h = await harness(["app"]);
    await h.answer("app", ["10.0.0.2", "10.0.0.3"]);
    h.start();
    await h.waitForCalls(1);
    await h.letPolls(6);
    assert.deepEqual(await h.nginxCalls(), [START_CALL]);

    // Same set in another order (Docker's DNS rotates answers): nothing to do.
    await h.answer("app", ["10.0.0.3", "10.0.0.2"]);
    await h.letPolls(6);
    assert.deepEqual(await h.nginxCalls(), [START_CALL]);

    // A replica joins: one reload.
    await h.answer("app", ["10.0.0.3", "10.0.0.2", "10.0.0.4"]);
    await h.waitForCalls(2);
    await h.letPolls(10);
    assert.deepEqual(await h.nginxCalls(), [START_CALL, RELOAD_CALL]);

    // The name briefly does not resolve, then comes back unchanged: nginx keeps what it has.
    await h.unresolvable("app");
    await h.letPolls(6);
    await h.answer("app", ["10.0.0.2", "10.0.0.3", "10.0.0.4"]);
    await h.letPolls(6);
    assert.deepEqual(await h.nginxCalls(), [START_CALL, RELOAD_CALL]);

    // One odd answer that is gone on the next poll does not cause a reload.
    await h.answerOnce("app", ["10.0.0.9"]);
    await waitFor(
      "the odd answer to be served",
      async () => (await readLines(join(h.dir, "once-served-app"))).length === 1,
    );
    await h.letPolls(6);
    assert.deepEqual(await h.nginxCalls(), [START_CALL, RELOAD_CALL]);

    // A replica leaves and the first reload fails: it is tried again, and then left alone.
    await h.failNextReloads(1);
    await h.answer("app", ["10.0.0.2", "10.0.0.4"]);
    await h.waitForCalls(4);
    await h.letPolls(10);
    assert.deepEqual(await h.nginxCalls(), [START_CALL, RELOAD_CALL, RELOAD_CALL, RELOAD_CALL]);
    assert.equal((await readLines(join(h.dir, "reload-exits"))).length, 0);
    assert.ok(h.groupAlive(), "nginx must keep running");
  });

  it("waits for the names to resolve before starting nginx, then does not reload for them", async () => {
    const h = await harness(["app"]);
    h.start();
    await h.letPolls(5);
    assert.deepEqual(await h.nginxCalls(), []);
    await h.answer("app", ["10.0.0.2"]);
    await h.waitForCalls(1);
    await h.letPolls(6);
    assert.deepEqual(await h.nginxCalls(), [START_CALL]);
  });

  it("watches every name and stops watching when nginx exits", async () => {
    const h = await harness(["app", "admin"]);
    await h.answer("app", ["10.0.0.2"]);
    await h.answer("admin", ["10.0.1.2"]);
    h.start();
    await h.waitForCalls(1);
    await h.answer("admin", ["10.0.1.3"]);
    await h.waitForCalls(2);
    await h.letPolls(6);
    assert.deepEqual(await h.nginxCalls(), [START_CALL, RELOAD_CALL]);
    const looked = new Set(await readLines(join(h.dir, "lookups")));
    assert.deepEqual([...looked].sort(), ["admin", "app"]);

    process.kill(h.pid, "SIGTERM");
    await waitFor("the watcher to exit after nginx", () => !h.groupAlive());
  });

  it("reloads nginx once per new config, not while the config is missing, and not for the same config written again", async () => {
    const h = await harness(["app"]);
    await h.answer("app", ["10.0.0.2"]);
    h.start();
    await h.waitForCalls(1);
    await h.letPolls(6);

    await h.rewriteConfig("events {}\n# client_max_body_size 2m\n");
    await h.waitForCalls(2);
    await h.letPolls(10);
    assert.deepEqual(await h.nginxCalls(), [START_CALL, RELOAD_CALL]);

    // The files run empties the directory before it copies: a missing config changes nothing.
    await h.removeConfig();
    await h.letPolls(6);
    await h.rewriteConfig("events {}\n# client_max_body_size 2m\n");
    await h.letPolls(6);
    assert.deepEqual(await h.nginxCalls(), [START_CALL, RELOAD_CALL]);

    // A config and an address changing together: one reload.
    await h.rewriteConfig("events {}\n# client_max_body_size 3m\n");
    await h.answer("app", ["10.0.0.2", "10.0.0.3"]);
    await h.waitForCalls(3);
    await h.letPolls(10);
    assert.deepEqual(await h.nginxCalls(), [START_CALL, RELOAD_CALL, RELOAD_CALL]);
  });

  it("starts nginx at once when there are no names, and watches its config alone", async () => {
    const h = await harness([]);
    h.start();
    await h.waitForCalls(1);
    assert.deepEqual(await h.nginxCalls(), [START_CALL]);
    await h.rewriteConfig("events {}\n# changed\n");
    await h.waitForCalls(2);
    assert.deepEqual(await h.nginxCalls(), [START_CALL, RELOAD_CALL]);
    process.kill(h.pid, "SIGTERM");
    await waitFor("nginx and the watcher to exit", () => !h.groupAlive());
    assert.equal(await h.lookupCount(), 0);
  });
});

describe("nginx/start.sh with the real nginx", () => {
  it("starts nginx, reloads it when the addresses change, and serves throughout", async () => {
    await ensureDebianPackages("nginx");
    const upstream = http.createServer((_req, res) => res.end("ok"));
    await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
    after(() => new Promise<void>((resolve) => upstream.close(() => resolve())));
    const upstreamPort = (upstream.address() as AddressInfo).port;

    const prefix = await nginxPrefix();
    after(() => rm(prefix, { recursive: true, force: true }));
    const port = await freePort();
    // "localhost" is the name nginx resolves itself; the watcher sees the fake lookup's answers.
    await writeFile(
      join(prefix, "nginx.conf"),
      renderNginxConfig(loopbackNginxVars(prefix, port, [`localhost:${upstreamPort}`])),
    );
    // In the container nginx finds its config at the default path; here the wrapper points it at
    // the temporary prefix, and records each call like the fake does.
    const wrapper = `#!/bin/sh
printf '%s\\n' "$*" >> "$FAKE_DIR/nginx-calls"
exec /usr/sbin/nginx -p "${prefix}/" -c "${prefix}/nginx.conf" "$@"
`;
    const h = await harness(["localhost"], wrapper);
    await h.answer("localhost", ["127.0.0.1"]);
    h.start();
    await waitFor(
      "nginx to answer",
      async () =>
        (await request(port, { path: "/nginx-health" }).then(
          (r) => r.status,
          () => 0,
        )) === 200,
    );
    assert.equal((await request(port)).body.toString("utf8"), "ok");
    const workersBefore = await childPids(h.pid);
    assert.equal(workersBefore.length, 1);

    await h.answer("localhost", ["127.0.0.1", "127.0.0.2"]);
    await h.waitForCalls(2);
    // A reload replaces the worker: proof the signal reached the nginx the script started.
    await waitFor("a new nginx worker", async () => {
      const workers = await childPids(h.pid);
      return workers.length === 1 && workers[0] !== workersBefore[0];
    });
    await h.letPolls(6);
    assert.deepEqual(await h.nginxCalls(), [START_CALL, RELOAD_CALL]);
    for (let i = 0; i < 5; i += 1) assert.equal((await request(port)).status, 200);
    assert.ok(h.groupAlive());

    // nginx stopping ends the watcher too.
    process.kill(h.pid, "SIGTERM");
    await waitFor("nginx and the watcher to exit", () => !h.groupAlive());
  });
});

describe("nginx/start.sh with the real nginx, under load", () => {
  const NAME = "replicas.webstack.test";
  it("a replica set that changes under load (one added, then the first removed): the watcher's reloads fail no request", async () => {
    await ensureDebianPackages("nginx");
    // Two replicas on one port, as Docker gives every replica of the app: one address each.
    const serve = (name: string) => http.createServer((_req, res) => res.end(name));
    const first = serve("first");
    await new Promise<void>((resolve) => first.listen(0, "127.0.0.1", resolve));
    const upstreamPort = (first.address() as AddressInfo).port;
    const second = serve("second");
    await new Promise<void>((resolve, reject) => {
      second.once("error", reject);
      second.listen(upstreamPort, "127.0.0.2", resolve);
    });
    let firstOpen = true;
    const closeFirst = () =>
      firstOpen
        ? new Promise<void>((resolve) => {
            firstOpen = false;
            first.closeAllConnections();
            first.close(() => resolve());
          })
        : Promise.resolve();
    after(() => closeFirst());
    after(() => new Promise<void>((resolve) => second.close(() => resolve())));

    const prefix = await nginxPrefix();
    after(() => rm(prefix, { recursive: true, force: true }));
    const port = await freePort();
    await writeFile(
      join(prefix, "nginx.conf"),
      renderNginxConfig(loopbackNginxVars(prefix, port, [`${NAME}:${upstreamPort}`])),
    );
    // nginx resolves the name itself, at start and at each reload, as Docker's DNS answers it in a
    // container: here from a hosts file of the test's, bound over /etc/hosts for nginx alone.
    const hosts = join(prefix, "hosts");
    const resolveTo = async (addresses: string[]) => {
      // In place: the bind mount holds this file's inode.
      await writeFile(hosts, ["127.0.0.1 localhost", ...addresses.map((a) => `${a} ${NAME}`), ""].join("\n"));
      await h.answer(NAME, addresses);
    };
    const wrapper = `#!/bin/sh
printf '%s\\n' "$*" >> "$FAKE_DIR/nginx-calls"
exec unshare --mount sh -c 'mount --bind "$0" /etc/hosts && exec /usr/sbin/nginx -p "${prefix}/" -c "${prefix}/nginx.conf" "$@"' "${hosts}" "$@"
`;
    const h = await harness([NAME], wrapper);
    await resolveTo(["127.0.0.1"]);
    h.start();
    await waitFor(
      "nginx to answer",
      async () =>
        (await request(port).then(
          (r) => r.status,
          () => 0,
        )) === 200,
    );

    // A steady load of independent clients, each request on a new connection, every failure kept.
    const served: string[] = [];
    const failures: string[] = [];
    let stopping = false;
    const client = async (): Promise<void> => {
      while (!stopping) {
        try {
          const r = await request(port, { timeoutMs: 10_000 });
          if (r.status === 200) served.push(r.body.toString("utf8"));
          else failures.push(`HTTP ${r.status}`);
        } catch (error) {
          failures.push((error as Error).message);
        }
      }
    };
    const clients = Promise.all(Array.from({ length: 6 }, client));
    try {
      await sleep(500);
      await resolveTo(["127.0.0.1", "127.0.0.2"]);
      await h.waitForCalls(2);
      await waitFor("the added replica to serve", () => served.includes("second"));
      await resolveTo(["127.0.0.2"]);
      await h.waitForCalls(3);
      // Let every worker of the old configuration finish its requests to the first replica.
      await sleep(1500);
      const before = served.length;
      await closeFirst();
      await waitFor("requests after the first replica left", () => served.length >= before + 200, 30_000);
    } finally {
      stopping = true;
      await clients;
    }
    assert.deepEqual(await h.nginxCalls(), [START_CALL, RELOAD_CALL, RELOAD_CALL]);
    assert.deepEqual(
      failures.slice(0, 5),
      [],
      `${failures.length} of ${served.length + failures.length} requests failed`,
    );
    assert.ok(served.includes("first") && served.includes("second"), "both replicas served");
    assert.deepEqual([...new Set(served.slice(-100))], ["second"], "only the remaining replica serves at the end");
    process.kill(h.pid, "SIGTERM");
    await waitFor("nginx and the watcher to exit", () => !h.groupAlive());
  });
});

/** A CA and certificates it signs for "localhost", made with the openssl CLI (EC P-256). */
class TestCa {
  private serial = 0;
  private constructor(readonly dir: string) {}

  static async create(): Promise<TestCa> {
    await ensureDebianPackages("openssl");
    const dir = await mkdtemp(join(tmpdir(), "webstack-ca-"));
    const ca = new TestCa(dir);
    await openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", join(dir, "ca.key")]);
    await openssl([
      ...["req", "-x509", "-new", "-key", join(dir, "ca.key"), "-sha256", "-days", "2"],
      ...["-subj", "/CN=webstack test CA", "-out", join(dir, "ca.pem")],
    ]);
    return ca;
  }

  get rootPem(): Promise<string> {
    return readFile(join(this.dir, "ca.pem"), "utf8");
  }

  /** A new key and certificate for localhost, as the ACME client writes them: key, then chain. */
  async bundle(): Promise<{ bundle: string; serial: string }> {
    this.serial += 1;
    const name = `leaf${this.serial}`;
    const key = join(this.dir, `${name}.key`);
    await openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key]);
    await openssl(["req", "-new", "-key", key, "-subj", "/CN=localhost", "-out", join(this.dir, `${name}.csr`)]);
    await writeFile(join(this.dir, `${name}.ext`), "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
    // Four hex digits, as Node shows a serial (even length, upper case, no leading zero).
    const serial = (0x1000 + this.serial).toString(16).toUpperCase();
    await openssl([
      ...["x509", "-req", "-in", join(this.dir, `${name}.csr`), "-CA", join(this.dir, "ca.pem")],
      ...["-CAkey", join(this.dir, "ca.key"), "-set_serial", `0x${serial}`, "-days", "1", "-sha256"],
      ...["-extfile", join(this.dir, `${name}.ext`), "-out", join(this.dir, `${name}.pem`)],
    ]);
    const pem = (await readFile(key, "utf8")) + (await readFile(join(this.dir, `${name}.pem`), "utf8"));
    return { bundle: pem, serial };
  }
}

function openssl(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile("openssl", args, (error, _stdout, stderr) =>
      error ? reject(new Error(`openssl ${args[0]}: ${stderr}`)) : resolve(),
    );
  });
}

interface TlsAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  protocol: string | null;
  alpn: string | false | null;
  serial: string;
}

/** One HTTPS/1.1 request to 127.0.0.1 trusting only `ca`, on a new connection (ALPN offers h2 too). */
function httpsGet(port: number, ca: string, path = "/"): Promise<TlsAnswer> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      { host: "127.0.0.1", servername: "localhost", port, path, ca, agent: false, timeout: 10_000 },
      (res) => {
        const socket = res.socket as TLSSocket;
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString("utf8"),
            protocol: socket.getProtocol(),
            alpn: socket.alpnProtocol,
            serial: socket.getPeerCertificate().serialNumber,
          }),
        );
      },
    );
    req.on("timeout", () => req.destroy(new Error("HTTPS request timed out")));
    req.on("error", reject);
    req.end();
  });
}

/** The protocol ALPN settles on when the client offers h2 first. */
function alpnWith(port: number, ca: string): Promise<string | false> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({
      host: "127.0.0.1",
      servername: "localhost",
      port,
      ca,
      ALPNProtocols: ["h2", "http/1.1"],
    });
    socket.once("secureConnect", () => {
      const chosen = socket.alpnProtocol ?? false;
      socket.end();
      resolve(chosen);
    });
    socket.once("error", reject);
  });
}

describe("nginx/start.sh with the real nginx and HTTPS", () => {
  it("serves HTTP until the certificate exists, then HTTPS (TLS 1.3, h2) with HTTP redirected but for the challenge path; a new certificate is picked up under load with no failed request; a bundle nginx rejects at start leaves it serving HTTP", async () => {
    await ensureDebianPackages("nginx");
    const ca = await TestCa.create();
    after(() => rm(ca.dir, { recursive: true, force: true }));
    const root = await ca.rootPem;
    const upstream = http.createServer((req, res) =>
      res.end(JSON.stringify({ proto: req.headers["x-forwarded-proto"] })),
    );
    await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
    after(() => new Promise<void>((resolve) => upstream.close(() => resolve())));
    const upstreamPort = (upstream.address() as AddressInfo).port;

    const prefix = await nginxPrefix();
    after(() => rm(prefix, { recursive: true, force: true }));
    const [port, tlsPort] = [await freePort(), await freePort()];
    const nginxVersion = (await promisify(execFile)("/usr/sbin/nginx", ["-v"])).stderr.split("/")[1];
    const tls: TlsVars = {
      listenPort: tlsPort,
      publicPort: tlsPort,
      bundlePath: join(prefix, "certs", "bundle.pem"),
      activeDir: join(prefix, "tmp", "webstack-tls"),
      challengeRoot: join(prefix, "acme"),
      hstsSeconds: 600,
      names: ["localhost", "127.0.0.1"],
      http2: http2Style(nginxVersion),
    };
    const vars = { ...loopbackNginxVars(prefix, port, [`localhost:${upstreamPort}`]), tls };
    await mkdir(join(prefix, "certs"));
    await mkdir(join(prefix, "acme", ".well-known", "acme-challenge"), { recursive: true });
    await writeFile(join(prefix, "acme", ".well-known", "acme-challenge", "token1"), "token1.thumbprint");
    await writeFile(join(prefix, "nginx.conf"), renderNginxConfig(vars));
    const wrapper = `#!/bin/sh
printf '%s\\n' "$*" >> "$FAKE_DIR/nginx-calls"
exec /usr/sbin/nginx -p "${prefix}/" -c "${prefix}/nginx.conf" "$@"
`;
    const start = async (): Promise<Harness> => {
      const h = await harness(["localhost"], wrapper);
      for (const file of nginxContainerFiles(vars).filter((f) => /tls\.(conf|env)$/.test(f.path))) {
        await writeFile(join(h.dir, basename(file.path)), file.content);
      }
      await h.answer("localhost", ["127.0.0.1"]);
      h.start();
      await waitFor(
        "nginx to answer",
        async () => (await request(port, { path: "/nginx-health" }).catch(() => null))?.status === 200,
      );
      return h;
    };
    const putBundle = async (pem: string) => {
      await writeFile(`${tls.bundlePath}.tmp`, pem, { mode: 0o600 });
      await rename(`${tls.bundlePath}.tmp`, tls.bundlePath);
    };

    // No certificate yet: HTTP serves the app, and nothing listens for HTTPS.
    const h = await start();
    const plain = await request(port);
    assert.equal(plain.status, 200);
    assert.deepEqual(JSON.parse(plain.body.toString("utf8")), { proto: "http" });
    await assert.rejects(httpsGet(tlsPort, root), /ECONNREFUSED/);

    // The certificate arrives: one reload, then HTTPS.
    const first = await ca.bundle();
    await putBundle(first.bundle);
    await waitFor("HTTPS to answer", async () => (await httpsGet(tlsPort, root).catch(() => null))?.status === 200);
    const secure = await httpsGet(tlsPort, root);
    assert.deepEqual(
      [secure.status, JSON.parse(secure.body), secure.protocol, secure.serial],
      [200, { proto: "https" }, "TLSv1.3", first.serial],
    );
    assert.equal(secure.headers["strict-transport-security"], "max-age=600");
    assert.equal(secure.headers["x-content-type-options"], "nosniff");
    assert.equal(await alpnWith(tlsPort, root), "h2");

    // HTTP now redirects, keeping the path and query; the challenge path and nginx's own health do not.
    // (Until the old worker has closed its listener, a new connection may still reach it.)
    const redirect = () => request(port, { path: "/visits?x=1", headers: { host: "localhost" } });
    let redirects = 0;
    await waitFor("HTTP to redirect five times in a row", async () => {
      redirects = (await redirect()).status === 308 ? redirects + 1 : 0;
      return redirects >= 5;
    });
    const redirected = await redirect();
    assert.deepEqual(
      [redirected.status, redirected.headers.location],
      [308, `https://localhost:${tlsPort}/visits?x=1`],
    );
    assert.equal(redirected.headers["strict-transport-security"], undefined, "no HSTS over plain HTTP");
    // A Host that is not one of the stack's names is not echoed into the redirect.
    const elsewhere = await request(port, { path: "/", headers: { host: "evil.example" } });
    assert.deepEqual([elsewhere.status, elsewhere.headers.location], [308, `https://localhost:${tlsPort}/`]);
    const challenge = await request(port, { path: "/.well-known/acme-challenge/token1" });
    assert.deepEqual([challenge.status, challenge.body.toString("utf8")], [200, "token1.thumbprint"]);
    assert.equal((await request(port, { path: "/nginx-health" })).status, 200);

    // A renewed certificate under load: every request answered, the new one served afterwards.
    let served = 0;
    const failures: string[] = [];
    let loading = true;
    const load = Promise.all(
      Array.from({ length: 4 }, async () => {
        while (loading) {
          const answer = await httpsGet(tlsPort, root).catch((error: Error) => error);
          if (answer instanceof Error || answer.status !== 200)
            failures.push(String(answer instanceof Error ? answer.message : answer.status));
          else served += 1;
        }
      }),
    );
    await sleep(500);
    const second = await ca.bundle();
    await putBundle(second.bundle);
    await waitFor("the new certificate", async () => (await httpsGet(tlsPort, root)).serial === second.serial);
    await sleep(500);
    loading = false;
    await load;
    assert.deepEqual(failures, []);
    assert.ok(served > 20, `only ${served} requests served`);
    process.kill(h.pid, "SIGTERM");
    await waitFor("nginx to exit", () => !h.groupAlive());

    // A bundle nginx cannot load (a key and no certificate) at start: HTTP serves, HTTPS waits.
    // (The container's copy lies on a tmpfs, empty at each start.)
    await rm(tls.activeDir, { recursive: true, force: true });
    await putBundle(first.bundle.split("-----BEGIN CERTIFICATE-----")[0]);
    const broken = await start();
    assert.equal((await request(port)).status, 200);
    await assert.rejects(httpsGet(tlsPort, root), /ECONNREFUSED/);
    // The rejected bundle holds up no later reload: a new replica address is taken in.
    const workers = await childPids(broken.pid);
    await broken.answer("localhost", ["127.0.0.1", "127.0.0.2"]);
    await waitFor("a reload for the new address", async () => {
      const now = await childPids(broken.pid);
      return now.length === 1 && now[0] !== workers[0];
    });
    await assert.rejects(httpsGet(tlsPort, root), /ECONNREFUSED/);
    await putBundle(second.bundle);
    await waitFor(
      "HTTPS once the bundle is whole",
      async () => (await httpsGet(tlsPort, root).catch(() => null))?.serial === second.serial,
    );
    // A bad bundle while HTTPS is up: nginx keeps the last one it accepted, through later reloads too.
    await putBundle(first.bundle.split("-----BEGIN CERTIFICATE-----")[0]);
    await broken.letPolls(10);
    await broken.answer("localhost", ["127.0.0.1"]);
    await broken.letPolls(10);
    assert.equal((await httpsGet(tlsPort, root)).serial, second.serial);
    const third = await ca.bundle();
    await putBundle(third.bundle);
    await waitFor(
      "the next good bundle",
      async () => (await httpsGet(tlsPort, root).catch(() => null))?.serial === third.serial,
    );
    process.kill(broken.pid, "SIGTERM");
    await waitFor("nginx to exit", () => !broken.groupAlive());
  });
});
