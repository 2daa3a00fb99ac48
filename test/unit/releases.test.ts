// What the suite once let break unnoticed: release ids that follow the app's source, grace periods
// on deletion, nginx after the replicas, every Docker object after the readiness command (images
// too), passwords given with `config set --secret` used end to end, and every numeric setting's
// bounds.
import * as pulumi from "@pulumi/pulumi";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, describe, test } from "node:test";
import { parseConfig } from "../../components/config";
import { buildWebstack } from "../../components/program";
import { imagePruneScript, imageRemoveAllScript } from "../../components/specs/images";
import { promiseOf, RecordingMocks, Registered, runProgram, watchRegistrations } from "./support/mocks";

const ROOT = path.join(__dirname, "..", "..");
const CONTAINER = "docker:index/container:Container";
const ADMIN = '["198.51.100.0/24"]';
const TARGETS: Record<string, Record<string, string>> = {
  local: {},
  digitalocean: { target: "digitalocean", region: "nyc3", adminCidrs: ADMIN },
  aws: { target: "aws", region: "us-east-1", adminCidrs: ADMIN },
};
const containers = (rs: Registered[]) => rs.filter((r) => r.type === CONTAINER);
const replicas = (rs: Registered[]) => containers(rs).filter((r) => /^webstack-app-.+-[0-9]+$/.test(r.name));

const scratch: string[] = [];
after(() => scratch.forEach((dir) => fs.rmSync(dir, { recursive: true, force: true })));

/** A copy of app/ (without node_modules and dist) that a test may change. */
function appCopy(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "webstack-app-copy-"));
  scratch.push(dir);
  fs.cpSync(path.join(ROOT, "app"), dir, {
    recursive: true,
    filter: (src) => !/[/\\](node_modules|dist)([/\\]|$)/.test(path.relative(ROOT, src)),
  });
  return dir;
}

/** The program built from `appDir` with the default (content-derived) release. */
async function build(appDir: string): Promise<{ release: string; replicas: string[]; image: string }> {
  const mocks = new RecordingMocks();
  await pulumi.runtime.setMocks(mocks, "webstack", "test", false);
  watchRegistrations(mocks);
  const built = buildWebstack(parseConfig({}), {}, { stack: "test", appDir });
  await promiseOf(built.stack.url);
  await pulumi.runtime.disconnect();
  const image = mocks.ofType("docker:index/image:Image")[0];
  return {
    release: built.stack.releaseId,
    replicas: replicas(mocks.resources)
      .map((r) => r.name)
      .sort(),
    image: String(image.inputs.imageName),
  };
}

describe("release ids follow the app", () => {
  test("a change to the app's source is a new release: new replica names and a new image tag, so replicas roll instead of being replaced in place", async () => {
    const dir = appCopy();
    const before = await build(dir);
    fs.appendFileSync(path.join(dir, "src", "app.ts"), "\n// a change\n");
    const changed = await build(dir);
    assert.notEqual(changed.release, before.release);
    assert.notEqual(changed.image, before.image);
    assert.equal(changed.replicas.filter((n) => before.replicas.includes(n)).length, 0, "no replica keeps its name");
  });

  test("a new file in the app is a new release; what never reaches the image (node_modules, dist) is not", async () => {
    const dir = appCopy();
    const before = await build(dir);
    fs.mkdirSync(path.join(dir, "node_modules", "left-pad"), { recursive: true });
    fs.writeFileSync(path.join(dir, "node_modules", "left-pad", "index.js"), "module.exports = 1;\n");
    fs.mkdirSync(path.join(dir, "dist"), { recursive: true });
    fs.writeFileSync(path.join(dir, "dist", "server.js"), "// build output\n");
    assert.equal((await build(dir)).release, before.release);
    fs.writeFileSync(path.join(dir, "src", "extra.ts"), "export const extra = 1;\n");
    assert.notEqual((await build(dir)).release, before.release);
  });
});

describe("deletion and order", () => {
  for (const [target, settings] of Object.entries(TARGETS)) {
    test(`${target}: every long-running container is deleted with its grace period, not killed (the provider's default is 0 s)`, async () => {
      const { mocks } = await runProgram({ ...settings, shutdownGraceSeconds: "20" });
      // The backup container's 10 s: an interrupted backup is resumed by the next one.
      const expected: Record<string, number> = { postgres: 30, redis: 10, nginx: 15, app: 25, backup: 10 };
      const seen = new Set<string>();
      for (const c of containers(mocks.resources)) {
        if (c.inputs.attach === true) continue; // one-off runs end on their own
        const role = /-app-/.test(String(c.inputs.name)) ? "app" : String(c.inputs.name).replace(/^webstack-test-/, "");
        seen.add(role);
        assert.equal(c.inputs.destroyGraceSeconds, expected[role], `${c.name} destroyGraceSeconds`);
        assert.equal(c.inputs.stopTimeout, expected[role], `${c.name} stopTimeout`);
      }
      assert.deepEqual([...seen].sort(), ["app", "backup", "nginx", "postgres", "redis"]);
    });

    test(`${target}: nginx is created after every replica it sends to, and every Docker object after the readiness command`, async () => {
      const { mocks } = await runProgram(settings);
      const nginx = mocks.named("webstack-nginx");
      const apps = replicas(mocks.resources);
      assert.equal(apps.length, parseConfig(settings).replicas);
      for (const app of apps) assert.ok(nginx.dependencies.includes(app.urn), `nginx depends on ${app.name}`);
      if (target === "local") return;
      const ready = mocks.named("host-engine-ready");
      const docker = mocks.resources.filter((r) => r.type.startsWith("docker:"));
      const kinds = new Set(docker.map((r) => r.type));
      for (const kind of [
        "docker:index/image:Image",
        "docker:index/remoteImage:RemoteImage",
        "docker:index/network:Network",
        "docker:index/volume:Volume",
        CONTAINER,
      ]) {
        assert.ok(kinds.has(kind), `the program registers a ${kind}`);
      }
      for (const r of docker)
        assert.ok(r.dependencies.includes(ready.urn), `${r.type} ${r.name} depends on the readiness command`);
    });
  }
});

describe("passwords given with `pulumi config set --secret`", () => {
  const postgresPassword = "Configured_postgres_password_123";
  const redisPassword = "Configured-redis-password-4567";

  test("replace the generated ones everywhere they are used, and stay secret", async () => {
    const { mocks } = await runProgram(
      { postgresPassword, redisPassword },
      { secretKeys: ["postgresPassword", "redisPassword"] },
    );
    // The admin token and the backups' passphrase are always generated.
    assert.deepEqual(
      mocks.ofType("random:index/randomPassword:RandomPassword").map((r) => r.name),
      ["webstack-admin-token", "webstack-backup-cipher"],
      "no password generated for Postgres or Redis",
    );
    const uploads = (name: string): [string, string][] =>
      ((mocks.named(name).inputs.uploads as { file: string; content?: string }[] | undefined) ?? []).map((u) => [
        u.file,
        u.content ?? "",
      ]);
    const files = new Map(containers(mocks.resources).flatMap((c) => uploads(c.name)));
    const passwordFile = [...files.keys()].find((f) => f.endsWith("/postgres-password"));
    assert.equal(
      passwordFile === undefined ? undefined : files.get(passwordFile),
      postgresPassword,
      "Postgres's password file",
    );
    const all = JSON.stringify([...files.values()]);
    assert.ok(all.includes(`postgres://webstack:${postgresPassword}@postgres:5432/webstack`), "the app's database URL");
    assert.ok(all.includes(`redis://:${redisPassword}@redis:6379`), "the app's Redis URL");
    assert.ok(all.includes(`requirepass ${redisPassword}`), "Redis's own config");
    for (const c of containers(mocks.resources)) {
      const visible = JSON.stringify([c.inputs.envs, c.inputs.command, c.inputs.labels, c.inputs.healthcheck]);
      assert.ok(!visible.includes(postgresPassword) && !visible.includes(redisPassword), `${c.name} shows a password`);
    }
  });
});

describe("numeric settings: both bounds accepted, one past either refused", () => {
  const bounds: { key: string; min: number; max: number; base?: Record<string, string> }[] = [
    { key: "replicas", min: 1, max: 20 },
    { key: "httpPort", min: 0, max: 65535 },
    { key: "shutdownGraceSeconds", min: 1, max: 300 },
    { key: "dataVolumeGb", min: 1, max: 16384, base: TARGETS.digitalocean },
    { key: "limitConnPerIp", min: 0, max: 65535 },
    { key: "limitRatePerIp", min: 0, max: 100000 },
  ];
  for (const { key, min, max, base = {} } of bounds) {
    test(`${key}: ${min}..${max}`, () => {
      assert.equal((parseConfig({ ...base, [key]: String(min) }) as unknown as Record<string, unknown>)[key], min);
      assert.equal((parseConfig({ ...base, [key]: String(max) }) as unknown as Record<string, unknown>)[key], max);
      for (const bad of [min - 1, max + 1]) {
        assert.throws(
          () => parseConfig({ ...base, [key]: String(bad) }),
          (error: Error) =>
            error.message.includes(`webstack:${key} must be a whole number from ${min} to ${max} (got "${bad}")`),
          `${key}=${bad}`,
        );
      }
    });
  }
});

describe("rollback and kept release images", () => {
  const named = (rs: Registered[], name: string) => {
    const found = rs.filter((r) => r.name === name);
    assert.equal(found.length, 1, name);
    return found[0];
  };

  for (const [target, settings] of Object.entries(TARGETS)) {
    test(`${target}: rollbackTo runs the release's kept image again and builds nothing of the app; Postgres's image is the one every update has`, async () => {
      const { mocks, outputs } = await runProgram({ ...settings, rollbackTo: "4F1C2AB9E0D3aaaa" });
      const rs = mocks.resources;
      assert.equal(outputs.release, "4f1c2ab9e0d3", "the release output names the release rolled back to");
      // Postgres's image (with pgBackRest) is built from the stack's own Dockerfile, not the
      // checkout: the same inputs as in an update without rollbackTo, so nothing is rebuilt.
      const images = rs.filter((r) => r.type === "docker:index/image:Image");
      assert.deepEqual(
        images.map((r) => r.name),
        ["webstack-postgres-build"],
        "no app image is built",
      );
      const normal = (await runProgram(settings)).mocks.named("webstack-postgres-build");
      assert.deepEqual(images[0].inputs, normal.inputs, "Postgres's build is the same as without rollbackTo");
      const kept = named(rs, "app-releases-rollback");
      assert.deepEqual(kept.inputs, { name: "webstack-test-app:4f1c2ab9e0d3", keepLocally: true });
      const check = named(rs, "app-releases-rollback-check");
      assert.equal(check.type, target === "local" ? "command:local:Command" : "command:remote:Command");
      assert.match(String(check.inputs.create), /docker image inspect 'webstack-test-app:4f1c2ab9e0d3'/);
      assert.ok(kept.dependencies.includes(check.urn), "the image is looked for only once the check found it");
      const apps = replicas(rs);
      assert.deepEqual(
        apps.map((r) => r.inputs.name),
        Array.from({ length: parseConfig(settings).replicas }, (_, i) => `webstack-test-app-4f1c2ab9e0d3-${i + 1}`),
      );
      for (const app of apps) assert.equal(app.inputs.image, kept.outputs.imageId, `${app.name} runs the kept image`);
      assert.equal(named(rs, "webstack-migrate-4f1c2ab9e0d3").inputs.image, kept.outputs.imageId);
    });

    test(`${target}: after each release, all but keepReleases release images are pruned, once the release is up`, async () => {
      const { mocks, outputs } = await runProgram({ ...settings, keepReleases: "5", release: "r7" });
      const rs = mocks.resources;
      const prune = named(rs, "app-releases-prune");
      assert.equal(prune.type, target === "local" ? "command:local:Command" : "command:remote:Command");
      assert.equal(prune.inputs.create, `${imagePruneScript("webstack-test-app", 5)}\n# after release r7`);
      assert.equal(outputs.release, "r7");
      for (const app of replicas(rs)) assert.ok(prune.dependencies.includes(app.urn), `after ${app.name}`);
      assert.equal(named(rs, "app-local").inputs.keepLocally, true, "a release's tag outlives the release");
      const image = rs.find((r) => r.type === "docker:index/image:Image");
      assert.equal(image?.inputs.imageName, "webstack-test-app:r7", "the image is tagged with its release");
      // The local engine outlives the stack: its release images go with the stack, after every container.
      const cleanup = rs.filter((r) => r.name === "app-releases-cleanup");
      if (target === "local") {
        assert.equal(cleanup[0].inputs.delete, imageRemoveAllScript("webstack-test-app"));
        const running = containers(rs).filter((r) => r.inputs.image === image?.outputs.repoDigest);
        assert.equal(running.length, 3 + 2, "the replicas, the migration run and the app's files run");
        for (const c of running)
          assert.ok(c.dependencies.includes(cleanup[0].urn), `${c.name} is deleted before the images`);
      } else {
        assert.deepEqual(cleanup, [], "a cloud host's images go with its VM");
      }
    });
  }

  test("with a registry, the host tags the pulled image with its release, and a rollback finds it by that tag", async () => {
    const settings = { ...TARGETS.aws, imageRegistry: "cloud" };
    const built = await runProgram({ ...settings, release: "r2" });
    const pull = named(built.mocks.resources, "app-pull");
    assert.match(String(pull.inputs.create), /^docker tag '[^']+@sha256:[0-9a-f]{64}' '[^']+\/webstack-test-app:r2'$/m);
    const rolledBack = await runProgram({ ...settings, rollbackTo: "r1" });
    const kept = named(rolledBack.mocks.resources, "app-releases-rollback");
    assert.match(String(kept.inputs.name), /^123456789012\.dkr\.ecr\.us-east-1\.amazonaws\.com\/webstack-test-app:r1$/);
    assert.deepEqual(
      rolledBack.mocks.resources
        .filter((r) => r.name.startsWith("app-pull") || r.type === "docker:index/image:Image")
        .map((r) => r.name),
      // Postgres's image is built on the host, as in every update (never pushed, never pulled).
      ["webstack-postgres-build"],
      "nothing of the app is built, pushed or pulled",
    );
    assert.equal(named(rolledBack.mocks.resources, "webstack-postgres-build").inputs.skipPush, true);
  });

  test("the app's user may have appProcesses tasks on the host: its replicas and migration run carry the limit, no other container does", async () => {
    const { mocks } = await runProgram({ appProcesses: "300", release: "r1" });
    for (const c of containers(mocks.resources)) {
      const expected = /^webstack-(app-r1-[0-9]+|migrate-r1)$/.test(c.name)
        ? [{ name: "nproc", soft: 300, hard: 300 }]
        : undefined;
      assert.deepEqual(c.inputs.ulimits, expected, c.name);
    }
    assert.equal(containers(mocks.resources).filter((c) => c.inputs.ulimits !== undefined).length, 3 + 1);
    // What a shell in a replica forks and leaves is reaped by Docker's init, so it stops counting.
    assert.deepEqual(
      containers(mocks.resources)
        .filter((c) => c.inputs.init === true)
        .map((c) => c.name),
      replicas(mocks.resources).map((c) => c.name),
    );
  });
});
