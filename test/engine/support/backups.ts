// The stack's backups on the real engine: pgBackRest in the stack's own Postgres image, the backup
// container's schedule and health, and restores with `npm run restore`'s code (ops/backups.ts):
// to the newest state after the data volume was destroyed under load, and to a moment between two
// bursts of visits.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import Docker from "dockerode";
import * as path from "node:path";
import { promisify } from "node:util";
import { test, TestContext } from "node:test";
import { listBackups, restoreStack } from "../../../ops/backups";
import { derivedImage, Engine, execIn, STANDIN_IMAGES } from "./engine";
import { startLoad, visit } from "./load";
import { EngineRealiser } from "./realiser";
import { eventually, sleep } from "./wait";

const ROOT = path.join(__dirname, "..", "..", "..");

/** `npm run backups` / `npm run restore` as a user runs them, on the test engine (DOCKER_HOST). */
async function backupsCli(...args: string[]): Promise<string> {
  const { stdout } = await promisify(execFile)(
    path.join(ROOT, "node_modules", ".bin", "tsx"),
    [path.join(ROOT, "scripts", "backups.ts"), ...args],
    { cwd: ROOT, env: process.env, timeout: 10 * 60_000 },
  );
  return stdout.trim();
}

export interface BackupScenario {
  docker(): Docker;
  engine(): Pick<Engine, "dockerHost">;
  /** An update with these settings changed; a failed one resolves to what failed it. */
  update(changes: Record<string, string | undefined>): Promise<unknown>;
  failedUpdate(changes: Record<string, string | undefined>): Promise<Error[]>;
  prefix: string;
  stack: string;
  port(): number;
  realiser(): EngineRealiser;
  readCount(): Promise<number>;
  psql(sql: string): Promise<string[]>;
  healthy(name: string, seconds?: number): Promise<unknown>;
}

/** What one acknowledged visit said, and when its answer arrived. */
interface Ack {
  at: number;
  count: number;
}

/** Visits one after another until stopped, each answer recorded with its arrival time. */
function acknowledged(port: number) {
  const acks: Ack[] = [];
  let running = true;
  const done = (async () => {
    while (running) {
      const answer = await visit(port).catch(() => undefined);
      if (answer?.status === 200)
        acks.push({ at: Date.now(), count: (JSON.parse(answer.body) as { count: number }).count });
      await sleep(200);
    }
  })();
  return {
    acks,
    stop: async () => {
      running = false;
      await done;
    },
  };
}

export function describeBackups(s: BackupScenario): void {
  const backupName = `${s.prefix}-backup`;
  const postgresName = `${s.prefix}-postgres`;
  /** The visit counter's row and the newest count its request record holds: equal in a consistent database. */
  const counter = async () => {
    const [row] = await s.psql(
      "SELECT (SELECT count FROM visit_counter WHERE id = 1), (SELECT coalesce(max(count), 0) FROM counted_requests)",
    );
    const [count, recorded] = row.split("|").map(Number);
    return { count, recorded };
  };
  /** The health check's last output of the backup container. */
  const healthLine = async () => {
    const info = await s.docker().getContainer(backupName).inspect();
    const log = info.State.Health?.Log ?? [];
    return { status: info.State.Health?.Status, output: (log[log.length - 1]?.Output ?? "").trim() };
  };

  test("backups: a full backup when the stack starts, WAL archived as Postgres writes, and the health check says so; the status lists the backup", async (t) => {
    await s.healthy(backupName, 240);
    const health = await healthLine();
    t.diagnostic(`backup health: ${health.output}`);
    assert.match(health.output, /^ok: newest backup \d{8}-\d{6}F \d+s ago; /);
    const status = await listBackups(s.docker(), s.stack);
    assert.equal(status.health.status, "healthy");
    assert.ok(status.backups.length >= 1 && status.backups[0].type === "full", JSON.stringify(status.backups));
    assert.ok(status.archive.max !== undefined, "WAL is in the archive");
    const printed = await backupsCli("status", "--stack", s.stack);
    t.diagnostic(`npm run backups -- --stack ${s.stack}:\n${printed}`);
    assert.match(printed, /^health: healthy: ok: newest backup /);
    assert.match(printed, /\n\d{8}-\d{6}F {2}full {2}ended /);
    assert.match(printed, /\nWAL archive: 0{7}1\d{16} … 0{7}1\d{16}$/);
    // The repository is encrypted: pgBackRest says so, and no file in it holds the plain schema.
    const backup = s.docker().getContainer(backupName);
    const { output: conf } = await execIn(backup, ["sh", "-c", "grep -c cipher-pass /etc/pgbackrest/pgbackrest.conf"]);
    assert.equal(conf.trim(), "1");
    const { exitCode, output } = await execIn(backup, [
      "sh",
      "-c",
      "if [ -d /var/lib/pgbackrest/backup ]; then grep -rl visit_counter /var/lib/pgbackrest && exit 1; fi; exit 0",
    ]);
    assert.equal(exitCode, 0, `files in the repository hold plain text: ${output}`);
  });

  test("backups: under load, Postgres's volume destroyed and recreated empty; a restore to the newest state keeps every visit acknowledged more than 60 s before the failure, counts none twice, and sets the empty data aside", async (t) => {
    const docker = s.docker();
    const port = s.port();
    const load = startLoad(port, { concurrency: 8, maxSeconds: 600 });
    const sampler = acknowledged(port);
    let failedAt = 0;
    try {
      // Long enough for visits acknowledged more than 60 s before the failure, and for
      // archive_timeout (30 s) to pass twice.
      await sleep(66_000);
      failedAt = Date.now();
      await docker.getContainer(postgresName).stop({ t: 0 });
    } finally {
      await sampler.stop();
      await load.stop();
    }
    const acks = sampler.acks.filter((a) => a.at < failedAt);
    assert.ok(acks.length > 100, `only ${acks.length} visits acknowledged`);

    // The volume goes; the next update makes a new one and Postgres initialises an empty database there.
    const postgres = await docker.getContainer(postgresName).inspect();
    const volumeName = postgres.Mounts.find((m) => m.Destination === "/var/lib/postgresql/data")?.Name;
    assert.ok(volumeName !== undefined);
    const volume = await docker.getVolume(volumeName).inspect();
    // Every container that mounts it goes first: the image's check (which runs before Postgres
    // again), Postgres and the backup container.
    const users = (await docker.listContainers({ all: true, filters: { volume: [volumeName] } })).map((c) =>
      c.Names[0].replace(/^\//, ""),
    );
    const order = [...users.filter((n) => n.startsWith(`${s.prefix}-postgres-check-`)), postgresName, backupName];
    assert.deepEqual([...users].sort(), [...order].sort(), "what mounts the data volume");
    await s.realiser().recreateContainers(order, async () => {
      await docker.getVolume(volumeName).remove();
      await docker.createVolume({ Name: volumeName, Labels: volume.Labels ?? {} });
    });
    await s.healthy(postgresName, 180);
    const [tables] = await s.psql("SELECT count(*) FROM pg_stat_user_tables");
    assert.equal(tables, "0", "the new Postgres started empty");

    const lines: string[] = [];
    const report = await restoreStack(docker, { stack: s.stack, log: (line) => lines.push(line) });
    t.diagnostic(`restore: ${report.seconds.toFixed(1)} s from ${report.from}; ${lines.join(" / ")}`);
    assert.match(report.setAside ?? "", /^pgdata\.broken-\d{8}T\d{6}Z$/);
    const { output: kept } = await execIn(docker.getContainer(postgresName), ["ls", "/var/lib/postgresql/data"]);
    assert.ok(kept.split("\n").includes(report.setAside!), `the empty data is kept aside: ${kept}`);

    const restored = await counter();
    assert.equal(restored.count, restored.recorded, "the counter and its request record agree");
    const newestKept = acks.filter((a) => a.count <= restored.count).pop();
    const firstLost = acks.find((a) => a.count > restored.count);
    const lostSeconds = firstLost === undefined ? 0 : (failedAt - firstLost.at) / 1000;
    t.diagnostic(
      `restored count ${restored.count}; last acknowledged ${acks[acks.length - 1].count}; ` +
        `recovery point: visits of the last ${lostSeconds.toFixed(1)} s before the failure are not in the archive` +
        (newestKept === undefined
          ? ""
          : ` (newest kept acknowledged ${((failedAt - newestKept.at) / 1000).toFixed(1)} s before)`),
    );
    for (const a of acks.filter((a) => a.at <= failedAt - 60_000)) {
      assert.ok(
        a.count <= restored.count,
        `visit ${a.count}, acknowledged ${(failedAt - a.at) / 1000} s before the failure, is lost`,
      );
    }
    assert.ok(lostSeconds <= 60, `${lostSeconds} s of visits lost`);
    // Serving again, from the restored count on: no number is handed out twice.
    await s.healthy(`${s.prefix}-backup`, 300);
    const next = await eventually("a visit after the restore", 90, async () => {
      const answer = await visit(port);
      return answer.status === 200 ? (JSON.parse(answer.body) as { count: number }).count : undefined;
    });
    assert.ok(next > restored.count, `the next visit is ${next}, after ${restored.count}`);
  });

  test("backups: a restore to a moment between two bursts of visits brings back exactly the first burst, and the backup container verifies the archive has no gap", async (t: TestContext) => {
    const port = s.port();
    const burst = async (n: number) => {
      let last = 0;
      for (let i = 0; i < n; i++) {
        const answer = await visit(port);
        assert.equal(answer.status, 200, answer.body);
        last = (JSON.parse(answer.body) as { count: number }).count;
      }
      return last;
    };
    const afterFirst = await burst(40);
    await sleep(1500);
    const moment = new Date();
    const [segment] = await s.psql("SELECT pg_walfile_name(pg_current_wal_lsn())");
    await sleep(1500);
    const afterSecond = await burst(40);
    assert.equal(afterSecond, afterFirst + 40);
    // archive_timeout switches to a new segment within 30 s of the writes: wait until the moment is archived.
    await eventually(`WAL segment ${segment} archived`, 90, async () => {
      const [archived] = await s.psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver");
      return archived.slice(0, 24) >= segment ? true : undefined;
    });

    const printed = await backupsCli("restore", "--stack", s.stack, "--to", moment.toISOString());
    t.diagnostic(`npm run restore -- --stack ${s.stack} --to ${moment.toISOString()}:\n${printed}`);
    assert.match(
      printed,
      /\nrestored stack \S+ from \d{8}-\d{6}F\S* in [\d.]+ s; the data directory before it is kept as pgdata\.broken-\d{8}T\d{6}Z on the data volume$/,
    );
    const restored = await counter();
    assert.equal(restored.count, afterFirst, "exactly the first burst");
    assert.equal(restored.recorded, afterFirst);
    await eventually("the count served after the restore", 90, async () =>
      (await s.readCount().catch(() => undefined)) === afterFirst ? true : undefined,
    );

    // The full backup the restore asked for, then pgBackRest's own check of every file and WAL range.
    await s.healthy(backupName, 300);
    const backup = s.docker().getContainer(backupName);
    const full = await eventually("a full backup of the restored timeline", 240, async () => {
      const status = await listBackups(s.docker(), s.stack);
      const newest = status.backups[status.backups.length - 1];
      return newest !== undefined && newest.type === "full" && newest.start > moment ? newest : undefined;
    });
    const [rows] = await s.psql("SELECT count(*) FROM counted_requests");
    t.diagnostic(
      `full backup ${full.label} of ${rows} counted requests: ${(full.stop.getTime() - full.start.getTime()) / 1000} s, ` +
        `database ${(full.size / 1048576).toFixed(1)} MB, stored ${(full.repoSize / 1048576).toFixed(1)} MB (compressed, encrypted)`,
    );
    const verify = await execIn(backup, ["pgbackrest", "--stanza=webstack", "--log-level-console=warn", "verify"]);
    assert.equal(verify.exitCode, 0, verify.output);
    assert.doesNotMatch(verify.output, /missing|invalid|ERROR/i, verify.output);
  });
  test("backups: a restore to a moment the archive does not reach fails, puts the data directory back and starts the stack as it was", async () => {
    const port = s.port();
    for (let i = 0; i < 10; i++) assert.equal((await visit(port)).status, 200);
    const before = await s.readCount();
    // No commit follows this moment, so recovery can never pass it: Postgres stops short of it.
    const moment = new Date();
    await sleep(1000);
    await assert.rejects(
      restoreStack(s.docker(), { stack: s.stack, to: moment, recoverySeconds: 45 }),
      /^Error: Postgres finished recovery and answered: Postgres stopped during recovery with code \d+; the data directory was put back and the stack started as it was/,
    );
    await s.healthy(postgresName, 120);
    await eventually("the count served as before", 90, async () =>
      (await s.readCount().catch(() => undefined)) === before ? true : undefined,
    );
    const { output } = await execIn(s.docker().getContainer(postgresName), ["ls", "/var/lib/postgresql/data"]);
    assert.match(output, /pgdata\.failed-restore-\d{8}T\d{6}Z/, "what the restore left is kept too");
    assert.equal((await visit(port)).status, 200);
  });
  test("Postgres upgrades: a new minor version keeps every row; a new major version is refused before the server is touched; npm run upgrade-postgres moves the data and the update then goes through, every row kept, the backups going on", async (t) => {
    const docker = s.docker();
    const rows = async () => {
      const tables = await s.psql("SELECT format('%I.%I', schemaname, relname) FROM pg_stat_user_tables ORDER BY 1");
      const counted: Record<string, number> = {};
      for (const table of tables) counted[table] = Number((await s.psql(`SELECT count(*) FROM ${table}`))[0]);
      return counted;
    };

    // A minor version: another image of the same major, on the same data directory.
    const minor = await derivedImage(s.engine(), STANDIN_IMAGES.postgres, "webstack-standin/postgres:15-next");
    const beforeMinor = await rows();
    await s.update({ postgresImage: minor });
    await s.healthy(postgresName, 180);
    assert.deepEqual(await rows(), beforeMinor);
    assert.equal((await visit(s.port())).status, 200);

    // A major version: refused by the check, with the server before untouched.
    const serving = await docker.getContainer(postgresName).inspect();
    const failures = await s.failedUpdate({ postgresImage: STANDIN_IMAGES.postgres17 });
    assert.deepEqual(
      [...new Set(failures.map((f) => f.message))],
      [
        `webstack:postgresImage ${STANDIN_IMAGES.postgres17} cannot run on this stack's data: the data directory is Postgres 15 and the image is Postgres 17. ` +
          "Postgres was not replaced; the server before serves on. A new major version needs its data moved over first: " +
          `run \`npm run upgrade-postgres -- --stack ${s.stack} --image ${STANDIN_IMAGES.postgres17}\`, then \`pulumi up --refresh\` ` +
          `(see the README's "Postgres upgrades"), or set webstack:postgresImage back`,
      ],
    );
    const still = await docker.getContainer(postgresName).inspect();
    assert.equal(still.Id, serving.Id);
    assert.ok(still.State.Running);
    assert.equal((await visit(s.port())).status, 200);

    // Rows enough to be worth counting: a visit is a row of its own.
    for (let i = 0; i < 300; i++) assert.equal((await visit(s.port())).status, 200);
    const before = await rows();
    const upgradedAt = Date.now();
    const printed = await backupsCli("upgrade-postgres", "--stack", s.stack, "--image", STANDIN_IMAGES.postgres17);
    t.diagnostic(`npm run upgrade-postgres:\n${printed}`);
    assert.match(
      printed,
      /\nmoved stack \S+ from Postgres 15 to 17 in [\d.]+ s, every row kept \(.*\); the old data directory is kept as pgdata\.pg15-\d{8}T\d{6}Z\. Now run: pulumi config set webstack:postgresImage \S+ && pulumi up --refresh$/,
    );
    // `pulumi up --refresh`: the refused check, gone from the engine, leaves the state and runs again.
    assert.deepEqual(
      (await s.realiser().refresh()).filter((name) => name.endsWith("-postgres-check")),
      ["webstack-postgres-check"],
    );
    await s.update({ postgresImage: STANDIN_IMAGES.postgres17 });
    await s.healthy(postgresName, 180);
    assert.match((await s.psql("SHOW server_version"))[0], /^17\./);
    assert.deepEqual(await rows(), before);
    const counted = Number((await s.psql("SELECT count FROM visit_counter"))[0]);
    const next = await eventually("a visit on Postgres 17", 90, async () => {
      const answer = await visit(s.port());
      return answer.status === 200 ? (JSON.parse(answer.body) as { count: number }).count : undefined;
    });
    assert.equal(next, counted + 1);
    // The stanza learns the new version, and a full backup of it follows.
    await eventually("a full backup of Postgres 17", 300, async () => {
      const status = await listBackups(docker, s.stack).catch(() => undefined);
      const newest = status?.backups[status.backups.length - 1];
      return newest?.type === "full" &&
        newest.start.getTime() >= upgradedAt - 1000 &&
        status?.health.status === "healthy"
        ? newest
        : undefined;
    });
  });
}

/**
 * The s3 stand-in (s3rver over HTTPS, see scripts/engine/standins/s3) on a stack's network under
 * the cloud's own endpoint name, so the stack's backups reach it as they would reach the cloud.
 * It is put there the moment the network exists, before anything that joins the network starts:
 * no name of the cloud's is ever looked up outside the test engine.
 */
export async function startS3Standin(
  docker: Docker,
  opts: { name: string; network: string; endpoint: string; labels: Record<string, string> },
): Promise<Docker.Container> {
  await docker
    .getContainer(opts.name)
    .remove({ force: true })
    .catch(() => undefined);
  const container = await docker.createContainer({
    name: opts.name,
    Image: STANDIN_IMAGES.s3,
    Env: [`S3_NAMES=${opts.endpoint}`],
    Labels: opts.labels,
    HostConfig: { NetworkMode: opts.network },
    NetworkingConfig: { EndpointsConfig: { [opts.network]: { Aliases: [opts.endpoint] } } },
  });
  await container.start();
  return container;
}

/**
 * A cloud stack's backups, to its bucket on the s3 stand-in: the bucket made (the realiser records
 * it, s3rver needs it), the first full backup and the archive in it, encrypted; a restore from it.
 */
export function describeBucketBackups(s: BackupScenario & { s3Name: string; bucket(): string }): void {
  const backupName = `${s.prefix}-backup`;
  test("backups to the bucket: once it exists, a full backup and the WAL archive go there, encrypted; the health check and the status say so; a restore from it keeps every visit", async (t) => {
    const docker = s.docker();
    const s3 = docker.getContainer(s.s3Name);
    const bucket = s.bucket();
    // Until now every request found no bucket (and failed, as it would against a missing one).
    const made = await execIn(s3, ["mkdir", "-p", `/data/${bucket}`]);
    assert.equal(made.exitCode, 0, made.output);
    // The container retries after a backoff; the signal wakes it at once.
    await docker.getContainer(backupName).kill({ signal: "SIGUSR1" });
    await s.healthy(backupName, 300);
    const status = await listBackups(docker, s.stack);
    t.diagnostic(`backup health: ${status.health.output}`);
    assert.ok(
      status.backups.some((b) => b.type === "full"),
      JSON.stringify(status.backups),
    );
    const stored = await execIn(s3, ["sh", "-c", `find /data/${bucket} -type f | grep -c /backup/webstack/`]);
    assert.ok(Number(stored.output.trim()) > 10, `files of the backup in the bucket: ${stored.output}`);
    const plain = await execIn(s3, ["sh", "-c", `grep -rl visit_counter /data/${bucket} || true`]);
    assert.equal(plain.output.trim(), "", "no object in the bucket holds plain text");

    const before = await s.readCount();
    const report = await restoreStack(docker, { stack: s.stack });
    t.diagnostic(`restore from the bucket: ${report.seconds.toFixed(1)} s from ${report.from}`);
    assert.ok(report.setAside !== undefined);
    await eventually("the count served after the restore", 90, async () =>
      (await s.readCount().catch(() => undefined)) === before ? true : undefined,
    );
  });
}
