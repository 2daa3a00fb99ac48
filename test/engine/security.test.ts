// Issue 9 on a real engine: one small local stack of the unchanged program, hardened as it ships,
// attacked the way the issue describes. The admin route, first closed at the edge and then opened
// with a token; the networks nginx cannot cross; `docker inspect` searched for secrets; a replica
// drained under load; one client's flood of 2,000 connections against another client's requests.
import Docker from "dockerode";
import assert from "node:assert/strict";
import * as http from "node:http";
import { PassThrough } from "node:stream";
import { after, before, describe, test } from "node:test";
import { freePort } from "../support/services";
import {
  ContainerTop,
  ContainerWait,
  Engine,
  ensureStandinImages,
  startEngine,
  STANDIN_IMAGES,
} from "./support/engine";
import { startLoad } from "./support/load";
import { EngineRealiser, TEST_STACK_LABEL } from "./support/realiser";
import { deploy, eventually, outputValue, sleep, STANDIN_SETTINGS, stopLoad, visitCount } from "./support/scenario";

const STACK = "security";
const PREFIX = `webstack-${STACK}`;
const LIMITS = { limitConnPerIp: 10, limitRatePerIp: 20, limitBurst: 20 };
const FLOOD_CONNECTIONS = 2000;

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One request through the published port, on a connection of its own. */
function request(
  port: number,
  path: string,
  options: { method?: string; headers?: Record<string, string> } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: "127.0.0.1",
        port,
        path,
        method: options.method ?? "GET",
        headers: { connection: "close", ...options.headers },
        agent: false,
        timeout: 10_000,
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => (body += chunk));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on("timeout", () => req.destroy(new Error(`${path}: no answer within 10 s`)));
    req.on("error", reject);
    req.end();
  });
}

/** Runs a command in a running container; its exit code and what it printed. */
async function exec(
  docker: Docker,
  container: string,
  cmd: string[],
  user?: string,
): Promise<{ code: number; output: string }> {
  const run = await docker
    .getContainer(container)
    .exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true, User: user });
  const stream = await run.start({ hijack: true, stdin: false });
  const out = new PassThrough();
  let output = "";
  out.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")));
  docker.modem.demuxStream(stream, out, out);
  await new Promise((resolve) => stream.on("end", resolve));
  const { ExitCode } = await run.inspect();
  return { code: ExitCode ?? -1, output };
}

/**
 * The flood: a client of its own address (a container on the stack's front network) opening
 * `connections` connections to nginx at once, one request each. Prints a JSON tally.
 */
const FLOOD_SCRIPT = `
const net = require("node:net");
const [host, count] = [process.argv[1], Number(process.argv[2])];
const tally = { statuses: {}, errors: {}, opened: 0 };
let pending = count;
const started = Date.now();
for (let i = 0; i < count; i++) {
  const socket = net.connect({ host, port: 80 });
  let head = "";
  const done = (key, bucket) => { if (socket.done) return; socket.done = true; bucket[key] = (bucket[key] || 0) + 1; socket.destroy(); if (--pending === 0) { tally.seconds = (Date.now() - started) / 1000; console.log(JSON.stringify(tally)); } };
  socket.setTimeout(20000, () => done("timeout", tally.errors));
  socket.on("connect", () => { tally.opened++; socket.write("GET /count HTTP/1.1\\r\\nHost: flood\\r\\nConnection: close\\r\\n\\r\\n"); });
  socket.on("data", (chunk) => { head += chunk; const m = /^HTTP\\/1\\.1 (\\d{3})/.exec(head); if (m) done(m[1], tally.statuses); });
  socket.on("error", (e) => done(e.code || "error", tally.errors));
  socket.on("close", () => done("closed without a status", tally.errors));
}
`;

/** The container's own stop timeout (dockerode's types leave it out). */
function stopTimeout(info: Docker.ContainerInspectInfo): number {
  const seconds = (info.Config as { StopTimeout?: number }).StopTimeout;
  assert.ok(seconds !== undefined, `${info.Name} has a stop timeout`);
  return seconds;
}

interface FloodTally {
  statuses: Record<string, number>;
  errors: Record<string, number>;
  opened: number;
  seconds: number;
}

describe("security: one hardened local stack attacked", { timeout: 20 * 60_000 }, () => {
  let engine: Engine | undefined;
  let realiser: EngineRealiser;
  let port: number;
  let adminToken: string;
  let settings: Record<string, string>;
  const started = Date.now();

  const docker = () => {
    assert.ok(engine !== undefined);
    return engine.docker;
  };
  const inspect = (name: string) => docker().getContainer(name).inspect();
  const stackContainers = async () =>
    (await docker().listContainers({ all: true, filters: { label: [`webstack.stack=${STACK}`] } }))
      .map((c) => c.Names[0].replace(/^\//, ""))
      .sort();
  const replicas = async () => (await stackContainers()).filter((n) => /-app-.+-[0-9]+$/.test(n));
  const ipOn = async (container: string, network: string) => {
    const address = (await inspect(container)).NetworkSettings.Networks[network]?.IPAddress;
    assert.ok(address, `${container} has an address on ${network}`);
    return address;
  };
  /** The generated secrets, from the recorded state: Postgres and Redis passwords and the admin token. */
  const secrets = () =>
    realiser
      .ofType("random:index/randomPassword:RandomPassword")
      .map((r) => String(r.outputs.result))
      .filter((v) => v.length >= 32);
  const reset = (headers: Record<string, string> = {}) => request(port, "/reset", { method: "POST", headers });
  const bearer = () => ({ authorization: `Bearer ${adminToken}` });

  before(async () => {
    engine = await startEngine();
    await ensureStandinImages(engine);
    realiser = new EngineRealiser({ docker: engine.docker, stack: STACK });
    await realiser.destroy({ images: true });
    port = await freePort();
    settings = { replicas: "2", httpPort: String(port), release: "s1", ...STANDIN_SETTINGS };
    const program = await deploy(realiser, settings);
    adminToken = await outputValue(program.adminToken, "adminToken");
  });

  after(async () => {
    try {
      if (engine !== undefined) await realiser?.destroy({ images: true });
    } finally {
      await engine?.stop();
    }
  });

  test("the stack serves; the edge hides which replica answered and whether Postgres and Redis are up", async (t) => {
    t.diagnostic(`deployed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    const answer = await request(port, "/");
    assert.equal(answer.status, 200, answer.body);
    assert.equal(answer.headers["x-served-by"], undefined);
    assert.equal((await request(port, "/readyz")).status, 404);
  });

  test("/reset is refused at the edge while adminRoutes is off, with or without the token, however it is spelled", async () => {
    await request(port, "/");
    const before = await visitCount(port);
    for (const path of ["/reset", "/reset/", "/%72eset", "//reset", "/admin"]) {
      for (const headers of [{}, bearer()]) {
        const answer = await request(port, path, { method: "POST", headers });
        assert.equal(answer.status, 404, `${path}: ${answer.body}`);
      }
    }
    assert.equal(await visitCount(port), before, "nothing was reset");
  });

  test("reached directly by its network address, the app refuses /reset without the token, with a wrong one, and cross-site", async () => {
    const [replica] = await replicas();
    const appIp = await ipOn(replica, PREFIX);
    const post = async (headers: string[]) => {
      // From nginx's container: another address on the front network, as an attacker inside would be.
      const { code, output } = await exec(docker(), `${PREFIX}-nginx`, [
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-X",
        "POST",
        ...headers.flatMap((h) => ["-H", h]),
        `http://${appIp}:3000/reset`,
      ]);
      assert.equal(code, 0, output);
      return Number(output);
    };
    assert.equal(await post([]), 401);
    assert.equal(await post(["Authorization: Bearer not-the-token-but-long-enough"]), 401);
    assert.equal(await post([`Authorization: Bearer ${adminToken}`, "Sec-Fetch-Site: cross-site"]), 403);
    assert.equal(
      await post([`Authorization: Bearer ${adminToken}`, `Host: ${appIp}`, "Origin: http://evil.example"]),
      403,
    );
  });

  test("nginx cannot open a TCP connection to Postgres or Redis, by name or by address; it can to the app", async () => {
    const tcp = (host: string, p: number) =>
      exec(docker(), `${PREFIX}-nginx`, ["timeout", "3", "bash", "-c", `exec 3<>/dev/tcp/${host}/${p}`]);
    const back = `${PREFIX}-back`;
    for (const [name, p] of [
      ["postgres", 5432],
      ["redis", 6379],
    ] as const) {
      const address = await ipOn(`${PREFIX}-${name}`, back);
      assert.notEqual((await tcp(address, p)).code, 0, `nginx reached ${name} at ${address}`);
      assert.notEqual((await tcp(name, p)).code, 0, `nginx resolved and reached ${name}`);
      assert.deepEqual(Object.keys((await inspect(`${PREFIX}-${name}`)).NetworkSettings.Networks), [back]);
    }
    const [replica] = await replicas();
    assert.equal((await tcp(await ipOn(replica, PREFIX), 3000)).code, 0, "the same probe reaches the app");
    assert.deepEqual(Object.keys((await inspect(`${PREFIX}-nginx`)).NetworkSettings.Networks), [PREFIX]);
    assert.equal((await docker().getNetwork(back).inspect()).Internal, true);
  });

  test("docker inspect of every container shows no secret value; secrets are files only their reader can read", async () => {
    const found = secrets();
    assert.equal(found.length, 4, "two passwords, the admin token and the backups' passphrase");
    assert.ok(found.includes(adminToken));
    const names = await stackContainers();
    // Two replicas, three services and the backup container, four one-off runs (the files runs,
    // the migration run and the Postgres image's check).
    assert.equal(names.length, 2 + 4 + 4, names.join(", "));
    for (const name of names) {
      const info = await inspect(name);
      const shown = JSON.stringify([
        info.Config.Env,
        info.Config.Cmd,
        info.Config.Entrypoint,
        info.Config.Labels,
        info.Args,
        info.Config.Healthcheck,
      ]);
      for (const secret of found) assert.ok(!shown.includes(secret), `${name} shows a secret`);
      if (info.State.Running) {
        const top = (await docker().getContainer(name).top()) as ContainerTop;
        for (const secret of found)
          assert.ok(!JSON.stringify(top.Processes).includes(secret), `${name} shows a secret in a command line`);
      }
    }
    const files = async (container: string, pattern: string, user?: string) =>
      (await exec(docker(), container, ["sh", "-c", `stat -c '%n %a %u' ${pattern}`], user)).output
        .trim()
        .split("\n")
        .sort();
    const [replica] = await replicas();
    assert.deepEqual(await files(replica, "/run/secrets/*"), [
      "/run/secrets/admin-token 400 10001",
      "/run/secrets/database-url 400 10001",
      "/run/secrets/redis-url 400 10001",
    ]);
    assert.deepEqual(await files(`${PREFIX}-postgres`, "/run/secrets/*"), ["/run/secrets/postgres-password 400 0"]);
    // pgBackRest's configuration (the passphrase) is read by the postgres user, the only one there.
    for (const container of [`${PREFIX}-postgres`, `${PREFIX}-backup`]) {
      assert.deepEqual(await files(container, "/etc/pgbackrest/pgbackrest.conf"), [
        "/etc/pgbackrest/pgbackrest.conf 444 0",
      ]);
    }
    assert.deepEqual(await files(`${PREFIX}-redis`, "/usr/local/etc/redis/redis.conf"), [
      "/usr/local/etc/redis/redis.conf 444 0",
    ]);
    assert.notEqual(
      (await exec(docker(), replica, ["sh", "-c", "echo x > /run/secrets/admin-token"])).code,
      0,
      "the app cannot change its secrets",
    );
  });

  test("every container runs with no capability beyond its image's start-up needs and no new privileges; the servers hold none", async () => {
    const expected: Record<string, string[]> = {
      postgres: ["CAP_CHOWN", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_SETGID", "CAP_SETUID"],
      redis: ["CAP_CHOWN", "CAP_DAC_READ_SEARCH", "CAP_SETGID", "CAP_SETUID"],
      nginx: ["CAP_CHOWN", "CAP_NET_BIND_SERVICE", "CAP_SETGID", "CAP_SETUID"],
      app: [],
      migrate: [],
      "files-app": ["CAP_CHOWN"],
      "files-nginx": [],
      backup: [],
      "postgres-check": ["CAP_DAC_READ_SEARCH"],
    };
    const names = await stackContainers();
    assert.ok(
      names.some((name) => name.startsWith(`${PREFIX}-migrate-`)),
      "the release's migration run is inspected too",
    );
    for (const name of names) {
      const info = await inspect(name);
      const role = info.Config.Labels["webstack.role"];
      assert.deepEqual(
        [info.HostConfig.CapDrop, [...((info.HostConfig.CapAdd as string[] | null | undefined) ?? [])].sort()],
        [["ALL"], expected[role]],
        name,
      );
      assert.deepEqual(info.HostConfig.SecurityOpt, ["no-new-privileges:true"], name);
      assert.equal(
        info.HostConfig.ReadonlyRootfs,
        role === "app" || role === "migrate" || role === "nginx" || role === "postgres-check",
        `${name} read-only root`,
      );
      if (role === "migrate") {
        assert.deepEqual(
          [info.State.Status, info.State.ExitCode, info.Config.User, Object.keys(info.NetworkSettings.Networks)],
          ["exited", 0, "10001:10001", [`${PREFIX}-back`]],
          name,
        );
        continue;
      }
      if (role === "postgres-check") {
        assert.deepEqual(
          [info.State.Status, info.State.ExitCode, info.HostConfig.NetworkMode, info.HostConfig.ReadonlyRootfs],
          ["exited", 0, "none", true],
          name,
        );
        continue;
      }
      if (role.startsWith("files-")) {
        assert.deepEqual(
          [info.State.Status, info.State.ExitCode, info.HostConfig.NetworkMode],
          ["exited", 0, "none"],
          name,
        );
        continue;
      }
      // What the server processes hold once started: nothing, and they could not gain anything.
      const processes = (
        await exec(docker(), name, ["sh", "-c", "grep -h -E '^(Uid|CapEff|NoNewPrivs):' /proc/[0-9]*/status"])
      ).output;
      assert.match(processes, /^NoNewPrivs:\s+1$/m);
      assert.doesNotMatch(processes, /^NoNewPrivs:\s+0$/m);
      if (role === "app")
        assert.doesNotMatch(processes, /^CapEff:\s+(?!0{16})/m, `${name}: every process holds no capability`);
    }
    // The servers' own processes (not the root starters) hold no capability.
    for (const [container, user] of [
      [`${PREFIX}-postgres`, "postgres"],
      [`${PREFIX}-redis`, "redis"],
      [`${PREFIX}-nginx`, "nginx"],
    ]) {
      const { output } = await exec(docker(), container, [
        "sh",
        "-c",
        `u=$(id -u ${user}); for f in /proc/[0-9]*/status; do grep -q "^Uid:[[:space:]]*$u[[:space:]]" "$f" && grep -h '^CapEff:' "$f"; done; true`,
      ]);
      const caps = output.trim().split("\n");
      assert.ok(caps.length >= 1 && caps[0] !== "", `${container} runs ${user} processes`);
      for (const line of caps) assert.match(line, /^CapEff:\s+0{16}$/, `${container}'s ${user} processes`);
    }
  });

  test("a replica stopped under a light load drains: no request fails, and it serves again once started", async (t) => {
    const [victim] = await replicas();
    const countBefore = await visitCount(port);
    const load = startLoad(port, { concurrency: 2, maxSeconds: 120 });
    let stopSeconds: number;
    try {
      await sleep(2000);
      const stopping = Date.now();
      await docker()
        .getContainer(victim)
        .stop({ t: stopTimeout(await inspect(victim)) });
      stopSeconds = (Date.now() - stopping) / 1000;
      assert.equal((await inspect(victim)).State.ExitCode, 0, `${victim} ended well on SIGTERM`);
      await sleep(2000);
      await docker().getContainer(victim).start();
      await eventually(`${victim} healthy`, 90, async () =>
        (await inspect(victim)).State.Health?.Status === "healthy" ? true : undefined,
      );
      await sleep(3000);
    } finally {
      await load.stop();
    }
    const result = await stopLoad(t, load, { docker: docker(), port, nginx: `${PREFIX}-nginx`, countBefore });
    t.diagnostic(`${victim} stopped in ${stopSeconds.toFixed(1)} s under ${result.ok} requests, none failed`);
    assert.ok((result.servedBy.get(victim) ?? 0) > 0);
  });

  describe("adminRoutes on, per-address limits on", () => {
    before(async () => {
      realiser.beginUpdate();
      settings = {
        ...settings,
        adminRoutes: "true",
        limitConnPerIp: String(LIMITS.limitConnPerIp),
        limitRatePerIp: String(LIMITS.limitRatePerIp),
        limitBurst: String(LIMITS.limitBurst),
      };
      const program = await deploy(realiser, settings);
      await realiser.finishUpdate();
      assert.equal(await outputValue(program.adminToken, "adminToken"), adminToken, "the token stays the stack's");
      // The limits start with a full bucket; earlier tests' requests came from the same address.
      await sleep(1500);
    });

    test("with the token, /reset works through the edge; without it, or cross-site, the app refuses it", async () => {
      await request(port, "/");
      assert.ok((await visitCount(port)) > 0);
      assert.equal((await reset()).status, 401);
      assert.equal((await reset({ authorization: "Bearer wrong-token-of-some-length" })).status, 401);
      assert.equal((await reset({ ...bearer(), "sec-fetch-site": "cross-site" })).status, 403);
      assert.equal((await reset({ ...bearer(), origin: "https://evil.example" })).status, 403);
      assert.ok((await visitCount(port)) > 0, "nothing was reset yet");
      const done = await reset({ ...bearer(), "sec-fetch-site": "same-origin" });
      assert.equal(done.status, 200, done.body);
      assert.equal((JSON.parse(done.body) as { count: number }).count, 0);
      assert.equal(await visitCount(port), 0);
    });

    test(`one client opening ${FLOOD_CONNECTIONS} connections at once is limited, while another client is served without a failure`, async (t) => {
      await sleep(1500);
      const nginxIp = await ipOn(`${PREFIX}-nginx`, PREFIX);
      const flooder = await docker().createContainer({
        name: `${PREFIX}-test-flood`,
        Image: STANDIN_IMAGES.node,
        Cmd: ["node", "-e", FLOOD_SCRIPT, nginxIp, String(FLOOD_CONNECTIONS)],
        Labels: { [TEST_STACK_LABEL]: STACK },
        HostConfig: { NetworkMode: PREFIX },
      });
      const other = { ok: 0, failures: [] as string[] };
      let flooding = true;
      // The other client: this test process through the published port (another address), paced
      // well below the limits.
      const polite = (async () => {
        while (flooding) {
          try {
            const answer = await request(port, "/count");
            if (answer.status === 200) other.ok++;
            else other.failures.push(`status ${answer.status}`);
          } catch (error) {
            other.failures.push(String(error));
          }
          await sleep(100);
        }
      })();
      let tally: FloodTally;
      try {
        await flooder.start();
        const ended = (await flooder.wait()) as ContainerWait;
        const logs = (await flooder.logs({ stdout: true, stderr: true })).toString("utf8");
        assert.equal(ended.StatusCode, 0, logs);
        tally = JSON.parse(logs.slice(logs.indexOf("{"), logs.lastIndexOf("}") + 1)) as FloodTally;
        await sleep(1000);
      } finally {
        flooding = false;
        await polite;
        await flooder.remove({ force: true });
      }
      const served = tally.statuses["200"] ?? 0;
      const limited = tally.statuses["429"] ?? 0;
      t.diagnostic(
        `flood: ${tally.opened}/${FLOOD_CONNECTIONS} connections opened at once from ${PREFIX}-test-flood, answered in ${tally.seconds.toFixed(2)} s: ` +
          `${Object.entries(tally.statuses)
            .map(([s, n]) => `${n}×${s}`)
            .join(", ")}; errors ${JSON.stringify(tally.errors)}`,
      );
      t.diagnostic(`the other client meanwhile: ${other.ok} requests served, ${other.failures.length} failed`);
      assert.equal(tally.opened, FLOOD_CONNECTIONS, "every connection of the flood was opened");
      assert.deepEqual(tally.errors, {}, "every connection got an answer");
      assert.deepEqual(
        Object.keys(tally.statuses).filter((s) => s !== "200" && s !== "429"),
        [],
        "only 200s and 429s",
      );
      assert.ok(limited >= FLOOD_CONNECTIONS * 0.9, `nearly all of the flood limited: ${served}×200, ${limited}×429`);
      assert.ok(served >= 1, "the flooding address is limited, not banned");
      assert.deepEqual(other.failures, []);
      assert.ok(other.ok >= 5, `the other client made only ${other.ok} requests`);
    });

    test("every hardened container stops on its stop signal within its timeout and ends well", async (t) => {
      const order = [`${PREFIX}-nginx`, ...(await replicas()), `${PREFIX}-redis`, `${PREFIX}-postgres`];
      const times: string[] = [];
      for (const name of order) {
        const timeout = stopTimeout(await inspect(name));
        const stopping = Date.now();
        await docker().getContainer(name).stop({ t: timeout });
        const seconds = (Date.now() - stopping) / 1000;
        const state = (await inspect(name)).State;
        times.push(`${name.slice(PREFIX.length + 1)} ${seconds.toFixed(1)} s`);
        assert.deepEqual([state.ExitCode, state.OOMKilled], [0, false], `${name} ended well`);
        assert.ok(seconds < timeout, `${name} took ${seconds} s of its ${timeout} s`);
      }
      t.diagnostic(`stopped: ${times.join(", ")}`);
    });
  });
});
