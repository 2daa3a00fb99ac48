// The backup container's script (postgres/backup.sh), run for real with /bin/sh and jq against a
// fake `pgbackrest` that records how it is called, keeps a list of backups as `info --output=json`
// reports them, and does what the test says: succeed, or fail. A fake `pg_isready` answers once
// the test says Postgres is up.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ensureDebianPackages } from "../support/services";

const SCRIPT = join(__dirname, "../../postgres/backup.sh");

// Mode file: ok or fail. Backups are kept as JSON lines in "backups"; info prints them as
// pgBackRest's JSON. A backup's stop time is "now" unless the file "clock" says otherwise.
const FAKE_PGBACKREST = `#!/bin/sh
printf '%s\\n' "$*" >> "$FAKE_DIR/calls"
cmd=""
type=""
for arg in "$@"; do
  case "$arg" in
    --type=*) type=\${arg#--type=} ;;
    --*) ;;
    *) cmd=$arg ;;
  esac
done
mode=$(cat "$FAKE_DIR/mode")
case "$cmd" in
  stanza-create)
    if [ "$mode" = mismatch ]; then
      echo "ERROR: [028]: backup info file or archive info file invalid"; exit 28
    fi
    [ "$mode" = ok ] || { echo "ERROR: [056]: unable to connect to the repository"; exit 56; } ;;
  stanza-upgrade)
    cat "$FAKE_DIR/server" > "$FAKE_DIR/dbversion"
    echo "ok" > "$FAKE_DIR/mode" ;;
  info)
    printf '[{"name":"webstack","db":[{"id":1,"version":"%s"}],"backup":[' "$(cat "$FAKE_DIR/dbversion" 2>/dev/null || echo 15)"
    paste -sd, "$FAKE_DIR/backups" 2>/dev/null | tr -d '\\n'
    printf ']}]\\n' ;;
  backup)
    if [ "$mode" != ok ]; then echo "ERROR: [082]: WAL segment was not archived before the 60000ms timeout"; exit 82; fi
    now=$(cat "$FAKE_DIR/clock" 2>/dev/null || date +%s)
    n=$(($(wc -l < "$FAKE_DIR/backups" 2>/dev/null || echo 0) + 1))
    case "$type" in full) kind=F ;; diff) kind=D ;; *) kind=I ;; esac
    label="20261126-00000\${n}\${kind}"
    printf '{"label":"%s","type":"%s","timestamp":{"start":%s,"stop":%s}}\\n' "$label" "$type" "$now" "$now" >> "$FAKE_DIR/backups"
    echo "INFO: backup command end: completed successfully" ;;
esac
`;

const FAKE_PG_ISREADY = `#!/bin/sh
[ -f "$FAKE_DIR/postgres-up" ]
`;

// The server's version as SHOW server_version_num prints it, from the file "server" (a major).
const FAKE_PSQL = `#!/bin/sh
echo "$(cat "$FAKE_DIR/server" 2>/dev/null || echo 15)0006"
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

class BackupContainer {
  private child: ChildProcess | null = null;
  output = "";

  private constructor(readonly dir: string) {}

  static async create(mode: "ok" | "fail" | "mismatch", backups: object[] = []): Promise<BackupContainer> {
    const dir = await mkdtemp(join(tmpdir(), "webstack-backup-"));
    await writeFile(join(dir, "pgbackrest"), FAKE_PGBACKREST, { mode: 0o755 });
    await writeFile(join(dir, "pg_isready"), FAKE_PG_ISREADY, { mode: 0o755 });
    await writeFile(join(dir, "psql"), FAKE_PSQL, { mode: 0o755 });
    await writeFile(join(dir, "mode"), mode);
    await writeFile(join(dir, "backups"), backups.map((b) => `${JSON.stringify(b)}\n`).join(""));
    return new BackupContainer(dir);
  }

  start(env: Record<string, string> = {}): void {
    this.child = spawn("/bin/sh", [SCRIPT], {
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      env: {
        PATH: `${this.dir}:/usr/bin:/bin`,
        FAKE_DIR: this.dir,
        BACKUP_STATE: join(this.dir, "state"),
        BACKUP_RETRY_SECONDS: "1",
        ...env,
      },
    });
    this.child.stdout!.on("data", (chunk: Buffer) => (this.output += chunk.toString("utf8")));
    this.child.stderr!.on("data", (chunk: Buffer) => (this.output += chunk.toString("utf8")));
  }

  signal(name: NodeJS.Signals): void {
    this.child?.kill(name);
  }

  async calls(): Promise<string[]> {
    return (await text(join(this.dir, "calls"))).split("\n").filter((l) => l !== "");
  }

  state(): Promise<string> {
    return text(join(this.dir, "state"));
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (child !== null && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        // already gone
      }
      await exited;
    }
    await rm(this.dir, { recursive: true, force: true });
  }
}

describe("postgres/backup.sh against a fake pgbackrest", () => {
  const started: BackupContainer[] = [];
  const container = async (mode: "ok" | "fail" | "mismatch", backups: object[] = []) => {
    const c = await BackupContainer.create(mode, backups);
    started.push(c);
    return c;
  };
  before(() => ensureDebianPackages("jq"));
  after(async () => {
    for (const c of started) await c.stop();
  });

  it("waits for Postgres, creates the stanza, takes a full backup when there is none, and reports it as the health check reads it", async () => {
    const c = await container("ok");
    c.start();
    await waitFor("the waiting state", async () => (await c.state()).startsWith("waiting for Postgres"));
    assert.deepEqual(await c.calls(), [], "nothing asked of pgBackRest before Postgres answers");
    await writeFile(join(c.dir, "postgres-up"), "");
    await waitFor("the first backup", async () => (await c.state()).startsWith("ok "));
    const calls = await c.calls();
    assert.equal(calls[0], "--stanza=webstack stanza-create");
    assert.deepEqual(
      calls.filter((call) => call.includes(" backup")),
      ["--stanza=webstack backup --type=full"],
    );
    assert.match(await c.state(), /^ok 20261126-000001F \d+\n$/);
  });

  it("takes a differential backup when the newest is older than BACKUP_DIFF_HOURS, and a full one when the newest full is older than BACKUP_FULL_DAYS", async () => {
    const now = Math.floor(Date.now() / 1000);
    const recentFull = {
      label: "20261120-000000F",
      type: "full",
      timestamp: { start: now - 2 * 86400, stop: now - 2 * 86400 },
    };
    const diff = await container("ok", [recentFull]);
    await writeFile(join(diff.dir, "postgres-up"), "");
    diff.start({ BACKUP_FULL_DAYS: "7", BACKUP_DIFF_HOURS: "24" });
    await waitFor("a backup", async () => (await diff.state()).startsWith("ok 20261126"));
    assert.deepEqual(
      (await diff.calls()).filter((call) => call.includes(" backup")),
      ["--stanza=webstack backup --type=diff"],
    );

    const oldFull = {
      label: "20261110-000000F",
      type: "full",
      timestamp: { start: now - 8 * 86400, stop: now - 8 * 86400 },
    };
    const recentDiff = {
      label: "20261110-000000F_20261117-000000D",
      type: "diff",
      timestamp: { start: now - 3600, stop: now - 3600 },
    };
    const full = await container("ok", [oldFull, recentDiff]);
    await writeFile(join(full.dir, "postgres-up"), "");
    full.start({ BACKUP_FULL_DAYS: "7", BACKUP_DIFF_HOURS: "24" });
    await waitFor("a backup", async () => (await full.state()).startsWith("ok 20261126"));
    assert.deepEqual(
      (await full.calls()).filter((call) => call.includes(" backup")),
      ["--stanza=webstack backup --type=full"],
    );
  });

  it("takes nothing while the newest backups are recent, says ok with the newest, and takes a full backup at once on SIGUSR1", async () => {
    const now = Math.floor(Date.now() / 1000);
    const recent = { label: "20261126-010000F", type: "full", timestamp: { start: now - 60, stop: now - 60 } };
    const c = await container("ok", [recent]);
    await writeFile(join(c.dir, "postgres-up"), "");
    c.start();
    await waitFor("ok", async () => (await c.state()) === `ok 20261126-010000F ${now - 60}\n`);
    await sleep(500);
    assert.deepEqual(
      (await c.calls()).filter((call) => call.includes(" backup")),
      [],
      "no backup was due",
    );
    c.signal("SIGUSR1");
    await waitFor("the forced backup", async () => (await c.state()).startsWith("ok 20261126-000002F"));
    assert.deepEqual(
      (await c.calls()).filter((call) => call.includes(" backup")),
      ["--stanza=webstack backup --type=full"],
    );
    await sleep(500);
    assert.equal((await c.calls()).filter((call) => call.includes(" backup")).length, 1, "one signal, one backup");
  });

  it("a failing backup is a failing state with pgBackRest's reason; retries back off 1, 2, 4 s; it recovers when pgBackRest does", async () => {
    const c = await container("fail");
    await writeFile(join(c.dir, "postgres-up"), "");
    // The stanza exists already in this story: only the backups fail.
    await writeFile(join(c.dir, "mode"), "ok");
    c.start();
    await waitFor("the stanza", async () => (await c.calls()).some((call) => call.endsWith("stanza-create")));
    await writeFile(join(c.dir, "mode"), "fail");
    await waitFor("a failing state", async () => (await c.state()).startsWith("failing"), 20_000);
    assert.match(await c.state(), /^failing full backup: ERROR: \[082\]: WAL segment was not archived/);
    const backoff = /retrying in 1s[\s\S]*retrying in 2s[\s\S]*retrying in 4s/;
    await waitFor(
      "three failed attempts, each waiting twice as long",
      () => Promise.resolve(backoff.test(c.output)),
      20_000,
    );
    assert.equal((await c.calls()).filter((call) => call.includes(" backup")).length, 3);
    await writeFile(join(c.dir, "mode"), "ok");
    await waitFor("recovery", async () => (await c.state()).startsWith("ok "), 20_000);
  });

  it("after a major upgrade it upgrades the stanza and takes a full backup at once, though a recent full one exists", async () => {
    const now = Math.floor(Date.now() / 1000);
    const recent = { label: "20261126-010000F", type: "full", timestamp: { start: now - 60, stop: now - 60 } };
    const c = await container("mismatch", [recent]);
    await writeFile(join(c.dir, "server"), "17");
    await writeFile(join(c.dir, "postgres-up"), "");
    c.start();
    await waitFor("the full backup of Postgres 17", async () => (await c.state()).startsWith("ok 20261126-000002F"));
    const calls = await c.calls();
    assert.deepEqual(
      calls.filter((call) => /stanza-|backup --type/.test(call)),
      ["--stanza=webstack stanza-create", "--stanza=webstack stanza-upgrade", "--stanza=webstack backup --type=full"],
    );
    assert.match(c.output, /Postgres went from 15 to 17: upgrading the stanza/);
  });

  it("a database of the same version that is not the stanza's (an empty one after a lost volume) is refused, never adopted", async () => {
    const c = await container("mismatch");
    await writeFile(join(c.dir, "server"), "15");
    await writeFile(join(c.dir, "postgres-up"), "");
    c.start();
    await waitFor("a failing state", async () => (await c.state()).startsWith("failing stanza-create"));
    assert.match(await c.state(), /backup info file or archive info file invalid; retrying in 1s/);
    await sleep(1500);
    assert.ok(!(await c.calls()).some((call) => call.includes("stanza-upgrade")), "no stanza-upgrade");
  });

  it("a repository it cannot reach is a failing state before any backup", async () => {
    const c = await container("fail");
    await writeFile(join(c.dir, "postgres-up"), "");
    c.start();
    await waitFor("a failing state", async () => (await c.state()).startsWith("failing stanza-create"));
    assert.match(await c.state(), /unable to connect to the repository; retrying in 1s/);
  });
});

describe("postgres/backup-health.sh", () => {
  const HEALTH = join(__dirname, "../../postgres/backup-health.sh");
  let dir = "";
  before(async () => {
    await ensureDebianPackages("jq");
    dir = await mkdtemp(join(tmpdir(), "webstack-backup-health-"));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  /** Runs the check with a state line, `.ready` files of the given ages, and what pg_stat_archiver says. */
  const check = async (opts: { state?: string; ready?: number[]; archiver?: string; psqlFails?: boolean }) => {
    const run = await mkdtemp(join(dir, "run-"));
    const status = join(run, "pgdata", "pg_wal", "archive_status");
    await mkdir(status, { recursive: true });
    for (const [i, age] of (opts.ready ?? []).entries()) {
      const file = join(status, `00000001000000000000000${i + 1}.ready`);
      await writeFile(file, "");
      const when = new Date(Date.now() - age * 1000);
      await utimes(file, when, when);
    }
    if (opts.state !== undefined) await writeFile(join(run, "state"), `${opts.state}\n`);
    await writeFile(
      join(run, "psql"),
      opts.psqlFails
        ? `#!/bin/sh\necho 'psql: error: connection to server failed'\nexit 2\n`
        : `#!/bin/sh\necho '${opts.archiver ?? "000000010000000000000007 12 f -"}'\n`,
      { mode: 0o755 },
    );
    return new Promise<{ code: number; output: string }>((resolve) => {
      const child = spawn("/bin/sh", [HEALTH], {
        env: { PATH: `${run}:/usr/bin:/bin`, BACKUP_STATE: join(run, "state"), PGDATA: join(run, "pgdata") },
      });
      let output = "";
      child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")));
      child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")));
      child.on("exit", (code) => resolve({ code: code ?? -1, output: output.trim() }));
    });
  };
  const now = () => Math.floor(Date.now() / 1000);

  it("is healthy with a recent backup and archiving keeping up, and says both ages", async () => {
    const result = await check({ state: `ok 20261126-010000F ${now() - 600}`, ready: [5] });
    assert.equal(result.code, 0, result.output);
    assert.match(
      result.output,
      /^ok: newest backup 20261126-010000F 60\ds ago; newest WAL 000000010000000000000007 archived 12s ago; 1 waiting$/,
    );
  });

  it("fails before the first state, and with the loop's failing state as its reason", async () => {
    assert.deepEqual(await check({}), { code: 1, output: "starting" });
    const failing = "failing full backup: ERROR: [082]: WAL segment was not archived; retrying in 300s";
    assert.deepEqual(await check({ state: failing }), { code: 1, output: failing });
  });

  it("fails when the newest backup is more than an hour past its schedule", async () => {
    const result = await check({ state: `ok 20261120-010000F ${now() - 26 * 3600}` });
    assert.equal(result.code, 1);
    assert.match(result.output, /^failing: the newest backup, 20261120-010000F, is 936\d\ds old$/);
  });

  it("fails when a WAL segment has waited more than two minutes to be archived, or the last attempt failed, or Postgres does not answer", async () => {
    const state = `ok 20261126-010000F ${now() - 60}`;
    const lagging = await check({ state, ready: [200, 10] });
    assert.equal(lagging.code, 1);
    assert.match(
      lagging.output,
      /^failing: WAL 000000010000000000000001 has waited 20\ds to be archived \(2 waiting\)$/,
    );
    const failed = await check({ state, archiver: "000000010000000000000006 400 t 000000010000000000000007" });
    assert.equal(failed.code, 1);
    assert.match(failed.output, /archiving WAL 000000010000000000000007 failed, and nothing was archived since/);
    const down = await check({ state, psqlFails: true });
    assert.equal(down.code, 1);
    assert.match(down.output, /^failing: cannot ask Postgres: psql: error/);
  });
});
