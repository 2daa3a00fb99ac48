// The resource graph of every target, from the real index.ts under Pulumi's mocks.
import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import * as path from "node:path";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { inspect } from "node:util";
import { imageRevision } from "../../components/app-image";
import { DEFAULT_IMAGES, parseConfig } from "../../components/config";
import { pgbackrestConf } from "../../components/specs/backups";
import { pullCommand } from "../../components/specs/cloud-init";
import { hashTree } from "../../components/specs/release";
import {
  dependsOn,
  evaluated,
  isSecretValue,
  MOCK_BOUND_PORT,
  promiseOf,
  RecordingMocks,
  Registered,
  runBuild,
  runProgram,
} from "./support/mocks";

const CONTAINER = "docker:index/container:Container";
const APP_DIR = path.join(__dirname, "..", "..", "app");
const ADMIN = '["198.51.100.0/24"]';

const TARGETS: { target: string; settings: Record<string, string>; cloud: boolean }[] = [
  { target: "local", settings: {}, cloud: false },
  { target: "digitalocean", settings: { target: "digitalocean", region: "nyc3", adminCidrs: ADMIN }, cloud: true },
  { target: "aws", settings: { target: "aws", region: "us-east-1", adminCidrs: ADMIN }, cloud: true },
];

type Inputs = Record<string, unknown>;
const containers = (resources: Registered[]) => resources.filter((r) => r.type === CONTAINER);
const envOf = (c: Registered) => (c.inputs.envs as string[] | undefined) ?? [];
// The components name things with plain strings; anything else is shown for what it is, not as "[object Promise]".
const plain = (value: unknown): string => (typeof value === "string" ? value : inspect(value));
/** The one-off runs: the files runs, the release's migration run and the Postgres image's check. */
const isOneOff = (c: Registered) =>
  /-files-(app|nginx)$|-migrate-[^-]+$|-postgres-check-[0-9a-f]{12}$/.test(String(c.inputs.name));
/**
 * The Postgres image's check is named after what it checks: the configured image and, with
 * backups (on every stack here), the Dockerfile Postgres's image is built with over it.
 */
const POSTGRES_DOCKERFILE = readFileSync(path.join(__dirname, "..", "..", "postgres", "image", "Dockerfile"), "utf8");
const postgresCheckName = (prefix: string) =>
  `${prefix}-postgres-check-${createHash("sha256")
    .update(`${DEFAULT_IMAGES.postgresImage} ${POSTGRES_DOCKERFILE}`)
    .digest("hex")
    .slice(0, 12)}`;
const replicasOf = (resources: Registered[]) =>
  containers(resources).filter((c) => /-app-.+-[0-9]+$/.test(String(c.inputs.name)));
/** The generated Postgres password, Redis password and admin token, in that order. */
const generatedSecrets = (mocks: RecordingMocks) =>
  ["webstack-postgres-password", "webstack-redis-password", "webstack-admin-token"].map((n) =>
    String(mocks.named(n).outputs.result),
  );

/**
 * The pgbackrest.conf a stack with default backup settings gets: a volume locally, else the
 * host's bucket with its key, as the mocks made them; the passphrase is the generated one.
 */
function expectedPgbackrestConf(mocks: RecordingMocks, target: string): string {
  const schedule = parseConfig({}).backups!;
  const cipherPass = String(mocks.named("webstack-backup-cipher").outputs.result);
  if (target === "local") return pgbackrestConf({ kind: "volume" }, schedule, { cipherPass });
  const bucket = mocks.named("host-backups");
  const key = mocks.named("host-backups-key");
  const [name, region, endpoint, accessKeyId, secretAccessKey] =
    target === "digitalocean"
      ? [bucket.outputs.name, "nyc3", "nyc3.digitaloceanspaces.com", key.outputs.accessKey, key.outputs.secretKey]
      : // An IAM access key's id is the resource's id (the mocks': "<name>-id").
        [bucket.outputs.bucket, "us-east-1", "s3.us-east-1.amazonaws.com", `${key.name}-id`, key.outputs.secret];
  // Spaces is reached path-style (the TLS name is the region's, whatever the bucket is called); S3 host-style.
  const pathStyle = target === "digitalocean";
  return pgbackrestConf({ kind: "bucket", bucket: String(name), endpoint, region, pathStyle }, schedule, {
    cipherPass,
    accessKeyId: String(accessKeyId),
    secretAccessKey: String(secretAccessKey),
  });
}

for (const { target, settings, cloud } of TARGETS) {
  describe(`target ${target}`, () => {
    // The default count: 3 locally, the VM's vCPUs (at least 2, at most 3) on a cloud host.
    const replicas = parseConfig(settings).replicas;
    test("registers the stack's resources: replicas + 4 services (one the backup container), 2 files runs, a migration run, the Postgres image's check, 2 networks (3 on cloud: the way to the bucket), 6 volumes (5 on cloud: no backups volume), two built images (the app's, Postgres's)", async () => {
      const { mocks, outputs } = await evaluated(settings);
      const count = (type: string) => mocks.ofType(type).length;
      assert.equal(count(CONTAINER), replicas + 4 + 2 + 1 + 1);
      assert.equal(count("docker:index/network:Network"), cloud ? 3 : 2);
      assert.equal(count("docker:index/volume:Volume"), cloud ? 5 : 6);
      assert.equal(count("docker:index/image:Image"), 2);
      // The three stock images, the app's release tag, and the Postgres image built with pgBackRest.
      assert.equal(count("docker:index/remoteImage:RemoteImage"), 3 + 1 + 1);
      const release = String(outputs.release);
      assert.deepEqual(
        containers(mocks.resources)
          .map((c) => c.inputs.name)
          .sort(),
        [
          "webstack-test-files-app",
          `webstack-test-migrate-${release}`,
          ...Array.from({ length: replicas }, (_, i) => `webstack-test-app-${release}-${i + 1}`),
          "webstack-test-nginx",
          "webstack-test-files-nginx",
          "webstack-test-postgres",
          postgresCheckName("webstack-test"),
          "webstack-test-backup",
          "webstack-test-redis",
        ].sort(),
      );
      assert.deepEqual(
        mocks
          .ofType("docker:index/network:Network")
          .map((n) => n.inputs.name)
          .sort(),
        ["webstack-test", "webstack-test-back", ...(cloud ? ["webstack-test-backup"] : [])],
      );
      assert.deepEqual(
        mocks
          .ofType("docker:index/volume:Volume")
          .map((v) => v.inputs.name)
          .sort(),
        [
          ...(cloud ? [] : ["webstack-test-backups"]),
          "webstack-test-files-app",
          "webstack-test-files-nginx",
          "webstack-test-postgres-data",
          "webstack-test-postgres-socket",
          "webstack-test-redis-data",
        ],
      );
      assert.deepEqual(
        mocks
          .ofType("docker:index/image:Image")
          .map((i) => i.name)
          .sort(),
        ["app-image", "webstack-postgres-build"],
      );
      if (target === "local") {
        assert.deepEqual(
          mocks.resources
            .map((r) => r.type)
            .filter((t) => !t.startsWith("docker:") && !t.startsWith("webstack:"))
            .sort(),
          [
            // The release images' removal with the stack, and their prune after each release.
            ...Array<string>(2).fill("command:local:Command"),
            "pulumi:providers:docker",
            // The two passwords, the admin token and the backups' passphrase.
            ...Array<string>(4).fill("random:index/randomPassword:RandomPassword"),
          ],
        );
      }
    });

    test("the replica count follows webstack:replicas", async () => {
      const { mocks } = await runProgram({ ...settings, replicas: "5" });
      assert.equal(replicasOf(mocks.resources).length, 5);
    });

    test("only nginx publishes a port, and only the configured one", async () => {
      const { mocks } = await evaluated(settings);
      const publishing = containers(mocks.resources).filter(
        (c) => Array.isArray(c.inputs.ports) && c.inputs.ports.length > 0,
      );
      assert.deepEqual(
        publishing.map((c) => c.inputs.name),
        ["webstack-test-nginx"],
      );
      const expected = cloud
        ? [{ internal: 80, external: 80, ip: "0.0.0.0", protocol: "tcp" }]
        : [{ internal: 80, external: 8080, ip: "127.0.0.1", protocol: "tcp" }];
      assert.deepEqual(
        (publishing[0].inputs.ports as Inputs[]).map((p) => ({ protocol: "tcp", ...p })),
        expected,
      );
    });

    test("every service has a health check, a restart policy and log rotation, and all but the backup container wait until healthy; one-off runs end", async () => {
      const { mocks } = await evaluated(settings);
      for (const c of containers(mocks.resources)) {
        assert.deepEqual(c.inputs.logOpts, { "max-size": "10m", "max-file": "3" }, `${c.name} logs`);
        if (isOneOff(c)) {
          // Waited for until it ends; its exit code (and its log, for the error) gates what needs it.
          assert.deepEqual(
            [c.inputs.attach, c.inputs.mustRun, c.inputs.logs, c.inputs.restart, c.inputs.wait],
            [true, false, true, "no", undefined],
            c.name,
          );
          assert.equal(c.inputs.healthcheck, undefined);
          continue;
        }
        const health = c.inputs.healthcheck as Inputs;
        assert.ok(Array.isArray(health.tests) && health.tests.length >= 2, `${c.name} health check`);
        assert.match(String(health.tests[0]), /^CMD(-SHELL)?$/);
        assert.equal(c.inputs.restart, "unless-stopped", `${c.name} restart`);
        // The backup container's health is the backups': a bucket that cannot be reached must
        // not hold up a release, so it is the one service not waited for.
        assert.equal(c.inputs.wait, c.name !== "webstack-backup", `${c.name} wait`);
      }
      assert.equal(mocks.named("webstack-backup").inputs.wait, false);
    });

    test("app replicas run as a non-root user with the app alias and their secrets as files", async () => {
      const { mocks } = await evaluated(settings);
      for (const app of replicasOf(mocks.resources)) {
        assert.equal(app.inputs.user, "10001:10001");
        assert.deepEqual(
          (app.inputs.networksAdvanced as Inputs[]).map((n) => [n.name, n.aliases]),
          [
            ["webstack-test", ["app"]],
            ["webstack-test-back", []],
          ],
        );
        assert.deepEqual([...envOf(app)].sort(), [
          "ADMIN_TOKEN_FILE=/run/secrets/admin-token",
          "DATABASE_URL_FILE=/run/secrets/database-url",
          "NODE_OPTIONS=--max-old-space-size=192",
          "PORT=3000",
          "REDIS_URL_FILE=/run/secrets/redis-url",
          `REPLICA_ID=${String(app.inputs.name)}`,
          "SHUTDOWN_GRACE_MS=10000",
        ]);
        assert.match(app.inputs.image as string, /^sha256:[0-9a-f]{64}$/, "pinned to what was built");
      }
    });

    test("secrets appear in no environment, label, command, name, health check or upload path, nor in any output but adminToken and backupPassphrase (both secret)", async () => {
      const { mocks, outputs, secretOutputs } = await evaluated(settings);
      const passphrase = String(mocks.named("webstack-backup-cipher").outputs.result);
      const secrets = [...generatedSecrets(mocks), passphrase];
      assert.equal(secrets.length, 4, "the two passwords, the admin token and the backups' passphrase were generated");
      for (const c of containers(mocks.resources)) {
        const uploadPaths = ((c.inputs.uploads as Inputs[] | undefined) ?? []).map((u) => u.file);
        const visible = JSON.stringify([
          c.inputs.envs,
          c.inputs.labels,
          c.inputs.command,
          c.inputs.entrypoints,
          c.inputs.name,
          c.inputs.healthcheck,
          uploadPaths,
        ]);
        for (const secret of secrets) assert.ok(!visible.includes(secret), `${c.name} shows a secret`);
      }
      const { adminToken, backupPassphrase, ...others } = outputs;
      for (const secret of secrets) assert.ok(!JSON.stringify(others).includes(secret));
      assert.ok(secrets.includes(String(adminToken)), "adminToken is the generated token");
      assert.equal(backupPassphrase, passphrase, "backupPassphrase is the one pgBackRest encrypts with");
      assert.deepEqual(secretOutputs.sort(), ["adminToken", "backupPassphrase"]);
    });

    test("secret files reach the engine marked secret: Postgres's password, pgBackRest's config (Postgres's and the backup container's), Redis's config, the app's URLs and token; TLS and SSH keys", async () => {
      const { mocks } = await evaluated(settings);
      const [postgresPassword, redisPassword, adminToken] = generatedSecrets(mocks);
      const secretUploads = (name: string) => {
        const c = mocks.named(name);
        const raw = c.raw.uploads;
        const files = c.inputs.uploads as Inputs[];
        // The SDK may mark the whole list secret rather than each field.
        return files.map((f, i) => ({
          file: f.file,
          permissions: f.permissions,
          content: String(f.content),
          secret: isSecretValue(raw) || (Array.isArray(raw) && isSecretValue((raw[i] as Inputs).content)),
        }));
      };
      // Postgres's archive-push and the backup container read one config: the bucket's key (on a
      // cloud target) and the repository's passphrase are in it, so it is a secret upload.
      const pgbackrest = {
        file: "/etc/pgbackrest/pgbackrest.conf",
        permissions: "0444",
        content: expectedPgbackrestConf(mocks, target),
        secret: true,
      };
      assert.deepEqual(secretUploads("webstack-postgres"), [
        { file: "/run/secrets/postgres-password", permissions: "0400", content: postgresPassword, secret: true },
        pgbackrest,
      ]);
      assert.deepEqual(secretUploads("webstack-backup"), [pgbackrest]);
      const [redisConf] = secretUploads("webstack-redis");
      assert.deepEqual(
        [redisConf.file, redisConf.permissions, redisConf.secret],
        ["/usr/local/etc/redis/redis.conf", "0444", true],
      );
      assert.match(redisConf.content, new RegExp(`^requirepass ${redisPassword}$`, "m"));
      assert.deepEqual(secretUploads("webstack-files-app-run"), [
        {
          file: "/webstack/files/database-url",
          permissions: "0400",
          content: `postgres://webstack:${postgresPassword}@postgres:5432/webstack`,
          secret: true,
        },
        {
          file: "/webstack/files/redis-url",
          permissions: "0400",
          content: `redis://:${redisPassword}@redis:6379`,
          secret: true,
        },
        { file: "/webstack/files/admin-token", permissions: "0400", content: adminToken, secret: true },
      ]);
      if (cloud) {
        assert.ok(isSecretValue(mocks.named("host-engine-ready").raw.stdin), "TLS material on stdin is secret");
        assert.ok(isSecretValue(mocks.named("host-engine-docker").raw.keyMaterial), "client key is secret");
        const connection = mocks.named("host-engine-ready").raw.connection as Inputs;
        assert.ok(isSecretValue(connection.privateKey) || isSecretValue(connection), "SSH key is secret");
      }
    });

    test("logical names are prefixed by their component and stable across evaluations", async () => {
      const first = await runProgram(settings);
      const second = await runProgram(settings);
      for (const r of first.mocks.resources) {
        assert.match(r.name, /^(host|app|webstack)(-|$)/, `${r.type} ${r.name}`);
      }
      const snapshot = (resources: Registered[]) =>
        resources
          .map((r) => ({ type: r.type, name: r.name, inputs: r.inputs }))
          .sort((a, b) => `${a.type}${a.name}`.localeCompare(`${b.type}${b.name}`));
      assert.deepEqual(snapshot(second.mocks.resources), snapshot(first.mocks.resources));
    });

    test("the passwords and the admin token are Pulumi secrets, and every secret file's content too", async () => {
      const uploads: { name: string; uploads: docker.ContainerArgs["uploads"] }[] = [];
      const capture = (args: docker.ContainerArgs) => uploads.push({ name: plain(args.name), uploads: args.uploads });
      const { built } = await runBuild(settings, {
        postgres: capture,
        redis: capture,
        files: capture,
        backup: capture,
      });
      for (const secret of [built.stack.postgresPassword, built.stack.redisPassword, built.stack.adminToken]) {
        assert.equal(await pulumi.isSecret(secret), true);
      }
      assert.deepEqual(uploads.map((u) => u.name).sort(), [
        "webstack-test-backup",
        "webstack-test-files-app",
        "webstack-test-files-nginx",
        "webstack-test-postgres",
        "webstack-test-redis",
      ]);
      for (const { name, uploads: files } of uploads.filter((u) => u.name !== "webstack-test-files-nginx")) {
        assert.ok(Array.isArray(files) && files.length > 0, `${name} has files`);
        for (const f of files as docker.types.input.ContainerUpload[]) {
          assert.ok(pulumi.Output.isInstance(f.content), `${name} ${plain(f.file)} is an Output`);
          assert.equal(
            await pulumi.isSecret(f.content as pulumi.Output<string>),
            true,
            `${name} ${plain(f.file)} is secret`,
          );
        }
      }
    });

    if (cloud) {
      test("every Docker resource waits for the readiness command", async () => {
        const opts: { name: string; dependsOn: unknown }[] = [];
        const capture = (args: docker.ContainerArgs, o: pulumi.CustomResourceOptions) =>
          opts.push({ name: plain(args.name), dependsOn: o.dependsOn });
        const { mocks, built } = await runBuild(settings, {
          postgres: capture,
          redis: capture,
          app: capture,
          nginx: capture,
          backup: capture,
          files: capture,
          postgresCheck: capture,
          network: (a, o) => opts.push({ name: plain(a.name), dependsOn: o.dependsOn }),
          volume: (a, o) => opts.push({ name: plain(a.name), dependsOn: o.dependsOn }),
        });
        const [ready] = built.host.ready;
        assert.ok(ready instanceof pulumi.CustomResource);
        // The replicas, Postgres, Redis, nginx, the backup container, 2 files runs, the Postgres
        // image's check, 3 networks (front, back, the backup's way out), 5 volumes (Postgres's data
        // and socket, Redis's data, the 2 files runs').
        assert.equal(opts.length, replicas + 4 + 2 + 1 + 3 + 5);
        for (const o of opts) {
          assert.ok(
            Array.isArray(o.dependsOn) && o.dependsOn.includes(ready),
            `${o.name} depends on the readiness command`,
          );
        }
        const readyAt = mocks.named("host-engine-ready").order;
        const onEngine = mocks.resources.filter((r) => r.type.startsWith("docker:"));
        assert.ok(onEngine.length >= 10);
        for (const r of onEngine) assert.ok(r.order > readyAt, `${r.name} registered after the readiness command`);
        assert.ok(mocks.named("host-engine-docker").order > readyAt, "the engine's provider is configured after it");
        assert.equal(
          mocks.named("host-engine-docker").inputs.host,
          `tcp://${target === "aws" ? "203.0.113.20" : "203.0.113.10"}:2376`,
        );
      });

      test("a replaced VM gets its engine prepared again and every Docker object recreated", async () => {
        const { mocks } = await evaluated(settings);
        const vmId = target === "aws" ? "i-0123456789abcdef0" : "123456";
        const triggers = mocks.named("host-engine-ready").inputs.triggers as string[];
        assert.equal(triggers.length, 2);
        assert.equal(triggers[0], vmId);
        assert.match(triggers[1], /BEGIN CERTIFICATE/);
        const labelled = mocks.resources.filter((r) =>
          ["docker:index/container:Container", "docker:index/network:Network", "docker:index/volume:Volume"].includes(
            r.type,
          ),
        );
        // The replicas and 4 long-running services (the backup container one), 2 files runs, the
        // migration run, the Postgres image's check, 3 networks (the backup's way out one), 5 volumes
        // (Postgres's socket one).
        assert.equal(labelled.length, replicas + 4 + 2 + 1 + 1 + 3 + 5);
        for (const r of labelled) {
          assert.deepEqual(
            (r.inputs.labels as Inputs[]).filter((l) => l.label === "webstack.vm"),
            [{ label: "webstack.vm", value: vmId }],
            `${r.name} is labelled with its VM`,
          );
        }
        // Another VM behind the same IP: the readiness command and every Docker object change.
        const other = await runProgram(settings, {
          mocks: new RecordingMocks({ vmId: target === "aws" ? "i-0fedcba9876543210" : "654321" }),
        });
        assert.notDeepEqual(other.mocks.named("host-engine-ready").inputs.triggers, triggers);
        for (const r of labelled) {
          assert.notDeepEqual(
            other.mocks.named(r.name).inputs.labels,
            r.inputs.labels,
            `${r.name} changes with the VM`,
          );
        }
      });

      test("the cloud host: firewall rules, TLS material never in user data (the host key only, secret), stable public IP output", async () => {
        const { mocks, outputs } = await evaluated(settings);
        const ip = target === "aws" ? "203.0.113.20" : "203.0.113.10";
        assert.equal(outputs.publicIp, ip);
        assert.equal(outputs.url, `http://${ip}`);
        if (target === "digitalocean") {
          const firewall = mocks.ofType("digitalocean:index/firewall:Firewall")[0];
          assert.deepEqual(firewall.inputs.inboundRules, [
            { protocol: "tcp", portRange: "80", sourceAddresses: ["0.0.0.0/0", "::/0"] },
            { protocol: "tcp", portRange: "22", sourceAddresses: ["198.51.100.0/24"] },
            { protocol: "tcp", portRange: "2376", sourceAddresses: ["198.51.100.0/24"] },
          ]);
          assert.deepEqual([firewall.inputs.tags, firewall.inputs.dropletIds], [["webstack-test"], undefined]);
          assert.deepEqual(
            mocks.ofType("digitalocean:index/volumeAttachment:VolumeAttachment")[0].inputs.dropletId,
            123456,
          );
        } else {
          const group = mocks.ofType("aws:ec2/securityGroup:SecurityGroup")[0];
          assert.deepEqual(
            (group.inputs.ingress as Inputs[]).map((r) => [r.fromPort, r.toPort, r.cidrBlocks, r.ipv6CidrBlocks]),
            [
              [80, 80, ["0.0.0.0/0"], ["::/0"]],
              [22, 22, ["198.51.100.0/24"], []],
              [2376, 2376, ["198.51.100.0/24"], []],
            ],
          );
          const instance = mocks.ofType("aws:ec2/instance:Instance")[0];
          assert.deepEqual(instance.inputs.metadataOptions, {
            httpTokens: "required",
            httpEndpoint: "enabled",
            httpPutResponseHopLimit: 1,
          });
          assert.equal(instance.inputs.ami, "ami-0123456789abcdef0");
          assert.equal(instance.inputs.availabilityZone, "us-east-1a");
          assert.equal(mocks.ofType("aws:ebs/volume:Volume")[0].inputs.availabilityZone, "us-east-1a");
        }
        const vm = mocks.resources.find(
          (r) => r.type === "aws:ec2/instance:Instance" || r.type === "digitalocean:index/droplet:Droplet",
        )!;
        const userData = String(vm.inputs.userData);
        assert.ok(userData.startsWith("#cloud-config\n"));
        // The host's own SSH key, and no key of the Docker API's TLS (nor the deployer's).
        assert.deepEqual(userData.match(/-----BEGIN [A-Z ]*PRIVATE KEY-----\\n[0-9a-f]+/g), [
          `-----BEGIN OPENSSH PRIVATE KEY-----\\n${String((mocks.named("host-host-key").outputs.privateKeyOpenssh as string).split("\n")[1])}`,
        ]);
        assert.ok(isSecretValue(vm.raw.userData), "user data is a secret");
        const ready = mocks.named("host-engine-ready");
        assert.ok(!/PRIVATE KEY/.test(String(ready.inputs.create)), "no key on the command line");
        assert.match(String(ready.inputs.stdin), /BEGIN PRIVATE KEY/, "server key travels on stdin");
        const provider = mocks.named("host-engine-docker");
        assert.match(String(provider.inputs.keyMaterial), /BEGIN PRIVATE KEY/);
        assert.match(String(provider.inputs.caMaterial), /BEGIN CERTIFICATE/);
      });
    } else {
      test("Docker objects on the local engine carry no VM label", async () => {
        const { mocks } = await evaluated(settings);
        for (const r of containers(mocks.resources)) {
          assert.ok(!(r.inputs.labels as Inputs[]).some((l) => l.label === "webstack.vm"), r.name);
        }
      });

      test("the local host publishes on 127.0.0.1 and reports no public IP", async () => {
        const { outputs } = await runProgram({ httpPort: "18080" });
        assert.equal(outputs.url, "http://127.0.0.1:18080");
        const everywhere = await runProgram({ httpBindAddress: "0.0.0.0" });
        assert.equal(everywhere.outputs.url, "http://127.0.0.1:8080");
        assert.equal(outputs.publicIp, undefined);
      });

      test("httpPort 0 publishes nginx without a host port, and url reports the port Docker bound", async () => {
        const { mocks, outputs } = await runProgram({ httpPort: "0" });
        const nginx = mocks.named("webstack-nginx");
        assert.deepEqual(nginx.inputs.ports, [{ internal: 80, ip: "127.0.0.1" }], "no external port: Docker picks one");
        assert.equal(outputs.url, `http://127.0.0.1:${MOCK_BOUND_PORT}`);
      });
    }
  });
}

describe("releases", () => {
  test("a given release names the replicas and the migration run; another release gives them new logical names, same other resources", async () => {
    const a = await runProgram({ release: "0123456789abcdef0123" });
    const b = await runProgram({ release: "fedcba9876" });
    const apps = (r: Registered[]) =>
      containers(r)
        .filter((c) => /^webstack-(app|migrate)-/.test(c.name))
        .map((c) => c.name)
        .sort();
    assert.deepEqual(apps(a.mocks.resources), [
      "webstack-app-0123456789ab-1",
      "webstack-app-0123456789ab-2",
      "webstack-app-0123456789ab-3",
      "webstack-migrate-0123456789ab",
    ]);
    assert.deepEqual(apps(b.mocks.resources), [
      "webstack-app-fedcba9876-1",
      "webstack-app-fedcba9876-2",
      "webstack-app-fedcba9876-3",
      "webstack-migrate-fedcba9876",
    ]);
    const others = (r: Registered[]) =>
      r
        .filter((x) => !/^webstack-(app|migrate)-/.test(x.name))
        .map((x) => x.name)
        .sort();
    assert.deepEqual(others(a.mocks.resources), others(b.mocks.resources));
    assert.equal(a.outputs.release, "0123456789ab");
  });

  test("without a release, the id changes when the replica spec changes", async () => {
    const a = await runProgram({});
    const b = await runProgram({ shutdownGraceSeconds: "20" });
    assert.match(String(a.outputs.release), /^[0-9a-f]{12}$/);
    assert.notEqual(a.outputs.release, b.outputs.release);
  });
});

describe("image registries", () => {
  test("aws with imageRegistry cloud pushes to a stack ECR repository and the host pulls it by digest over SSH", async () => {
    const { mocks, outputs } = await runProgram({
      target: "aws",
      region: "us-east-1",
      adminCidrs: ADMIN,
      imageRegistry: "cloud",
    });
    const image = mocks.ofType("docker:index/image:Image")[0];
    assert.equal(image.inputs.skipPush, false);
    assert.match(
      String(image.inputs.imageName),
      /^123456789012\.dkr\.ecr\.us-east-1\.amazonaws\.com\/webstack-test-app:[0-9a-f]{12}$/,
    );
    assert.deepEqual(image.inputs.registry, {
      server: "123456789012.dkr.ecr.us-east-1.amazonaws.com",
      username: "AWS",
      password: "ecr-token",
    });
    const digest = String(image.outputs.repoDigest);
    assert.match(digest, /^123456789012\.dkr\.ecr\.us-east-1\.amazonaws\.com\/webstack-test-app@sha256:[0-9a-f]{64}$/);
    const pull = mocks.named("app-pull");
    assert.equal(pull.inputs.create, pullCommand(digest, "ecr-login", String(outputs.release)));
    assert.ok(pull.order > mocks.named("host-engine-ready").order, "pulls once the engine is ready");
    const pulled = mocks.named("app-pulled");
    assert.equal(pulled.inputs.name, digest);
    assert.ok(pulled.order > pull.order, "the provider finds what the host pulled");
    assert.equal(
      mocks.named("host-engine-docker").inputs.registryAuth,
      undefined,
      "the host's provider holds no registry credential",
    );
    assert.equal(mocks.named("host-builder").type, "pulumi:providers:docker");
  });

  test("digitalocean with imageRegistry cloud pushes to the named DOCR registry and the host pulls with a read-only credential", async () => {
    const { mocks, outputs } = await runProgram({
      target: "digitalocean",
      region: "ams3",
      adminCidrs: ADMIN,
      imageRegistry: "cloud",
      docrRegistry: "acme",
    });
    const image = mocks.ofType("docker:index/image:Image")[0];
    assert.match(String(image.inputs.imageName), /^registry\.digitalocean\.com\/acme\/webstack-test-app:[0-9a-f]{12}$/);
    assert.deepEqual(image.inputs.registry, {
      server: "registry.digitalocean.com",
      username: "docr-user",
      password: "docr-token",
    });
    const digest = String(image.outputs.repoDigest);
    const pull = mocks.named("app-pull");
    assert.equal(pull.inputs.create, pullCommand(digest, "stdin", String(outputs.release)));
    assert.equal(pull.inputs.stdin, mocks.named("app-pull-credentials").outputs.dockerCredentials);
    assert.ok(isSecretValue(pull.raw.stdin), "the credential on stdin is secret");
    assert.equal(mocks.named("app-pulled").inputs.name, digest);
    assert.equal(mocks.named("host-engine-docker").inputs.registryAuth, undefined);
  });

  test("without a registry the image is built on the host's engine and never pushed", async () => {
    const { mocks } = await runProgram({ target: "digitalocean", region: "ams3", adminCidrs: ADMIN });
    const image = mocks.named("app-image");
    assert.equal(image.type, "docker:index/image:Image");
    assert.equal(image.inputs.skipPush, true);
    assert.match(String(image.inputs.imageName), /^webstack-test-app:[0-9a-f]{12}$/);
    assert.deepEqual((image.inputs.build as Inputs).args, { NODE_IMAGE: "node:22.20.0-bookworm-slim" });
    // Postgres's image (the stock one with pgBackRest) is always built on the host, never pushed.
    const postgres = mocks.named("webstack-postgres-build");
    assert.deepEqual(
      mocks
        .ofType("docker:index/image:Image")
        .map((i) => i.name)
        .sort(),
      ["app-image", "webstack-postgres-build"],
    );
    assert.equal(postgres.inputs.skipPush, true);
    // The three stock images (Postgres's the base of its build), the release's tag of what was
    // built, kept for a rollback, and Postgres's built image.
    const remote = mocks.ofType("docker:index/remoteImage:RemoteImage");
    assert.deepEqual(remote.map((r) => r.name).sort(), [
      "app-local",
      "webstack-nginx-image",
      "webstack-postgres-image",
      "webstack-postgres-local",
      "webstack-redis-image",
    ]);
    // The stack's own Postgres tag goes with the stack (the app's go with the release command).
    assert.deepEqual(mocks.named("webstack-postgres-local").inputs, {
      name: postgres.inputs.imageName,
      keepLocally: false,
    });
    const local = mocks.named("app-local");
    assert.deepEqual(local.inputs, { name: image.inputs.imageName, keepLocally: true });
    assert.ok(local.order > image.order, "the tag is owned after the build");
    for (const c of mocks.ofType(CONTAINER).filter((r) => r.name.includes("-app-"))) {
      assert.ok(c.order > local.order, `${c.name} registers after the tag it runs, so it is deleted before it`);
    }
  });
});

describe("components", () => {
  for (const { target, settings } of TARGETS) {
    test(`${target}: each component registers the outputs the stack reports, so \`pulumi stack export\` shows them`, async () => {
      const { mocks, outputs } = await evaluated(settings);
      const component = (type: string) => {
        const found = mocks.resources.filter((r) => r.type === `webstack:${type}`);
        assert.equal(found.length, 1, type);
        return found[0].componentOutputs;
      };
      const replicas = replicasOf(mocks.resources).map((c) => c.inputs.name);
      assert.deepEqual(component("index:WebStack"), {
        url: outputs.url,
        releaseId: outputs.release,
        replicaNames: replicas,
      });
      const image = mocks.ofType("docker:index/image:Image")[0];
      assert.match(
        String(image.inputs.imageName),
        new RegExp(`:${String(outputs.release)}$`),
        "tagged with its release",
      );
      // The image the replicas run, and the revision of what it was built from.
      assert.deepEqual(component("index:AppImage"), {
        ref: replicasOf(mocks.resources)[0].inputs.image,
        revision: imageRevision(hashTree(APP_DIR), DEFAULT_IMAGES.nodeImage),
      });
      assert.deepEqual(component("index:ReleaseImages"), {
        repository: String(image.inputs.imageName).replace(/:[^:]+$/, ""),
      });
      const host = { local: "hosts:LocalHost", digitalocean: "hosts:DigitalOceanHost", aws: "hosts:AwsHost" }[target]!;
      assert.deepEqual(
        component(host),
        target === "local" ? { publicAddress: "127.0.0.1" } : { publicIp: outputs.publicIp },
      );
      if (target !== "local") assert.deepEqual(component("hosts:RemoteEngine"), {});
    });
  }
});

test("promiseOf resolves an Output", async () => {
  assert.equal(await promiseOf(pulumi.output(5)), 5);
});

describe("HTTPS on the cloud targets", () => {
  const SITE = {
    domain: "app.example.com",
    extraDomains: '["www.example.com"]',
    acmeEmail: "ops@example.com",
    dnsZone: "example.com",
  };
  for (const { target, settings } of TARGETS.filter((t) => t.cloud)) {
    test(`${target}: A records in the zone at the stable IP, 443 open, nginx on 443 reading the certificates, the ACME client on its own way out`, async () => {
      const { mocks } = await evaluated({ ...settings, ...SITE });
      const ip = target === "aws" ? "203.0.113.20" : "203.0.113.10";
      if (target === "digitalocean") {
        const records = mocks.ofType("digitalocean:index/dnsRecord:DnsRecord");
        assert.deepEqual(
          records.map((r) => r.inputs),
          [
            { domain: "example.com", type: "A", name: "app", value: ip, ttl: 300 },
            { domain: "example.com", type: "A", name: "www", value: ip, ttl: 300 },
          ],
        );
        const firewall = mocks.ofType("digitalocean:index/firewall:Firewall")[0];
        assert.deepEqual(
          (firewall.inputs.inboundRules as Inputs[]).map((r) => [r.portRange, r.sourceAddresses]),
          [
            ["80", ["0.0.0.0/0", "::/0"]],
            ["443", ["0.0.0.0/0", "::/0"]],
            ["22", ["198.51.100.0/24"]],
            ["2376", ["198.51.100.0/24"]],
          ],
        );
      } else {
        const zone = mocks.calls.find((c) => c.token === "aws:route53/getZone:getZone");
        assert.deepEqual(zone?.inputs, { name: "example.com", privateZone: false });
        assert.match(String(zone?.provider), /host-provider/, "looked up with the stack's own AWS provider");
        assert.deepEqual(
          mocks.ofType("aws:route53/record:Record").map((r) => r.inputs),
          [
            { zoneId: "Z0123456789ABCDEFGHIJ", name: "app.example.com", type: "A", ttl: 300, records: [ip] },
            { zoneId: "Z0123456789ABCDEFGHIJ", name: "www.example.com", type: "A", ttl: 300, records: [ip] },
          ],
        );
        const group = mocks.ofType("aws:ec2/securityGroup:SecurityGroup")[0];
        assert.deepEqual(
          (group.inputs.ingress as Inputs[]).map((r) => r.fromPort),
          [80, 443, 22, 2376],
        );
      }

      const nginx = mocks.named("webstack-nginx");
      assert.deepEqual(nginx.inputs.ports, [
        { internal: 80, external: 80, ip: "0.0.0.0" },
        { internal: 443, external: 443, ip: "0.0.0.0" },
      ]);
      const mounts = (c: Registered) =>
        (c.inputs.volumes as Inputs[]).map((v) => [v.volumeName, v.containerPath, v.readOnly ?? false]);
      assert.deepEqual(mounts(nginx).slice(1), [
        ["webstack-test-tls-live", "/etc/webstack-certs", true],
        ["webstack-test-acme-webroot", "/var/www/acme", true],
      ]);

      const acme = mocks.named("webstack-acme");
      assert.equal(acme.inputs.image, mocks.named("webstack-acme-image").outputs.imageId);
      assert.equal(mocks.named("webstack-acme-image").inputs.name, DEFAULT_IMAGES.acmeImage);
      assert.deepEqual(mounts(acme), [
        ["webstack-test-certs", "/certs", false],
        ["webstack-test-tls-live", "/live", false],
        ["webstack-test-acme-webroot", "/webroot", false],
      ]);
      assert.deepEqual(
        (acme.inputs.networksAdvanced as Inputs[]).map((n) => n.name),
        ["webstack-test-acme"],
      );
      assert.equal(mocks.named("webstack-acme-network").inputs.internal, undefined, "the ACME client reaches its CA");
      assert.deepEqual([...envOf(acme)].sort(), [
        "ACME_DOMAINS=app.example.com www.example.com",
        "ACME_EMAIL=ops@example.com",
        "ACME_RETRY_SECONDS=300",
        "ACME_SERVER=https://acme-v02.api.letsencrypt.org/directory",
      ]);
      assert.deepEqual((acme.inputs.entrypoints as string[]).slice(0, 2), ["/bin/sh", "-c"]);
      assert.equal(acme.inputs.wait, false, "a CA that cannot be reached must not fail the update");
      assert.equal(acme.inputs.readOnly, true);
      assert.deepEqual(acme.inputs.capabilities, { drops: ["ALL"] });

      // The certificates live on the block storage, in a directory made on the host first.
      const certs = mocks.named("webstack-certs");
      assert.deepEqual(certs.inputs.driverOpts, { type: "none", o: "bind", device: "/srv/webstack-data/certs" });
      const made = mocks.named("webstack-certs-dir");
      assert.match(String(made.inputs.create), /^mkdir -p \/srv\/webstack-data\/certs$/);
      assert.ok(made.order < certs.order, "the directory before the volume");
      assert.equal(
        mocks.named("webstack-tls-live").inputs.driverOpts,
        undefined,
        "the bundle is remade from lego's files",
      );
      // The ACME client's first order meets the nginx that answers its challenges.
      assert.ok(dependsOn(acme, nginx), "nginx before the ACME client");
    });
  }

  test("without a domain: no ACME client, no certificate volumes, no DNS, nginx on port 80 only", async () => {
    const { mocks } = await evaluated(TARGETS[1].settings);
    assert.equal(mocks.resources.filter((r) => /acme|certs|dns/.test(r.name)).length, 0);
    assert.deepEqual(mocks.named("webstack-nginx").inputs.ports, [{ internal: 80, external: 80, ip: "0.0.0.0" }]);
  });
});

describe("HTTPS on the local target", () => {
  test("a CA of the stack's own signs the certificate; nginx gets it with its files (root-only) and publishes 8443; no ACME client; the CA and the HTTPS URL are outputs", async () => {
    const { mocks, outputs } = await evaluated({ domain: "app.localhost" });
    assert.equal(outputs.httpsUrl, "https://app.localhost:8443");
    const ca = mocks.named("local-https-ca");
    assert.equal(outputs.caCertificate, ca.outputs.certPem);
    assert.equal(ca.inputs.isCaCertificate, true);
    assert.deepEqual(ca.inputs.allowedUses, ["cert_signing", "crl_signing"]);
    const request = mocks.named("local-https-request");
    assert.deepEqual(
      [request.inputs.dnsNames, request.inputs.ipAddresses],
      [["app.localhost", "localhost"], ["127.0.0.1"]],
    );
    const certificate = mocks.named("local-https-cert");
    assert.deepEqual(certificate.inputs.allowedUses, ["digital_signature", "server_auth"]);
    assert.equal(certificate.inputs.earlyRenewalHours, 30 * 24);
    for (const key of ["local-https-ca-key", "local-https-key"]) {
      assert.deepEqual([mocks.named(key).inputs.algorithm, mocks.named(key).inputs.ecdsaCurve], ["ECDSA", "P256"]);
    }

    const nginx = mocks.named("webstack-nginx");
    assert.deepEqual(nginx.inputs.ports, [
      { internal: 80, external: 8080, ip: "127.0.0.1" },
      { internal: 443, external: 8443, ip: "127.0.0.1" },
    ]);
    assert.equal((nginx.inputs.volumes as Inputs[]).length, 1, "nginx reads no ACME volumes");
    const run = mocks.named("webstack-files-nginx-run");
    const files = run.inputs.uploads as Inputs[];
    const index = files.findIndex((u) => String(u.file).endsWith("/webstack/certs/bundle.pem"));
    assert.ok(index >= 0, "the certificate goes with nginx's files");
    assert.equal(files[index].permissions, "0400");
    const raw = run.raw.uploads;
    // The SDK may mark the whole list secret rather than each field.
    assert.ok(
      isSecretValue(raw) || (Array.isArray(raw) && isSecretValue((raw[index] as Inputs).content)),
      "the key travels as a secret",
    );
    const key = String(mocks.named("local-https-key").outputs.privateKeyPem);
    assert.equal(files[index].content, `${key}${String(certificate.outputs.certPem)}`);
    assert.equal(mocks.resources.filter((r) => /acme/.test(r.name)).length, 0);
  });
});
