// The app's configuration and admin guard at the edges of what they allow: each value sits just
// inside or just outside a bound, so a loosened or tightened check fails here. No server needed.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { adminRefusal, bearerMatches, isCrossSite } from "../src/admin";
import { ConfigError, loadConfig } from "../src/config";
import { configProblems, VALID_ENV } from "./helpers";

/** The smallest environment loadConfig accepts. */
const valid = VALID_ENV;

describe("loadConfig at its bounds", () => {
  const dir = mkdtempSync(join(tmpdir(), "webstack-bounds-"));
  after(() => rmSync(dir, { recursive: true, force: true }));
  let files = 0;
  const file = (content: string | Buffer): string => {
    const path = join(dir, `f${(files += 1)}`);
    writeFileSync(path, content, { mode: 0o400 });
    return path;
  };

  it("integers: each bound inclusive, digits only, spaces around them trimmed", () => {
    const cases: [string, string, string, string][] = [
      ["PORT", "0", "65535", "65536"],
      ["SHUTDOWN_GRACE_MS", "0", "600000", "600001"],
      ["STATEMENT_TIMEOUT_MS", "1", "600000", "600001"],
      ["REDIS_COMMAND_TIMEOUT_MS", "1", "60000", "60001"],
    ];
    for (const [name, min, max, above] of cases) {
      assert.deepEqual(configProblems({ ...valid, [name]: min }), [], `${name}=${min}`);
      assert.deepEqual(configProblems({ ...valid, [name]: max }), [], `${name}=${max}`);
      for (const bad of [above, "1e3", "+5", "5x", "x5", ""]) {
        assert.equal(configProblems({ ...valid, [name]: bad }).length, 1, `${name}=${bad}`);
      }
    }
    assert.equal(loadConfig({ ...valid, PORT: " 8080 " }).port, 8080);
    assert.equal(loadConfig({ ...valid, REDIS_COMMAND_TIMEOUT_MS: "60000" }).redisCommandTimeoutMs, 60_000);
  });

  it("host, replica id and log level", () => {
    assert.deepEqual(configProblems({ ...valid, HOST: "  " }), [
      'HOST must not be empty (e.g. "0.0.0.0" or "127.0.0.1")',
    ]);
    for (const id of ["a", "a.b_c-D9", `a${"b".repeat(62)}`])
      assert.equal(loadConfig({ ...valid, REPLICA_ID: id }).replicaId, id);
    for (const id of ["", "-a", ".a", `a${"b".repeat(63)}`, "a/b", " a"]) {
      assert.equal(configProblems({ ...valid, REPLICA_ID: id }).length, 1, JSON.stringify(id));
    }
    for (const level of ["fatal", "error", "warn", "info", "debug", "trace", "silent"]) {
      assert.equal(loadConfig({ ...valid, LOG_LEVEL: level }).logLevel, level);
    }
  });

  it("service URLs: both schemes each, a host required, a value trimmed, a password masked only if there is one", () => {
    const config = loadConfig({
      DATABASE_URL: " postgresql://app:pw@db/app ",
      REDIS_URL: "rediss://:pw@cache:6380",
    });
    assert.equal(config.databaseUrl, "postgresql://app:pw@db/app");
    assert.equal(config.redisUrl, "rediss://:pw@cache:6380");
    assert.deepEqual(configProblems({ ...valid, DATABASE_URL: "postgres:///app" }), [
      "DATABASE_URL must name a host, got postgres:///app",
    ]);
    assert.deepEqual(configProblems({ ...valid, DATABASE_URL: "mysql://app@db/app" }), [
      "DATABASE_URL must start with postgres:// or postgresql://, got mysql://app@db/app",
    ]);
    const path = file("mysql://app:pw@db/app\n");
    assert.deepEqual(configProblems({ DATABASE_URL_FILE: path, REDIS_URL: valid.REDIS_URL }), [
      `DATABASE_URL (from DATABASE_URL_FILE ${JSON.stringify(path)}) must start with postgres:// or postgresql://, got mysql://app:***@db/app`,
    ]);
  });

  it("secret files: a regular file of up to 64 KiB that is not blank", () => {
    const padded = `${valid.DATABASE_URL}${" ".repeat(64 * 1024 - valid.DATABASE_URL.length)}`;
    assert.equal(Buffer.byteLength(padded), 64 * 1024);
    assert.equal(
      loadConfig({ DATABASE_URL_FILE: file(padded), REDIS_URL: valid.REDIS_URL }).databaseUrl,
      valid.DATABASE_URL,
    );
    const big = file(`${padded} `);
    assert.deepEqual(configProblems({ DATABASE_URL_FILE: big, REDIS_URL: valid.REDIS_URL }), [
      `DATABASE_URL_FILE ${JSON.stringify(big)} is larger than 65536 bytes`,
    ]);
    const blank = file(" \n\t\n");
    assert.deepEqual(configProblems({ DATABASE_URL_FILE: blank, REDIS_URL: valid.REDIS_URL }), [
      `DATABASE_URL_FILE ${JSON.stringify(blank)} is empty`,
    ]);
    const folder = join(dir, "folder");
    mkdirSync(folder);
    assert.deepEqual(configProblems({ DATABASE_URL_FILE: folder, REDIS_URL: valid.REDIS_URL }), [
      `DATABASE_URL_FILE ${JSON.stringify(folder)} is not a regular file`,
    ]);
    const missing = join(dir, "missing");
    assert.deepEqual(configProblems({ DATABASE_URL_FILE: missing, REDIS_URL: valid.REDIS_URL }), [
      `DATABASE_URL_FILE ${JSON.stringify(missing)} cannot be read (ENOENT)`,
    ]);
    // A blank variable is unset, so its file alone is used.
    assert.equal(
      loadConfig({ DATABASE_URL: "  ", DATABASE_URL_FILE: file(valid.DATABASE_URL), REDIS_URL: valid.REDIS_URL })
        .databaseUrl,
      valid.DATABASE_URL,
    );
  });

  it("the admin token: 16 to 4096 visible characters, from a file only", () => {
    for (const token of ["!".repeat(16), "~".repeat(4096), "a-Z_0.9!@#$%^&*()"]) {
      assert.equal(loadConfig({ ...valid, ADMIN_TOKEN_FILE: file(`${token}\n`) }).adminToken, token);
    }
    for (const token of ["a".repeat(15), "a".repeat(4097), `${"a".repeat(16)} b`, `${"a".repeat(16)}\u00e9`]) {
      const path = file(token);
      assert.deepEqual(configProblems({ ...valid, ADMIN_TOKEN_FILE: path }), [
        `ADMIN_TOKEN_FILE ${JSON.stringify(path)} must hold 16 to 4096 visible ASCII characters without spaces (value not shown)`,
      ]);
    }
    assert.deepEqual(configProblems({ ...valid, ADMIN_TOKEN: "a".repeat(20) }), [
      "ADMIN_TOKEN is not read: put the token in a file and set ADMIN_TOKEN_FILE to its path",
    ]);
    assert.equal(loadConfig({ ...valid, ADMIN_TOKEN: " ", ADMIN_TOKEN_FILE: " " }).adminToken, undefined);
  });

  it("a ConfigError names itself and lists every problem", () => {
    const error = new ConfigError(["one", "two"]);
    assert.equal(error.name, "ConfigError");
    assert.equal(error.message, "one; two");
  });
});

describe("the admin guard at its edges", () => {
  const token = "t".repeat(32);

  it("Sec-Fetch-Site: only same-origin and none (typed in) pass", () => {
    assert.equal(isCrossSite({ "sec-fetch-site": "same-origin" }), false);
    assert.equal(isCrossSite({ "sec-fetch-site": "none" }), false);
    for (const site of ["same-site", "cross-site", "", "Same-Origin"]) {
      assert.equal(isCrossSite({ "sec-fetch-site": site }), true, site);
    }
    assert.equal(isCrossSite({ "sec-fetch-site": ["same-origin", "same-origin"] } as never), true);
  });

  it("Origin: the host names must match, case aside; a null or unparsable origin or host is refused", () => {
    assert.equal(isCrossSite({ origin: "http://A.Example:3000", host: "a.example" }), false);
    assert.equal(isCrossSite({ origin: "http://a.example", host: "A.EXAMPLE:8080" }), false);
    assert.equal(isCrossSite({ origin: "http://a.example", host: "b.example" }), true);
    assert.equal(isCrossSite({ origin: "null", host: "a.example" }), true);
    assert.equal(isCrossSite({ origin: "http://a.example", host: "" }), true);
    assert.equal(isCrossSite({ origin: "http://a.example", host: "a b" }), true);
    assert.equal(isCrossSite({ "sec-fetch-site": "same-origin", origin: "http://b.example", host: "a.example" }), true);
  });

  it("Authorization: the Bearer scheme, any case, then exactly the token", () => {
    assert.equal(bearerMatches(`Bearer ${token}  `, token), true);
    assert.equal(bearerMatches(`bearer ${token}`, token), true);
    for (const header of [
      "Bearer",
      "Bearer ",
      `Basic ${token}`,
      `xBearer ${token}`,
      `Bearer ${token}x`,
      `Bearer x${token}`,
      `Bearer ${token} x`,
      token,
    ]) {
      assert.equal(bearerMatches(header, token), false, header);
    }
    // An empty presented token never matches, even an empty configured one.
    assert.equal(bearerMatches("Bearer ", ""), false);
  });

  it("cross-site is refused before the token is looked at", () => {
    assert.deepEqual(adminRefusal({ authorization: `Bearer ${token}`, "sec-fetch-site": "cross-site" }, token), {
      status: 403,
      error: "cross-site request refused",
    });
    assert.deepEqual(adminRefusal({ authorization: "Bearer wrong" }, token), {
      status: 401,
      error: "admin token required",
    });
    assert.equal(adminRefusal({ authorization: `Bearer ${token}` }, token), undefined);
  });
});
