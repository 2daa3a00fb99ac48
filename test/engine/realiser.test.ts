// Smoke test of the real-engine tier: a tiny Pulumi program of @pulumi/docker resources, evaluated
// under the engine realiser's mocks, must come up for real (Postgres healthy on its volume, an
// image built from a Dockerfile, a container serving an uploaded file on 127.0.0.1), survive a
// container replacement with its data, and leave nothing behind after destroy.
import * as command from "@pulumi/command";
import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import Docker from "dockerode";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { Engine, ensureStandinImages, startEngine, STANDIN_IMAGES } from "./support/engine";
import { EngineRealiser } from "./support/realiser";

function promiseOf<T>(output: pulumi.Output<T>): Promise<T> {
  return new Promise((resolve) => output.apply((value) => resolve(value)));
}

/** Runs a command in a container through the Engine API; returns its exit code and output. */
async function execIn(container: Docker.Container, cmd: string[]): Promise<{ exitCode: number; output: string }> {
  const exec = await container.exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true });
  const stream = await exec.start({ hijack: true, stdin: false });
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  const { ExitCode } = await exec.inspect();
  // Strip the 8-byte frame headers of the multiplexed stream.
  const raw = Buffer.concat(chunks);
  const parts: Buffer[] = [];
  for (let offset = 0; offset + 8 <= raw.length; offset += 8 + raw.readUInt32BE(offset + 4)) {
    parts.push(raw.subarray(offset + 8, offset + 8 + raw.readUInt32BE(offset + 4)));
  }
  return { exitCode: ExitCode ?? -1, output: Buffer.concat(parts).toString("utf8") };
}

/** Container events of the given containers since a time, as "action" and the signal of a kill. */
async function containerEvents(docker: Docker, since: number, ids: string[]): Promise<{ id: string; action: string; signal?: string }[]> {
  const stream = await docker.getEvents({ since, until: Math.ceil(Date.now() / 1000), filters: { type: ["container"], container: ids } });
  const text: string[] = [];
  for await (const chunk of stream) text.push(String(chunk));
  return text
    .join("")
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => JSON.parse(line) as { Action: string; Actor: { ID: string; Attributes: Record<string, string> } })
    .filter((e) => ["kill", "die", "stop", "destroy"].includes(e.Action))
    .map((e) => ({ id: e.Actor.ID, action: e.Action, ...(e.Action === "kill" ? { signal: e.Actor.Attributes.signal } : {}) }));
}

const SERVER_JS = `
const http = require("node:http");
const fs = require("node:fs");
http.createServer((req, res) => {
  if (req.url === "/healthz") { res.end("ok"); return; }
  const message = fs.readFileSync("/srv/message.txt", "utf8");
  const greeting = fs.readFileSync("/srv/greeting", "utf8").trim();
  res.end(greeting + " " + message);
}).listen(8080, "0.0.0.0");
`;

const DOCKERFILE = `FROM ${STANDIN_IMAGES.node}
ARG GREETING=unset
RUN mkdir -p /srv && echo "$GREETING" > /srv/greeting
COPY . /srv/context/
USER node
EXPOSE 8080
CMD ["node", "/srv/context/server.js"]
`;

const NODE_HEALTHCHECK = [
  "CMD",
  "node",
  "-e",
  "require('http').get('http://127.0.0.1:8080/healthz', (r) => process.exit(r.statusCode === 200 ? 0 : 1)).on('error', () => process.exit(1))",
];

/**
 * The program under test: the resource kinds the webstack program uses, in its shapes. A new
 * `release` renames the web container, as a new app release does.
 */
function program(prefix: string, context: string, release: string): { postgres: docker.Container; web: docker.Container } {
  const provider = new docker.Provider("local-docker", {});
  const network = new docker.Network("net", { name: `${prefix}-net`, driver: "bridge" }, { provider });
  const volume = new docker.Volume("pgdata", { name: `${prefix}-pgdata` }, { provider });
  const postgresImage = new docker.RemoteImage("pg-image", { name: STANDIN_IMAGES.postgres, keepLocally: true }, { provider });
  const password = new random.RandomPassword("pg-password", { length: 24, special: false });
  const postgres = new docker.Container(
    "pg",
    {
      name: `${prefix}-postgres`,
      image: postgresImage.imageId,
      envs: pulumi.secret(pulumi.interpolate`POSTGRES_PASSWORD=${password.result}`.apply((e) => [e, "POSTGRES_DB=smoke"])),
      volumes: [{ volumeName: volume.name, containerPath: "/var/lib/postgresql/data" }],
      networksAdvanced: [{ name: network.name, aliases: ["postgres"] }],
      healthcheck: {
        tests: ["CMD", "pg_isready", "-h", "127.0.0.1", "-U", "postgres", "-d", "smoke"],
        interval: "1s",
        timeout: "3s",
        startPeriod: "60s",
        retries: 5,
      },
      restart: "unless-stopped",
      logDriver: "json-file",
      logOpts: { "max-size": "10m", "max-file": "3" },
      stopSignal: "SIGINT",
      stopTimeout: 30,
      destroyGraceSeconds: 30,
      labels: [{ label: "webstack.role", value: "postgres" }],
      wait: true,
      waitTimeout: 120,
    },
    { provider },
  );
  // Stands in for the cloud hosts' readiness command; recorded, never run.
  const ready = new command.local.Command("ready", { create: "true" });
  const image = new docker.Image(
    "web-image",
    {
      imageName: `${prefix}-web:1`,
      build: { context, args: { GREETING: "hello" }, builderVersion: "BuilderV1" },
      skipPush: true,
    },
    { provider },
  );
  const web = new docker.Container(
    `web-${release}`,
    {
      name: `${prefix}-web-${release}`,
      image: image.repoDigest,
      networksAdvanced: [{ name: network.name, aliases: ["web"] }],
      ports: [{ internal: 8080, ip: "127.0.0.1" }],
      uploads: [{ file: "/srv/message.txt", content: "from an upload" }],
      healthcheck: { tests: NODE_HEALTHCHECK, interval: "1s", timeout: "3s", retries: 3 },
      // node as PID 1 ignores SIGTERM; an init process forwards it, so stopping takes no grace period.
      init: true,
      wait: true,
      waitTimeout: 60,
    },
    { provider, dependsOn: [ready, postgres] },
  );
  return { postgres, web };
}

describe("engine realiser", { timeout: 30 * 60_000 }, () => {
  const stack = `smoke-${randomBytes(3).toString("hex")}`;
  const prefix = `webstack-${stack}`;
  let engine: Engine | undefined;
  let realiser: EngineRealiser;
  let contextDir: string | undefined;
  let web: docker.Container;
  let postgres: docker.Container;

  before(async () => {
    engine = await startEngine();
    await ensureStandinImages(engine, ["postgres", "node"]);
    realiser = new EngineRealiser({ docker: engine.docker, stack });
    await realiser.install();

    contextDir = await fs.mkdtemp(path.join(os.tmpdir(), "webstack-realiser-"));
    await fs.writeFile(path.join(contextDir, "Dockerfile"), DOCKERFILE);
    await fs.writeFile(path.join(contextDir, "server.js"), SERVER_JS);
    await fs.writeFile(path.join(contextDir, ".dockerignore"), "secret.txt\n");
    await fs.writeFile(path.join(contextDir, "secret.txt"), "must not reach the build context\n");

    ({ postgres, web } = program(prefix, contextDir, "1"));
    await promiseOf(web.id);
    await realiser.settled();
  });

  after(async () => {
    try {
      if (engine !== undefined && realiser !== undefined) await realiser.destroy({ images: true });
    } finally {
      if (contextDir !== undefined) await fs.rm(contextDir, { recursive: true, force: true });
      await engine?.stop();
    }
  });

  it("starts Postgres healthy on its volume, as the postgres user, with the password only in its environment", async () => {
    const info = await realiser.docker.getContainer(`${prefix}-postgres`).inspect();
    assert.equal(info.State.Health?.Status, "healthy");
    assert.deepEqual(
      info.Mounts.map((m) => [m.Type, m.Name, m.Destination]),
      [["volume", `${prefix}-pgdata`, "/var/lib/postgresql/data"]],
    );
    assert.equal(info.Config.Labels["webstack.test.stack"], stack);
    assert.equal(info.HostConfig.RestartPolicy?.Name, "unless-stopped");
    assert.deepEqual(info.HostConfig.LogConfig, { Type: "json-file", Config: { "max-size": "10m", "max-file": "3" } });
    const generated = realiser.ofType("random:index/randomPassword:RandomPassword")[0].outputs.result;
    const envPassword = info.Config.Env.find((e) => e.startsWith("POSTGRES_PASSWORD="))?.split("=")[1] ?? "";
    assert.equal(envPassword, generated);
    assert.match(envPassword, /^[A-Za-z0-9]{24}$/);
    assert.ok(!JSON.stringify(info.Config.Cmd).includes(envPassword));
    assert.ok(!JSON.stringify(info.Config.Labels).includes(envPassword));
    const whoami = await execIn(realiser.docker.getContainer(`${prefix}-postgres`), ["psql", "-U", "postgres", "-d", "smoke", "-tAc", "select current_user"]);
    assert.deepEqual(whoami, { exitCode: 0, output: "postgres\n" });
    assert.equal(await pulumi.isSecret(postgres.envs), true);
  });

  it("builds the image with its build args and .dockerignore, and serves the uploaded file on 127.0.0.1", async () => {
    const info = await realiser.docker.getContainer(`${prefix}-web-1`).inspect();
    assert.equal(info.State.Health?.Status, "healthy");
    const binding = info.NetworkSettings.Ports["8080/tcp"]?.[0];
    assert.equal(binding?.HostIp, "127.0.0.1");
    const ports = await promiseOf(web.ports);
    assert.equal(ports?.[0].external, Number(binding?.HostPort));
    const response = await fetch(`http://127.0.0.1:${binding?.HostPort}/`);
    assert.equal(await response.text(), "hello from an upload");
    const context = await execIn(realiser.docker.getContainer(`${prefix}-web-1`), ["ls", "-A", "/srv/context"]);
    assert.deepEqual(context, { exitCode: 0, output: ".dockerignore\nDockerfile\nserver.js\n" });
    const built = realiser.ofType("docker:index/image:Image")[0];
    assert.match(String(built.outputs.repoDigest), /^sha256:[0-9a-f]{64}$/);
  });

  it("registers a container only after its dependsOn and input dependencies have completed", () => {
    const registeredWeb = realiser.eventIndex("registered", "web-1");
    assert.ok(registeredWeb > realiser.eventIndex("completed", "pg"), "web registered before pg completed");
    assert.ok(registeredWeb > realiser.eventIndex("completed", "ready"), "web registered before ready completed");
    assert.ok(registeredWeb > realiser.eventIndex("completed", "web-image"), "web registered before its image completed");
    // Independent resources are not serialised behind the slow Postgres realisation.
    assert.ok(realiser.eventIndex("registered", "web-image") < realiser.eventIndex("completed", "pg"));
  });

  it("a second evaluation keeps unchanged containers, creates the new release and deletes the old one at the end", async () => {
    assert.ok(contextDir !== undefined);
    const postgresBefore = await realiser.docker.getContainer(`${prefix}-postgres`).inspect();
    realiser.beginUpdate();
    await realiser.install();
    const second = program(prefix, contextDir, "2");
    await promiseOf(second.web.id);
    await realiser.settled();
    const postgresAfter = await realiser.docker.getContainer(`${prefix}-postgres`).inspect();
    assert.equal(postgresAfter.Id, postgresBefore.Id);
    assert.equal(postgresAfter.State.StartedAt, postgresBefore.State.StartedAt);
    assert.equal((await realiser.docker.getContainer(`${prefix}-web-2`).inspect()).State.Health?.Status, "healthy");
    assert.equal((await realiser.docker.getContainer(`${prefix}-web-1`).inspect()).State.Running, true);
    assert.deepEqual(await realiser.finishUpdate(), [`${prefix}-web-1`]);
    await assert.rejects(realiser.docker.getContainer(`${prefix}-web-1`).inspect(), { statusCode: 404 });
  });

  it("recreates the Postgres container on its volume and keeps the data", async () => {
    const before = await realiser.docker.getContainer(`${prefix}-postgres`).inspect();
    const write = await execIn(realiser.docker.getContainer(`${prefix}-postgres`), [
      "psql", "-U", "postgres", "-d", "smoke", "-v", "ON_ERROR_STOP=1", "-c", "create table visits (n int); insert into visits values (42);",
    ]);
    assert.equal(write.exitCode, 0, write.output);
    const outputs = await realiser.recreateContainer(`${prefix}-postgres`);
    assert.notEqual(outputs.id, before.Id);
    const after = await realiser.docker.getContainer(`${prefix}-postgres`).inspect();
    assert.equal(after.State.Health?.Status, "healthy");
    const read = await execIn(realiser.docker.getContainer(`${prefix}-postgres`), ["psql", "-U", "postgres", "-d", "smoke", "-tAc", "select n from visits"]);
    assert.deepEqual(read, { exitCode: 0, output: "42\n" });
  });

  it("destroyStack deletes like pulumi destroy: dependents first, Postgres stopped within its grace period, a container without one killed, the built image's tag left", async () => {
    const ids = { pg: String(realiser.container("pg").id), web: String(realiser.container("web-2").id) };
    const since = Math.floor(Date.now() / 1000) - 1;
    const summary = await realiser.destroyStack();

    const at = (name: string) => summary.deleted.indexOf(name);
    for (const name of ["pg", "pgdata", "net", "pg-image", "web-image", "ready", "pg-password"]) assert.ok(at(name) >= 0, `${name} deleted`);
    assert.ok(!summary.deleted.includes("web-1"), "the old release was deleted by its update, not again");
    for (const [dependent, dependency] of [["web-2", "pg"], ["web-2", "ready"], ["web-2", "web-image"], ["web-2", "net"], ["pg", "pgdata"], ["pg", "pg-image"], ["pg", "pg-password"], ["pg", "net"]]) {
      assert.ok(at(dependent) < at(dependency), `${dependent} deleted before ${dependency}: ${summary.deleted.join(", ")}`);
    }
    assert.deepEqual(summary.removed, { containers: [`${prefix}-web-2`, `${prefix}-postgres`], networks: [`${prefix}-net`], volumes: [`${prefix}-pgdata`], images: [] });
    assert.deepEqual(summary.kept.sort(), [`${prefix}-web:1`, STANDIN_IMAGES.postgres].sort());
    assert.deepEqual(await realiser.leftovers(), { containers: 0, networks: 0, volumes: 0 });
    assert.ok(realiser.resources.every((r) => !r.custom || r.deleted || r.id === undefined), "every resource of the state is marked deleted");

    // The engine's own record of how each container ended.
    const events = await containerEvents(realiser.docker, since, [ids.pg, ids.web]);
    const of = (id: string) => events.filter((e) => e.id === id).map((e) => (e.signal === undefined ? e.action : `${e.action}:${e.signal}`));
    assert.deepEqual(of(ids.pg), ["kill:2", "die", "stop", "destroy"], "Postgres got its stop signal (SIGINT) and stopped within its grace period");
    assert.deepEqual(of(ids.web), ["kill:9", "die", "destroy"], "without destroyGraceSeconds the provider removes the container by force at once");
    await realiser.docker.getImage(`${prefix}-web:1`).inspect();
  });

  it("destroy sweeps what destroyStack leaves: the built image, by its tag; the stand-in image stays", async () => {
    const summary = await realiser.destroy({ images: true });
    assert.deepEqual(summary, { containers: [], networks: [], volumes: [], images: [`${prefix}-web:1`] });
    await assert.rejects(realiser.docker.getImage(`${prefix}-web:1`).inspect(), { statusCode: 404 });
    await realiser.docker.getImage(STANDIN_IMAGES.postgres).inspect();
  });
});

describe("engine realiser input checks", { timeout: 10 * 60_000 }, () => {
  let engine: Engine | undefined;
  let realiser: EngineRealiser;

  before(async () => {
    engine = await startEngine();
    realiser = new EngineRealiser({ docker: engine.docker, stack: `checks-${randomBytes(3).toString("hex")}` });
  });

  after(async () => {
    try {
      if (realiser !== undefined) await realiser.destroy();
    } finally {
      await engine?.stop();
    }
  });

  const container = async (inputs: Record<string, unknown>) =>
    realiser.mocks.newResource({ type: "docker:index/container:Container", name: "probe", inputs: { image: STANDIN_IMAGES.postgres, ...inputs }, custom: true });

  it("rejects a container input it does not know", async () => {
    await assert.rejects(container({ privileged: true }), /Container probe: input 'privileged' is not supported by the engine realiser/);
  });

  it("refuses to publish a port on any address but 127.0.0.1", async () => {
    await assert.rejects(container({ ports: [{ internal: 80, ip: "0.0.0.0" }] }), /ports\[0\]\.ip is '0\.0\.0\.0'; the test engine publishes only on 127\.0\.0\.1/);
    await assert.rejects(container({ ports: [{ internal: 80 }] }), /ports\[0\]\.ip is unset/);
  });

  it("fails a RemoteImage that is not on the engine instead of pulling it", async () => {
    await assert.rejects(
      async () => realiser.mocks.newResource({ type: "docker:index/remoteImage:RemoteImage", name: "pg", inputs: { name: "postgres:15.99-nowhere" }, custom: true }),
      /RemoteImage pg: image 'postgres:15\.99-nowhere' is not on the engine, and nothing can be pulled here/,
    );
  });

  it("names a missing Dockerfile before building", async () => {
    await assert.rejects(
      async () =>
        realiser.mocks.newResource({
          type: "docker:index/image:Image",
          name: "app-image",
          inputs: { imageName: "probe:1", skipPush: true, build: { context: os.tmpdir(), dockerfile: "/nonexistent/Dockerfile" } },
          custom: true,
        }),
      /Image app-image: build\.dockerfile '\/nonexistent\/Dockerfile' is not an existing file/,
    );
  });

  it("rejects a health check interval that is not a Go duration", async () => {
    await assert.rejects(container({ healthcheck: { tests: ["CMD", "true"], interval: "5 seconds" } }), /probe\.healthcheck\.interval: '5 seconds' is not a Go duration/);
  });
});
