// The ACME client's script (acme/acme.sh), run for real with /bin/sh against a fake `lego` that
// records how it is called and does what the test says: succeed (writing a certificate and key
// where lego writes them), fail, or take its time.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";

const SCRIPT = join(__dirname, "../../acme/acme.sh");
const DOMAINS = "app.example.com www.example.com";

// Modes (file "mode"): ok, fail, or slow (four seconds, then ok). Each success writes a new serial.
const FAKE_LEGO = `#!/bin/sh
printf '%s\\n' "$*" >> "$FAKE_DIR/calls"
echo $$ > "$FAKE_DIR/lego.pid"
path="" domain=""
while [ $# -gt 0 ]; do
  case "$1" in
    --path) path=$2; shift ;;
    --domains) [ -z "$domain" ] && domain=$2; shift ;;
  esac
  shift
done
mode=$(cat "$FAKE_DIR/mode")
if [ "$mode" = slow ]; then sleep 4; fi
if [ "$mode" = fail ]; then
  echo "acme: error: 400 :: urn:ietf:params:acme:error:connection :: the CA could not connect"
  exit 1
fi
n=$(($(cat "$FAKE_DIR/serial" 2>/dev/null || echo 0) + 1))
echo "$n" > "$FAKE_DIR/serial"
mkdir -p "$path/certificates"
printf 'KEY %s\\n' "$n" > "$path/certificates/$domain.key"
printf 'CERT %s\\n' "$n" > "$path/certificates/$domain.crt"
echo "[INFO] [$domain] Server responded with a certificate."
`;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

const text = (file: string) => readFile(file, "utf8").catch(() => "");

class Client {
  private child: ChildProcess | null = null;
  stderr = "";
  exited = false;

  private constructor(readonly dir: string) {}

  static async create(mode: "ok" | "fail" | "slow"): Promise<Client> {
    const dir = await mkdtemp(join(tmpdir(), "webstack-acme-"));
    await writeFile(join(dir, "lego"), FAKE_LEGO, { mode: 0o755 });
    await writeFile(join(dir, "mode"), mode);
    return new Client(dir);
  }

  start(env: Record<string, string> = {}): void {
    this.child = spawn("/bin/sh", [SCRIPT], {
      // Its own process group, so its sleeps and lego go with it.
      detached: true,
      stdio: ["ignore", "ignore", "pipe"],
      env: {
        PATH: "/usr/bin:/bin",
        FAKE_DIR: this.dir,
        ACME_LEGO: join(this.dir, "lego"),
        ACME_CERTS: join(this.dir, "certs"),
        ACME_LIVE: join(this.dir, "live"),
        ACME_WEBROOT: join(this.dir, "webroot"),
        ACME_STATE: join(this.dir, "state"),
        ACME_SERVER: "https://acme.test/dir",
        ACME_EMAIL: "ops@example.com",
        ACME_DOMAINS: DOMAINS,
        ACME_RETRY_SECONDS: "1",
        ...env,
      },
    });
    this.child.stderr?.on("data", (chunk: Buffer) => (this.stderr += chunk.toString("utf8")));
    this.child.on("exit", () => (this.exited = true));
  }

  mode(mode: "ok" | "fail" | "slow"): Promise<void> {
    return writeFile(join(this.dir, "mode"), mode);
  }

  signal(signal: NodeJS.Signals): void {
    this.child?.kill(signal);
  }

  async calls(): Promise<string[]> {
    return (await text(join(this.dir, "calls"))).split("\n").filter(Boolean);
  }

  state(): Promise<string> {
    return text(join(this.dir, "state"));
  }

  bundle(): Promise<string> {
    return text(join(this.dir, "live", "bundle.pem"));
  }

  async stop(): Promise<void> {
    if (this.child?.pid !== undefined) {
      try {
        process.kill(-this.child.pid, "SIGKILL");
      } catch {
        // The group is gone already.
      }
    }
    await rm(this.dir, { recursive: true, force: true });
  }
}

const clients: Client[] = [];
async function client(mode: "ok" | "fail" | "slow"): Promise<Client> {
  const created = await Client.create(mode);
  clients.push(created);
  return created;
}
after(async () => {
  await Promise.all(clients.map((c) => c.stop()));
});

describe("acme/acme.sh", () => {
  it("orders for every name, installs key then chain as one file only root may read, and says ok", async () => {
    const c = await client("ok");
    c.start();
    await waitFor("the bundle", async () => (await c.bundle()) !== "");
    assert.equal(await c.bundle(), "KEY 1\nCERT 1\n");
    assert.equal((await stat(join(c.dir, "live", "bundle.pem"))).mode & 0o777, 0o600);
    const [call] = await c.calls();
    assert.match(call, /--server https:\/\/acme\.test\/dir .*--http\.webroot \S+ .*--key-type ec256/);
    assert.match(call, /--domains app\.example\.com --domains www\.example\.com run$/);
    await waitFor("the ok state", async () => (await c.state()).startsWith("ok "));
  });

  it("backs off after failures, doubling up to twelve times the first wait, and recovers without a restart", async () => {
    const c = await client("fail");
    c.start({ ACME_RETRY_SECONDS: "1" });
    await waitFor("four failed attempts", () => Promise.resolve(c.stderr.split("retrying in").length > 4), 20_000);
    assert.match(await c.state(), /^failing .*the CA could not connect; retrying in \d+s$/m);
    const delays = [...c.stderr.matchAll(/retrying in (\d+)s/g)].map((m) => Number(m[1]));
    assert.deepEqual(delays.slice(0, 4), [1, 2, 4, 8]);
    await c.mode("ok");
    await waitFor("the bundle after the CA came back", async () => (await c.bundle()) !== "", 20_000);
    // The state follows the bundle's install, a moment later.
    await waitFor("the ok state after the CA came back", async () => (await c.state()).startsWith("ok "), 5000);
  });

  it("a SIGUSR1 while lego runs renews right after it, whatever the expiry; SIGTERM stops lego with the client", async () => {
    const c = await client("slow");
    c.start({ ACME_CHECK_SECONDS: "3600" });
    await waitFor("lego to run", async () => (await c.calls()).length === 1);
    c.signal("SIGUSR1");
    await waitFor("a forced renewal", async () => (await c.calls()).length === 2, 10_000);
    assert.match((await c.calls())[1], /renew --days 100000 --no-random-sleep$/);
    await waitFor("the renewed bundle", async () => (await c.bundle()) === "KEY 2\nCERT 2\n", 10_000);
    // One signal, one renewal: then the client rests until its next check.
    await sleep(1500);
    assert.equal((await c.calls()).length, 2);

    // A third run, stopped while lego works: both end at once.
    c.signal("SIGUSR1");
    await waitFor("lego to run again", async () => (await c.calls()).length === 3);
    const lego = Number(await text(join(c.dir, "lego.pid")));
    c.signal("SIGTERM");
    // Well before the fake lego's four seconds are up.
    await waitFor("the client to stop", () => Promise.resolve(c.exited), 2000);
    await waitFor("lego to stop", () => Promise.resolve(!processAlive(lego)), 2000);
  });
});

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
