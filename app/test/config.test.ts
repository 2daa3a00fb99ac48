import assert from "node:assert/strict";
import { hostname } from "node:os";
import { describe, it } from "node:test";
import { ConfigError, loadConfig } from "../src/config";

const valid = {
  DATABASE_URL: "postgres://app:db-secret@postgres:5432/app",
  REDIS_URL: "redis://:cache-secret@redis:6379",
};

function problemsOf(env: Record<string, string | undefined>): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
    return error.problems;
  }
  assert.fail("expected loadConfig to throw");
}

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
    assert.deepEqual(problemsOf({}), [
      "DATABASE_URL is required (e.g. postgres://user:password@postgres:5432/app)",
      "REDIS_URL is required (e.g. redis://:password@redis:6379)",
    ]);
  });

  it("rejects bad numbers with the variable, the value and the allowed range", () => {
    assert.deepEqual(problemsOf({ ...valid, PORT: "http" }), ['PORT must be an integer from 0 to 65535, got "http"']);
    assert.deepEqual(problemsOf({ ...valid, PORT: "70000" }), ['PORT must be an integer from 0 to 65535, got "70000"']);
    assert.deepEqual(problemsOf({ ...valid, SHUTDOWN_GRACE_MS: "-1" }), [
      'SHUTDOWN_GRACE_MS must be an integer from 0 to 600000, got "-1"',
    ]);
    assert.deepEqual(problemsOf({ ...valid, STATEMENT_TIMEOUT_MS: "0", REDIS_COMMAND_TIMEOUT_MS: "fast" }), [
      'STATEMENT_TIMEOUT_MS must be an integer from 1 to 600000, got "0"',
      'REDIS_COMMAND_TIMEOUT_MS must be an integer from 1 to 60000, got "fast"',
    ]);
  });

  it("rejects an unknown log level and an unsafe replica id", () => {
    assert.deepEqual(problemsOf({ ...valid, LOG_LEVEL: "verbose" }), [
      'LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent, got "verbose"',
    ]);
    assert.match(problemsOf({ ...valid, REPLICA_ID: "a b\r\n" })[0], /^REPLICA_ID must be 1-63 characters/);
  });

  it("never repeats a password from a wrong URL", () => {
    const problems = problemsOf({
      DATABASE_URL: "mysql://app:db-secret@db:3306/app",
      REDIS_URL: "http://user:cache-secret@redis",
    });
    assert.deepEqual(problems, [
      "DATABASE_URL must start with postgres:// or postgresql://, got mysql://app:***@db:3306/app",
      "REDIS_URL must start with redis:// or rediss://, got http://user:***@redis/",
    ]);
    const unparsable = problemsOf({ ...valid, DATABASE_URL: "db-secret@@" });
    assert.equal(unparsable.length, 1);
    assert.match(unparsable[0], /^DATABASE_URL is not a valid URL/);
    assert.doesNotMatch(unparsable.join(" "), /secret/);
  });
});
