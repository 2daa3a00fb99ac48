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
import { Engine, ensureStandinImages, execIn, startEngine, STANDIN_IMAGES } from "./support/engine";
import { EngineRealiser, RecordedResource } from "./support/realiser";
import { sleep } from "./support/wait";

function promiseOf<T>(output: pulumi.Output<T>): Promise<T> {
  return new Promise((resolve) => output.apply((value) => resolve(value)));
}

/** Container events of the given containers since a time: "action" (with the signal of a kill) and when, in ms. */
async function containerEvents(
  docker: Docker,
  since: number,
  ids: string[],
): Promise<{ id: string; action: string; signal?: string; ms: number }[]> {
  const stream = await docker.getEvents({
    since,
    until: Math.ceil(Date.now() / 1000),
    filters: { type: ["container"], container: ids },
  });
  const text: string[] = [];
  for await (const chunk of stream) text.push(String(chunk));
  return text
    .join("")
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map(
      (line) =>
        JSON.parse(line) as {
          Action: string;
          timeNano: number;
          Actor: { ID: string; Attributes: Record<string, string> };
        },
    )
    .filter((e) => ["kill", "die", "stop", "destroy"].includes(e.Action))
    .map((e) => ({
      id: e.Actor.ID,
      action: e.Action,
      ms: e.timeNano / 1e6,
      ...(e.Action === "kill" ? { signal: e.Actor.Attributes.signal } : {}),
    }));
}

/** One container's events as "action" or "kill:<signal>". */
function eventNames(events: { id: string; action: string; signal?: string }[], id: string): string[] {
  return events.filter((e) => e.id === id).map((e) => (e.signal === undefined ? e.action : `${e.action}:${e.signal}`));
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
RUN mkdir -p /srv && echo "$GREETING" > /srv/greeting && cut -d: -f1 /proc/net/dev | tail -n +3 | tr -d " " | sort > /srv/build-interfaces
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
function program(
  prefix: string,
  context: string,
  release: string,
): { postgres: docker.Container; web: docker.Container } {
  const provider = new docker.Provider("local-docker", {});
  const network = new docker.Network("net", { name: `${prefix}-net`, driver: "bridge" }, { provider });
  const volume = new docker.Volume("pgdata", { name: `${prefix}-pgdata` }, { provider });
  const postgresImage = new docker.RemoteImage(
    "pg-image",
    { name: STANDIN_IMAGES.postgres, keepLocally: true },
    { provider },
  );
  const password = new random.RandomPassword("pg-password", { length: 24, special: false });
  const postgres = new docker.Container(
    "pg",
    {
      name: `${prefix}-postgres`,
      image: postgresImage.imageId,
      envs: pulumi.secret(
        pulumi.interpolate`POSTGRES_PASSWORD=${password.result}`.apply((e) => [e, "POSTGRES_DB=smoke"]),
      ),
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
    // The tiny program's provider has no host, like the local target's; the command takes a while,
    // so what does not wait for it registers before it completes.
    realiser = new EngineRealiser({
      docker: engine.docker,
      stack,
      engineProviders: ["local-docker"],
      commandDelayMs: 1500,
    });
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
    const whoami = await execIn(realiser.docker.getContainer(`${prefix}-postgres`), [
      "psql",
      "-U",
      "postgres",
      "-d",
      "smoke",
      "-tAc",
      "select current_user",
    ]);
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

  it("runs the build's RUN steps on the engine's default network, as the provider does, not on the host's", async () => {
    const interfaces = await execIn(realiser.docker.getContainer(`${prefix}-web-1`), ["cat", "/srv/build-interfaces"]);
    assert.deepEqual(interfaces, { exitCode: 0, output: "eth0\nlo\n" });
  });

  it("registers a container only after its dependsOn and input dependencies have completed", () => {
    const registeredWeb = realiser.eventIndex("registered", "web-1");
    assert.ok(registeredWeb > realiser.eventIndex("completed", "pg"), "web registered before pg completed");
    assert.ok(registeredWeb > realiser.eventIndex("completed", "ready"), "web registered before ready completed");
    assert.ok(
      registeredWeb > realiser.eventIndex("completed", "web-image"),
      "web registered before its image completed",
    );
    // Independent resources are not serialised behind the slow Postgres realisation.
    assert.ok(realiser.eventIndex("registered", "web-image") < realiser.eventIndex("completed", "pg"));
    // The command took its time, and what does not depend on it did not wait for it: the ordering is observed, not given.
    const ready = realiser.events.filter((e) => e.name === "ready");
    assert.ok(ready[1].time - ready[0].time >= 1400, `the command completed after ${ready[1].time - ready[0].time} ms`);
    for (const name of ["net", "pgdata", "pg-image"]) {
      assert.ok(
        realiser.eventIndex("completed", name) < realiser.eventIndex("completed", "ready"),
        `${name} did not wait for the command`,
      );
    }
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
    const finished = await realiser.finishUpdate();
    assert.deepEqual(finished.deleted, ["web-1"]);
    assert.deepEqual(finished.removed, { containers: [`${prefix}-web-1`], networks: [], volumes: [], images: [] });
    await assert.rejects(realiser.docker.getContainer(`${prefix}-web-1`).inspect(), { statusCode: 404 });
  });

  it("recreates the Postgres container on its volume and keeps the data", async () => {
    const before = await realiser.docker.getContainer(`${prefix}-postgres`).inspect();
    const write = await execIn(realiser.docker.getContainer(`${prefix}-postgres`), [
      "psql",
      "-U",
      "postgres",
      "-d",
      "smoke",
      "-v",
      "ON_ERROR_STOP=1",
      "-c",
      "create table visits (n int); insert into visits values (42);",
    ]);
    assert.equal(write.exitCode, 0, write.output);
    const outputs = await realiser.recreateContainer(`${prefix}-postgres`);
    assert.notEqual(outputs.id, before.Id);
    const after = await realiser.docker.getContainer(`${prefix}-postgres`).inspect();
    assert.equal(after.State.Health?.Status, "healthy");
    const read = await execIn(realiser.docker.getContainer(`${prefix}-postgres`), [
      "psql",
      "-U",
      "postgres",
      "-d",
      "smoke",
      "-tAc",
      "select n from visits",
    ]);
    assert.deepEqual(read, { exitCode: 0, output: "42\n" });
  });

  it("destroyStack deletes like pulumi destroy: dependents first, Postgres stopped within its grace period, a container without one stopped with none, the built image's tag left", async () => {
    const ids = { pg: String(realiser.container("pg").id), web: String(realiser.container("web-2").id) };
    const since = Math.floor(Date.now() / 1000) - 1;
    const summary = await realiser.destroyStack();

    const at = (name: string) => summary.deleted.indexOf(name);
    for (const name of ["pg", "pgdata", "net", "pg-image", "web-image", "ready", "pg-password", "local-docker"])
      assert.ok(at(name) >= 0, `${name} deleted`);
    assert.ok(!summary.deleted.includes("web-1"), "the old release was deleted by its update, not again");
    for (const [dependent, dependency] of [
      ["web-2", "pg"],
      ["web-2", "ready"],
      ["web-2", "web-image"],
      ["web-2", "net"],
      ["pg", "pgdata"],
      ["pg", "pg-image"],
      ["pg", "pg-password"],
      ["pg", "net"],
      ["net", "local-docker"],
    ]) {
      assert.ok(
        at(dependent) < at(dependency),
        `${dependent} deleted before ${dependency}: ${summary.deleted.join(", ")}`,
      );
    }
    assert.deepEqual(summary.removed, {
      containers: [`${prefix}-web-2`, `${prefix}-postgres`],
      networks: [`${prefix}-net`],
      volumes: [`${prefix}-pgdata`],
      images: [],
    });
    assert.deepEqual(summary.kept.sort(), [`${prefix}-web:1`, STANDIN_IMAGES.postgres].sort());
    assert.deepEqual(await realiser.leftovers(), { containers: 0, networks: 0, volumes: 0 });
    assert.ok(
      realiser.resources.every((r) => !r.custom || r.deleted || r.id === undefined),
      "every resource of the state is marked deleted",
    );

    // The engine's own record of how each container ended.
    const events = await containerEvents(realiser.docker, since, [ids.pg, ids.web]);
    const of = (id: string) => eventNames(events, id);
    assert.deepEqual(
      of(ids.pg),
      ["kill:2", "die", "stop", "destroy"],
      "Postgres got its stop signal (SIGINT) and stopped within its grace period",
    );
    // Without destroyGraceSeconds the provider stops with a timeout of 0: the stop signal, then
    // SIGKILL unless the process is already gone (node, under init, usually is).
    assert.match(
      of(ids.web).join(" "),
      /^kill:15 (kill:9 )?die stop destroy$/,
      "without destroyGraceSeconds the provider stops with no grace",
    );
    await realiser.docker.getImage(`${prefix}-web:1`).inspect();
  });

  it("destroy sweeps what destroyStack leaves: the built image, by its tag; the stand-in image stays", async () => {
    const summary = await realiser.destroy({ images: true });
    assert.deepEqual(summary, { containers: [], networks: [], volumes: [], images: [`${prefix}-web:1`] });
    await assert.rejects(realiser.docker.getImage(`${prefix}-web:1`).inspect(), { statusCode: 404 });
    await realiser.docker.getImage(STANDIN_IMAGES.postgres).inspect();
  });
});

/**
 * The realiser held to the Docker provider (pulumi-docker 5.2.0, terraform-provider-docker under it)
 * on each point where it once was more forgiving, through its mocks as the SDK calls them, with
 * small containers from the stand-in images. Each realiser here has its own stack, so its objects
 * are its own.
 */
describe("engine realiser, as strict as the provider", { timeout: 10 * 60_000 }, () => {
  let engine: Engine | undefined;
  const realisers: EngineRealiser[] = [];
  const SLEEPER = ["sleep", "300"];

  before(async () => {
    engine = await startEngine();
    await ensureStandinImages(engine, ["node"]);
  });

  after(async () => {
    try {
      for (const r of realisers) await r.destroy({ images: true });
    } finally {
      await engine?.stop();
    }
  });

  const docker = () => {
    assert.ok(engine !== undefined);
    return engine.docker;
  };

  /** A realiser of its own stack, with a Docker provider registered as the SDK would register it. */
  async function fresh(
    options: {
      engineProviders?: string[];
      commandDelayMs?: number;
      provider?: { name: string; inputs?: Record<string, unknown> };
    } = {},
  ) {
    const stack = `strict-${randomBytes(3).toString("hex")}`;
    const realiser = new EngineRealiser({
      docker: docker(),
      stack,
      engineProviders: options.engineProviders ?? ["local-docker"],
      commandDelayMs: options.commandDelayMs,
    });
    realisers.push(realiser);
    const register = async (
      type: string,
      name: string,
      inputs: Record<string, unknown>,
      provider?: string,
    ): Promise<RecordedResource> => {
      await realiser.mocks.newResource({ type, name, inputs, custom: true, provider });
      const record = realiser.resources.filter((r) => r.type === type && r.name === name).at(-1);
      assert.ok(record !== undefined);
      return record;
    };
    const providerName = options.provider?.name ?? "local-docker";
    const registerProvider = async () => {
      const record = await register("pulumi:providers:docker", providerName, options.provider?.inputs ?? {});
      return `urn:pulumi:${stack}::webstack::pulumi:providers:docker::${providerName}::${String(record.id)}`;
    };
    const provider = await registerProvider();
    const on = (type: string, name: string, inputs: Record<string, unknown>) => register(type, name, inputs, provider);
    const container = (name: string, inputs: Record<string, unknown>) =>
      on("docker:index/container:Container", name, {
        name: `webstack-${stack}-${name}`,
        image: STANDIN_IMAGES.node,
        ...inputs,
      });
    /** A second `pulumi up`: the provider is registered again (unchanged, same id), then `evaluate` registers the rest. */
    const update = async (evaluate: () => Promise<unknown>) => {
      realiser.beginUpdate();
      assert.equal(await registerProvider(), provider);
      await evaluate();
      return realiser.finishUpdate();
    };
    return { realiser, stack, prefix: `webstack-${stack}`, provider, register, on, container, update };
  }

  it("refuses a Docker resource on no provider, or on one the test engine does not stand in for; serves a provider the test maps to it", async () => {
    const network = { type: "docker:index/network:Network", name: "net", custom: true };
    const local = await fresh();
    await assert.rejects(
      async () => local.realiser.mocks.newResource({ ...network, inputs: {} }),
      /no provider; Pulumi\.yaml disables the default Docker provider/,
    );

    // The cloud host's engine and the deployer's build engine are other engines.
    for (const name of ["host-engine-docker", "host-builder"]) {
      const other = await fresh({
        provider: { name, inputs: name === "host-builder" ? {} : { host: "tcp://203.0.113.20:2376" } },
      });
      await assert.rejects(
        async () => other.on(network.type, "net", { name: `${other.prefix}-net` }),
        new RegExp(
          `its provider '${name}' manages an engine the test engine does not stand in for \\(it stands in for local-docker\\)`,
        ),
      );
    }
    // By default only the local target's provider is served, and only while it talks to the test engine.
    const stack = `strict-${randomBytes(3).toString("hex")}`;
    const byDefault = new EngineRealiser({ docker: docker(), stack });
    realisers.push(byDefault);
    const providerRecord = async (inputs: Record<string, unknown>) => {
      await byDefault.mocks.newResource({ type: "pulumi:providers:docker", name: "host-docker", inputs, custom: true });
      return `urn:pulumi:${stack}::webstack::webstack:hosts:LocalHost$pulumi:providers:docker::host-docker::${String(byDefault.resources.at(-1)?.id)}`;
    };
    const remote = await providerRecord({ host: "ssh://admin@203.0.113.20" });
    await assert.rejects(
      async () =>
        byDefault.mocks.newResource({ ...network, inputs: { name: `webstack-${stack}-net` }, provider: remote }),
      /its provider 'host-docker' talks to 'ssh:\/\/admin@203\.0\.113\.20', not to the test engine \(unix:/,
    );
    await byDefault.mocks.newResource({
      ...network,
      inputs: { name: `webstack-${stack}-net` },
      provider: await providerRecord({}),
    });
    await docker().getNetwork(`webstack-${stack}-net`).inspect();

    // Mapped explicitly, the cloud host's engine is realised here.
    const mapped = await fresh({
      engineProviders: ["host-engine-docker"],
      provider: { name: "host-engine-docker", inputs: { host: "tcp://203.0.113.20:2376" } },
    });
    await mapped.on(network.type, "net", { name: `${mapped.prefix}-net` });
    await docker().getNetwork(`${mapped.prefix}-net`).inspect();

    await assert.rejects(
      async () => local.on("docker:index/service:Service", "svc", {}),
      /a Docker resource type the engine realiser does not realise/,
    );
    await assert.rejects(
      async () =>
        local.realiser.mocks.call({ token: "docker:index/getNetwork:getNetwork", inputs: { name: "bridge" } }),
      /Docker functions are not realised/,
    );
  });

  it("fails wait: true on a container without a health check, where the provider's wait crashes", async () => {
    const { container } = await fresh();
    await assert.rejects(
      async () => container("no-health", { command: SLEEPER, wait: true }),
      /wait is true but the container has no health check/,
    );
  });

  it("fails a container that is not running after its start under mustRun, deleting it; mustRun: false keeps it with its exit code", async () => {
    const { container, prefix } = await fresh();
    await assert.rejects(
      async () => container("quits", { command: ["true"] }),
      /not running after its start \(status exited, exit code 0\), and mustRun is true/,
    );
    await assert.rejects(docker().getContainer(`${prefix}-quits`).inspect(), { statusCode: 404 });
    await assert.rejects(
      async () => container("idle", { command: SLEEPER, start: false }),
      /created but not started, and mustRun is true/,
    );
    const kept = await container("quits-kept", { command: ["true"], mustRun: false });
    assert.equal(kept.outputs.exitCode, 0);
  });

  it("attach waits for the end of the run and records its exit code and logs; a non-zero exit is no error", async () => {
    const { container } = await fresh();
    const run = await container("one-off", {
      command: ["sh", "-c", "echo ran; exit 3"],
      attach: true,
      logs: true,
      mustRun: false,
    });
    assert.equal(run.outputs.exitCode, 3);
    assert.equal(run.outputs.containerLogs, "ran\n");
    await assert.rejects(
      async () => container("one-off-must-run", { command: ["true"], attach: true }),
      /not running after its start/,
    );
  });

  it("uploads an executable with mode 0744, a plain file with 0644, and permissions over both", async () => {
    const { container } = await fresh();
    const record = await container("uploads", {
      command: SLEEPER,
      uploads: [
        { file: "/x/run.sh", content: "#!/bin/sh\n", executable: true },
        { file: "/x/plain", content: "p" },
        { file: "/x/perm", content: "q", executable: true, permissions: "0750" },
      ],
    });
    const modes = await execIn(docker().getContainer(String(record.id)), [
      "stat",
      "-c",
      "%a %n",
      "/x/run.sh",
      "/x/plain",
      "/x/perm",
    ]);
    assert.deepEqual(modes, { exitCode: 0, output: "744 /x/run.sh\n644 /x/plain\n750 /x/perm\n" });
  });

  it("publishes on 127.0.0.1 and on 0.0.0.0, the provider's default when no address is given, and refuses any other address", async () => {
    const { container } = await fresh();
    const record = await container("ports", {
      command: SLEEPER,
      ports: [{ internal: 8080, ip: "127.0.0.1" }, { internal: 8081, ip: "0.0.0.0" }, { internal: 8082 }],
    });
    const bindings = (await docker().getContainer(String(record.id)).inspect()).HostConfig.PortBindings as Record<
      string,
      { HostIp: string }[]
    >;
    assert.deepEqual(
      Object.entries(bindings)
        .map(([port, b]) => [port, b[0].HostIp])
        .sort(),
      [
        ["8080/tcp", "127.0.0.1"],
        ["8081/tcp", "0.0.0.0"],
        ["8082/tcp", "0.0.0.0"],
      ],
    );
    await assert.rejects(
      async () => container("elsewhere", { command: SLEEPER, ports: [{ internal: 80, ip: "10.1.2.3" }] }),
      /ports\[0\]\.ip is '10\.1\.2\.3'; the test engine publishes only on 127\.0\.0\.1 or 0\.0\.0\.0/,
    );
  });

  it("leaves an unchanged container alone in a later update, stopped or not; refresh drops the stopped one and the next update creates it again", async () => {
    const { realiser, container, update } = await fresh();
    const first = await container("keeper", { command: SLEEPER });
    const id = String(first.id);
    await docker().getContainer(id).kill();
    await update(() => container("keeper", { command: SLEEPER }));
    assert.equal(realiser.container("keeper").id, id);
    assert.equal(
      (await docker().getContainer(id).inspect()).State.Running,
      false,
      "pulumi up without --refresh does not look at the engine",
    );

    assert.deepEqual(await realiser.refresh(), ["keeper"]);
    await assert.rejects(docker().getContainer(id).inspect(), { statusCode: 404 });
    await update(() => container("keeper", { command: SLEEPER }));
    const again = realiser.container("keeper");
    assert.notEqual(again.id, id);
    assert.equal((await docker().getContainer(String(again.id)).inspect()).State.Running, true);
  });

  it("updates restart, memory and CPU weight in place, keeps a health check change in the state only, replaces on a label change (stopping the old one within its recorded grace period) and kills at once without one", async () => {
    const { realiser, container, update } = await fresh();
    const healthcheck = { tests: ["CMD", "true"], interval: "1s" };
    // sleep as PID 1 ignores SIGTERM: only SIGKILL ends it, so the events show how long a stop waited.
    const limits = (memory: number, cpuShares: number) => ({ memory, memorySwap: memory, cpuShares });
    const first = await container("changing", {
      command: SLEEPER,
      restart: "no",
      healthcheck,
      destroyGraceSeconds: 2,
      ...limits(64, 512),
    });
    const id = String(first.id);
    const created = await docker().getContainer(id).inspect();
    assert.deepEqual(
      [created.HostConfig.Memory, created.HostConfig.MemorySwap, created.HostConfig.CpuShares],
      [64 * 1024 * 1024, 64 * 1024 * 1024, 512],
      "megabytes as the provider takes them",
    );

    await update(() =>
      container("changing", {
        command: SLEEPER,
        restart: "unless-stopped",
        healthcheck: { ...healthcheck, interval: "2s" },
        destroyGraceSeconds: 2,
        ...limits(96, 256),
      }),
    );
    const inPlace = await docker().getContainer(id).inspect();
    assert.equal(realiser.container("changing").id, id, "restart and healthcheck do not replace the container");
    assert.equal(
      inPlace.HostConfig.RestartPolicy?.Name,
      "unless-stopped",
      "restart is applied to the running container",
    );
    assert.deepEqual(
      [inPlace.HostConfig.Memory, inPlace.HostConfig.MemorySwap, inPlace.HostConfig.CpuShares],
      [96 * 1024 * 1024, 96 * 1024 * 1024, 256],
      "limits are applied to the running container",
    );
    assert.equal(inPlace.State.Running, true);
    assert.equal(inPlace.Config.Healthcheck?.Interval, 1e9, "the provider's Update ignores the health check");

    const since = Math.floor(Date.now() / 1000) - 1;
    await update(() =>
      container("changing", { command: SLEEPER, restart: "unless-stopped", labels: [{ label: "probe", value: "2" }] }),
    );
    const replacement = String(realiser.container("changing").id);
    assert.notEqual(replacement, id);
    await assert.rejects(docker().getContainer(id).inspect(), { statusCode: 404 });

    const finished = await update(() => Promise.resolve());
    assert.deepEqual(finished.removed.containers, [`webstack-${realiser.stack}-changing`]);
    const events = await containerEvents(docker(), since, [id, replacement]);
    for (const [which, grace] of [
      [id, 2],
      [replacement, 0],
    ] as const) {
      assert.deepEqual(eventNames(events, which), ["kill:15", "kill:9", "die", "stop", "destroy"]);
      const [term, kill] = events.filter((e) => e.id === which && e.action === "kill").map((e) => e.ms);
      const waited = (kill - term) / 1000;
      assert.ok(
        waited >= grace - 0.2 && waited < grace + 1.5,
        `${which === id ? "the replaced" : "the deleted"} container got ${waited.toFixed(2)} s, its recorded grace is ${grace} s`,
      );
    }
  });

  it("ends an update by deleting what it no longer registers, dependents first: a renamed volume's data is gone, and so are the network and the image tag", async () => {
    const { realiser, prefix, on, container, update } = await fresh();
    await docker()
      .getImage(STANDIN_IMAGES.node)
      .tag({ repo: `${prefix}-probe`, tag: "1" });
    const evaluate = async (volume: "data" | "data-renamed") => {
      await on("docker:index/network:Network", "net", { name: `${prefix}-net` });
      await on("docker:index/volume:Volume", volume, { name: `${prefix}-${volume}` });
      const image = await on("docker:index/remoteImage:RemoteImage", "probe-image", {
        name: `${prefix}-probe:1`,
        keepLocally: false,
      });
      return container("user", {
        command: SLEEPER,
        image: image.outputs.imageId,
        networksAdvanced: [{ name: `${prefix}-net`, aliases: ["user"] }],
        volumes: [{ volumeName: `${prefix}-${volume}`, containerPath: "/data" }],
      });
    };
    const first = await evaluate("data");
    assert.equal(
      (await execIn(docker().getContainer(String(first.id)), ["sh", "-c", "echo kept > /data/f"])).exitCode,
      0,
    );

    const renamed = await update(() => evaluate("data-renamed"));
    assert.deepEqual(renamed.deleted, ["data"]);
    assert.deepEqual(renamed.removed.volumes, [`${prefix}-data`]);
    await assert.rejects(docker().getVolume(`${prefix}-data`).inspect(), { statusCode: 404 });
    const read = await execIn(docker().getContainer(String(realiser.container("user").id)), ["cat", "/data/f"]);
    assert.notEqual(read.exitCode, 0, "the renamed volume starts empty: the data did not move");

    const emptied = await update(() => Promise.resolve());
    const at = (name: string) => emptied.deleted.indexOf(name);
    for (const dependency of ["net", "data-renamed", "probe-image"])
      assert.ok(at("user") < at(dependency), `user deleted before ${dependency}: ${emptied.deleted.join(", ")}`);
    assert.deepEqual(emptied.removed, {
      containers: [`${prefix}-user`],
      networks: [`${prefix}-net`],
      volumes: [`${prefix}-data-renamed`],
      images: [`${prefix}-probe:1`],
    });
    await assert.rejects(docker().getNetwork(`${prefix}-net`).inspect(), { statusCode: 404 });
    await assert.rejects(docker().getImage(`${prefix}-probe:1`).inspect(), { statusCode: 404 });
    await docker().getImage(STANDIN_IMAGES.node).inspect();
    assert.deepEqual(await realiser.leftovers(), { containers: 0, networks: 0, volumes: 0 });
  });

  /** A running container on `network` that no realiser made: it carries no stack label. */
  async function outsider(name: string, network: string): Promise<Docker.Container> {
    const made = await docker().createContainer({
      name,
      Image: STANDIN_IMAGES.node,
      Cmd: SLEEPER,
      HostConfig: { NetworkMode: network },
    });
    await made.start();
    return made;
  }

  it("deletes a network as the provider does: while a container still holds it, tries again, and removes it once the container is gone", async () => {
    const { prefix, on, update } = await fresh();
    await on("docker:index/network:Network", "net", { name: `${prefix}-net` });
    const holder = await outsider(`${prefix}-holder`, `${prefix}-net`);
    try {
      const emptied = update(() => Promise.resolve()).then(
        (summary) => ({ summary }),
        (error: unknown) => ({ error }),
      );
      await sleep(1500);
      await docker().getNetwork(`${prefix}-net`).inspect();
      await holder.remove({ force: true });
      const outcome = await emptied;
      assert.ok("summary" in outcome, `the update failed: ${String("error" in outcome ? outcome.error : "")}`);
      assert.deepEqual(outcome.summary.removed.networks, [`${prefix}-net`]);
      await assert.rejects(docker().getNetwork(`${prefix}-net`).inspect(), { statusCode: 404 });
    } finally {
      await holder.remove({ force: true }).catch(() => undefined);
    }
  });

  it("destroy leaves a container that is not the stack's alone, naming it when it holds the stack's network; once it is gone the sweep ends", async () => {
    const { realiser, prefix, on, container } = await fresh();
    await on("docker:index/network:Network", "net", { name: `${prefix}-net` });
    await container("user", { command: SLEEPER, networksAdvanced: [{ name: `${prefix}-net` }] });
    const stranger = await outsider(`${prefix}-stranger`, `${prefix}-net`);
    try {
      await assert.rejects(
        realiser.destroy(),
        new RegExp(
          `network ${prefix}-net: still in use by ${prefix}-stranger \\(running\\), which the sweep did not remove`,
        ),
      );
      assert.equal((await stranger.inspect()).State.Running, true, "the sweep left the stranger running");
      assert.deepEqual(await realiser.leftovers(), { containers: 0, networks: 1, volumes: 0 });
    } finally {
      await stranger.remove({ force: true });
    }
    assert.deepEqual((await realiser.destroy()).networks, [`${prefix}-net`]);
    assert.deepEqual(await realiser.leftovers(), { containers: 0, networks: 0, volumes: 0 });
  });

  it("refuses to replace a network or volume, which the provider deletes before creating again", async () => {
    const { prefix, on, update } = await fresh();
    await on("docker:index/network:Network", "net", { name: `${prefix}-net` });
    await assert.rejects(
      async () =>
        update(() =>
          on("docker:index/network:Network", "net", {
            name: `${prefix}-net`,
            labels: [{ label: "changed", value: "yes" }],
          }),
        ),
      /Network net: its inputs changed, which replaces it/,
    );
  });

  it("takes commandDelayMs to complete a created command and no time for an unchanged one in a later update", async () => {
    const { realiser, register } = await fresh({ commandDelayMs: 1000 });
    const took = () => {
      const [registered, completed] = realiser.events.filter((e) => e.name === "ready").slice(-2);
      return completed.time - registered.time;
    };
    await register("command:remote:Command", "ready", { create: "cloud-init status --wait" });
    assert.ok(took() >= 950, `created in ${took()} ms`);
    realiser.beginUpdate();
    await register("command:remote:Command", "ready", { create: "cloud-init status --wait" });
    assert.ok(took() < 500, `unchanged in ${took()} ms`);
  });

  it("rejects inputs it does not know, and builds only with the classic builder, which the program must name", async () => {
    const { container, on } = await fresh();
    await assert.rejects(
      async () => container("probe", { privileged: true }),
      /Container probe: input 'privileged' is not supported by the engine realiser/,
    );
    await assert.rejects(
      async () => on("docker:index/network:Network", "net", { ipv6: true }),
      /Network net: ipv6 not supported by the engine realiser/,
    );
    await assert.rejects(
      async () => on("docker:index/remoteImage:RemoteImage", "pg", { name: "postgres:15.99-nowhere" }),
      /RemoteImage pg: image 'postgres:15\.99-nowhere' is not on the engine, and nothing can be pulled here/,
    );
    const image = {
      imageName: "probe:1",
      skipPush: true,
      build: { context: os.tmpdir(), dockerfile: "/nonexistent/Dockerfile", builderVersion: "BuilderV1" },
    };
    await assert.rejects(
      async () => on("docker:index/image:Image", "app-image", image),
      /Image app-image: build\.dockerfile '\/nonexistent\/Dockerfile' is not an existing file/,
    );
    await assert.rejects(
      async () => on("docker:index/image:Image", "app-image", { ...image, build: { context: os.tmpdir() } }),
      /build\.builderVersion is unset, which means BuildKit \(the provider's default\)/,
    );
    await assert.rejects(
      async () => container("probe", { healthcheck: { tests: ["CMD", "true"], interval: "5 seconds" } }),
      /probe\.healthcheck\.interval: '5 seconds' is not a Go duration/,
    );
    await assert.rejects(
      async () => container("probe", { command: ["sleep", ""] }),
      /values for command may not be empty/,
    );
  });
});
