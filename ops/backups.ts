// Restoring a stack's Postgres from its pgBackRest repository, and the backups' status, on the
// stack's own Docker engine (DOCKER_HOST: the local engine, or a cloud host over ssh://).
//
// A restore stops the app replicas (nginx answers 502 meanwhile: no request reaches a database
// being replaced), stops the backup container and Postgres, sets the data directory aside on its
// own volume (never deletes it), restores into a new one with pgBackRest, starts Postgres, checks
// that it came out of recovery with the app's schema, and only then starts the replicas again.
// A restore that fails puts the data directory it set aside back and starts everything as it was.
import Docker from "dockerode";
import {
  BACKUP_STANZA,
  PGBACKREST_CONF,
  PGDATA,
  POSTGRES_DATA_MOUNT,
  POSTGRES_DB,
  POSTGRES_USER,
} from "../components/specs/containers";

export interface BackupInfo {
  label: string;
  type: "full" | "diff" | "incr";
  /** When the backup started and stopped. */
  start: Date;
  stop: Date;
  /** Bytes of the database the backup covers, and of what it stored in the repository. */
  size: number;
  repoSize: number;
}

export interface BackupStatus {
  /** The backup container's health check: its last line, and whether it passed. */
  health: { status: string; output: string };
  backups: BackupInfo[];
  /** The oldest and newest WAL segments in the archive. */
  archive: { min?: string; max?: string };
}

export interface RestoreOptions {
  stack: string;
  /** A moment to restore to; undefined restores everything the archive holds. */
  to?: Date;
  log?: (line: string) => void;
  /** Seconds to wait for Postgres to finish recovery and answer. @default 600 */
  recoverySeconds?: number;
}

export interface RestoreReport {
  /** The data directory set aside on the data volume, or undefined when there was none. */
  setAside?: string;
  /** The backup pgBackRest restored from. */
  from?: string;
  /** Migrations the restored database has applied, and its user tables. */
  migrations: number;
  tables: number;
  /** Seconds from stopping the replicas to starting them again. */
  seconds: number;
}

const STOP_SECONDS = 30;

/** The Docker names of a stack's containers (see StackNames). */
function names(stack: string) {
  const prefix = `webstack-${stack}`;
  return { postgres: `${prefix}-postgres`, backup: `${prefix}-backup`, restore: `${prefix}-restore` };
}

/** Runs a command in a container through the Engine API: its exit code and its output. */
export async function exec(container: Docker.Container, cmd: string[]): Promise<{ exitCode: number; output: string }> {
  const run = await container.exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true });
  const stream = await run.start({ hijack: true, stdin: false });
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  const { ExitCode } = await run.inspect();
  return { exitCode: ExitCode ?? -1, output: demux(Buffer.concat(chunks)) };
}

/** The payload of Docker's multiplexed stdout/stderr stream (8-byte frame headers stripped). */
export function demux(raw: Buffer): string {
  const parts: Buffer[] = [];
  for (let offset = 0; offset + 8 <= raw.length; offset += 8 + raw.readUInt32BE(offset + 4)) {
    parts.push(raw.subarray(offset + 8, offset + 8 + raw.readUInt32BE(offset + 4)));
  }
  return Buffer.concat(parts).toString("utf8");
}

async function inspectOrUndefined(container: Docker.Container): Promise<Docker.ContainerInspectInfo | undefined> {
  return container.inspect().catch((err: { statusCode?: number }) => {
    if (err.statusCode === 404) return undefined;
    throw err;
  });
}

/** The repository's backups, as pgBackRest's info reports them, asked in the backup container. */
export async function listBackups(docker: Docker, stack: string): Promise<BackupStatus> {
  const backup = docker.getContainer(names(stack).backup);
  const info = await inspectOrUndefined(backup);
  if (info === undefined) {
    throw new Error(`stack ${stack} has no backup container (${names(stack).backup}): are backups switched off?`);
  }
  if (!info.State.Running) throw new Error(`${names(stack).backup} is not running; start it to read the repository`);
  const { exitCode, output } = await exec(backup, ["pgbackrest", `--stanza=${BACKUP_STANZA}`, "--output=json", "info"]);
  if (exitCode !== 0) throw new Error(`pgbackrest info failed in ${names(stack).backup}: ${output.trim()}`);
  const health = info.State.Health;
  const lastCheck = health?.Log?.[health.Log.length - 1];
  return {
    health: { status: health?.Status ?? "none", output: (lastCheck?.Output ?? "").trim() },
    ...parseInfo(output),
  };
}

/** pgBackRest's `info --output=json` for one stanza: its backups, oldest first, and the archive's range. */
export function parseInfo(json: string): Pick<BackupStatus, "backups" | "archive"> {
  type Stanza = {
    backup?: {
      label: string;
      type: BackupInfo["type"];
      timestamp: { start: number; stop: number };
      info: { size: number; repository: { delta: number } };
    }[];
    archive?: { min?: string | null; max?: string | null }[];
  };
  const stanzas = JSON.parse(json) as Stanza[];
  const stanza = stanzas[0] ?? {};
  const backups = (stanza.backup ?? []).map((b) => ({
    label: b.label,
    type: b.type,
    start: new Date(b.timestamp.start * 1000),
    stop: new Date(b.timestamp.stop * 1000),
    size: b.info.size,
    repoSize: b.info.repository.delta,
  }));
  const archives = stanza.archive ?? [];
  const last = archives[archives.length - 1];
  return { backups, archive: { min: archives[0]?.min ?? undefined, max: last?.max ?? undefined } };
}

/** A moment as pgBackRest's time target takes it, in UTC: `2026-11-26 22:30:00.123+00`. */
export function recoveryTarget(moment: Date): string {
  return `${moment.toISOString().replace("T", " ").replace("Z", "")}+00`;
}

/** Parses --to: an ISO 8601 moment with a zone (`2026-11-26T22:30:00Z`, `…+01:00`). */
export function parseMoment(text: string): Date {
  const zoned = /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})$/;
  const moment = new Date(text);
  if (!zoned.test(text) || Number.isNaN(moment.getTime())) {
    throw new Error(
      `--to must be a moment with its time zone, such as 2026-11-26T22:30:00Z or 2026-11-26T23:30:00+01:00 (got ${JSON.stringify(text)})`,
    );
  }
  return moment;
}

/** The script the one-off restore run executes as root; it hands the new directory to postgres. */
function restoreScript(stamp: string, target?: Date): string {
  const targetArgs =
    target === undefined
      ? ""
      : ` --type=time "--target=${recoveryTarget(target)}" --target-action=promote --target-exclusive=n`;
  return [
    "set -eu",
    `cd ${POSTGRES_DATA_MOUNT}`,
    `if [ -e pgdata ]; then mv pgdata pgdata.broken-${stamp}; echo "set aside: pgdata.broken-${stamp}"; fi`,
    "mkdir -m 0700 pgdata",
    "chown postgres:postgres pgdata",
    `setpriv --reuid=postgres --regid=postgres --init-groups pgbackrest --stanza=${BACKUP_STANZA} --log-level-console=info restore${targetArgs}`,
  ].join("\n");
}

/**
 * Puts the directory a restore or an upgrade set aside back, keeping what it left as
 * `pgdata.failed-<what>-<stamp>`. Only what was set aside is put back: a run that never moved it
 * left it in place.
 */
function undoScript(setAside: string, failed: string, stamp: string): string {
  return [
    "set -eu",
    `cd ${POSTGRES_DATA_MOUNT}`,
    `if [ -e ${setAside} ]; then`,
    `  if [ -e pgdata ]; then mv pgdata pgdata.failed-${failed}-${stamp}; fi`,
    `  mv ${setAside} pgdata`,
    "fi",
    // An upgrade's dump, which a restore never leaves.
    "rm -f pgdata/webstack-upgrade.sql",
  ].join("\n");
}

/** A moment as names of set-aside directories carry it: `20261126T223724Z`. */
function stampOf(moment: Date): string {
  return moment.toISOString().replace(/[-:]/g, "").replace(/\..*$/, "Z");
}

/** Runs a one-off container beside the stopped Postgres, with its volumes and pgBackRest's configuration. */
async function runBeside(
  docker: Docker,
  stack: string,
  postgres: Docker.ContainerInspectInfo,
  backup: Docker.ContainerInspectInfo | undefined,
  script: string,
): Promise<{ exitCode: number; output: string }> {
  const name = names(stack).restore;
  await docker
    .getContainer(name)
    .remove({ force: true })
    .catch(() => undefined);
  // The backup container's networks: the bucket's way out on a cloud host, none locally.
  const networks = Object.keys(backup?.NetworkSettings.Networks ?? {});
  const container = await docker.createContainer({
    name,
    Image: postgres.Image,
    Entrypoint: ["/bin/sh", "-c", script],
    Cmd: [],
    User: "root",
    Labels: { "webstack.stack": stack, "webstack.role": "restore" },
    HostConfig: {
      Mounts: postgres.Mounts.filter((m) => m.Type === "volume" && m.Name !== undefined).map((m) => ({
        Type: "volume" as const,
        Source: m.Name as string,
        Target: m.Destination,
      })),
      NetworkMode: networks[0] ?? "none",
      CapDrop: ["ALL"],
      CapAdd: ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID"],
      SecurityOpt: ["no-new-privileges:true"],
      Memory: 1024 * 1024 * 1024,
    },
  });
  try {
    // The configuration holds the repository's passphrase: it goes file to file, never through an argument.
    if (backup !== undefined) {
      const conf = await docker.getContainer(backup.Id).getArchive({ path: PGBACKREST_CONF });
      await container.putArchive(conf, { path: PGBACKREST_CONF.slice(0, PGBACKREST_CONF.lastIndexOf("/")) });
    }
    const stream = await container.attach({ stream: true, stdout: true, stderr: true });
    const chunks: Buffer[] = [];
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    await container.start();
    const { StatusCode } = (await container.wait()) as { StatusCode: number };
    return { exitCode: StatusCode, output: demux(Buffer.concat(chunks)) };
  } finally {
    await container.remove({ force: true }).catch(() => undefined);
  }
}

/** A probe's error that ends the wait at once: what it waits for can no longer happen. */
class Fatal extends Error {}

async function waitFor<T>(what: string, seconds: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + seconds * 1000;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      if (err instanceof Fatal) throw new Error(`${what}: ${err.message}`);
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`${what} within ${seconds} s${last instanceof Error ? ` (last: ${last.message})` : ""}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

/**
 * Restores the stack's Postgres to the newest state its repository holds, or to `to`. Refuses
 * before stopping anything when the stack has no backup to restore from (or none before `to`).
 */
export async function restoreStack(docker: Docker, options: RestoreOptions): Promise<RestoreReport> {
  const log = options.log ?? (() => undefined);
  const { stack } = options;
  const containerNames = names(stack);
  const postgres = docker.getContainer(containerNames.postgres);
  const backup = docker.getContainer(containerNames.backup);
  const postgresInfo = await inspectOrUndefined(postgres);
  if (postgresInfo === undefined)
    throw new Error(`stack ${stack} has no Postgres container (${containerNames.postgres})`);

  if (options.to !== undefined && options.to.getTime() > Date.now()) {
    throw new Error(
      `--to ${options.to.toISOString()} is in the future: Postgres would stop recovery short of it and not start; nothing was stopped`,
    );
  }
  const status = await listBackups(docker, stack);
  const done = status.backups.filter((b) => options.to === undefined || b.stop <= options.to);
  if (done.length === 0) {
    throw new Error(
      options.to === undefined
        ? `the repository of stack ${stack} holds no backup yet; nothing was stopped`
        : `no backup of stack ${stack} ended before ${options.to.toISOString()} (the oldest ended ${status.backups[0]?.stop.toISOString() ?? "never"}); nothing was stopped`,
    );
  }
  const from = done[done.length - 1].label;
  const backupInfo = await backup.inspect();

  const apps = await docker.listContainers({
    all: true,
    filters: { label: [`webstack.stack=${stack}`, "webstack.role=app"] },
  });
  const running = apps.filter((c) => c.State === "running").map((c) => docker.getContainer(c.Id));
  const started = Date.now();
  log(`stopping ${running.length} app replica(s), the backup container and Postgres`);
  await Promise.all(running.map((c) => c.stop({ t: STOP_SECONDS }).catch(() => undefined)));
  await backup.stop({ t: STOP_SECONDS }).catch(() => undefined);
  await postgres.stop({ t: STOP_SECONDS }).catch(() => undefined);
  const restart = async () => {
    await postgres.start().catch(() => undefined);
    await backup.start().catch(() => undefined);
    await Promise.all(running.map((c) => c.start().catch(() => undefined)));
  };
  if ((await postgres.inspect()).State.Running) {
    await restart();
    throw new Error(`${containerNames.postgres} did not stop; nothing was changed and the stack was started again`);
  }

  const stamp = stampOf(new Date());
  const psql = (sql: string) =>
    exec(postgres, ["psql", "-XAt", "-U", POSTGRES_USER, "-d", POSTGRES_DB, "-c", sql]).then(({ exitCode, output }) =>
      exitCode === 0 ? output.trim() : undefined,
    );
  let setAside: string | undefined;
  let checks: string | undefined;
  try {
    log(
      `restoring from backup ${from}${options.to === undefined ? " and all archived WAL" : ` to ${options.to.toISOString()}`}`,
    );
    const restored = await runBeside(docker, stack, postgresInfo, backupInfo, restoreScript(stamp, options.to));
    setAside = /set aside: (\S+)/.exec(restored.output)?.[1];
    if (restored.exitCode !== 0)
      throw new Error(`the restore failed (exit ${restored.exitCode}):\n${restored.output.trim()}`);
    log(
      setAside === undefined
        ? "there was no data directory to set aside"
        : `the old data directory is kept as ${setAside}`,
    );
    await postgres.start();
    await waitFor("Postgres finished recovery and answered", options.recoverySeconds ?? 600, async () => {
      const state = (await postgres.inspect()).State;
      // Recovery that cannot finish (a moment past the archive's end) ends the server; its restart
      // policy would only start it again.
      if (state.Restarting || (!state.Running && state.ExitCode !== 0)) {
        throw new Fatal(`Postgres stopped during recovery with code ${state.ExitCode}`);
      }
      return (await psql("SELECT pg_is_in_recovery()")) === "f" ? true : undefined;
    });
    checks = await psql("SELECT (SELECT count(*) FROM schema_migrations), (SELECT count(*) FROM pg_stat_user_tables)");
    if (checks === undefined || !(Number(checks.split("|")[0]) > 0)) {
      throw new Error(`the restored database has no applied migration (${checks ?? "psql failed"})`);
    }
  } catch (err) {
    // As it was: the data directory the restore set aside goes back, and everything starts again.
    await postgres.stop({ t: STOP_SECONDS }).catch(() => undefined);
    const undone = await runBeside(
      docker,
      stack,
      postgresInfo,
      backupInfo,
      undoScript(`pgdata.broken-${stamp}`, "restore", stamp),
    ).catch((error: Error) => ({ exitCode: -1, output: error.message }));
    await restart();
    throw new Error(
      `${(err as Error).message}; ${undone.exitCode === 0 ? "the data directory was put back and the stack started as it was" : `putting the data directory back failed: ${undone.output.trim()}`} (see \`docker logs ${containerNames.postgres}\`)`,
    );
  }
  const [migrations, tables] = checks.split("|").map(Number);
  log(
    `restored: ${migrations} migration(s) applied, ${tables} table(s); starting the replicas and the backup container`,
  );
  await Promise.all(running.map((c) => c.start()));
  // A restore starts a new timeline: a full backup right away makes it restorable on its own. Its
  // script handles the signal once it has written its first state; before that it would end it.
  await backup.start();
  await waitFor("the backup container started", 60, async () =>
    (await exec(backup, ["test", "-f", "/tmp/backup-state"])).exitCode === 0 ? true : undefined,
  );
  await backup.kill({ signal: "SIGUSR1" });
  return { setAside, from, migrations, tables, seconds: (Date.now() - started) / 1000 };
}

export interface UpgradeOptions {
  stack: string;
  /** The Postgres image of the new major version, as webstack:postgresImage will name it. */
  image: string;
  log?: (line: string) => void;
  /** Seconds to wait for the new server to load the dump and answer. @default 1800 */
  readySeconds?: number;
}

export interface UpgradeReport {
  from: string;
  to: string;
  /** The old data directory, kept on the data volume. */
  setAside: string;
  /** Rows of every table of the app's database, before and after (equal, or the upgrade fails). */
  rows: Record<string, number>;
  seconds: number;
}

/** Exact row counts of every user table, by schema-qualified name. */
async function tableRows(container: Docker.Container): Promise<Record<string, number>> {
  const psql = (sql: string) =>
    exec(container, ["psql", "-XAt", "-U", POSTGRES_USER, "-d", POSTGRES_DB, "-c", sql]).then(
      ({ exitCode, output }) => {
        if (exitCode !== 0) throw new Error(`psql failed: ${output.trim()}`);
        return output.trim();
      },
    );
  const tables = (await psql("SELECT format('%I.%I', schemaname, relname) FROM pg_stat_user_tables ORDER BY 1"))
    .split("\n")
    .filter((t) => t !== "");
  const rows: Record<string, number> = {};
  for (const table of tables) rows[table] = Number(await psql(`SELECT count(*) FROM ${table}`));
  return rows;
}

/** The major version an image's Postgres is (the official images' PG_MAJOR). */
async function imageMajor(docker: Docker, image: string, log: (line: string) => void): Promise<string> {
  let info = await docker
    .getImage(image)
    .inspect()
    .catch(() => undefined);
  if (info === undefined) {
    log(`pulling ${image}`);
    const stream = await docker.pull(image);
    await new Promise<void>((resolve, reject) =>
      docker.modem.followProgress(stream, (err: Error | null) => (err ? reject(err) : resolve())),
    );
    info = await docker.getImage(image).inspect();
  }
  const major = (info.Config.Env ?? []).find((e) => e.startsWith("PG_MAJOR="))?.slice("PG_MAJOR=".length);
  if (major === undefined || !/^[0-9]+$/.test(major)) {
    throw new Error(`${image} does not say its Postgres major version (PG_MAJOR), as the official images do`);
  }
  return major;
}

/**
 * Moves the stack's data to a new major version of Postgres by dump and restore: the replicas
 * stop (no write is left behind), the database is dumped into its own data directory, the
 * directory is set aside as `pgdata.pg<old>-<time>`, and the new image's own first start creates
 * a new one and loads the dump. Every table must have the rows it had, or the old directory is put
 * back and the stack starts as it was. Then `pulumi up` with the new `postgresImage` starts the
 * stack's Postgres on it; until then the replicas answer that the database is unavailable.
 */
export async function upgradePostgres(docker: Docker, options: UpgradeOptions): Promise<UpgradeReport> {
  const log = options.log ?? (() => undefined);
  const { stack, image } = options;
  const n = names(stack);
  const postgres = docker.getContainer(n.postgres);
  const postgresInfo = await inspectOrUndefined(postgres);
  if (postgresInfo === undefined || !postgresInfo.State.Running) {
    throw new Error(`${n.postgres} is not running: the upgrade dumps the database from the running server`);
  }
  const to = await imageMajor(docker, image, log);
  const version = await exec(postgres, ["cat", `${PGDATA}/PG_VERSION`]);
  const from = version.output.trim();
  if (version.exitCode !== 0 || !/^[0-9]+$/.test(from)) throw new Error(`cannot read ${PGDATA}/PG_VERSION: ${from}`);
  if (from === to) throw new Error(`${n.postgres} is Postgres ${from} already: a new minor version needs no upgrade`);
  if (Number(to) < Number(from)) throw new Error(`${image} is Postgres ${to}, older than the data's ${from}`);

  const passwordFile = (postgresInfo.Config.Env ?? [])
    .find((e) => e.startsWith("POSTGRES_PASSWORD_FILE="))
    ?.split("=")[1];
  if (passwordFile === undefined) throw new Error(`${n.postgres} has no POSTGRES_PASSWORD_FILE`);

  const started = Date.now();
  const apps = await docker.listContainers({ filters: { label: [`webstack.stack=${stack}`, "webstack.role=app"] } });
  const replicas = apps.map((c) => docker.getContainer(c.Id));
  const backup = docker.getContainer(n.backup);
  log(`stopping ${replicas.length} app replica(s) and the backup container`);
  await Promise.all(replicas.map((c) => c.stop({ t: STOP_SECONDS }).catch(() => undefined)));
  await backup.stop({ t: STOP_SECONDS }).catch(() => undefined);
  const restartAll = async () => {
    await postgres.start().catch(() => undefined);
    await backup.start().catch(() => undefined);
    await Promise.all(replicas.map((c) => c.start().catch(() => undefined)));
  };

  const dump = `${PGDATA}/webstack-upgrade.sql`;
  let rows: Record<string, number>;
  try {
    rows = await tableRows(postgres);
    log(`dumping the database (${Object.keys(rows).length} tables) from Postgres ${from}`);
    const dumped = await exec(postgres, [
      "setpriv",
      "--reuid=postgres",
      "--regid=postgres",
      "--init-groups",
      "pg_dump",
      "-U",
      POSTGRES_USER,
      "-d",
      POSTGRES_DB,
      "--no-owner",
      "-f",
      dump,
    ]);
    if (dumped.exitCode !== 0) throw new Error(`pg_dump failed: ${dumped.output.trim()}`);
    await postgres.stop({ t: STOP_SECONDS });
    if ((await postgres.inspect()).State.Running) throw new Error(`${n.postgres} did not stop`);
  } catch (err) {
    await exec(postgres, ["rm", "-f", dump]).catch(() => undefined);
    await restartAll();
    throw new Error(`${(err as Error).message}; nothing was changed and the stack was started as it was`);
  }

  const stamp = stampOf(new Date());
  const setAside = `pgdata.pg${from}-${stamp}`;
  // The password goes file to file into /tmp, which every image has, and the new image reads it there.
  const copiedPassword = `/tmp/${passwordFile.slice(passwordFile.lastIndexOf("/") + 1)}`;
  const env = [
    ...(postgresInfo.Config.Env ?? []).filter((e) => /^(POSTGRES_USER|POSTGRES_DB|PGDATA)=/.test(e)),
    `POSTGRES_PASSWORD_FILE=${copiedPassword}`,
  ];
  const script = [
    "set -eu",
    `cd ${POSTGRES_DATA_MOUNT}`,
    `mv pgdata ${setAside}`,
    "mkdir -p /docker-entrypoint-initdb.d",
    `cp ${setAside}/webstack-upgrade.sql /docker-entrypoint-initdb.d/webstack-upgrade.sql`,
    "chmod 0644 /docker-entrypoint-initdb.d/webstack-upgrade.sql",
    // The image's own first start: a new directory, the stack's user and database, then the dump.
    "exec docker-entrypoint.sh postgres",
  ].join("\n");
  const upgraderName = `webstack-${stack}-upgrade`;
  let upgrader: Docker.Container | undefined;
  let undoing = false;
  const undo = async (why: string): Promise<never> => {
    undoing = true;
    await upgrader?.remove({ force: true }).catch(() => undefined);
    const undone = await runBeside(
      docker,
      stack,
      postgresInfo,
      // A stack without backups has no backup container: the run then needs nothing of it.
      await backup.inspect().catch(() => undefined),
      undoScript(setAside, "upgrade", stamp),
    ).catch((error: Error) => ({ exitCode: -1, output: error.message }));
    await restartAll();
    throw new Error(
      `${why}; ${undone.exitCode === 0 ? "the old data directory was put back and the stack started as it was" : `putting the old data directory back failed: ${undone.output.trim()}`}`,
    );
  };
  try {
    await docker
      .getContainer(upgraderName)
      .remove({ force: true })
      .catch(() => undefined);
    const created = await docker.createContainer({
      name: upgraderName,
      Image: image,
      Entrypoint: ["/bin/sh", "-c", script],
      Cmd: [],
      User: "root",
      Env: env,
      Labels: { "webstack.stack": stack, "webstack.role": "upgrade" },
      HostConfig: {
        Mounts: postgresInfo.Mounts.filter((m) => m.Destination === POSTGRES_DATA_MOUNT && m.Name !== undefined).map(
          (m) => ({ Type: "volume" as const, Source: m.Name as string, Target: m.Destination }),
        ),
        NetworkMode: "none",
        CapDrop: ["ALL"],
        CapAdd: ["CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "SETUID", "SETGID"],
        SecurityOpt: ["no-new-privileges:true"],
        Memory: 1024 * 1024 * 1024,
      },
    });
    upgrader = created;
    // The password file goes file to file, never through an argument or the environment.
    const secret = await postgres.getArchive({ path: passwordFile });
    await created.putArchive(secret, { path: "/tmp" });
    await created.start();
    log(`Postgres ${to} creates a new data directory and loads the dump`);
    // Over TCP: the image's first-start server listens on its socket only, the final one on TCP.
    await waitFor(`Postgres ${to} loaded the dump and answered`, options.readySeconds ?? 1800, async () => {
      const state = (await created.inspect()).State;
      if (!state.Running) {
        const logs = (await created.logs({ stdout: true, stderr: true, tail: 20 })).toString("utf8");
        throw new Fatal(`Postgres ${to} ended with code ${state.ExitCode}: ${logs.trim()}`);
      }
      return (await exec(created, ["pg_isready", "-q", "-h", "127.0.0.1"])).exitCode === 0 ? true : undefined;
    });
    const after = await tableRows(created);
    if (JSON.stringify(after) !== JSON.stringify(rows)) {
      throw new Error(`the new database's rows differ: before ${JSON.stringify(rows)}, after ${JSON.stringify(after)}`);
    }
    await exec(created, ["rm", "-f", `${POSTGRES_DATA_MOUNT}/${setAside}/webstack-upgrade.sql`]);
    await created.stop({ t: STOP_SECONDS });
    await created.remove({ force: true });
  } catch (err) {
    if (undoing) throw err;
    await undo((err as Error).message);
  }
  // The check that refused the new image: gone from the engine, `pulumi up --refresh` drops it
  // from the state too, and runs it again.
  const checks = await docker.listContainers({
    all: true,
    filters: { label: [`webstack.stack=${stack}`, "webstack.role=postgres-check"] },
  });
  for (const check of checks.filter((c) => c.State === "exited" && !/\(0\)/.test(c.Status))) {
    await docker.getContainer(check.Id).remove({ force: true });
  }
  // The replicas wait for the database, and answer that it is unavailable, until `pulumi up`.
  await Promise.all(replicas.map((c) => c.start().catch(() => undefined)));
  return { from, to, setAside, rows, seconds: (Date.now() - started) / 1000 };
}
