// The end-to-end scenario of the real-engine tier: the unchanged index.ts, evaluated under the
// engine realiser's mocks, brings the whole stack up on a real Docker engine; then it is used over
// HTTP, inspected, broken on purpose, released again, and torn down.
import * as pulumi from "@pulumi/pulumi";
import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, before, describe, test, TestContext } from "node:test";
import { unhandledRejectionsOf } from "../../support/rejections";
import { freePort } from "../../support/services";
import { latencySummary } from "../../../ci/smoke";
import { TASKS_PER_REPLICA } from "../../../components/config";
import { DEFAULT_LIMITS, LimitedRole } from "../../../components/specs/containers";
import {
  ContainerTop,
  derivedImage,
  Engine,
  ensureStandinImages,
  execIn,
  PortBindings,
  startEngine,
  STANDIN_IMAGES,
} from "./engine";
import { LoadResult, startLoad, visit } from "./load";
import { EngineRealiser, EngineRealiserArgs, reveal, TEST_STACK_LABEL } from "./realiser";
import { describeBackups, describeBucketBackups, startS3Standin } from "./backups";
import { describeHttps, httpsSettings, localHttpsTest } from "./https";
import { errorText, eventually, sleep } from "./wait";

const ROOT = path.join(__dirname, "..", "..", "..");
const INDEX = path.join(ROOT, "index.ts");

export { eventually, sleep } from "./wait";

export interface Scenario {
  /** Test stack name; Docker objects are named `webstack-<stack>-…`. */
  stack: string;
  /** `webstack:` settings of the target besides images, port and release. */
  settings: Record<string, string>;
  /** Host address nginx must be published on: the target's default unless the settings name one. */
  bindAddress: string;
  /** Host directory the target keeps Postgres data in, if any (a cloud host's mounted volume). */
  dataDir?: string;
  /**
   * Docker providers whose engine the test engine stands in for (see EngineRealiserArgs); a cloud
   * target's remote engine is mapped onto the test engine here, deliberately.
   * @default the local target's provider
   */
  engineProviders?: EngineRealiserArgs["engineProviders"];
  /**
   * Logical name of the command every Docker resource must wait for (a cloud host's readiness
   * command); it takes a while to complete here, so a resource that does not wait shows.
   */
  readinessCommand?: string;
  /**
   * HTTPS from Pebble (see https.ts): the stack is deployed with a domain while the CA is down, the
   * shared tests run over HTTP, and the HTTPS tests run last on the same stack.
   */
  https?: boolean;
  /** HTTPS from the stack's own CA, asked for by an update late in the scenario (the local target). */
  localHttps?: boolean;
  /** Backups restored under load and to a moment (see backups.ts): the target keeps them on a volume. */
  restores?: boolean;
  /**
   * Run the tests of the container layer itself (limits, OOM, fork bomb, reloads, releases,
   * migrations, rollback, a new Redis image), which are the same on every target: the local
   * scenario runs them; a cloud scenario, whose container layer is the same specs on the same
   * engine, tests what differs (readiness, the data directory on block storage, HTTPS, the bucket).
   * @default true
   */
  layerTests?: boolean;
  /**
   * The S3 endpoint a cloud target's backups go to (`nyc3.digitaloceanspaces.com`): the s3 stand-in
   * takes its name on the stack's backup network.
   */
  bucketEndpoint?: string;
}

/** The app user's task limit the scenarios deploy with (`appProcesses`): 3 replicas need at least 224. */
const APP_PROCESSES = 256;
/** The app's user id in its image (see APP_USER). */
const APP_UID = 10001;

/**
 * Tasks (processes and threads) of a user on this machine, which the test engine shares: what the
 * kernel holds against that user's RLIMIT_NPROC.
 */
async function tasksOf(uid: number): Promise<number> {
  let tasks = 0;
  for (const pid of (await fs.readdir("/proc")).filter((entry) => /^[0-9]+$/.test(entry))) {
    const status = await fs.readFile(`/proc/${pid}/status`, "utf8").catch(() => "");
    if (new RegExp(`^Uid:\\s+${uid}\\s`, "m").test(status))
      tasks += Number(/^Threads:\s+(\d+)/m.exec(status)?.[1] ?? 0);
  }
  return tasks;
}

/** How long a created command takes in the scenarios that have one: long enough to be seen. */
const COMMAND_DELAY_MS = 2000;

/** The `webstack:` image settings that put the stand-ins in place of the pinned official images. */
export const STANDIN_SETTINGS = {
  postgresImage: STANDIN_IMAGES.postgres,
  redisImage: STANDIN_IMAGES.redis,
  nginxImage: STANDIN_IMAGES.nginx,
  nodeImage: STANDIN_IMAGES.node,
};

/** The stack outputs index.ts exports. */
export type ProgramExports = typeof import("../../../index");

/**
 * Evaluates index.ts with these settings on the realiser and waits until everything is realised.
 * The Pulumi runtime's mock state (mocks, stack, config) is global: evaluations, also of different
 * stacks, must run one after the other, and an output must be read before the next one starts.
 */
export async function deploy(
  realiser: EngineRealiser,
  settings: Record<string, string>,
  options: { checkout?: string } = {},
): Promise<ProgramExports> {
  await realiser.install();
  pulumi.runtime.setAllConfig(Object.fromEntries(Object.entries(settings).map(([k, v]) => [`webstack:${k}`, v])));
  const index = options.checkout === undefined ? INDEX : path.join(options.checkout, "index.ts");
  delete require.cache[require.resolve(index)];
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const program = require(index) as ProgramExports;
  // Every registration, including those waiting on other resources' outputs, has reached the mocks.
  await pulumi.runtime.disconnect();
  await realiser.settled();
  return program;
}

/**
 * Deploys as `deploy` does, where the update is expected to fail: what failed it is returned (see
 * unhandledRejectionsOf).
 */
export function failedDeploy(
  realiser: EngineRealiser,
  settings: Record<string, string>,
  options: { checkout?: string } = {},
): Promise<Error[]> {
  return unhandledRejectionsOf(() => deploy(realiser, settings, options), 500);
}

/**
 * A copy of the project, the program and the app, with `migrations` added to the app (name →
 * SQL): what a later commit that adds them deploys. Its node_modules is the project's, linked.
 */
export async function checkoutWith(migrations: Record<string, string>): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "webstack-checkout-"));
  const skipped = /(^|\/)(node_modules|dist)(\/|$)/;
  for (const entry of [
    "index.ts",
    "Pulumi.yaml",
    "package.json",
    "tsconfig.json",
    "components",
    "nginx",
    "acme",
    "app",
    "postgres",
  ]) {
    await fs.cp(path.join(ROOT, entry), path.join(dir, entry), {
      recursive: true,
      filter: (source) => !skipped.test(path.relative(ROOT, source)),
    });
  }
  await fs.symlink(path.join(ROOT, "node_modules"), path.join(dir, "node_modules"));
  for (const [name, sql] of Object.entries(migrations)) {
    await fs.writeFile(path.join(dir, "app", "migrations", `${name}.sql`), `-- Up Migration\n${sql}\n`);
  }
  return dir;
}

/** The value of a stack output once known; an output that never resolves is an error, not a hang. */
export function outputValue<T>(output: pulumi.Output<T>, what: string, seconds = 30): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: no value within ${seconds} s`)), seconds * 1000);
    output.apply((value) => {
      clearTimeout(timer);
      resolve(value);
    });
  });
}

/** The visit count a stack reports at GET /count (a read; it counts nothing). */
export async function visitCount(port: number): Promise<number> {
  const { status, body } = await visit(port, "/count");
  assert.equal(status, 200, body);
  return (JSON.parse(body) as { count: number }).count;
}

/** nginx's error-log lines and its access-log lines of failed requests, to explain a failure. */
async function nginxTrouble(docker: Engine["docker"], nginx: string): Promise<string> {
  const raw = await docker.getContainer(nginx).logs({ stdout: true, stderr: true, tail: 5000 });
  return raw
    .toString("utf8")
    .split("\n")
    .filter((line) => /\[(error|warn|alert|crit)\]|"status":\s*"?5\d\d|upstream-watch/.test(line))
    .slice(-40)
    .join("\n");
}

/**
 * Stops a load on one stack and checks it: no failed request, no visit lost, none counted twice.
 * `nginx` names the stack's proxy container, whose logs explain failures.
 */
export async function stopLoad(
  t: TestContext,
  load: ReturnType<typeof startLoad>,
  stack: { docker: Engine["docker"]; port: number; nginx: string; countBefore: number },
): Promise<LoadResult> {
  const result = await load.stop();
  t.diagnostic(`load: ${result.ok} requests served, ${result.failed} failed; ${latencySummary(result)}`);
  if (result.failed > 0) t.diagnostic(`nginx said:\n${await nginxTrouble(stack.docker, stack.nginx)}`);
  assert.equal(result.failed, 0, `failed requests: ${result.failures.join("; ")}`);
  assert.ok(result.ok > 100, `only ${result.ok} requests`);
  // /count reads the Redis cache first; a replica that reconnected to Redis late may leave it a
  // step behind Postgres until the next visit or the cache entry's expiry.
  const expected = stack.countBefore + result.ok;
  let seen: number | undefined;
  await eventually(`count to reach ${expected}`, 75, async () => {
    seen = await visitCount(stack.port);
    return seen === expected ? true : undefined;
  }).catch((error: Error) => assert.fail(`${error.message}; last read ${seen}`));
  assert.equal(new Set(result.counts).size, result.counts.length);
  return result;
}

export function describeStack(scenario: Scenario): void {
  const { stack } = scenario;
  const prefix = `webstack-${stack}`;
  /** The s3 stand-in's container, when the target's backups go to a bucket. */
  const s3Name = `${prefix}-s3-standin`;
  let engine: Engine;
  let realiser: EngineRealiser;
  let port: number;
  let httpsPort: number;
  let settings: Record<string, string>;
  const certsDir = scenario.dataDir === undefined ? undefined : path.join(path.dirname(scenario.dataDir), "certs");

  const docker = () => engine.docker;
  const inspect = (name: string) => docker().getContainer(name).inspect();
  // A replica left as it was by a later update is recorded once per update: each name counts once.
  const replicas = () => [
    ...new Set(
      realiser
        .ofType("docker:index/container:Container")
        .filter((r) => !r.deleted && String(r.outputs.name).startsWith(`${prefix}-app-`))
        .map((r) => String(r.outputs.name))
        .sort(),
    ),
  ];
  const stackContainers = async () =>
    (await docker().listContainers({ all: true, filters: { label: [`webstack.stack=${stack}`] } })).map((c) =>
      c.Names[0].replace(/^\//, ""),
    );
  const readCount = () => visitCount(port);
  /** The one-off runs: the files runs for the app and nginx, and the first release's migration run. */
  const oneOffs = [`${prefix}-files-app`, `${prefix}-files-nginx`, `${prefix}-migrate-r1`];
  /** The one-off runs as the first update left them: those above and the Postgres image's check. */
  const firstOneOffs = () => [
    ...oneOffs,
    ...realiser
      .ofType("docker:index/container:Container")
      .map((r) => String(r.outputs.name))
      .filter((name) => name.startsWith(`${prefix}-postgres-check-`)),
  ];
  /** Every password and token the program generated, as the recorded state holds them. */
  const generatedSecrets = () => {
    const found = realiser
      .ofType("random:index/randomPassword:RandomPassword")
      .map((r) => String(reveal(r.outputs.result)));
    assert.ok(found.length >= 2 && found.every((secret) => secret.length >= 16), "the stack's generated secrets");
    return found;
  };
  const settleLoad = (t: TestContext, load: ReturnType<typeof startLoad>, countBefore: number) =>
    stopLoad(t, load, { docker: docker(), port, nginx: `${prefix}-nginx`, countBefore });
  /** Copies of the project a test deployed from (see checkoutWith); removed at the end. */
  const checkouts: string[] = [];
  /** Rows of a query on the stack's database, as psql prints them unaligned. */
  const psql = async (sql: string): Promise<string[]> => {
    const postgres = docker().getContainer(`${prefix}-postgres`);
    const { exitCode, output } = await execIn(postgres, ["psql", "-U", "webstack", "-d", "webstack", "-tAc", sql]);
    assert.equal(exitCode, 0, output);
    return output.split("\n").filter((line) => line !== "");
  };
  const appliedMigrations = () => psql("SELECT name FROM schema_migrations ORDER BY id");
  /** The checkout the stack was last deployed from; undefined for the project itself. */
  let checkout: string | undefined;
  /** What the last update's program exported. */
  let exported: ProgramExports | undefined;
  /**
   * An update: `changes` to the settings (undefined removes one), deployed from `from` (else the
   * checkout deployed last).
   */
  const update = async (changes: Record<string, string | undefined>, from = checkout) => {
    realiser.beginUpdate();
    const merged: Record<string, string | undefined> = { ...settings, ...changes };
    settings = Object.fromEntries(
      Object.entries(merged).filter((entry): entry is [string, string] => entry[1] !== undefined),
    );
    checkout = from;
    exported = await deploy(realiser, settings, { checkout });
    return realiser.finishUpdate();
  };
  /** The update under load; the load must fail no request and lose no visit. */
  const updateUnderLoad = async (t: TestContext, changes: Record<string, string | undefined>, from = checkout) => {
    const before = await readCount();
    const load = startLoad(port, { concurrency: 8, maxSeconds: 300 });
    try {
      await sleep(2000);
      const started = Date.now();
      await update(changes, from);
      t.diagnostic(`update: ${((Date.now() - started) / 1000).toFixed(1)} s`);
      await sleep(3000);
    } finally {
      await load.stop();
    }
    return settleLoad(t, load, before);
  };
  const healthy = (name: string, seconds = 90) =>
    eventually(`${name} healthy`, seconds, async () =>
      (await inspect(name)).State.Health?.Status === "healthy" ? true : undefined,
    );

  /** A test of the container layer, which only one scenario needs to run (see `layerTests`). */
  const layerTest = (name: string, fn: (t: TestContext) => Promise<void>): void => {
    const options =
      scenario.layerTests === false ? { skip: "the container layer is the local scenario's to test" } : {};
    // Registered like any test of the suite; node:test runs them in order.
    void test(name, options, fn);
  };

  describe(`${stack}: the whole stack on a real Docker engine`, { timeout: 20 * 60_000 }, () => {
    before(async () => {
      engine = await startEngine();
      await ensureStandinImages(engine, [
        "postgres",
        "redis",
        "nginx",
        "node",
        ...(scenario.bucketEndpoint === undefined ? [] : (["s3"] as const)),
        // Another major version, for the upgrade test.
        ...(scenario.restores ? (["postgres17"] as const) : []),
      ]);
      realiser = new EngineRealiser({
        docker: engine.docker,
        stack,
        engineProviders: scenario.engineProviders,
        commandDelayMs: scenario.readinessCommand === undefined ? 0 : COMMAND_DELAY_MS,
        onNetwork: async (network) => {
          const { bucketEndpoint } = scenario;
          if (bucketEndpoint === undefined || network !== `${prefix}-backup`) return;
          await startS3Standin(engine.docker, {
            name: s3Name,
            network,
            endpoint: bucketEndpoint,
            labels: { [TEST_STACK_LABEL]: stack },
          });
        },
      });
      await realiser.destroy();
      if (scenario.dataDir !== undefined) {
        // Stands in for the cloud host's readiness command, which mounts the volume and creates this.
        await fs.rm(scenario.dataDir, { recursive: true, force: true });
        await fs.mkdir(scenario.dataDir, { recursive: true });
      }
      // Stands in for the command that makes it on the host, which the realiser only records.
      if (scenario.https && certsDir !== undefined) {
        await fs.rm(certsDir, { recursive: true, force: true });
        await fs.mkdir(certsDir, { recursive: true });
      }
      port = await freePort();
      httpsPort = await freePort();
      // The target's own bind address: tests reach nginx on 127.0.0.1 whichever it is.
      settings = {
        ...scenario.settings,
        httpPort: String(port),
        release: "r1",
        // Low enough for a fork bomb to reach within the replica's memory limit.
        appProcesses: String(APP_PROCESSES),
        ...STANDIN_SETTINGS,
        ...(scenario.https ? await httpsSettings(engine, httpsPort) : {}),
      };
      await deploy(realiser, settings);
    });

    after(async () => {
      try {
        if (engine !== undefined) await realiser?.destroy();
      } finally {
        for (const checkout of checkouts) await fs.rm(checkout, { recursive: true, force: true });
        if (scenario.dataDir !== undefined) await fs.rm(scenario.dataDir, { recursive: true, force: true });
        if (certsDir !== undefined) await fs.rm(certsDir, { recursive: true, force: true });
        await engine?.stop();
      }
    });

    test("GET / through nginx counts up, and every replica serves", async () => {
      const servedBy = new Set<string>();
      let previous: number | undefined;
      for (let i = 0; i < 30; i++) {
        const { status, body, servedBy: replica } = await visit(port);
        assert.equal(status, 200, body);
        const { count, replica: named } = JSON.parse(body) as { count: number; replica: string };
        if (previous !== undefined) assert.equal(count, previous + 1);
        previous = count;
        assert.equal(replica, named);
        servedBy.add(named);
      }
      assert.deepEqual([...servedBy].sort(), replicas());
      assert.deepEqual(
        replicas(),
        [1, 2, 3].map((i) => `${prefix}-app-r1-${i}`),
      );
    });

    const { readinessCommand } = scenario;
    if (readinessCommand !== undefined) {
      test(`every Docker resource, images and the provider included, registers only after ${readinessCommand} completed`, () => {
        const firstUpdate = realiser.resources.filter((r) => r.update === 0);
        const ready = firstUpdate.find((r) => r.name === readinessCommand);
        assert.ok(ready !== undefined && ready.completedAt >= 0, `${readinessCommand} completed`);
        const took = realiser.events[ready.completedAt].time - realiser.events[ready.registeredAt].time;
        assert.ok(took >= COMMAND_DELAY_MS - 100, `${readinessCommand} took ${took} ms`);
        const onEngine = firstUpdate.filter(
          (r) => r.type.startsWith("docker:") || r.type === "pulumi:providers:docker",
        );
        assert.ok(
          onEngine.some((r) => r.type === "docker:index/image:Image") &&
            onEngine.some((r) => r.type === "docker:index/remoteImage:RemoteImage"),
        );
        for (const r of onEngine)
          assert.ok(
            r.registeredAt > ready.completedAt,
            `${r.type} ${r.name} registered before ${readinessCommand} completed`,
          );
      });
    }

    test("only nginx publishes a port; services healthy with restart policies, one-off runs finished well; the app runs as non-root; no secret in labels or command lines", async () => {
      const names = await stackContainers();
      assert.deepEqual(
        names.sort(),
        [
          ...replicas(),
          ...firstOneOffs(),
          `${prefix}-nginx`,
          `${prefix}-postgres`,
          `${prefix}-redis`,
          `${prefix}-backup`,
          ...(scenario.https ? [`${prefix}-acme`] : []),
        ].sort(),
      );
      const secrets = generatedSecrets();
      for (const name of names) {
        const info = await inspect(name);
        const bindings = Object.values((info.HostConfig.PortBindings as PortBindings | undefined) ?? {}).flat();
        if (name === `${prefix}-nginx`) {
          // The engine lists bindings by port as text ("443/tcp" before "80/tcp").
          const byPort = (list: { HostIp: string; HostPort: string }[]) =>
            [...list].sort((x, y) => x.HostPort.localeCompare(y.HostPort));
          assert.deepEqual(
            byPort(bindings),
            byPort([
              { HostIp: scenario.bindAddress, HostPort: String(port) },
              ...(scenario.https ? [{ HostIp: scenario.bindAddress, HostPort: String(httpsPort) }] : []),
            ]),
          );
        } else {
          assert.deepEqual(bindings, [], `${name} publishes nothing`);
        }
        if (firstOneOffs().includes(name)) {
          assert.deepEqual(
            [info.State.Status, info.State.ExitCode, info.HostConfig.RestartPolicy?.Name],
            ["exited", 0, "no"],
            `${name} ran once and ended well`,
          );
        } else if (name === `${prefix}-acme` || name === `${prefix}-backup`) {
          // The ACME client's CA is down until the HTTPS tests (see https.ts); the backup container
          // is healthy once its first full backup is done, which its own tests wait for (backups.ts).
          assert.equal(info.State.Running, true, `${name} running`);
          assert.equal(info.HostConfig.RestartPolicy?.Name, "unless-stopped", `${name} restart policy`);
        } else {
          assert.equal(info.State.Health?.Status, "healthy", `${name} healthy`);
          assert.equal(info.HostConfig.RestartPolicy?.Name, "unless-stopped", `${name} restart policy`);
        }
        assert.equal(info.HostConfig.LogConfig?.Type, "json-file");
        assert.deepEqual(info.HostConfig.LogConfig?.Config, { "max-file": "3", "max-size": "10m" });

        const top: ContainerTop = info.State.Running
          ? ((await docker().getContainer(name).top()) as ContainerTop)
          : { Titles: [], Processes: [] };
        const commandLines = [
          JSON.stringify(info.Config.Labels),
          JSON.stringify(info.Config.Cmd),
          JSON.stringify(info.Config.Entrypoint),
          JSON.stringify(info.Args),
          ...top.Processes.map((p) => p.join(" ")),
        ];
        for (const secret of secrets) {
          for (const line of commandLines)
            assert.ok(!line.includes(secret), `${name} shows a secret in ${line.slice(0, 80)}…`);
        }
      }
      for (const name of replicas()) {
        const info = await inspect(name);
        assert.equal(info.Config.User, "10001:10001");
        const status = await fs.readFile(`/proc/${info.State.Pid}/status`, "utf8");
        assert.match(status, /^Uid:\s+10001\s+10001\s+10001\s+10001$/m, `${name}'s process runs as uid 10001`);
      }
      const appImage = realiser.ofType("docker:index/image:Image")[0];
      const history: unknown = await docker().getImage(String(appImage.outputs.repoDigest)).history();
      for (const secret of secrets) assert.ok(!JSON.stringify(history).includes(secret), "no secret in an image layer");
    });

    layerTest(
      "each service runs within its role's limits; a process past a replica's limit is killed inside it while the stack serves on; under load, a changed Postgres limit is applied without a restart and a changed Redis limit replaces Redis, failing no request",
      async (t) => {
        const MiB = 1024 * 1024;
        const limited = (name: string): [string, { memory: number; cpuShares: number }] => {
          const role = name.startsWith(`${prefix}-app-`) ? "app" : (name.slice(prefix.length + 1) as LimitedRole);
          const { memoryMb, cpuShares } = DEFAULT_LIMITS[role];
          return [name, { memory: memoryMb * MiB, cpuShares }];
        };
        const services = [`${prefix}-postgres`, `${prefix}-redis`, `${prefix}-nginx`, ...replicas()];
        for (const [name, { memory, cpuShares }] of services.map(limited)) {
          const { HostConfig } = await inspect(name);
          assert.deepEqual(
            [HostConfig.Memory, HostConfig.MemorySwap, HostConfig.CpuShares],
            [memory, memory, cpuShares],
            name,
          );
        }

        // Memory a replica's heap limit does not cover (buffers), taken until the kernel steps in.
        const victim = replicas()[0];
        const postgres = await inspect(`${prefix}-postgres`);
        const hog = await execIn(docker().getContainer(victim), [
          "node",
          "-e",
          "const kept = []; for (;;) kept.push(Buffer.alloc(8 << 20, 1));",
        ]);
        assert.equal(hog.exitCode, 137, `the process past ${victim}'s limit is killed (SIGKILL): ${hog.output}`);
        const after = await inspect(victim);
        assert.deepEqual([after.State.Running, after.State.Health?.Status], [true, "healthy"]);
        const { status } = await visit(port);
        assert.equal(status, 200);

        const redis = await inspect(`${prefix}-redis`);
        const before = await readCount();
        const load = startLoad(port, { concurrency: 8, maxSeconds: 120 });
        try {
          await sleep(2000);
          await update({ limits: '{"postgres":{"memoryMb":640},"redis":{"memoryMb":160}}' });
          await sleep(3000);
        } finally {
          await load.stop();
        }
        await settleLoad(t, load, before);
        // Redis's maxmemory is in its config file: a new limit is a new Redis, which the app rides out.
        const newRedis = await inspect(`${prefix}-redis`);
        assert.notEqual(newRedis.Id, redis.Id);
        assert.equal(newRedis.HostConfig.Memory, 160 * MiB);
        const updated = await inspect(`${prefix}-postgres`);
        assert.equal(updated.Id, postgres.Id, "Postgres is not replaced");
        assert.equal(updated.State.StartedAt, postgres.State.StartedAt, "nor restarted");
        assert.deepEqual([updated.HostConfig.Memory, updated.HostConfig.MemorySwap], [640 * MiB, 640 * MiB]);
        assert.equal(updated.RestartCount, postgres.RestartCount);
      },
    );

    layerTest(
      "a replica whose own server process goes past its memory limit is OOM-killed and restarted by its policy; under load no request fails and Postgres is untouched",
      async (t) => {
        const victim = replicas()[1];
        const { RestartCount: restartsBefore } = await inspect(victim);
        const postgres = await inspect(`${prefix}-postgres`);
        const before = await readCount();
        const since = Math.floor(Date.now() / 1000);
        const load = startLoad(port, { concurrency: 8, maxSeconds: 120 });
        try {
          await sleep(1000);
          // The replica's own server allocates outside its heap until the kernel steps in: Node's
          // debugger, opened by SIGUSR1, has it evaluate the allocation. Killed with the server.
          await execIn(docker().getContainer(victim), [
            "sh",
            "-c",
            [
              `for p in /proc/[0-9]*; do case "$(tr '\\0' ' ' < "$p/cmdline")" in "node /app/dist/server.js"*) pid="\${p#/proc/}";; esac; done`,
              'kill -USR1 "$pid"',
              `(sleep 2; echo 'exec("globalThis.hog = []; for (;;) hog.push(Buffer.alloc(8 << 20, 1))")'; sleep 20) | timeout 25 node inspect 127.0.0.1:9229`,
            ].join("\n"),
          ]);
          await eventually(`${victim} restarted`, 60, async () =>
            (await inspect(victim)).RestartCount > restartsBefore ? true : undefined,
          );
          await healthy(victim);
          await sleep(2000);
        } finally {
          await load.stop();
        }
        const result = await settleLoad(t, load, before);
        const events = await docker().getEvents({
          since,
          until: Math.ceil(Date.now() / 1000),
          filters: { container: [victim], event: ["oom"] },
        });
        let said = "";
        for await (const chunk of events) said += String(chunk);
        t.diagnostic(`${victim}: OOM-killed and restarted; ${result.ok} requests served meanwhile, none failed`);
        assert.match(said, /"status":"oom"/, `the kernel's OOM killer ended ${victim}'s server`);
        const after = await inspect(victim);
        assert.deepEqual([after.State.Running, after.State.Health?.Status], [true, "healthy"]);
        const untouched = await inspect(`${prefix}-postgres`);
        assert.deepEqual(
          [untouched.State.StartedAt, untouched.RestartCount],
          [postgres.State.StartedAt, postgres.RestartCount],
          "Postgres was not restarted",
        );
      },
    );

    layerTest(
      "a fork bomb in a replica stops at the app user's task limit; the stack serves on, and the replica was never short of threads",
      async (t) => {
        const victim = replicas()[0];
        for (const name of replicas())
          assert.deepEqual(
            (await inspect(name)).HostConfig.Ulimits,
            [{ Name: "nproc", Soft: APP_PROCESSES, Hard: APP_PROCESSES }],
            name,
          );
        const atRest = await tasksOf(APP_UID);
        t.diagnostic(`the app's user has ${atRest} tasks for ${replicas().length} replicas at rest`);
        assert.ok(atRest <= TASKS_PER_REPLICA * replicas().length, `${atRest} tasks at rest`);

        const before = await readCount();
        const load = startLoad(port, { concurrency: 8, maxSeconds: 120 });
        let bomb: { exitCode: number; output: string };
        let peak: number;
        try {
          await sleep(1000);
          // Forks until the kernel refuses; dash gives up on the first refusal. Each child ends by itself.
          bomb = await execIn(docker().getContainer(victim), [
            "sh",
            "-c",
            `n=0; while [ $n -lt ${APP_PROCESSES * 4} ]; do sleep 15 & n=$((n+1)); done; echo "forked $n"`,
          ]);
          peak = await tasksOf(APP_UID);
          await sleep(2000);
        } finally {
          await load.stop();
        }
        t.diagnostic(`bomb: exit ${bomb.exitCode}, ${peak} tasks of the app's user at its peak; ${bomb.output.trim()}`);
        assert.notEqual(bomb.exitCode, 0, "the bomb was stopped");
        assert.match(bomb.output, /fork/i, "by a refused fork");
        assert.doesNotMatch(bomb.output, /^forked/m);
        assert.ok(peak <= APP_PROCESSES, `${peak} tasks, past the limit of ${APP_PROCESSES}`);
        assert.ok(peak > APP_PROCESSES - 20, `${peak} tasks: something else stopped the bomb`);
        await settleLoad(t, load, before);
        for (const name of [`${prefix}-postgres`, `${prefix}-redis`, `${prefix}-nginx`, ...replicas()]) {
          const state = (await inspect(name)).State;
          assert.deepEqual([state.Running, state.Health?.Status], [true, "healthy"], name);
        }
        // The children end by themselves, and the user's tasks are what they were.
        await eventually("the bomb's children to end", 30, async () =>
          (await tasksOf(APP_UID)) <= atRest + 2 ? true : undefined,
        );
      },
    );

    layerTest(
      "a new nginx config under load is reloaded in the running nginx: no failed request, the same container, the new limit in force",
      async (t) => {
        const nginx = await inspect(`${prefix}-nginx`);
        const body = Buffer.alloc(1536 * 1024, "x");
        const post = async () =>
          (await fetch(`http://127.0.0.1:${port}/`, { method: "POST", body, signal: AbortSignal.timeout(10_000) }))
            .status;
        assert.equal(await post(), 413, "1.5 MB is over the default 1m");
        const before = await readCount();
        let changedAt = 0;
        const load = startLoad(port, { concurrency: 8, maxSeconds: 120 });
        try {
          await sleep(2000);
          changedAt = Math.floor(Date.now() / 1000) - 1;
          await update({ maxRequestBody: "2m" });
          await eventually("the new limit in force", 30, async () => ((await post()) !== 413 ? true : undefined));
          await sleep(2000);
        } finally {
          await load.stop();
        }
        await settleLoad(t, load, before);
        const after = await inspect(`${prefix}-nginx`);
        assert.deepEqual([after.Id, after.State.StartedAt, after.RestartCount], [nginx.Id, nginx.State.StartedAt, 0]);
        // The watcher says why it reloaded, on nginx's stderr (its access log is stdout).
        const said = await docker()
          .getContainer(`${prefix}-nginx`)
          .logs({ stdout: false, stderr: true, since: changedAt });
        assert.match(said.toString("utf8"), /config changed from .* reloading nginx/);
      },
    );

    test("data survives Postgres recreated on its volume and Redis restarted", async () => {
      const before = await readCount();
      assert.ok(before >= 30);
      await realiser.recreateContainer(`${prefix}-postgres`);
      await healthy(`${prefix}-postgres`);
      assert.equal(
        await eventually("count readable after Postgres returned", 60, async () => readCount().catch(() => undefined)),
        before,
      );
      await docker().getContainer(`${prefix}-redis`).restart({ t: 10 });
      await healthy(`${prefix}-redis`);
      assert.equal(await readCount(), before);
      const { body } = await visit(port);
      assert.equal((JSON.parse(body) as { count: number }).count, before + 1);
    });

    layerTest(
      "under load, killing a replica and restarting Redis fail no request; the killed replica comes back by its restart policy",
      async (t) => {
        const before = await readCount();
        const victim = replicas()[0];
        const restartsBefore = (await inspect(victim)).RestartCount;
        const load = startLoad(port, { concurrency: 8, maxSeconds: 120 });
        let servedByVictimOnReturn = 0;
        try {
          await sleep(2000);
          // A crash, not a `docker stop`: the restart policy must bring it back.
          process.kill((await inspect(victim)).State.Pid, "SIGKILL");
          await eventually(`${victim} restarted`, 60, async () => {
            const info = await inspect(victim);
            return info.RestartCount > restartsBefore && info.State.Health?.Status === "healthy" ? true : undefined;
          });
          servedByVictimOnReturn = load.result.servedBy.get(victim) ?? 0;
          await docker().getContainer(`${prefix}-redis`).restart({ t: 10 });
          await healthy(`${prefix}-redis`);
          await sleep(3000);
        } finally {
          await load.stop();
        }
        const result = await settleLoad(t, load, before);
        assert.deepEqual([...result.servedBy.keys()].sort(), replicas());
        assert.ok(
          (result.servedBy.get(victim) ?? 0) > servedByVictimOnReturn,
          `${victim} serves again after its restart`,
        );
      },
    );

    layerTest("a new release replaces every replica under load with no failed request and no lost visit", async (t) => {
      const oldReplicas = replicas();
      const before = await readCount();
      const load = startLoad(port, { concurrency: 8, maxSeconds: 300 });
      let removed: string[];
      try {
        await sleep(2000);
        removed = (await update({ release: "r2" })).removed.containers;
        await sleep(4000);
      } finally {
        await load.stop();
      }
      assert.deepEqual(removed.sort(), [...oldReplicas, `${prefix}-migrate-r1`].sort(), "the release before, gone");
      const result = await settleLoad(t, load, before);

      const now = replicas();
      assert.deepEqual(
        now,
        [1, 2, 3].map((i) => `${prefix}-app-r2-${i}`),
      );
      for (const name of now) assert.ok(result.servedBy.has(name), `${name} took traffic during the release`);
      assert.deepEqual((await stackContainers()).filter((n) => n.includes("-app-")).sort(), now);
      const servedAfter = new Set<string>();
      for (let i = 0; i < 30; i++) servedAfter.add((await visit(port)).servedBy ?? "none");
      assert.deepEqual([...servedAfter].sort(), now);
    });

    // Expand: a nullable column the release before never mentions, so it serves on unchanged.
    const ADD_SOURCE = "ALTER TABLE counted_requests ADD COLUMN source text";

    layerTest(
      "a release that brings a migration, under load: its migration run applies it once, before any replica of the release is created, and no request fails",
      async (t) => {
        const withColumn = await checkoutWith({ "0002_request-source": ADD_SOURCE });
        checkouts.push(withColumn);
        assert.deepEqual(await appliedMigrations(), ["0001_visit-counter"]);
        await updateUnderLoad(t, { release: "r3" }, withColumn);
        assert.deepEqual(await appliedMigrations(), ["0001_visit-counter", "0002_request-source"]);
        assert.deepEqual(
          await psql(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'counted_requests' ORDER BY ordinal_position",
          ),
          ["request_id", "count", "counted_at", "source"],
        );
        const run = await inspect(`${prefix}-migrate-r3`);
        assert.deepEqual([run.State.Status, run.State.ExitCode], ["exited", 0]);
        const said = await docker().getContainer(`${prefix}-migrate-r3`).logs({ stdout: true, stderr: true });
        assert.match(said.toString("utf8"), /"msg":"applied 0002_request-source"/);
        assert.deepEqual(
          replicas(),
          [1, 2, 3].map((i) => `${prefix}-app-r3-${i}`),
        );
        const ended = Date.parse(run.State.FinishedAt);
        for (const name of replicas()) {
          const created = Date.parse((await inspect(name)).Created);
          assert.ok(created > ended, `${name} was created after the migration run ended`);
        }
      },
    );

    layerTest(
      "a release whose migration fails, under load: the update fails naming the migration, no replica of it exists, the release before serves on without a failed request; the fixed release goes through",
      async (t) => {
        const broken = await checkoutWith({
          "0002_request-source": ADD_SOURCE,
          "0003_source-index": "CREATE INDEX counted_requests_source ON counted_requests (sauce)",
        });
        const fixed = await checkoutWith({
          "0002_request-source": ADD_SOURCE,
          "0003_source-index": "CREATE INDEX counted_requests_source ON counted_requests (source)",
        });
        checkouts.push(broken, fixed);
        const serving = replicas();
        const before = await readCount();
        const load = startLoad(port, { concurrency: 8, maxSeconds: 300 });
        let failures: Error[];
        try {
          await sleep(2000);
          realiser.beginUpdate();
          failures = await failedDeploy(realiser, { ...settings, release: "r4" }, { checkout: broken });
          // A failed update deletes nothing, so there is no finishUpdate().
          await sleep(3000);
        } finally {
          await load.stop();
        }
        await settleLoad(t, load, before);
        assert.deepEqual(
          [...new Set(failures.map((f) => f.message))],
          [
            `${prefix}-migrate-r4 exited with code 1: migration 0003_source-index failed: column "sauce" does not exist. ` +
              `No replica of release r4 was created; the release before it serves on (see \`docker logs ${prefix}-migrate-r4\`)`,
          ],
        );
        assert.deepEqual((await stackContainers()).filter((n) => n.includes("-app-")).sort(), serving);
        assert.deepEqual(await appliedMigrations(), ["0001_visit-counter", "0002_request-source"]);

        await updateUnderLoad(t, { release: "r5" }, fixed);
        assert.deepEqual(await appliedMigrations(), ["0001_visit-counter", "0002_request-source", "0003_source-index"]);
        assert.deepEqual(
          replicas(),
          [1, 2, 3].map((i) => `${prefix}-app-r5-${i}`),
        );
        const left = await stackContainers();
        assert.ok(
          !left.some((n) => /-(app|migrate)-r[34]\b/.test(n)),
          `the failed release and the one before are gone: ${left.join(", ")}`,
        );
      },
    );

    layerTest(
      "a rollback under load runs a kept release's image again, builds nothing, and fails no request; its migration run finds the newer schema enough; only the newest keepReleases images stay",
      async (t) => {
        const IMAGE = "docker:index/image:Image";
        // The stack's release images on the engine, by tag (its release).
        const kept = async () =>
          (await docker().listImages({ filters: { reference: [`${prefix}-app`] } }))
            .flatMap((image) => image.RepoTags ?? [])
            .map((tag) => tag.slice(tag.lastIndexOf(":") + 1))
            .sort();
        // A cloud host prunes over SSH, which the realiser records and does not run.
        const prunes = scenario.readinessCommand === undefined;
        // r1 to r5 were built; r4's image too, though its migration failed. The newest three stay.
        if (prunes) assert.deepEqual(await kept(), ["r3", "r4", "r5"]);
        // The app's builds: the stack's Postgres image is registered with every update, unchanged.
        const appBuilds = () => realiser.ofType(IMAGE).filter((r) => r.name === "app-image").length;
        const builds = appBuilds();
        const migrations = await appliedMigrations();
        // The same load at rest first: what the rollback's latency is held against.
        const countAtRest = await readCount();
        const atRest = startLoad(port, { concurrency: 8, maxSeconds: 300 });
        await sleep(5000);
        await settleLoad(t, atRest, countAtRest);

        if (prunes) {
          // r1's image was pruned: the update fails before any container of it exists.
          const serving = replicas();
          realiser.beginUpdate();
          const failures = await failedDeploy(realiser, { ...settings, rollbackTo: "r1" });
          const why =
            `webstack:rollbackTo: release r1's image ${prefix}-app:r1 is not on the host (it keeps the 3 newest, ` +
            "see webstack:keepReleases); deploy that release's commit instead";
          assert.ok(failures.length > 0, "the update failed");
          // The check's own failure, and each registration that waited on the image, passing it on.
          for (const failure of failures) assert.ok(failure.message.endsWith(why), failure.message);
          assert.deepEqual((await stackContainers()).filter((n) => n.includes("-app-")).sort(), serving);
        }

        await updateUnderLoad(t, { rollbackTo: "r3" });
        assert.equal(appBuilds(), builds, "nothing of the app was built");
        assert.equal(exported?.release, "r3", "the release output names the release rolled back to");
        assert.deepEqual(
          replicas(),
          [1, 2, 3].map((i) => `${prefix}-app-r3-${i}`),
        );
        const r3 = (await docker().getImage(`${prefix}-app:r3`).inspect()).Id;
        for (const name of replicas()) assert.equal((await inspect(name)).Image, r3, `${name} runs r3's image`);
        const run = await inspect(`${prefix}-migrate-r3`);
        assert.deepEqual([run.State.Status, run.State.ExitCode], ["exited", 0]);
        const said = await docker().getContainer(`${prefix}-migrate-r3`).logs({ stdout: true, stderr: true });
        assert.match(said.toString("utf8"), /"msg":"schema is up to date"/);
        assert.deepEqual(await appliedMigrations(), migrations, "a rollback changes no schema");
        if (prunes) assert.deepEqual(await kept(), ["r3", "r4", "r5"]);

        // Forward again: the checkout, built as a new release. r3 still ran when the prune came, so
        // the engine refused to remove its image; the next release's prune takes it.
        await updateUnderLoad(t, { rollbackTo: undefined, release: "r6" });
        assert.equal(appBuilds(), builds + 1);
        assert.deepEqual(
          replicas(),
          [1, 2, 3].map((i) => `${prefix}-app-r6-${i}`),
        );
        if (prunes) {
          assert.deepEqual(await kept(), ["r3", "r4", "r5", "r6"]);
          const prune = realiser
            .ofType("command:local:Command")
            .filter((c) => c.name === "app-releases-prune")
            .at(-1);
          assert.match(String(prune?.outputs.stdout), /^kept webstack-[a-z0-9-]+-app:r3: in use$/m);
        }
      },
    );

    layerTest("a new Redis image under load replaces Redis and fails no request", async (t) => {
      const redis = await inspect(`${prefix}-redis`);
      const image = await derivedImage(engine, STANDIN_IMAGES.redis, "webstack-standin/redis:7-next");
      await updateUnderLoad(t, { redisImage: image });
      const replaced = await inspect(`${prefix}-redis`);
      assert.notEqual(replaced.Id, redis.Id);
      assert.equal(replaced.Image, (await docker().getImage(image).inspect()).Id, `${replaced.Name} runs ${image}`);
    });

    test("a new nginx image under load replaces nginx: new connections fail for a moment; every request nginx passed on is answered, none with an error, and counted once", async (t) => {
      const nginx = await inspect(`${prefix}-nginx`);
      const image = await derivedImage(engine, STANDIN_IMAGES.nginx, "webstack-standin/nginx:1.22-next");
      const before = await readCount();
      // What each request met: a connection never established (refused, or reset while still in
      // the old nginx's listen queue), one dropped after it was established, or an answer.
      const notEstablishedAt: number[] = [];
      const dropped: string[] = [];
      const errorAnswers: string[] = [];
      const counts: number[] = [];
      let stopping = false;
      const client = async () => {
        while (!stopping) {
          try {
            const { status, body } = await visit(port);
            if (status === 200) counts.push((JSON.parse(body) as { count: number }).count);
            else errorAnswers.push(`HTTP ${status}: ${body.slice(0, 100)}`);
          } catch (error) {
            if ((error as { syscall?: string }).syscall === "connect") notEstablishedAt.push(Date.now());
            else dropped.push(errorText(error));
            await sleep(5);
          }
        }
      };
      const clients = Promise.all(Array.from({ length: 8 }, client));
      try {
        await sleep(2000);
        await update({ nginxImage: image });
        await sleep(3000);
      } finally {
        stopping = true;
        await clients;
      }
      const failedAt = notEstablishedAt.length > 0 ? notEstablishedAt : [0];
      t.diagnostic(
        `nginx replaced: ${counts.length} requests answered; ${notEstablishedAt.length} connections not established ` +
          `over ${(failedAt.at(-1) ?? 0) - failedAt[0]} ms; ${dropped.length} dropped after connecting` +
          (dropped.length > 0 ? ` (${[...new Set(dropped)].join("; ")})` : ""),
      );
      assert.deepEqual(errorAnswers, [], "nginx answered with an error");
      assert.ok(counts.length > 100, `only ${counts.length} requests`);
      assert.equal(new Set(counts).size, counts.length, "a visit was counted twice");
      // Exactly the answered visits are counted: no request reached the app and then went unanswered.
      await eventually(`count to reach ${before + counts.length}`, 60, async () =>
        (await readCount()) === before + counts.length ? true : undefined,
      );
      const replaced = await inspect(`${prefix}-nginx`);
      assert.notEqual(replaced.Id, nginx.Id);
      assert.equal(replaced.Image, (await docker().getImage(image).inspect()).Id, `${replaced.Name} runs ${image}`);
    });

    const httpsScenario = {
      docker,
      prefix,
      stack,
      port: () => port,
      httpsPort: () => httpsPort,
      update: (changes: Record<string, string | undefined>) => update(changes),
      readCount,
    };
    const backupScenario = {
      docker,
      engine: () => engine,
      update: (changes: Record<string, string | undefined>) => update(changes),
      failedUpdate: (changes: Record<string, string | undefined>) => {
        realiser.beginUpdate();
        // A failed update deletes nothing, so there is no finishUpdate().
        const merged = Object.entries({ ...settings, ...changes }).filter(
          (entry): entry is [string, string] => entry[1] !== undefined,
        );
        return failedDeploy(realiser, Object.fromEntries(merged), { checkout });
      },
      prefix,
      stack,
      port: () => port,
      realiser: () => realiser,
      readCount,
      psql,
      healthy,
    };
    if (scenario.bucketEndpoint !== undefined) {
      describeBucketBackups({
        ...backupScenario,
        s3Name,
        bucket: () => {
          const [bucket] = realiser
            .ofType("digitalocean:index/spacesBucket:SpacesBucket")
            .map((r) => String(reveal(r.outputs.name)));
          assert.ok(bucket !== undefined, "the stack made a bucket");
          return bucket;
        },
      });
    }
    if (scenario.restores) describeBackups(backupScenario);
    if (scenario.localHttps) {
      localHttpsTest({
        ...httpsScenario,
        caCertificate: async () =>
          exported?.caCertificate === undefined ? undefined : outputValue(exported.caCertificate, "caCertificate"),
        httpsUrl: () => exported?.httpsUrl,
      });
    }
    if (scenario.https) describeHttps(httpsScenario);

    test("teardown leaves no container, network or volume of the stack", async () => {
      await realiser.destroy();
      const label = { label: [`webstack.stack=${stack}`] };
      assert.deepEqual(await docker().listContainers({ all: true, filters: label }), []);
      assert.deepEqual(await docker().listNetworks({ filters: label }), []);
      assert.deepEqual((await docker().listVolumes({ filters: label })).Volumes ?? [], []);
      assert.deepEqual(await realiser.leftovers(), { containers: 0, networks: 0, volumes: 0 });
    });
  });
}
