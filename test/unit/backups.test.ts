// Postgres's continuous backups (pgBackRest), from the real index.ts under Pulumi's mocks: the
// bucket each cloud makes and the key scoped to it, how the key reaches pgBackRest's config, the
// Postgres and backup containers on each target, and a throwaway stack without backups. The config
// file pgbackrestConf renders is backup-specs.test.ts's.
import * as pulumi from "@pulumi/pulumi";
import assert from "node:assert/strict";
import * as path from "node:path";
import { describe, test } from "node:test";
import { DEFAULT_IMAGES } from "../../components/config";
import { backupBucketPolicy, NONCURRENT_DAYS } from "../../components/hosts/backup-bucket";
import { evaluated, isSecretValue, promiseOf, ProgramRun, Registered, runBuild, runProgram } from "./support/mocks";

type Inputs = Record<string, unknown>;
const ADMIN = '["198.51.100.0/24"]';
const LOCAL: Record<string, string> = {};
const DO = { target: "digitalocean", region: "nyc3", adminCidrs: ADMIN };
const AWS = { target: "aws", region: "us-east-1", adminCidrs: ADMIN };
const TARGETS = [
  { target: "local", settings: LOCAL, cloud: false },
  { target: "digitalocean", settings: DO, cloud: true },
  { target: "aws", settings: AWS, cloud: true },
] as const;
/** A schedule unlike the defaults, so each value is seen to come from the config. */
const SCHEDULE = {
  backupFullDays: "3",
  backupDiffHours: "12",
  backupRetentionFull: "6",
  backupRetentionDiff: "9",
  archiveTimeoutSeconds: "45",
};

const CONTAINER = "docker:index/container:Container";
const PGBACKREST_CONF = "/etc/pgbackrest/pgbackrest.conf";
const TYPES = {
  spacesBucket: "digitalocean:index/spacesBucket:SpacesBucket",
  spacesKey: "digitalocean:index/spacesKey:SpacesKey",
  s3Bucket: "aws:s3/bucket:Bucket",
  publicAccessBlock: "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
  versioning: "aws:s3/bucketVersioning:BucketVersioning",
  encryption: "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
  lifecycle: "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
  user: "aws:iam/user:User",
  userPolicy: "aws:iam/userPolicy:UserPolicy",
  accessKey: "aws:iam/accessKey:AccessKey",
} as const;

const envOf = (c: Registered) => (c.inputs.envs as string[] | undefined) ?? [];
const labelsOf = (c: Registered) =>
  Object.fromEntries(
    ((c.inputs.labels as { label: string; value: string }[] | undefined) ?? []).map((l) => [l.label, l.value]),
  );
const mountsOf = (c: Registered) =>
  ((c.inputs.volumes as Inputs[] | undefined) ?? []).map((v) => [v.volumeName, v.containerPath, v.readOnly ?? false]);
const networksOf = (c: Registered) =>
  ((c.inputs.networksAdvanced as Inputs[] | undefined) ?? []).map((n) => [n.name, n.aliases]);
/** The pgbackrest.conf a container gets, and whether it reached the engine as a secret. */
function confOf(c: Registered): { content: string; permissions: unknown; secret: boolean } {
  const files = (c.inputs.uploads as Inputs[] | undefined) ?? [];
  const index = files.findIndex((f) => f.file === PGBACKREST_CONF);
  assert.ok(index >= 0, `${c.name} gets ${PGBACKREST_CONF}`);
  const raw = c.raw.uploads;
  return {
    content: String(files[index].content),
    permissions: files[index].permissions,
    // The SDK may mark the whole list secret rather than each field.
    secret: isSecretValue(raw) || (Array.isArray(raw) && isSecretValue((raw[index] as Inputs).content)),
  };
}
/** The resource of a type the run registered once, on the host's own cloud provider. */
function onlyOne(run: ProgramRun, type: string, providerType?: string): Registered {
  const found = run.mocks.ofType(type);
  assert.equal(found.length, 1, `one ${type}`);
  if (providerType !== undefined) {
    const provider = run.mocks.ofType(providerType)[0];
    assert.equal(found[0].provider, `${provider.urn}::${provider.name}-provider-id`, `${type} on the host's provider`);
  }
  return found[0];
}

describe("the backups' bucket on DigitalOcean", () => {
  test("a private Spaces bucket, versioned, old versions kept NONCURRENT_DAYS and unfinished uploads dropped, in the stack's region; an environment stack keeps it when destroyed", async () => {
    const run = await evaluated(DO);
    const bucket = onlyOne(run, TYPES.spacesBucket, "pulumi:providers:digitalocean");
    const { name, ...rest } = bucket.inputs;
    assert.deepEqual(rest, {
      region: "nyc3",
      acl: "private",
      versioning: { enabled: true },
      forceDestroy: false,
      lifecycleRules: [
        {
          id: "old-versions",
          enabled: true,
          noncurrentVersionExpiration: { days: NONCURRENT_DAYS },
          abortIncompleteMultipartUploadDays: 1,
        },
      ],
    });
    assert.equal(NONCURRENT_DAYS, 14);
    assert.match(String(name), /^webstack-test-/, "named by the stack");
    assert.equal(bucket.retainOnDelete, true, "`pulumi destroy` leaves an environment's backups in place");
    assert.equal(bucket.protect, false);
  });

  test("the Spaces key may read and write that bucket alone", async () => {
    const run = await evaluated(DO);
    const bucket = onlyOne(run, TYPES.spacesBucket);
    const key = onlyOne(run, TYPES.spacesKey, "pulumi:providers:digitalocean");
    assert.deepEqual(key.inputs, {
      name: "webstack-test-backups",
      grants: [{ bucket: bucket.outputs.name, permission: "readwrite" }],
    });
    assert.equal(typeof bucket.outputs.name, "string");
  });

  test("backupRegion puts the bucket, and pgBackRest's endpoint, in another Spaces region than the droplet's", async () => {
    const run = await runProgram({ ...DO, region: "nyc1", backupRegion: "ams3" });
    assert.equal(run.mocks.ofType("digitalocean:index/droplet:Droplet")[0].inputs.region, "nyc1");
    assert.equal(onlyOne(run, TYPES.spacesBucket).inputs.region, "ams3");
    const conf = confOf(run.mocks.named("webstack-postgres")).content;
    assert.match(conf, /^repo1-s3-endpoint=ams3\.digitaloceanspaces\.com$/m);
    assert.match(conf, /^repo1-s3-region=ams3$/m);
  });

  test("a pr-<n> stack's bucket goes with the stack, backups and all", async () => {
    const run = await runProgram(DO, { stack: "pr-7" });
    const bucket = onlyOne(run, TYPES.spacesBucket);
    assert.equal(bucket.inputs.forceDestroy, true, "emptied on destroy");
    assert.equal(bucket.retainOnDelete, false, "deleted on destroy");
    assert.deepEqual(onlyOne(run, TYPES.spacesKey).inputs.grants, [
      { bucket: bucket.outputs.name, permission: "readwrite" },
    ]);
  });
});

describe("the backups' bucket on AWS", () => {
  test("a private S3 bucket: all four public-access blocks, versioning, SSE-S3, old versions kept NONCURRENT_DAYS and unfinished uploads dropped; an environment stack keeps it when destroyed", async () => {
    const run = await evaluated(AWS);
    const provider = "pulumi:providers:aws";
    const tags = { "webstack:stack": "webstack-test", Name: "webstack-test" };
    const bucket = onlyOne(run, TYPES.s3Bucket, provider);
    assert.deepEqual(bucket.inputs, { bucketPrefix: "webstack-test-backups-", forceDestroy: false, tags });
    assert.equal(bucket.retainOnDelete, true, "`pulumi destroy` leaves an environment's backups in place");
    // Each setting is the bucket's: they name it by its id.
    const id = `${bucket.name}-id`;
    assert.deepEqual(onlyOne(run, TYPES.publicAccessBlock, provider).inputs, {
      bucket: id,
      blockPublicAcls: true,
      blockPublicPolicy: true,
      ignorePublicAcls: true,
      restrictPublicBuckets: true,
    });
    assert.deepEqual(onlyOne(run, TYPES.versioning, provider).inputs, {
      bucket: id,
      versioningConfiguration: { status: "Enabled" },
    });
    assert.deepEqual(onlyOne(run, TYPES.encryption, provider).inputs, {
      bucket: id,
      rules: [{ applyServerSideEncryptionByDefault: { sseAlgorithm: "AES256" } }],
    });
    assert.deepEqual(onlyOne(run, TYPES.lifecycle, provider).inputs, {
      bucket: id,
      rules: [
        {
          id: "old-versions",
          status: "Enabled",
          filter: {},
          noncurrentVersionExpiration: { noncurrentDays: NONCURRENT_DAYS },
          abortIncompleteMultipartUpload: { daysAfterInitiation: 1 },
        },
      ],
    });
  });

  test("an IAM user whose policy allows listing that bucket and reading, writing and deleting its current objects, nothing else; its access key", async () => {
    const run = await evaluated(AWS);
    const provider = "pulumi:providers:aws";
    const bucket = onlyOne(run, TYPES.s3Bucket);
    const user = onlyOne(run, TYPES.user, provider);
    assert.equal(user.inputs.name, "webstack-test-backups");
    const policy = onlyOne(run, TYPES.userPolicy, provider);
    assert.equal(policy.inputs.user, user.inputs.name);
    const arn = String(bucket.outputs.arn);
    assert.equal(arn, `arn:aws:s3:::${String(bucket.outputs.bucket)}`);
    const document = JSON.parse(String(policy.inputs.policy)) as { Version: string; Statement: Inputs[] };
    assert.deepEqual(document, {
      Version: "2012-10-17",
      Statement: [
        { Effect: "Allow", Action: ["s3:ListBucket", "s3:GetBucketLocation"], Resource: arn },
        { Effect: "Allow", Action: ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], Resource: `${arn}/*` },
      ],
    });
    // A stolen key cannot erase the versions the bucket keeps, nor reach anything else.
    const actions = document.Statement.flatMap((s) => [s.Action].flat().map(String));
    assert.ok(!actions.includes("s3:DeleteObjectVersion"));
    assert.ok(
      actions.every((a) => !a.includes("*")),
      actions.join(", "),
    );
    assert.ok(document.Statement.every((s) => s.Effect === "Allow" && s.Resource !== "*"));
    assert.deepEqual(onlyOne(run, TYPES.accessKey, provider).inputs, { user: user.inputs.name });
  });

  test("backupBucketPolicy: the bucket's ARN for the bucket's actions, its objects' for the objects'", () => {
    const arn = "arn:aws:s3:::webstack-prod-backups-abc";
    assert.deepEqual(JSON.parse(backupBucketPolicy(arn)), {
      Version: "2012-10-17",
      Statement: [
        { Effect: "Allow", Action: ["s3:ListBucket", "s3:GetBucketLocation"], Resource: arn },
        { Effect: "Allow", Action: ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], Resource: `${arn}/*` },
      ],
    });
  });

  test("a pr-<n> stack's bucket goes with the stack, backups and all", async () => {
    const run = await runProgram(AWS, { stack: "pr-7" });
    const bucket = onlyOne(run, TYPES.s3Bucket);
    assert.equal(bucket.inputs.forceDestroy, true, "emptied on destroy");
    assert.equal(bucket.retainOnDelete, false, "deleted on destroy");
  });
});

describe("the bucket's key reaches pgBackRest's config, and only as a secret", () => {
  for (const { target, settings } of TARGETS.filter((t) => t.cloud)) {
    test(`${target}: the key's id and secret are secret Outputs, in the config of Postgres and of the backup container, and nowhere else`, async () => {
      const { built, mocks } = await runBuild(settings, {});
      const bucket = built.host.backupBucket;
      assert.ok(bucket !== undefined, "the cloud host makes a bucket");
      assert.equal(await pulumi.isSecret(bucket.accessKeyId), true);
      assert.equal(await pulumi.isSecret(bucket.secretAccessKey), true);
      const [accessKeyId, secretAccessKey, name] = await Promise.all([
        promiseOf(bucket.accessKeyId),
        promiseOf(bucket.secretAccessKey),
        promiseOf(bucket.bucket),
      ]);
      const key = target === "digitalocean" ? mocks.ofType(TYPES.spacesKey)[0] : mocks.ofType(TYPES.accessKey)[0];
      assert.deepEqual(
        [accessKeyId, secretAccessKey],
        target === "digitalocean"
          ? [key.outputs.accessKey, key.outputs.secretKey]
          : // An IAM access key's id is the resource's id (the mocks': "<name>-id").
            [`${key.name}-id`, key.outputs.secret],
      );
      const postgres = confOf(mocks.named("webstack-postgres"));
      const backup = confOf(mocks.named("webstack-backup"));
      for (const conf of [postgres, backup]) {
        assert.equal(conf.secret, true, "the config travels as a secret");
        assert.equal(conf.permissions, "0444");
        assert.match(conf.content, new RegExp(`^repo1-s3-key=${accessKeyId}$`, "m"));
        assert.match(conf.content, new RegExp(`^repo1-s3-key-secret=${secretAccessKey}$`, "m"));
        assert.match(conf.content, new RegExp(`^repo1-s3-bucket=${name}$`, "m"));
        // Spaces path-style (its TLS name is the region's, whatever the bucket is called); S3 host-style.
        const style = target === "digitalocean" ? "path" : "host";
        assert.match(conf.content, new RegExp(`^repo1-s3-uri-style=${style}$`, "m"));
      }
      assert.equal(backup.content, postgres.content, "one config for both sides");
      // Nowhere else a container shows, nor in any other file it gets.
      for (const c of mocks.ofType(CONTAINER)) {
        const others = ((c.inputs.uploads as Inputs[] | undefined) ?? []).filter((u) => u.file !== PGBACKREST_CONF);
        const visible = JSON.stringify([
          c.inputs.envs,
          c.inputs.labels,
          c.inputs.command,
          c.inputs.entrypoints,
          c.inputs.healthcheck,
          c.inputs.name,
          others,
        ]);
        for (const secret of [accessKeyId, secretAccessKey]) assert.ok(!visible.includes(secret), c.name);
      }
    });
  }

  test("the key is no stack output", async () => {
    for (const settings of [DO, AWS]) {
      const { mocks, outputs } = await evaluated(settings);
      const secrets = [
        ...mocks.ofType(TYPES.spacesKey).flatMap((k) => [k.outputs.accessKey, k.outputs.secretKey]),
        ...mocks.ofType(TYPES.accessKey).map((k) => k.outputs.secret),
      ].map(String);
      assert.equal(secrets.length, settings === DO ? 2 : 1);
      for (const secret of secrets) assert.ok(!JSON.stringify(outputs).includes(secret));
    }
  });
});

describe("the Postgres and backup containers", () => {
  for (const { target, settings, cloud } of TARGETS) {
    test(`${target}: Postgres archives every WAL segment within archiveTimeoutSeconds; the backup container, as postgres, takes the scheduled backups from a read-only data directory`, async () => {
      const { mocks } = await evaluated({ ...settings, ...SCHEDULE });
      const postgres = mocks.named("webstack-postgres");
      const command = postgres.inputs.command as string[];
      assert.equal(command[0], "postgres", "the image's entrypoint still runs, with the server's settings");
      const settingsOf = (args: string[]) => args.filter((_, i) => args[i - 1] === "-c");
      assert.deepEqual(settingsOf(command), [
        "archive_mode=on",
        "archive_command=pgbackrest --stanza=webstack archive-push %p",
        "archive_timeout=45",
      ]);

      const backup = mocks.named("webstack-backup");
      assert.equal(backup.inputs.name, "webstack-test-backup");
      assert.equal(backup.inputs.user, "postgres");
      assert.equal(labelsOf(backup)["webstack.role"], "backup");
      // The same image as Postgres: one pgBackRest version on both sides.
      assert.equal(backup.inputs.image, postgres.inputs.image);
      assert.ok(backup.dependencies.includes(postgres.urn), "after Postgres");
      const env = envOf(backup);
      assert.ok(env.includes("BACKUP_FULL_DAYS=3"), env.join(" "));
      assert.ok(env.includes("BACKUP_DIFF_HOURS=12"), env.join(" "));
      assert.ok(env.includes("BACKUP_STANZA=webstack"), env.join(" "));
      assert.deepEqual((backup.inputs.entrypoints as string[]).slice(0, 2), ["/bin/sh", "-c"]);
      assert.deepEqual((backup.inputs.healthcheck as { tests: string[] }).tests.slice(0, 3), ["CMD", "/bin/sh", "-c"]);
      assert.deepEqual(
        [backup.inputs.restart, backup.inputs.wait, backup.inputs.attach],
        ["unless-stopped", false, undefined],
        "long-running; a bucket outage never holds up an update",
      );
      assert.deepEqual(backup.inputs.capabilities, { drops: ["ALL"] });
      assert.deepEqual(backup.inputs.securityOpts, ["no-new-privileges:true"]);
      assert.deepEqual([backup.inputs.memory, backup.inputs.memorySwap, backup.inputs.cpuShares], [128, 128, 512]);
      assert.deepEqual(Object.keys(backup.inputs.tmpfs as Inputs), ["/tmp"]);

      // Postgres's data read-only, its socket, and locally the repository's volume, in both.
      const socket = ["webstack-test-postgres-socket", "/var/run/postgresql", false];
      const repository = cloud ? [] : [["webstack-test-backups", "/var/lib/pgbackrest", false]];
      assert.deepEqual(mountsOf(backup), [
        ["webstack-test-postgres-data", "/var/lib/postgresql/data", true],
        socket,
        ...repository,
      ]);
      assert.deepEqual(mountsOf(postgres), [
        ["webstack-test-postgres-data", "/var/lib/postgresql/data", false],
        socket,
        ...repository,
      ]);

      // The retention and the archive's settings come from the config too.
      const conf = confOf(postgres).content;
      assert.match(conf, /^repo1-retention-full=6$/m);
      assert.match(conf, /^repo1-retention-diff=9$/m);
      assert.match(conf, new RegExp(`^repo1-type=${cloud ? "s3" : "posix"}$`, "m"));
    });

    test(`${target}: no secret of the backups (passphrase${cloud ? ", bucket key" : ""}) nor any password in either container's environment, command, entrypoint, labels or health check`, async () => {
      const { mocks } = await evaluated(settings);
      const cipher = String(mocks.named("webstack-backup-cipher").outputs.result);
      assert.deepEqual(mocks.named("webstack-backup-cipher").inputs, { length: 64, special: false });
      const secrets = [
        cipher,
        ...["webstack-postgres-password", "webstack-redis-password", "webstack-admin-token"].map((n) =>
          String(mocks.named(n).outputs.result),
        ),
        ...mocks.ofType(TYPES.spacesKey).flatMap((k) => [String(k.outputs.accessKey), String(k.outputs.secretKey)]),
        ...mocks.ofType(TYPES.accessKey).flatMap((k) => [`${k.name}-id`, String(k.outputs.secret)]),
      ];
      assert.equal(secrets.length, 4 + (cloud ? 2 : 0));
      for (const name of ["webstack-postgres", "webstack-backup"]) {
        const c = mocks.named(name);
        for (const field of ["envs", "command", "entrypoints", "labels", "healthcheck"]) {
          const shown = JSON.stringify(c.inputs[field] ?? null);
          for (const secret of secrets) assert.ok(!shown.includes(secret), `${name} shows a secret in ${field}`);
        }
      }
      // The passphrase is in the config alone, which is a secret upload.
      const conf = confOf(mocks.named("webstack-backup"));
      assert.match(conf.content, new RegExp(`^repo1-cipher-pass=${cipher}$`, "m"));
      assert.equal(conf.secret, true);
    });
  }

  test("local: the repository is a volume both containers mount; the backup container is on no network, and there is no backup network nor any bucket", async () => {
    const { mocks } = await evaluated(LOCAL);
    const backup = mocks.named("webstack-backup");
    assert.equal(backup.inputs.networksAdvanced, undefined);
    assert.equal(backup.inputs.networkMode, "none");
    assert.deepEqual(networksOf(mocks.named("webstack-postgres")), [["webstack-test-back", ["postgres"]]]);
    assert.deepEqual(
      mocks.ofType("docker:index/network:Network").map((n) => n.inputs.name),
      ["webstack-test", "webstack-test-back"],
    );
    const volume = mocks.named("webstack-backups");
    assert.equal(volume.inputs.name, "webstack-test-backups");
    assert.deepEqual(labelsOf(volume), { "webstack.stack": "test", "webstack.role": "backups" });
    assert.deepEqual(
      mocks.resources.filter((r) => /^(digitalocean|aws):/.test(r.type)),
      [],
      "no cloud resource on the local target",
    );
  });

  for (const { target, settings } of TARGETS.filter((t) => t.cloud)) {
    test(`${target}: Postgres and the backup container reach the bucket over the backup network, which has a way out; no backups volume`, async () => {
      const { mocks } = await evaluated(settings);
      assert.deepEqual(networksOf(mocks.named("webstack-postgres")), [
        ["webstack-test-back", ["postgres"]],
        ["webstack-test-backup", []],
      ]);
      const backup = mocks.named("webstack-backup");
      assert.deepEqual(networksOf(backup), [["webstack-test-backup", []]]);
      assert.equal(backup.inputs.networkMode, undefined);
      const network = mocks.named("webstack-backup-network");
      assert.equal(network.inputs.name, "webstack-test-backup");
      assert.equal(network.inputs.internal, undefined, "not internal: the bucket is outside");
      // Nothing else is on it.
      const onIt = mocks
        .ofType(CONTAINER)
        .filter((c) => networksOf(c).some(([name]) => name === "webstack-test-backup"))
        .map((c) => c.name);
      assert.deepEqual(onIt, ["webstack-postgres", "webstack-backup"]);
      assert.deepEqual(
        mocks.ofType("docker:index/volume:Volume").filter((v) => v.inputs.name === "webstack-test-backups"),
        [],
      );
    });
  }

  test("Postgres's image is built on the host from postgres/image over the configured Postgres image, tagged by what it is built from; Postgres and the backup container run it", async () => {
    const { mocks } = await evaluated(LOCAL);
    const build = mocks.named("webstack-postgres-build");
    const context = path.join(__dirname, "..", "..", "postgres", "image");
    assert.deepEqual(build.inputs.build, {
      context,
      dockerfile: path.join(context, "Dockerfile"),
      args: { POSTGRES_IMAGE: DEFAULT_IMAGES.postgresImage },
      builderVersion: "BuilderV1",
    });
    assert.equal(build.inputs.skipPush, true);
    assert.match(String(build.inputs.imageName), /^webstack-test-postgres:[0-9a-f]{12}$/);
    const base = mocks.named("webstack-postgres-image");
    assert.deepEqual(base.inputs, { name: DEFAULT_IMAGES.postgresImage, keepLocally: true });
    assert.ok(build.dependencies.includes(base.urn), "built once its base image is on the host");
    const local = mocks.named("webstack-postgres-local");
    // Removed with the stack, and when a new image replaces it.
    assert.deepEqual(local.inputs, { name: build.inputs.imageName, keepLocally: false });
    for (const name of ["webstack-postgres", "webstack-backup"]) {
      assert.equal(mocks.named(name).inputs.image, build.outputs.repoDigest, `${name} runs the built image`);
      assert.ok(mocks.named(name).dependencies.includes(local.urn), `${name} after the image is on the host`);
    }
    // Another base image is another tag: the rebuild shows in a preview.
    const other = (await runProgram({ postgresImage: "postgres:17.7-bookworm" })).mocks.named(
      "webstack-postgres-build",
    );
    assert.deepEqual((other.inputs.build as { args: unknown }).args, { POSTGRES_IMAGE: "postgres:17.7-bookworm" });
    assert.match(String(other.inputs.imageName), /^webstack-test-postgres:[0-9a-f]{12}$/);
    assert.notEqual(other.inputs.imageName, build.inputs.imageName);
  });
});

describe("a throwaway stack with backups switched off", () => {
  for (const { target, settings } of TARGETS) {
    test(`${target}: no backup container, bucket, key, passphrase, socket or backups volume, nor backup network; the stock Postgres image as it is`, async () => {
      const { mocks } = await runProgram({ ...settings, backups: "false" }, { stack: "pr-7" });
      const names = mocks.resources.map((r) => r.name);
      for (const gone of [
        "webstack-backup",
        "webstack-backup-cipher",
        "webstack-backup-network",
        "webstack-postgres-socket",
        "webstack-backups",
        "webstack-postgres-build",
        "webstack-postgres-local",
      ]) {
        assert.ok(!names.includes(gone), `${gone} is registered`);
      }
      assert.deepEqual(
        mocks.resources.filter((r) => /backup/.test(r.name) || /spaces|s3\/|iam\//.test(r.type)).map((r) => r.name),
        [],
      );
      assert.deepEqual(
        mocks
          .ofType(CONTAINER)
          .map((c) => c.inputs.name)
          .filter((n) => /backup/.test(String(n))),
        [],
      );
      assert.deepEqual(
        mocks.ofType("docker:index/image:Image").map((i) => i.name),
        ["app-image"],
      );
      const postgres = mocks.named("webstack-postgres");
      assert.equal(postgres.inputs.image, mocks.named("webstack-postgres-image").outputs.imageId, "the stock image");
      assert.equal(postgres.inputs.command, undefined, "the image's own command: no archiving");
      assert.deepEqual(mountsOf(postgres), [["webstack-pr-7-postgres-data", "/var/lib/postgresql/data", false]]);
      assert.deepEqual(
        ((postgres.inputs.uploads as Inputs[]) ?? []).map((u) => u.file),
        ["/run/secrets/postgres-password"],
      );
      assert.deepEqual(networksOf(postgres), [["webstack-pr-7-back", ["postgres"]]]);
      assert.deepEqual(
        mocks
          .ofType("docker:index/network:Network")
          .map((n) => n.inputs.name)
          .sort(),
        ["webstack-pr-7", "webstack-pr-7-back"],
        "front and back only",
      );
    });
  }

  test("the same pr-<n> stack without the setting has its backups", async () => {
    const { mocks } = await runProgram(DO, { stack: "pr-7" });
    assert.equal(mocks.named("webstack-backup").inputs.name, "webstack-pr-7-backup");
    assert.equal(mocks.ofType(TYPES.spacesBucket).length, 1);
  });
});
