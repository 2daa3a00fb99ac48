// The check each new Postgres image passes before it may run on the stack's data directory: its
// spec, the container the provider gets on each target, its name (one per image), what waits for
// it, the gate that fails the update when it fails, the line it reads from the check's log, and
// the check's script itself, run with /bin/sh against a data directory of its own.
import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, test } from "node:test";
import { DEFAULT_IMAGES } from "../../components/config";
import {
  POSTGRES_CHECK_SCRIPT,
  postgresCheckFailure,
  postgresCheckSpec,
  specFingerprint,
} from "../../components/specs/containers";
import {
  evaluated,
  OneOffEnding,
  programFailures,
  RecordingMocks,
  Registered,
  runBuild,
  runProgram,
} from "./support/mocks";

const CONTAINER = "docker:index/container:Container";
const ADMIN = '["198.51.100.0/24"]';
const TARGETS = [
  { target: "local", settings: {}, vmId: undefined },
  { target: "digitalocean", settings: { target: "digitalocean", region: "nyc3", adminCidrs: ADMIN }, vmId: "123456" },
  { target: "aws", settings: { target: "aws", region: "us-east-1", adminCidrs: ADMIN }, vmId: "i-0123456789abcdef0" },
] as const;
const LOGS = { "max-size": "10m", "max-file": "3" };
const PGDATA = "/var/lib/postgresql/data/pgdata";
const DATA_MOUNT = "/var/lib/postgresql/data";
/** What Postgres's image is built with when backups are on: part of what the check checks. */
const POSTGRES_DOCKERFILE = fs.readFileSync(
  path.join(__dirname, "..", "..", "postgres", "image", "Dockerfile"),
  "utf8",
);

const sha12 = (text: string) => createHash("sha256").update(text).digest("hex").slice(0, 12);
/** The image identity the check is named after: the configured image, and with backups the Dockerfile over it. */
const identity = (ref: string, backups: boolean) => (backups ? `${ref} ${POSTGRES_DOCKERFILE}` : ref);
const checkName = (prefix: string, ref: string, backups: boolean) =>
  `${prefix}-postgres-check-${sha12(identity(ref, backups))}`;
const check = (mocks: RecordingMocks) => mocks.named("webstack-postgres-check");
const containerNames = (mocks: RecordingMocks) => mocks.ofType(CONTAINER).map((c) => String(c.inputs.name));

/** Docker's 8-byte stream header of a raw log: stream 1 stdout, 2 stderr, then the frame's size. */
const header = (stream: 1 | 2, size: number) =>
  Buffer.from([stream, 0, 0, 0, (size >>> 24) & 255, (size >>> 16) & 255, (size >>> 8) & 255, size & 255]).toString(
    "latin1",
  );
/** A log as the provider keeps it: each line its own frame. */
const framed = (...lines: [1 | 2, string][]) =>
  lines.map(([stream, line]) => `${header(stream, line.length + 1)}${line}\n`).join("");

/** The error the gate fails the update with, word for word. */
const gateError = (ref: string, stack: string, why: string) =>
  `webstack:postgresImage ${ref} cannot run on this stack's data: ${why}. Postgres was not replaced; the server ` +
  "before serves on. A new major version needs its data moved over first: run " +
  `\`npm run upgrade-postgres -- --stack ${stack} --image ${ref}\`, then \`pulumi up --refresh\` (see the README's ` +
  '"Postgres upgrades"), or set webstack:postgresImage back';

describe("the Postgres check's spec", () => {
  const names = { prefix: "webstack-dev", stack: "dev" };

  test("the image's own shell runs the check as root with CAP_DAC_READ_SEARCH alone, read-only, on no network, the data volume read-only; once, with a small limit of its own", () => {
    assert.deepEqual(postgresCheckSpec(names, "postgres:17.6-bookworm"), {
      role: "postgres-check",
      containerName: `webstack-dev-postgres-check-${sha12("postgres:17.6-bookworm")}`,
      entrypoint: ["/bin/sh", "-c", POSTGRES_CHECK_SCRIPT],
      user: "0:0",
      env: { PGDATA },
      files: [],
      networks: [],
      restart: "no",
      oneOff: true,
      ports: [],
      volumes: [{ volume: "postgres-data", containerPath: DATA_MOUNT, readOnly: true }],
      capabilities: ["CAP_DAC_READ_SEARCH"],
      readOnlyRoot: true,
      tmpfs: {},
      labels: { "webstack.stack": "dev", "webstack.role": "postgres-check" },
      logOpts: LOGS,
      stopSignal: "SIGTERM",
      stopTimeout: 10,
      limits: { memoryMb: 64, cpuShares: 256 },
    });
  });

  test("named after the image: the same image keeps its name (and is not checked again), another gets another", () => {
    const name = (image: string) => postgresCheckSpec(names, image).containerName;
    assert.match(name("postgres:17.6-bookworm"), /^webstack-dev-postgres-check-[0-9a-f]{12}$/);
    assert.equal(name("postgres:17.6-bookworm"), name("postgres:17.6-bookworm"));
    assert.notEqual(name("postgres:17.7-bookworm"), name("postgres:17.6-bookworm"));
    assert.notEqual(name("postgres:18.1-bookworm"), name("postgres:17.6-bookworm"));
    assert.notEqual(
      specFingerprint(postgresCheckSpec(names, "postgres:18.1-bookworm")),
      specFingerprint(postgresCheckSpec(names, "postgres:17.6-bookworm")),
    );
  });
});

describe("the Postgres check as the provider gets it", () => {
  /** The check's inputs, whole: anything else sent (a network, a health check, a wait) fails. */
  const expectedInputs = (opts: { prefix: string; stack: string; image: unknown; backups: boolean; vmId?: string }) => {
    const ref = DEFAULT_IMAGES.postgresImage;
    const spec = postgresCheckSpec({ prefix: opts.prefix, stack: opts.stack }, identity(ref, opts.backups));
    return {
      name: checkName(opts.prefix, ref, opts.backups),
      image: opts.image,
      entrypoints: ["/bin/sh", "-c", POSTGRES_CHECK_SCRIPT],
      user: "0:0",
      envs: [`PGDATA=${PGDATA}`],
      labels: [
        { label: "webstack.stack", value: opts.stack },
        { label: "webstack.role", value: "postgres-check" },
        { label: "webstack.spec", value: specFingerprint(spec) },
        ...(opts.vmId === undefined ? [] : [{ label: "webstack.vm", value: opts.vmId }]),
      ],
      networkMode: "none",
      volumes: [{ volumeName: `${opts.prefix}-postgres-data`, containerPath: DATA_MOUNT, readOnly: true }],
      capabilities: { drops: ["ALL"], adds: ["CAP_DAC_READ_SEARCH"] },
      securityOpts: ["no-new-privileges:true"],
      readOnly: true,
      restart: "no",
      logDriver: "json-file",
      logOpts: LOGS,
      stopSignal: "SIGTERM",
      stopTimeout: 10,
      memory: 64,
      memorySwap: 64,
      cpuShares: 256,
      // A one-off: waited for until it ends, its exit code and log kept, never expected running.
      attach: true,
      mustRun: false,
      logs: true,
    };
  };

  /** What the check and Postgres wait for: the data volume, the image on the host, a cloud host's engine. */
  const assertOrder = (mocks: RecordingMocks, images: Registered[], cloud: boolean) => {
    const run = check(mocks);
    assert.ok(run.dependencies.includes(mocks.named("webstack-postgres-data").urn), "the check waits for the volume");
    for (const image of images) assert.ok(run.dependencies.includes(image.urn), `the check waits for ${image.name}`);
    if (cloud) assert.ok(run.dependencies.includes(mocks.named("host-engine-ready").urn), "and for the engine");
    const postgres = mocks.named("webstack-postgres");
    assert.ok(postgres.dependencies.includes(run.urn), "Postgres waits for the check");
    assert.ok(postgres.order > run.order, "Postgres registers only once the check ended well");
  };

  for (const { target, settings, vmId } of TARGETS) {
    test(`${target}: the built Postgres image, as Postgres runs it, checked before Postgres is registered`, async () => {
      const { mocks } = await evaluated(settings);
      const built = mocks.named("webstack-postgres-build");
      const postgres = mocks.named("webstack-postgres");
      assert.deepEqual(
        check(mocks).inputs,
        expectedInputs({
          prefix: "webstack-test",
          stack: "test",
          image: built.outputs.repoDigest,
          backups: true,
          vmId,
        }),
      );
      assert.equal(check(mocks).inputs.image, postgres.inputs.image, "the image Postgres runs");
      assertOrder(mocks, [built, mocks.named("webstack-postgres-local")], vmId !== undefined);
      // The backup container, which runs after Postgres, comes after the check too.
      assert.ok(mocks.named("webstack-backup").order > check(mocks).order);
    });

    test(`${target}, backups off: the stock Postgres image, named after the image alone`, async () => {
      const { mocks } = await runProgram({ ...settings, backups: "false" }, { stack: "pr-7" });
      const stock = mocks.named("webstack-postgres-image");
      assert.deepEqual(
        check(mocks).inputs,
        expectedInputs({ prefix: "webstack-pr-7", stack: "pr-7", image: stock.outputs.imageId, backups: false, vmId }),
      );
      assert.equal(check(mocks).inputs.image, mocks.named("webstack-postgres").inputs.image);
      assertOrder(mocks, [stock], vmId !== undefined);
    });
  }

  test("one check per image: a new postgresImage gives a new container name under the same logical name; the same image, whatever else changes, the same inputs (no new run)", async () => {
    const base = check((await evaluated({})).mocks);
    assert.equal(base.inputs.name, checkName("webstack-test", DEFAULT_IMAGES.postgresImage, true));

    const other = check((await runProgram({ postgresImage: "postgres:17.7-bookworm" })).mocks);
    assert.equal(other.name, "webstack-postgres-check", "the same resource, replaced: no check is left behind");
    assert.equal(other.inputs.name, checkName("webstack-test", "postgres:17.7-bookworm", true));
    assert.notEqual(other.inputs.name, base.inputs.name);

    const again = check((await runProgram({})).mocks);
    assert.deepEqual(again.inputs, base.inputs);
    // A new release, more replicas, Postgres's own limits: the image is the same, so is the check.
    const elsewhere = await runProgram({
      release: "r2",
      replicas: "5",
      limits: '{"postgres":{"memoryMb":1024}}',
    });
    assert.deepEqual(check(elsewhere.mocks).inputs, base.inputs);

    // Without backups, the configured image alone names it.
    const stock = async (postgresImage: string) =>
      String(check((await runProgram({ backups: "false", postgresImage }, { stack: "pr-7" })).mocks).inputs.name);
    assert.equal(await stock("postgres:17.6-bookworm"), checkName("webstack-pr-7", "postgres:17.6-bookworm", false));
    assert.equal(await stock("postgres:18.1-bookworm"), checkName("webstack-pr-7", "postgres:18.1-bookworm", false));
  });

  test("transform.postgresCheck gets the check's arguments, and what it changes is what is registered", async () => {
    const seen: string[] = [];
    const { mocks } = await runBuild(
      {},
      {
        postgresCheck: (args: docker.ContainerArgs, opts: pulumi.CustomResourceOptions) => {
          seen.push(typeof args.name === "string" ? args.name : "(not a plain string)");
          assert.ok(Array.isArray(opts.dependsOn));
          args.memory = 32;
          args.memorySwap = 32;
        },
      },
    );
    assert.deepEqual(seen, [checkName("webstack-test", DEFAULT_IMAGES.postgresImage, true)]);
    assert.deepEqual([check(mocks).inputs.memory, check(mocks).inputs.memorySwap], [32, 32]);
  });
});

describe("the gate: a failed check fails the update before Postgres is replaced", () => {
  /** Mocks whose Postgres check ends as given; every other one-off ends well. */
  const endingWith = (ending: OneOffEnding) =>
    new RecordingMocks({
      exitCode: (name) => (name.includes("-postgres-check-") ? ending : { exitCode: 0, logs: "" }),
    });
  /** The update's errors, each once (a rejection may reach more than one registration). */
  const messages = (failures: Error[]) => [...new Set(failures.map((f) => f.message))];
  const assertNoPostgres = (mocks: RecordingMocks, prefix: string) => {
    const names = containerNames(mocks);
    assert.ok(
      names.some((n) => n.startsWith(`${prefix}-postgres-check-`)),
      "the check ran",
    );
    assert.ok(!names.includes(`${prefix}-postgres`), `no Postgres container in ${names.join(", ")}`);
    assert.ok(!mocks.resources.some((r) => r.name === "webstack-postgres"), "no Postgres registration");
    // Nor what comes after Postgres: the backup container, the migration run, the replicas.
    for (const after of [`${prefix}-backup`, `${prefix}-migrate-`, `${prefix}-app-`])
      assert.ok(!names.some((n) => n.startsWith(after)), `${after}… is not registered`);
  };

  for (const { target, settings } of TARGETS) {
    test(`${target}: a data directory of another major version: the check's own line and the way up, word for word; no Postgres container`, async () => {
      const line = "postgres-check: the data directory is Postgres 17 and the image is Postgres 18";
      const { mocks, failures } = await programFailures(
        { ...settings, postgresImage: "postgres:18.1-bookworm" },
        { mocks: endingWith({ exitCode: 3, logs: framed([2, line]) }), stack: "staging" },
      );
      assert.deepEqual(messages(failures), [
        gateError(
          "postgres:18.1-bookworm",
          "staging",
          "the data directory is Postgres 17 and the image is Postgres 18",
        ),
      ]);
      assertNoPostgres(mocks, "webstack-staging");
    });
  }

  test("the message, word for word, is the one the README shows (stack prod, postgres:18.1-bookworm over Postgres 17's data)", async () => {
    const line = "postgres-check: the data directory is Postgres 17 and the image is Postgres 18";
    const { failures } = await programFailures(
      { postgresImage: "postgres:18.1-bookworm" },
      { mocks: endingWith({ exitCode: 3, logs: `${line}\n` }), stack: "prod" },
    );
    const readme = fs.readFileSync(path.join(__dirname, "..", "..", "README.md"), "utf8");
    const shown = readme.split("\n").filter((l) => l.startsWith("webstack:postgresImage "));
    assert.equal(shown.length, 1, "the README shows the message once");
    assert.deepEqual(messages(failures), shown);
    assert.equal(
      shown[0],
      "webstack:postgresImage postgres:18.1-bookworm cannot run on this stack's data: the data directory is Postgres 17 " +
        "and the image is Postgres 18. Postgres was not replaced; the server before serves on. A new major version " +
        "needs its data moved over first: run `npm run upgrade-postgres -- --stack prod --image postgres:18.1-bookworm`, " +
        'then `pulumi up --refresh` (see the README\'s "Postgres upgrades"), or set webstack:postgresImage back',
    );
  });

  for (const [what, ending] of [
    ["a shell error and no check line", { exitCode: 127, logs: framed([2, "/bin/sh: 1: postgres: not found"]) }],
    ["no log at all", { exitCode: 1, logs: "" }],
    [
      "the check's good line, yet a non-zero exit",
      { exitCode: 137, logs: framed([1, "postgres-check: the data directory is 17, the image is Postgres 17"]) },
    ],
  ] as const) {
    test(`a check that fails with ${what}: its exit code and where to read its log`, async () => {
      const { mocks, failures } = await programFailures({}, { mocks: endingWith(ending) });
      const name = checkName("webstack-test", DEFAULT_IMAGES.postgresImage, true);
      assert.deepEqual(messages(failures), [
        gateError(
          DEFAULT_IMAGES.postgresImage,
          "test",
          `it exited with code ${ending.exitCode} (see \`docker logs ${name}\`)`,
        ),
      ]);
      assertNoPostgres(mocks, "webstack-test");
    });
  }

  test("backups off: the same gate over the stock image", async () => {
    const line = "postgres-check: the data directory is Postgres 16 and the image is Postgres 17";
    const { mocks, failures } = await programFailures(
      { backups: "false" },
      { mocks: endingWith({ exitCode: 3, logs: framed([2, line]) }), stack: "pr-7" },
    );
    assert.deepEqual(messages(failures), [
      gateError(DEFAULT_IMAGES.postgresImage, "pr-7", "the data directory is Postgres 16 and the image is Postgres 17"),
    ]);
    assertNoPostgres(mocks, "webstack-pr-7");
  });

  test("a check that ends well lets Postgres be registered after it", async () => {
    const ok = "postgres-check: the data directory is 17, the image is Postgres 17";
    const { mocks, failures } = await programFailures(
      {},
      { mocks: endingWith({ exitCode: 0, logs: framed([1, ok]) }) },
    );
    assert.deepEqual(messages(failures), []);
    assert.ok(mocks.named("webstack-postgres").order > check(mocks).order);
  });
});

describe("postgresCheckFailure", () => {
  const why = "the data directory is Postgres 15 and the image is Postgres 17";
  const line = `postgres-check: ${why}`;

  test("the check's line without its prefix: plain, after Docker's stream headers, among other lines", () => {
    const cases: [string, string][] = [
      [`${line}\n`, why],
      [line, why],
      [`${line}\r\n`, why],
      [framed([2, line]), why],
      // Headers whose size bytes are characters a line could start with ("P", "p", "\t").
      [`${header(2, 80)}${line}\n`, why],
      [`${header(2, 112)}${line}\n`, why],
      [`${header(2, 9)}${line}\n`, why],
      [`${header(1, 300)}${line}\n`, why],
      [framed([1, "starting"], [2, line], [1, "after"]), why],
      [
        "postgres-check: the data directory is Postgres 9.6 and the image is Postgres 17\n",
        "the data directory is Postgres 9.6 and the image is Postgres 17",
      ],
    ];
    for (const [logs, expected] of cases) assert.equal(postgresCheckFailure(logs), expected, JSON.stringify(logs));
  });

  test("no such line: undefined (the gate then names the exit code and the log)", () => {
    for (const logs of [
      undefined,
      "",
      "\n\n",
      "/bin/sh: 1: postgres: not found\n",
      framed([2, "/bin/sh: 1: cannot open /var/lib/postgresql/data/pgdata/PG_VERSION: Permission denied"]),
      // The lines of a check that passed are no failure.
      "postgres-check: the data directory is 17, the image is Postgres 17\n",
      framed([1, "postgres-check: the data directory is new, the image is Postgres 17"]),
      // The words elsewhere than at the start of a line (a shell's trace of the script) are not the check's line.
      `+ echo ${line}\n`,
    ]) {
      assert.equal(postgresCheckFailure(logs), undefined, JSON.stringify(logs));
    }
  });
});

describe("POSTGRES_CHECK_SCRIPT, run with /bin/sh", () => {
  /** Runs the script as the check's entrypoint does, with only the environment given. */
  const run = (env: Record<string, string>) => {
    const result = spawnSync("/bin/sh", ["-c", POSTGRES_CHECK_SCRIPT], { env, encoding: "utf8" });
    return { status: result.status, stdout: result.stdout, stderr: result.stderr };
  };
  /** A temporary data volume: PGDATA inside it, with PG_VERSION as initdb writes it (or none). */
  const withData = (pgVersion: string | undefined, work: (pgdata: string, dir: string) => void) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "webstack-postgres-check-"));
    try {
      const pgdata = path.join(dir, "pgdata");
      fs.mkdirSync(pgdata);
      if (pgVersion !== undefined) fs.writeFileSync(path.join(pgdata, "PG_VERSION"), `${pgVersion}\n`);
      work(pgdata, dir);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  };
  const PATH = process.env.PATH ?? "/usr/bin:/bin";

  test("a data directory of Postgres 15 and PG_MAJOR 17: exit 3, one line on stderr, nothing on stdout", () => {
    withData("15", (pgdata) => {
      assert.deepEqual(run({ PATH, PGDATA: pgdata, PG_MAJOR: "17" }), {
        status: 3,
        stdout: "",
        stderr: "postgres-check: the data directory is Postgres 15 and the image is Postgres 17\n",
      });
    });
  });

  test("the same major version: exit 0 and the line that says so", () => {
    withData("17", (pgdata) => {
      assert.deepEqual(run({ PATH, PGDATA: pgdata, PG_MAJOR: "17" }), {
        status: 0,
        stdout: "postgres-check: the data directory is 17, the image is Postgres 17\n",
        stderr: "",
      });
    });
  });

  test("no PG_VERSION (a new volume, or no data directory yet): exit 0, the data directory is new", () => {
    withData(undefined, (pgdata, dir) => {
      for (const where of [pgdata, path.join(dir, "not-made-yet")]) {
        assert.deepEqual(run({ PATH, PGDATA: where, PG_MAJOR: "17" }), {
          status: 0,
          stdout: "postgres-check: the data directory is new, the image is Postgres 17\n",
          stderr: "",
        });
      }
    });
  });

  test("without PG_MAJOR, the major version is read from `postgres --version`", () => {
    const bin = fs.mkdtempSync(path.join(os.tmpdir(), "webstack-postgres-bin-"));
    try {
      fs.writeFileSync(
        path.join(bin, "postgres"),
        '#!/bin/sh\n[ "$1" = "--version" ] || exit 64\necho "postgres (PostgreSQL) 17.6 (Debian 17.6-1.pgdg120+1)"\n',
        { mode: 0o755 },
      );
      const env = (pgdata: string) => ({ PATH: `${bin}:${PATH}`, PGDATA: pgdata });
      withData("17", (pgdata) => {
        assert.deepEqual(run(env(pgdata)), {
          status: 0,
          stdout: "postgres-check: the data directory is 17, the image is Postgres 17\n",
          stderr: "",
        });
      });
      withData("15", (pgdata) => {
        assert.deepEqual(run(env(pgdata)), {
          status: 3,
          stdout: "",
          stderr: "postgres-check: the data directory is Postgres 15 and the image is Postgres 17\n",
        });
      });
      withData(undefined, (pgdata) => {
        assert.equal(run(env(pgdata)).stdout, "postgres-check: the data directory is new, the image is Postgres 17\n");
      });
    } finally {
      fs.rmSync(bin, { recursive: true, force: true });
    }
  });

  test("what the gate reads from a failed run is the script's own line", () => {
    withData("15", (pgdata) => {
      const { stderr } = run({ PATH, PGDATA: pgdata, PG_MAJOR: "17" });
      assert.equal(
        postgresCheckFailure(framed([2, stderr.trimEnd()])),
        "the data directory is Postgres 15 and the image is Postgres 17",
      );
    });
  });
});
