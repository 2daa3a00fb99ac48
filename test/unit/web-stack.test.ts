// The WebStack component's own wiring, as registered under Pulumi's mocks: how each container's
// spec becomes the provider's arguments, the networks, the stock images, the passwords, the app
// image's build and pull, what waits for what, and the URL's port.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import * as path from "node:path";
import { NGINX_CONF_PATH } from "../../nginx/render";
import { nginxFile, nginxStartHash } from "../../components/web-stack";
import { dependsOn, evaluated, programFailures, RecordingMocks, Registered, runProgram } from "./support/mocks";

const CONTAINER = "docker:index/container:Container";
const ADMIN = '["198.51.100.0/24"]';
const AWS = { target: "aws", region: "us-east-1", adminCidrs: ADMIN, imageRegistry: "cloud" };

const isFilesRun = (c: Registered) => /-files-(app|nginx)-run$/.test(c.name);
const isPostgresCheck = (c: Registered) => c.name === "webstack-postgres-check";
/**
 * The files runs, the release's migration run and the Postgres image's check: waited for until
 * they end, never for health.
 */
const isOneOff = (c: Registered) => isFilesRun(c) || isPostgresCheck(c) || /-migrate-[0-9a-f]{12}$/.test(c.name);

describe("containers as the provider gets them", () => {
  test("ports, volumes, uploads, networks, tmpfs and added capabilities a spec leaves empty are left unset, not sent empty", async () => {
    // The inputs, and so a preview's diff, carry only what means something; how the bridged
    // provider tells an empty collection from an unset one never comes into play.
    const { mocks } = await evaluated({});
    const containers = mocks.ofType(CONTAINER);
    // 3 replicas, Postgres, Redis, nginx, the backup container, 2 files runs, the migration run,
    // the Postgres image's check.
    assert.equal(containers.length, 11);
    for (const c of containers) {
      for (const key of ["ports", "volumes", "uploads", "networksAdvanced", "tmpfs"]) {
        const value = c.inputs[key];
        const empty = Array.isArray(value)
          ? value.length === 0
          : typeof value === "object" && value !== null && Object.keys(value).length === 0;
        assert.ok(!empty, `${c.name}: ${key} is sent empty`);
      }
      const { adds } = c.inputs.capabilities as { adds?: string[] };
      assert.ok(adds === undefined || adds.length > 0, `${c.name}: capabilities.adds is sent empty`);
    }
    // And the ones a spec fills are sent.
    const named = (name: string) => mocks.named(name);
    assert.deepEqual(named("webstack-postgres").inputs.capabilities, {
      drops: ["ALL"],
      adds: ["CAP_CHOWN", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_SETGID", "CAP_SETUID"],
    });
    assert.deepEqual(named("webstack-files-app-run").inputs.capabilities, { drops: ["ALL"], adds: ["CAP_CHOWN"] });
    assert.deepEqual(named("webstack-files-nginx-run").inputs.capabilities, { drops: ["ALL"] });
    assert.deepEqual(named("webstack-backup").inputs.capabilities, { drops: ["ALL"] });
    assert.deepEqual(named("webstack-postgres-check").inputs.capabilities, {
      drops: ["ALL"],
      adds: ["CAP_DAC_READ_SEARCH"],
    });
    // Locally the backup container is on no network: none is sent, and its network mode is none.
    assert.equal(named("webstack-backup").inputs.networksAdvanced, undefined);
    assert.equal(named("webstack-backup").inputs.ports, undefined);
    const migrate = containers.find((c) => c.name.startsWith("webstack-migrate-"));
    assert.deepEqual(migrate?.inputs.capabilities, { drops: ["ALL"] });
    assert.equal((named("webstack-nginx").inputs.ports as unknown[]).length, 1);
    assert.ok(named("webstack-nginx").inputs.tmpfs !== undefined);
    assert.ok(named("webstack-postgres").inputs.uploads !== undefined);
    assert.ok(named("webstack-postgres").inputs.volumes !== undefined);
  });

  test("files runs, the Postgres image's check and, locally, the backup container have no network at all; every other container is on its networks and none has a network mode", async () => {
    const { mocks } = await evaluated({});
    for (const c of mocks.ofType(CONTAINER)) {
      // The local backup container reaches Postgres through its socket and the repository through
      // a volume: no network at all, stricter than any. (On cloud it joins the backup network.)
      // The Postgres check reads the data volume alone.
      if (isFilesRun(c) || isPostgresCheck(c) || c.name === "webstack-backup") {
        assert.equal(c.inputs.networkMode, "none", c.name);
        assert.equal(c.inputs.networksAdvanced, undefined, c.name);
      } else {
        assert.equal(c.inputs.networkMode, undefined, c.name);
        assert.ok((c.inputs.networksAdvanced as unknown[]).length > 0, c.name);
      }
    }
  });

  test("logs go to json-file (docker logs works and its rotation applies); Postgres gets three minutes to become healthy, the backup container is not waited for, the rest 90 s", async () => {
    const { mocks } = await evaluated({});
    for (const c of mocks.ofType(CONTAINER)) {
      assert.equal(c.inputs.logDriver, "json-file", c.name);
      if (isOneOff(c)) {
        assert.equal(c.inputs.waitTimeout, undefined, c.name);
        continue;
      }
      if (c.name === "webstack-backup") {
        // Its health is the backups' (a bucket outage shows there); it never holds up an update.
        assert.deepEqual([c.inputs.wait, c.inputs.waitTimeout], [false, undefined], c.name);
        continue;
      }
      assert.equal(c.inputs.waitTimeout, c.name === "webstack-postgres" ? 180 : 90, c.name);
    }
  });

  test("data volumes, Postgres's socket, the backups' repository and the files runs' own volumes are writable; the files they wrote, and Postgres's data in the backup container and the Postgres check, are mounted read-only", async () => {
    const { mocks } = await evaluated({});
    const mounts = (c: Registered) =>
      (c.inputs.volumes as { volumeName: string; containerPath: string; readOnly?: boolean }[]).map((v) => [
        v.volumeName,
        v.containerPath,
        v.readOnly,
      ]);
    // Postgres's data, its socket (the backup container connects through it) and, locally, the
    // backups' repository, which both write: archive-push the WAL, the backup container the rest.
    const postgresAndBackups = [
      ["webstack-test-postgres-socket", "/var/run/postgresql", undefined],
      ["webstack-test-backups", "/var/lib/pgbackrest", undefined],
    ];
    assert.deepEqual(mounts(mocks.named("webstack-postgres")), [
      ["webstack-test-postgres-data", "/var/lib/postgresql/data", undefined],
      ...postgresAndBackups,
    ]);
    // The backup container reads the data directory, never writes it.
    assert.deepEqual(mounts(mocks.named("webstack-backup")), [
      ["webstack-test-postgres-data", "/var/lib/postgresql/data", true],
      ...postgresAndBackups,
    ]);
    // Nor does the Postgres image's check, which reads PG_VERSION alone.
    assert.deepEqual(mounts(mocks.named("webstack-postgres-check")), [
      ["webstack-test-postgres-data", "/var/lib/postgresql/data", true],
    ]);
    for (const c of mocks.ofType(CONTAINER).filter((c) => !["webstack-postgres", "webstack-backup"].includes(c.name))) {
      const writes = c.name === "webstack-redis" || isFilesRun(c);
      assert.deepEqual(
        mounts(c).map(([, , readOnly]) => readOnly),
        [writes ? undefined : true],
        c.name,
      );
    }
  });

  test("replicas wait for Postgres and Redis", async () => {
    const { mocks } = await evaluated({});
    const replicas = mocks.ofType(CONTAINER).filter((c) => /^webstack-app-[0-9a-f]{12}-\d$/.test(c.name));
    assert.equal(replicas.length, 3);
    for (const replica of replicas) {
      for (const backing of ["webstack-postgres", "webstack-redis"]) {
        assert.ok(dependsOn(replica, mocks.named(backing)), `${replica.name} waits for ${backing}`);
      }
    }
  });

  test("each long-running container gets its role's memory (no swap past it) and CPU weight, the migration run the app's, the Postgres check its own 64 MB whatever the limits; a files run gets none", async () => {
    const limits =
      '{"app":{"memoryMb":300,"cpuShares":512},"postgres":{"memoryMb":1024},"redis":{"memoryMb":200},"backup":{"cpuShares":256}}';
    const { mocks } = await evaluated({ limits });
    const expected: Record<string, [number, number]> = {
      postgres: [1024, 2048],
      redis: [200, 1024],
      nginx: [128, 1024],
      app: [300, 512],
      migrate: [300, 512],
      backup: [128, 256],
      // Not the server's: it reads one file. webstack:limits has no say in it.
      "postgres-check": [64, 256],
    };
    const containers = mocks.ofType(CONTAINER);
    for (const c of containers) {
      const role = (c.inputs.labels as { label: string; value: string }[]).find(
        (l) => l.label === "webstack.role",
      )?.value;
      const sent = [c.inputs.memory, c.inputs.memorySwap, c.inputs.cpuShares];
      if (isFilesRun(c)) {
        assert.deepEqual(sent, [undefined, undefined, undefined], c.name);
        continue;
      }
      const [memory, cpuShares] = expected[String(role)];
      assert.deepEqual(sent, [memory, memory, cpuShares], c.name);
    }
    // 3 replicas, the migration run, Postgres, Redis, nginx, the backup container, the Postgres check.
    assert.equal(containers.filter((c) => !isFilesRun(c)).length, 9);
    // What must know its limit is told it: the app's heap, Redis's maxmemory (three quarters of each).
    for (const replica of containers.filter((c) => /^webstack-(app|migrate)-/.test(c.name))) {
      assert.ok((replica.inputs.envs as string[]).includes("NODE_OPTIONS=--max-old-space-size=225"), replica.name);
    }
    const redisConf = String((mocks.named("webstack-redis").inputs.uploads as { content: string }[])[0].content);
    assert.match(redisConf, /^maxmemory 150mb$/m);
  });

  test("a changed limit of Postgres, Redis or nginx is applied to the running container; the app's rolls a new release", async () => {
    const labelsOf = async (limits: string) => {
      const { mocks } = await evaluated({ limits });
      const spec = (name: string) =>
        (mocks.named(name).inputs.labels as { label: string; value: string }[]).find((l) => l.label === "webstack.spec")
          ?.value;
      return {
        postgres: spec("webstack-postgres"),
        nginx: spec("webstack-nginx"),
        replicas: mocks
          .ofType(CONTAINER)
          .filter((c) => c.name.startsWith("webstack-app-"))
          .map((c) => c.name),
      };
    };
    const before = await labelsOf("{}");
    const after = await labelsOf('{"postgres":{"memoryMb":768,"cpuShares":4096},"nginx":{"cpuShares":512}}');
    assert.equal(after.postgres, before.postgres, "Postgres keeps its fingerprint: the provider updates it in place");
    assert.equal(after.nginx, before.nginx);
    assert.deepEqual(after.replicas, before.replicas);
    const app = await labelsOf('{"app":{"memoryMb":512}}');
    assert.equal(app.replicas.length, 3);
    assert.ok(
      app.replicas.every((name) => !before.replicas.includes(name)),
      "a new heap size is a new release, rolled without an outage",
    );
  });

  test("a new nginx config reaches its files run and leaves the running nginx as it is, for its watcher to reload; a failed run still holds nginx back", async () => {
    const stackWith = async (settings: Record<string, string>) => {
      const { mocks } = await evaluated(settings);
      const run = mocks.named("webstack-files-nginx-run");
      return {
        nginx: mocks.named("webstack-nginx").inputs,
        conf: (run.inputs.uploads as { file: string; content: string }[]).find(
          (u) => u.file === "/webstack/files/nginx.conf",
        )?.content,
        waitsForRun: dependsOn(mocks.named("webstack-nginx"), run),
      };
    };
    const base = await stackWith({});
    const bigger = await stackWith({ maxRequestBody: "2m" });
    assert.match(String(base.conf), /client_max_body_size 1m;/);
    assert.match(String(bigger.conf), /client_max_body_size 2m;/);
    assert.deepEqual(bigger.nginx, base.nginx, "nginx's own inputs do not change: it is not replaced");
    assert.ok(base.waitsForRun && bigger.waitsForRun);
    const labels = base.nginx.labels as { label: string; value: string }[];
    assert.match(String(labels.find((l) => l.label === "webstack.start-files")?.value), /^[0-9a-f]{16}$/);
    assert.equal(
      labels.find((l) => l.label === "webstack.files"),
      undefined,
      "no label names the run, whose id changes with every new config",
    );
  });
});

describe("nginxStartHash", () => {
  test("follows the files nginx reads at start, and not its config, which it reloads", () => {
    const files = [
      { path: NGINX_CONF_PATH, content: "events {}", executable: false },
      { path: "/etc/nginx/webstack/start.sh", content: "#!/bin/sh", executable: true },
      { path: "/etc/nginx/webstack/upstream-names", content: "app\n", executable: false },
    ];
    const base = nginxStartHash(files);
    assert.match(base, /^[0-9a-f]{16}$/);
    const changed = (i: number, content: string) =>
      nginxStartHash(files.map((f, j) => (j === i ? { ...f, content } : f)));
    assert.equal(changed(0, "events { worker_connections 10; }"), base);
    assert.notEqual(changed(1, "#!/bin/sh\nexit 1"), base);
    assert.notEqual(changed(2, "app\nadmin\n"), base);
  });
});

describe("the stack's other resources", () => {
  test("two bridge networks, the back one internal, labelled with the stack; the front keeps the single network's logical name", async () => {
    const { mocks } = await evaluated({});
    const labels = [{ label: "webstack.stack", value: "test" }];
    assert.deepEqual(mocks.named("webstack-network").inputs, { name: "webstack-test", driver: "bridge", labels });
    assert.deepEqual(mocks.named("webstack-back-network").inputs, {
      name: "webstack-test-back",
      driver: "bridge",
      internal: true,
      labels,
    });
  });

  test("stock images stay on the host when the stack lets go of them (another stack may run them)", async () => {
    const { mocks } = await evaluated({});
    for (const role of ["postgres", "redis", "nginx"]) {
      assert.equal(mocks.named(`webstack-${role}-image`).inputs.keepLocally, true, role);
    }
  });

  test("generated passwords are the stack's children", async () => {
    const { mocks } = await evaluated({});
    const passwords = mocks.ofType("random:index/randomPassword:RandomPassword");
    // Postgres's and Redis's passwords, the admin token, the backups' passphrase.
    assert.deepEqual(passwords.map((p) => p.name).sort(), [
      "webstack-admin-token",
      "webstack-backup-cipher",
      "webstack-postgres-password",
      "webstack-redis-password",
    ]);
    for (const p of passwords) assert.match(p.urn, /::webstack:index:WebStack\$random:/, p.name);
  });

  test("the app image is built from the app's Dockerfile; pushed to a registry, it is pulled on the host once, kept there, by the host's pull", async () => {
    const local = (await evaluated({})).mocks.named("app-image");
    const build = local.inputs.build as { context: string; dockerfile: string };
    assert.equal(build.dockerfile, path.join(build.context, "Dockerfile"));

    const { mocks } = await evaluated(AWS);
    const pulled = mocks.named("app-pulled");
    assert.equal(pulled.inputs.keepLocally, true, "the pulled image stays for a rollback");
    assert.ok(dependsOn(pulled, mocks.named("app-pull")), "the provider finds the image the host pulled");
    assert.ok(dependsOn(pulled, mocks.named("host-engine-ready")));
  });
});

/** Mocks whose engine reports nginx's port 80 as `reported` (or not at all). */
class PortReporting extends RecordingMocks {
  constructor(private readonly reported: number | undefined) {
    super();
  }
  override newResource(args: Parameters<RecordingMocks["newResource"]>[0]) {
    const result = super.newResource(args);
    if (args.type !== CONTAINER || (args.inputs as Record<string, unknown>).ports === undefined) return result;
    const ports = this.reported === undefined ? [] : [{ internal: 80, external: this.reported, ip: "127.0.0.1" }];
    return { ...result, state: { ...result.state, ports } };
  }
}

describe("the URL's port with httpPort 0", () => {
  for (const [what, reported] of [
    ["no port", undefined],
    ["port 0", 0],
  ] as const) {
    test(`an engine that reports ${what} for nginx fails the update by name, not with a URL that can't be reached`, async () => {
      const { failures } = await programFailures({ httpPort: "0" }, { mocks: new PortReporting(reported) });
      assert.ok(
        failures.some((f) => f.message.includes("nginx's container reports no host port for port 80")),
        failures.map((f) => f.message).join("\n"),
      );
    });
  }

  test("the port Docker picked is the URL's", async () => {
    const { outputs } = await runProgram({ httpPort: "0" }, { mocks: new PortReporting(32768) });
    assert.equal(outputs.url, "http://127.0.0.1:32768");
  });
});

describe("nginx's files", () => {
  test("each lands under /etc/nginx, relative to it, read-only, executable where it must run", () => {
    assert.deepEqual(nginxFile({ path: "/etc/nginx/nginx.conf", content: "x", executable: false }), {
      path: "nginx.conf",
      mode: "0444",
      content: { text: "x" },
    });
    assert.deepEqual(nginxFile({ path: "/etc/nginx/bin/start", content: "#!/bin/sh", executable: true }), {
      path: "bin/start",
      mode: "0555",
      content: { text: "#!/bin/sh" },
    });
  });

  test("a file outside /etc/nginx is refused by path: the files run writes only there", () => {
    for (const outside of ["/etc/passwd", "/etc/nginx/../shadow", "/etc/nginx", "/etc/nginx-extra/x.conf"]) {
      assert.throws(
        () => nginxFile({ path: outside, content: "", executable: false }),
        (error: Error) =>
          error.message === `nginx file ${outside} is outside /etc/nginx, the only directory its files run writes`,
        outside,
      );
    }
  });
});
