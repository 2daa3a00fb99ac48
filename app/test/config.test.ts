import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { ConfigError, loadConfig, loadMigrateConfig } from "../src/config";
import { configProblems, VALID_ENV } from "./helpers";

/** The smallest environment loadConfig accepts. */
const valid = VALID_ENV;

describe("loadConfig", () => {
  it("applies the documented defaults", () => {
    assert.deepEqual(loadConfig(valid), {
      port: 3000,
      host: "0.0.0.0",
      databaseUrl: valid.DATABASE_URL,
      redisUrl: valid.REDIS_URL,
      replicaId: hostname(),
      shutdownGraceMs: 10_000,
      statementTimeoutMs: 5000,
      redisCommandTimeoutMs: 500,
      logLevel: "info",
      adminToken: undefined,
    });
  });

  it("reads every variable", () => {
    const config = loadConfig({
      ...valid,
      PORT: "8080",
      HOST: "127.0.0.1",
      REPLICA_ID: "app-2",
      SHUTDOWN_GRACE_MS: "2500",
      STATEMENT_TIMEOUT_MS: "60000",
      REDIS_COMMAND_TIMEOUT_MS: "1500",
      LOG_LEVEL: "debug",
    });
    assert.equal(config.port, 8080);
    assert.equal(config.host, "127.0.0.1");
    assert.equal(config.replicaId, "app-2");
    assert.equal(config.shutdownGraceMs, 2500);
    assert.equal(config.statementTimeoutMs, 60_000);
    assert.equal(config.redisCommandTimeoutMs, 1500);
    assert.equal(config.logLevel, "debug");
  });

  it("names each missing URL", () => {
    assert.deepEqual(configProblems({}), [
      "DATABASE_URL or DATABASE_URL_FILE is required (e.g. postgres://user:password@postgres:5432/app)",
      "REDIS_URL or REDIS_URL_FILE is required (e.g. redis://:password@redis:6379)",
    ]);
  });

  it("rejects bad numbers with the variable, the value and the allowed range", () => {
    assert.deepEqual(configProblems({ ...valid, PORT: "http" }), [
      'PORT must be an integer from 0 to 65535, got "http"',
    ]);
    assert.deepEqual(configProblems({ ...valid, PORT: "70000" }), [
      'PORT must be an integer from 0 to 65535, got "70000"',
    ]);
    assert.deepEqual(configProblems({ ...valid, SHUTDOWN_GRACE_MS: "-1" }), [
      'SHUTDOWN_GRACE_MS must be an integer from 0 to 600000, got "-1"',
    ]);
    assert.deepEqual(configProblems({ ...valid, STATEMENT_TIMEOUT_MS: "0", REDIS_COMMAND_TIMEOUT_MS: "fast" }), [
      'STATEMENT_TIMEOUT_MS must be an integer from 1 to 600000, got "0"',
      'REDIS_COMMAND_TIMEOUT_MS must be an integer from 1 to 60000, got "fast"',
    ]);
  });

  it("rejects an unknown log level and an unsafe replica id", () => {
    assert.deepEqual(configProblems({ ...valid, LOG_LEVEL: "verbose" }), [
      'LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent, got "verbose"',
    ]);
    assert.match(configProblems({ ...valid, REPLICA_ID: "a b\r\n" })[0], /^REPLICA_ID must be 1-63 characters/);
  });

  it("never repeats a password from a wrong URL", () => {
    const problems = configProblems({
      DATABASE_URL: "mysql://app:db-secret@db:3306/app",
      REDIS_URL: "http://user:cache-secret@redis",
    });
    assert.deepEqual(problems, [
      "DATABASE_URL must start with postgres:// or postgresql://, got mysql://app:***@db:3306/app",
      "REDIS_URL must start with redis:// or rediss://, got http://user:***@redis/",
    ]);
    const unparsable = configProblems({ ...valid, DATABASE_URL: "db-secret@@" });
    assert.equal(unparsable.length, 1);
    assert.match(unparsable[0], /^DATABASE_URL is not a valid URL/);
    assert.doesNotMatch(unparsable.join(" "), /secret/);
  });
});

describe("loadConfig with secrets in files", () => {
  const dir = mkdtempSync(join(tmpdir(), "webstack-config-"));
  after(() => rmSync(dir, { recursive: true, force: true }));
  let files = 0;
  /** A new file holding `content`, mode 0400 as the stack mounts secrets. */
  const secretFile = (content: string): string => {
    const path = join(dir, `mounted-${(files += 1)}`);
    writeFileSync(path, content, { mode: 0o400 });
    return path;
  };

  it("reads DATABASE_URL_FILE and REDIS_URL_FILE, trimmed, instead of the variables", () => {
    const config = loadConfig({
      DATABASE_URL_FILE: secretFile(`${valid.DATABASE_URL}\n`),
      REDIS_URL_FILE: secretFile(`  ${valid.REDIS_URL}\r\n\n`),
    });
    assert.equal(config.databaseUrl, valid.DATABASE_URL);
    assert.equal(config.redisUrl, valid.REDIS_URL);
  });

  it("takes one from a file and the other from a variable", () => {
    const config = loadConfig({ DATABASE_URL: valid.DATABASE_URL, REDIS_URL_FILE: secretFile(valid.REDIS_URL) });
    assert.equal(config.databaseUrl, valid.DATABASE_URL);
    assert.equal(config.redisUrl, valid.REDIS_URL);
  });

  it("refuses both the variable and its file", () => {
    assert.deepEqual(
      configProblems({
        ...valid,
        DATABASE_URL_FILE: secretFile(valid.DATABASE_URL),
        REDIS_URL_FILE: secretFile(valid.REDIS_URL),
      }),
      ["set DATABASE_URL or DATABASE_URL_FILE, not both", "set REDIS_URL or REDIS_URL_FILE, not both"],
    );
  });

  it("counts a blank variable as unset", () => {
    const config = loadConfig({
      DATABASE_URL: " ",
      DATABASE_URL_FILE: secretFile(valid.DATABASE_URL),
      REDIS_URL: valid.REDIS_URL,
      REDIS_URL_FILE: "",
    });
    assert.equal(config.databaseUrl, valid.DATABASE_URL);
    assert.equal(config.redisUrl, valid.REDIS_URL);
  });

  it("names the variable and the path of a missing, empty or oversized file, or a directory", () => {
    const missing = join(dir, "no-such-file");
    const blank = secretFile(" \n\n");
    const huge = secretFile(`${valid.DATABASE_URL}${" ".repeat(70_000)}`);
    assert.deepEqual(configProblems({ DATABASE_URL_FILE: missing, REDIS_URL_FILE: blank }), [
      `DATABASE_URL_FILE "${missing}" cannot be read (ENOENT)`,
      `REDIS_URL_FILE "${blank}" is empty`,
    ]);
    assert.deepEqual(configProblems({ DATABASE_URL_FILE: huge, REDIS_URL_FILE: dir }), [
      `DATABASE_URL_FILE "${huge}" is larger than 65536 bytes`,
      `REDIS_URL_FILE "${dir}" is not a regular file`,
    ]);
  });

  it("names a path that cannot be opened", () => {
    // Root may read any file whatever its mode, so the refusal here is a path through a file.
    const throughFile = join(secretFile(valid.DATABASE_URL), "url");
    assert.deepEqual(configProblems({ DATABASE_URL_FILE: throughFile, REDIS_URL: valid.REDIS_URL }), [
      `DATABASE_URL_FILE "${throughFile}" cannot be read (ENOTDIR)`,
    ]);
  });

  it("checks a URL from a file like one from a variable, without showing its password", () => {
    const wrongScheme = secretFile("mysql://app:file-secret@db:3306/app\n");
    const unparsable = secretFile("file-secret@@\n");
    const problems = configProblems({ DATABASE_URL_FILE: wrongScheme, REDIS_URL_FILE: unparsable });
    assert.deepEqual(problems, [
      `DATABASE_URL (from DATABASE_URL_FILE "${wrongScheme}") must start with postgres:// or postgresql://, got mysql://app:***@db:3306/app`,
      `REDIS_URL (from REDIS_URL_FILE "${unparsable}") is not a valid URL (value not shown: it may contain a password); expected e.g. redis://:password@redis:6379`,
    ]);
    assert.doesNotMatch(problems.join(" "), /file-secret/);
  });
});

describe("loadConfig's admin token", () => {
  const dir = mkdtempSync(join(tmpdir(), "webstack-token-"));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const tokenFile = (name: string, content: string): string => {
    const path = join(dir, name);
    writeFileSync(path, content, { mode: 0o400 });
    return path;
  };

  it("is off without ADMIN_TOKEN_FILE", () => {
    assert.equal(loadConfig(valid).adminToken, undefined);
    assert.equal(loadConfig({ ...valid, ADMIN_TOKEN_FILE: "" }).adminToken, undefined);
  });

  it("is the trimmed content of ADMIN_TOKEN_FILE", () => {
    const path = tokenFile("good", "  Xy7-q9_LmN3.pR8~sT2+vW5/zA1=\n");
    assert.equal(loadConfig({ ...valid, ADMIN_TOKEN_FILE: path }).adminToken, "Xy7-q9_LmN3.pR8~sT2+vW5/zA1=");
  });

  it("refuses a short token, one with spaces, an empty file and a missing one, without showing them", () => {
    const short = tokenFile("short", "tiny-secret\n");
    const spaced = tokenFile("spaced", "two words-secret-secret-secret\n");
    const empty = tokenFile("empty", "\n");
    const missing = join(dir, "missing");
    const allowed = "must hold 16 to 4096 visible ASCII characters without spaces (value not shown)";
    assert.deepEqual(configProblems({ ...valid, ADMIN_TOKEN_FILE: short }), [`ADMIN_TOKEN_FILE "${short}" ${allowed}`]);
    assert.deepEqual(configProblems({ ...valid, ADMIN_TOKEN_FILE: spaced }), [
      `ADMIN_TOKEN_FILE "${spaced}" ${allowed}`,
    ]);
    assert.deepEqual(configProblems({ ...valid, ADMIN_TOKEN_FILE: empty }), [`ADMIN_TOKEN_FILE "${empty}" is empty`]);
    assert.deepEqual(configProblems({ ...valid, ADMIN_TOKEN_FILE: missing }), [
      `ADMIN_TOKEN_FILE "${missing}" cannot be read (ENOENT)`,
    ]);
  });

  it("refuses a token in the environment instead of ignoring it", () => {
    assert.deepEqual(configProblems({ ...valid, ADMIN_TOKEN: "in-the-environment-secret" }), [
      "ADMIN_TOKEN is not read: put the token in a file and set ADMIN_TOKEN_FILE to its path",
    ]);
  });
});

describe("loadMigrateConfig", () => {
  it("needs only the database URL, and reads the log level as the server does", () => {
    assert.deepEqual(loadMigrateConfig({ DATABASE_URL: VALID_ENV.DATABASE_URL }), {
      databaseUrl: VALID_ENV.DATABASE_URL,
      logLevel: "info",
    });
    assert.equal(loadMigrateConfig({ ...VALID_ENV, LOG_LEVEL: "debug" }).logLevel, "debug");
  });

  it("names every bad setting at once, never the password", () => {
    assert.throws(
      () => loadMigrateConfig({ DATABASE_URL: "mysql://u:top-secret@db/x", LOG_LEVEL: "loud" }),
      (error: Error) => {
        assert.ok(error instanceof ConfigError);
        assert.deepEqual(error.problems, [
          "DATABASE_URL must start with postgres:// or postgresql://, got mysql://u:***@db/x",
          'LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent, got "loud"',
        ]);
        return true;
      },
    );
  });
});
