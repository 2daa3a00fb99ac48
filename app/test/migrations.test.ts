// Versioned migrations against a real Postgres: applied exactly once however many runs race, a
// failing run names its migration and applies nothing, a lock wait is bounded, and a replica does
// not serve until the migrations its build ships with are applied.
import assert from "node:assert/strict";
import { copyFile, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { Client } from "pg";
import { startPostgresAndRedis, type PostgresServer, type RedisServer } from "../../test/support/services";
import {
  knownMigrations,
  migrate,
  MigrationFailed,
  MIGRATIONS_DIR,
  MIGRATIONS_TABLE,
  missingMigrations,
} from "../src/migrations";
import { call, migratedDatabase, sleep, SILENT_LOG, startApp, testConfig, waitFor } from "./helpers";

const FIRST = "0001_visit-counter";

describe("migrations", () => {
  let pg: PostgresServer;
  let redisServer: RedisServer;
  const cleanups: (() => Promise<unknown>)[] = [];

  before(async () => {
    ({ postgres: pg, redis: redisServer } = await startPostgresAndRedis());
  });

  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
    await Promise.allSettled([pg?.stop(), redisServer?.stop()]);
  });

  const connect = async (url: string): Promise<Client> => {
    const db = new Client({ connectionString: url });
    await db.connect();
    cleanups.push(() => db.end());
    return db;
  };

  /** A migrations directory holding the build's own migrations and `extra` ones (name → SQL). */
  const migrationsWith = async (extra: Record<string, string>): Promise<string> => {
    const dir = await mkdtemp(path.join(tmpdir(), "webstack-migrations-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    for (const name of knownMigrations())
      await copyFile(path.join(MIGRATIONS_DIR, `${name}.sql`), path.join(dir, `${name}.sql`));
    for (const [name, sql] of Object.entries(extra))
      await writeFile(path.join(dir, `${name}.sql`), `-- Up Migration\n${sql}\n`);
    return dir;
  };

  const applied = async (db: Client): Promise<string[]> =>
    (await db.query<{ name: string }>(`SELECT name FROM ${MIGRATIONS_TABLE} ORDER BY id`)).rows.map((r) => r.name);

  const columns = async (db: Client, table: string): Promise<string[]> =>
    (
      await db.query<{ column_name: string }>(
        "SELECT column_name FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position",
        [table],
      )
    ).rows.map((r) => r.column_name);

  it("applies each migration exactly once when six runs start at the same moment", async () => {
    const url = await pg.createDatabase("migration_race");
    const runs = await Promise.allSettled(Array.from({ length: 6 }, () => migrate(url, SILENT_LOG)));
    assert.deepEqual(
      runs.filter((run) => run.status === "rejected"),
      [],
    );
    const ran = runs.flatMap((run) => (run.status === "fulfilled" ? run.value : []));
    assert.deepEqual(ran, knownMigrations(), "one run applied them all, the others found nothing to do");
    const db = await connect(url);
    assert.deepEqual(await applied(db), knownMigrations());
    assert.deepEqual((await db.query("SELECT count, version FROM visit_counter")).rows, [{ count: "0", version: "0" }]);
    assert.deepEqual(await migrate(url, SILENT_LOG), []);
  });

  it("adopts a database whose replicas created the schema before migrations existed, keeping its count", async () => {
    const url = await pg.createDatabase("migration_adopt");
    const db = await connect(url);
    await db.query(`CREATE TABLE visit_counter (
      id smallint PRIMARY KEY CHECK (id = 1), count bigint NOT NULL CHECK (count >= 0), version bigint NOT NULL)`);
    await db.query("INSERT INTO visit_counter VALUES (1, 42, 57)");
    await db.query(`CREATE TABLE counted_requests (
      request_id text PRIMARY KEY, count bigint NOT NULL, counted_at timestamptz NOT NULL DEFAULT now())`);
    assert.deepEqual(await migrate(url, SILENT_LOG), [FIRST]);
    assert.deepEqual((await db.query("SELECT count, version FROM visit_counter")).rows, [
      { count: "42", version: "57" },
    ]);
    const counted = await db.query("SELECT visit_count FROM count_visits(ARRAY['adopted'])");
    assert.deepEqual(counted.rows, [{ visit_count: "43" }]);
  });

  it("a failing migration is named, nothing of its run is applied, and the next good run goes through", async () => {
    const url = await migratedDatabase(pg, "migration_failure");
    const db = await connect(url);
    const dir = await migrationsWith({
      "0002_add-source": "ALTER TABLE counted_requests ADD COLUMN source text",
      "0003_broken": "ALTER TABLE no_such_table ADD COLUMN x int",
    });
    await assert.rejects(migrate(url, SILENT_LOG, { dir }), (error: Error) => {
      assert.ok(error instanceof MigrationFailed);
      assert.equal(error.migration, "0003_broken");
      assert.equal(error.message, 'migration 0003_broken failed: relation "no_such_table" does not exist');
      return true;
    });
    assert.deepEqual(await applied(db), [FIRST]);
    assert.ok(!(await columns(db, "counted_requests")).includes("source"), "0002 was rolled back with 0003");

    await rm(path.join(dir, "0003_broken.sql"));
    assert.deepEqual(await migrate(url, SILENT_LOG, { dir }), ["0002_add-source"]);
    assert.deepEqual(await applied(db), [FIRST, "0002_add-source"]);
    assert.ok((await columns(db, "counted_requests")).includes("source"));
  });

  it("a migration that waits for a table lock gives up after the lock timeout instead of holding up visits, and its run is tried again", async () => {
    const url = await migratedDatabase(pg, "migration_lock");
    const holder = await connect(url);
    const dir = await migrationsWith({ "0002_counter-note": "ALTER TABLE visit_counter ADD COLUMN note text" });
    await holder.query("BEGIN");
    await holder.query("SELECT count FROM visit_counter WHERE id = 1 FOR UPDATE");
    let released = false;
    try {
      // One run only: it gives up after the lock timeout.
      const started = Date.now();
      await assert.rejects(migrate(url, SILENT_LOG, { dir, lockAttempts: 1 }), (error: Error) => {
        assert.ok(error instanceof MigrationFailed);
        assert.equal(error.migration, "0002_counter-note");
        assert.match(error.message, /^migration 0002_counter-note failed: .*lock timeout/);
        return true;
      });
      const waited = Date.now() - started;
      assert.ok(waited >= 4500 && waited < 30_000, `it gave up after ${waited} ms`);

      // The default: runs again while the lock is held, and goes through once it is free.
      const warnings: string[] = [];
      const log = { ...SILENT_LOG, warn: (_fields: object, message: string) => void warnings.push(message) };
      const running = migrate(url, log, { dir, retryDelayMs: 100 });
      const retrying = (): string | undefined => warnings.find((message) => message.endsWith("; trying again"));
      await waitFor("a second run", retrying, 15_000);
      await holder.query("COMMIT");
      released = true;
      assert.deepEqual(await running, ["0002_counter-note"]);
      assert.match(retrying() ?? "", /^migration 0002_counter-note failed: .*lock timeout.*; trying again$/);
    } finally {
      if (!released) await holder.query("COMMIT");
    }
    assert.deepEqual(await applied(holder), [FIRST, "0002_counter-note"]);
  });

  it("a database newer than the build (a rollback) lacks nothing; an older one lacks what it has not applied", async () => {
    const url = await migratedDatabase(pg, "migration_missing");
    const db = await connect(url);
    const dir = await migrationsWith({ "0002_add-source": "ALTER TABLE counted_requests ADD COLUMN source text" });
    assert.deepEqual(await missingMigrations(db, knownMigrations(dir)), ["0002_add-source"]);
    await migrate(url, SILENT_LOG, { dir });
    assert.deepEqual(await missingMigrations(db, knownMigrations(dir)), []);
    assert.deepEqual(await missingMigrations(db), []);
    const empty = await connect(await pg.createDatabase("migration_none"));
    assert.deepEqual(await missingMigrations(empty), knownMigrations());
  });

  it("refuses migration files it cannot order", async () => {
    for (const [files, problem] of [
      [["0001_a.sql", "2_b.sql"], "2_b.sql: a migration file is named NNNN_name.sql"],
      [["2_b.sql", "v0001_a.sql", "0001_a.sql.orig"], "0001_a.sql.orig, 2_b.sql, v0001_a.sql: a migration file"],
      [["0001_a.sql", "0001_b.sql"], "more than one migration numbered 0001"],
      [["0001_a.sql", "0001_b.sql", "0002_c.sql", "0002_d.sql"], "more than one migration numbered 0001, 0002"],
      [["0001_A.sql"], "0001_A.sql: a migration file is named NNNN_name.sql"],
      [["0001_a.js"], "0001_a.js: a migration file is named NNNN_name.sql"],
    ] as const) {
      const dir = await mkdtemp(path.join(tmpdir(), "webstack-migrations-"));
      cleanups.push(() => rm(dir, { recursive: true, force: true }));
      for (const file of files) await writeFile(path.join(dir, file), "-- Up Migration\nSELECT 1;\n");
      assert.throws(
        () => knownMigrations(dir),
        (error: Error) => error.message.includes(problem),
      );
    }
    assert.deepEqual(knownMigrations(), [FIRST]);
    // In order whatever order the directory lists them in, and hidden files are no migrations.
    const dir = await mkdtemp(path.join(tmpdir(), "webstack-migrations-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    for (const file of ["0010_j.sql", ".keep", "0002_b.sql", "0001_a.sql", "0003_c.sql"]) {
      await writeFile(path.join(dir, file), "-- Up Migration\nSELECT 1;\n");
    }
    assert.deepEqual(knownMigrations(dir), ["0001_a", "0002_b", "0003_c", "0010_j"]);
  });

  it("refuses a migration numbered before one already applied (two branches merged out of order)", async () => {
    const url = await migratedDatabase(pg, "migration_order");
    const later = await migrationsWith({ "0003_later": "SELECT 1" });
    assert.deepEqual(await migrate(url, SILENT_LOG, { dir: later }), ["0003_later"]);
    const both = await migrationsWith({ "0002_earlier": "SELECT 1", "0003_later": "SELECT 1" });
    await assert.rejects(migrate(url, SILENT_LOG, { dir: both }), (error: Error) => {
      assert.ok(error instanceof MigrationFailed);
      assert.equal(error.migration, undefined);
      assert.equal(
        error.message,
        "migrations failed: Not run migration 0002_earlier is preceding already run migration 0003_later",
      );
      return true;
    });
  });

  it("a database it cannot reach fails the run without naming a migration; the library's chatter is debug", async () => {
    await assert.rejects(
      migrate("postgres://nobody@127.0.0.1:1/none", SILENT_LOG, { lockAttempts: 1 }),
      (error: Error) => {
        assert.ok(error instanceof MigrationFailed);
        assert.equal(error.migration, undefined);
        assert.match(error.message, /^migrations failed: .*ECONNREFUSED/);
        return true;
      },
    );
    const lines: [string, object, string][] = [];
    const record =
      (level: string) =>
      (fields: object, message: string): void =>
        void lines.push([level, fields, message]);
    const log = { debug: record("debug"), info: record("info"), warn: record("warn"), error: record("error") };
    await migrate(await pg.createDatabase("migration_log"), log);
    assert.deepEqual(
      lines.filter(([level]) => level !== "debug"),
      [],
    );
    assert.ok(
      lines.some(
        ([, fields, message]) =>
          JSON.stringify(fields) === '{"library":"node-pg-migrate"}' && message === `### MIGRATION ${FIRST} (UP) ###`,
      ),
      JSON.stringify(lines),
    );
  });

  it("a replica does not open its port until the migrations it ships with are applied, and stops counting when they disappear", async () => {
    const url = await migratedDatabase(pg, "migration_gate");
    const dir = await migrationsWith({ "0002_add-source": "ALTER TABLE counted_requests ADD COLUMN source text" });
    // The instance's shutdown, known before it listens: it may never get that far.
    let stop: (() => Promise<void>) | undefined;
    cleanups.push(async () => stop?.());
    const starting = startApp(testConfig({ databaseUrl: url, redisUrl: redisServer.url, replicaId: "gate" }), {
      build: { migrationsDir: dir },
      track: (shutdown) => (stop = shutdown),
    });
    const early = await Promise.race([starting.then(() => "listening"), sleep(2000).then(() => "waiting")]);
    assert.equal(early, "waiting", "the replica listened before its migrations were applied");
    await migrate(url, SILENT_LOG, { dir });
    const running = await starting;
    assert.equal((await call(`${running.baseUrl}/`)).body.count, 1);

    // A fresh data directory: nothing of the schema, the record of migrations included.
    const db = await connect(url);
    await db.query("DROP SCHEMA public CASCADE; CREATE SCHEMA public");
    assert.equal((await call(`${running.baseUrl}/`)).status, 503);
    const { baseUrl } = running;
    const ready = await waitFor("/readyz to name what is missing", async () => {
      const response = await call(`${baseUrl}/readyz`);
      return response.body.schema === undefined ? undefined : response;
    });
    assert.equal(ready.status, 503);
    assert.deepEqual(ready.body, {
      postgres: "up",
      redis: "up",
      schema: `missing migrations: ${FIRST}, 0002_add-source`,
    });
    await migrate(url, SILENT_LOG, { dir });
    await running.app.schemaReady();
    assert.equal((await call(`${running.baseUrl}/`)).body.count, 1);
    assert.equal((await call(`${running.baseUrl}/readyz`)).status, 200);
  });
});
