// POST /reset as an admin route: off without a token, refused without the right one or from
// another site, and working with it — against real Postgres and Redis.
import assert from "node:assert/strict";
import { request } from "node:http";
import { after, before, describe, it } from "node:test";
import { startPostgresAndRedis, type PostgresServer, type RedisServer } from "../../test/support/services";
import { bearerMatches, isCrossSite } from "../src/admin";
import {
  call,
  migratedDatabase,
  startApp,
  testConfig,
  TEST_ADMIN_TOKEN,
  type JsonResponse,
  type RunningApp,
} from "./helpers";

const AUTHORIZED = { authorization: `Bearer ${TEST_ADMIN_TOKEN}` };

describe("POST /reset", () => {
  let pg: PostgresServer;
  let redisServer: RedisServer;
  let databaseUrl: string;
  const apps: RunningApp[] = [];

  const launch = async (adminToken: string | undefined): Promise<string> => {
    const running = await startApp(testConfig({ databaseUrl, redisUrl: redisServer.url, adminToken }));
    apps.push(running);
    return running.baseUrl;
  };
  // node:http rather than fetch, which would replace a Host header the test sets.
  const reset = (baseUrl: string, headers: Record<string, string> = {}): Promise<JsonResponse> =>
    new Promise((resolve, reject) => {
      const req = request(`${baseUrl}/reset`, { method: "POST", headers, timeout: 15_000 }, (res) => {
        let text = "";
        res.on("data", (chunk: Buffer) => (text += chunk.toString("utf8")));
        res.on("end", () => {
          const responseHeaders = new Headers();
          for (const [name, value] of Object.entries(res.headers)) {
            if (typeof value === "string") responseHeaders.set(name, value);
          }
          resolve({
            status: res.statusCode ?? 0,
            headers: responseHeaders,
            body: JSON.parse(text) as Record<string, unknown>,
          });
        });
      });
      req.on("timeout", () => req.destroy(new Error("POST /reset timed out")));
      req.on("error", reject);
      req.end();
    });
  const countAt = async (baseUrl: string): Promise<unknown> => (await call(`${baseUrl}/count`)).body.count;

  before(async () => {
    ({ postgres: pg, redis: redisServer } = await startPostgresAndRedis());
    databaseUrl = await migratedDatabase(pg, "admin");
  });

  after(async () => {
    await Promise.allSettled(apps.map((running) => running.stop()));
    await Promise.allSettled([pg?.stop(), redisServer?.stop()]);
  });

  it("does not exist without ADMIN_TOKEN_FILE: 404, even with a token, and nothing changes", async () => {
    const baseUrl = await launch(undefined);
    await call(`${baseUrl}/`);
    const before = await countAt(baseUrl);
    assert.ok(typeof before === "number" && before > 0);
    for (const headers of [{}, AUTHORIZED] as Record<string, string>[]) {
      const refused = await reset(baseUrl, headers);
      assert.equal(refused.status, 404);
      assert.equal(refused.body.error, "Not Found");
    }
    assert.equal(await countAt(baseUrl), before);
  });

  it("answers 401 with a Bearer challenge to a missing, wrong or malformed token, and changes nothing", async () => {
    const baseUrl = await launch(TEST_ADMIN_TOKEN);
    await call(`${baseUrl}/`);
    const before = await countAt(baseUrl);
    const wrong: Record<string, string>[] = [
      {},
      { authorization: "" },
      { authorization: "Bearer" },
      { authorization: "Bearer " },
      // Same length, last character differs.
      { authorization: `Bearer ${TEST_ADMIN_TOKEN.slice(0, -1)}0` },
      { authorization: `Bearer ${TEST_ADMIN_TOKEN}x` },
      { authorization: `Bearer ${TEST_ADMIN_TOKEN.slice(1)}` },
      { authorization: `Bearer ${TEST_ADMIN_TOKEN} extra` },
      { authorization: TEST_ADMIN_TOKEN },
      { authorization: `Basic ${Buffer.from(`admin:${TEST_ADMIN_TOKEN}`).toString("base64")}` },
      { authorization: `Token ${TEST_ADMIN_TOKEN}` },
    ];
    for (const headers of wrong) {
      const refused = await reset(baseUrl, headers);
      assert.equal(refused.status, 401, `expected 401 for ${JSON.stringify(headers)}`);
      assert.deepEqual(refused.body, { error: "admin token required" });
      assert.equal(refused.headers.get("www-authenticate"), 'Bearer realm="webstack"');
    }
    assert.equal(await countAt(baseUrl), before);
  });

  it("refuses cross-site requests with 403, even with the right token", async () => {
    const baseUrl = await launch(TEST_ADMIN_TOKEN);
    await call(`${baseUrl}/`);
    const before = await countAt(baseUrl);
    const crossSite: Record<string, string>[] = [
      { "sec-fetch-site": "cross-site" },
      { "sec-fetch-site": "same-site" },
      { "sec-fetch-site": "something-new" },
      { origin: "http://attacker.example" },
      { origin: "http://127.0.0.1.attacker.example" },
      { origin: "null" },
      { origin: "not a url" },
      // An origin that matches cannot make up for a browser saying the request is cross-site.
      { origin: baseUrl, "sec-fetch-site": "cross-site" },
    ];
    for (const headers of crossSite) {
      const refused = await reset(baseUrl, { ...AUTHORIZED, ...headers });
      assert.equal(refused.status, 403, `expected 403 for ${JSON.stringify(headers)}`);
      assert.deepEqual(refused.body, { error: "cross-site request refused" });
      // No invitation to authenticate: the token would not help. And a replica that is not shutting
      // down keeps the client's connection open.
      assert.equal(refused.headers.get("www-authenticate"), null);
      assert.equal(refused.headers.get("connection"), "keep-alive");
    }
    // Refused before the token is looked at: no 401 for a cross-site request without one.
    assert.equal((await reset(baseUrl, { origin: "http://attacker.example" })).status, 403);
    assert.equal(await countAt(baseUrl), before);
  });

  it("resets with the right token: from a tool, a same-origin page, or a typed-in request", async () => {
    const baseUrl = await launch(TEST_ADMIN_TOKEN);
    const allowed: Record<string, string>[] = [
      AUTHORIZED,
      { authorization: `bearer ${TEST_ADMIN_TOKEN}` },
      { ...AUTHORIZED, "sec-fetch-site": "same-origin", origin: baseUrl },
      { ...AUTHORIZED, "sec-fetch-site": "none" },
      // Behind nginx the Host has no port ($host) while the page's origin does.
      { ...AUTHORIZED, origin: "http://shop.example:8080", host: "shop.example" },
      { ...AUTHORIZED, origin: "http://SHOP.example", host: "shop.EXAMPLE:80" },
    ];
    for (const headers of allowed) {
      assert.ok(((await call(`${baseUrl}/`)).body.count as number) > 0);
      const done = await reset(baseUrl, headers);
      assert.equal(done.status, 200, `expected 200 for ${JSON.stringify(headers)}: ${JSON.stringify(done.body)}`);
      assert.deepEqual(done.body, { count: 0 });
      assert.equal(await countAt(baseUrl), 0);
    }
  });

  it("is a POST only", async () => {
    const baseUrl = apps[apps.length - 1].baseUrl;
    const viaGet = await call(`${baseUrl}/reset`, { headers: AUTHORIZED });
    assert.equal(viaGet.status, 404);
  });
});

describe("the admin guard's rules", () => {
  it("compares host names of the origin and the Host header, IPv6 included", () => {
    assert.equal(isCrossSite({ origin: "http://[::1]:8080", host: "[::1]" }), false);
    assert.equal(isCrossSite({ origin: "http://[::1]:8080", host: "[::2]:8080" }), true);
    assert.equal(isCrossSite({ origin: "https://203.0.113.5", host: "203.0.113.5" }), false);
    assert.equal(isCrossSite({ origin: "https://203.0.113.5" }), true);
    assert.equal(isCrossSite({ host: "203.0.113.5" }), false);
    assert.equal(isCrossSite({ origin: "http://a.example, http://b.example", host: "a.example" }), true);
  });

  it("matches only the exact token after the Bearer scheme", () => {
    assert.equal(bearerMatches(`Bearer ${TEST_ADMIN_TOKEN}`, TEST_ADMIN_TOKEN), true);
    assert.equal(bearerMatches(`BEARER   ${TEST_ADMIN_TOKEN}`, TEST_ADMIN_TOKEN), true);
    assert.equal(bearerMatches(`Bearer ${TEST_ADMIN_TOKEN.toUpperCase()}`, TEST_ADMIN_TOKEN), false);
    assert.equal(bearerMatches(undefined, TEST_ADMIN_TOKEN), false);
    assert.equal(bearerMatches([`Bearer ${TEST_ADMIN_TOKEN}`], TEST_ADMIN_TOKEN), false);
  });
});
