// The resource graph of every target, from the real index.ts under Pulumi's mocks.
import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { isSecretValue, MOCK_BOUND_PORT, promiseOf, RecordingMocks, Registered, runBuild, runProgram } from "./support/mocks";

const CONTAINER = "docker:index/container:Container";
const ADMIN = '["198.51.100.0/24"]';

const TARGETS: { target: string; settings: Record<string, string>; cloud: boolean }[] = [
  { target: "local", settings: {}, cloud: false },
  { target: "digitalocean", settings: { target: "digitalocean", region: "nyc3", adminCidrs: ADMIN }, cloud: true },
  { target: "aws", settings: { target: "aws", region: "us-east-1", adminCidrs: ADMIN }, cloud: true },
];

type Inputs = Record<string, unknown>;
const containers = (resources: Registered[]) => resources.filter((r) => r.type === CONTAINER);
const envOf = (c: Registered) => (c.inputs.envs as string[] | undefined) ?? [];

for (const { target, settings, cloud } of TARGETS) {
  describe(`target ${target}`, () => {
    test("registers the stack's resources: replicas + 3 containers, one network, two volumes, one app image", async () => {
      const { mocks, outputs } = await runProgram(settings);
      const count = (type: string) => mocks.ofType(type).length;
      assert.equal(count(CONTAINER), 3 + 3);
      assert.equal(count("docker:index/network:Network"), 1);
      assert.equal(count("docker:index/volume:Volume"), 2);
      assert.equal(count("docker:index/image:Image"), 1);
      assert.equal(count("docker:index/remoteImage:RemoteImage"), 3 + 1);
      const release = String(outputs.release);
      assert.deepEqual(
        containers(mocks.resources).map((c) => c.inputs.name).sort(),
        [
          `webstack-test-app-${release}-1`,
          `webstack-test-app-${release}-2`,
          `webstack-test-app-${release}-3`,
          "webstack-test-nginx",
          "webstack-test-postgres",
          "webstack-test-redis",
        ],
      );
      if (target === "local") {
        assert.deepEqual(
          mocks.resources.map((r) => r.type).filter((t) => !t.startsWith("docker:") && !t.startsWith("webstack:")).sort(),
          ["pulumi:providers:docker", "random:index/randomPassword:RandomPassword", "random:index/randomPassword:RandomPassword"],
        );
      }
    });

    test("the replica count follows webstack:replicas", async () => {
      const { mocks } = await runProgram({ ...settings, replicas: "5" });
      const apps = containers(mocks.resources).filter((c) => (c.inputs.name as string).includes("-app-"));
      assert.equal(apps.length, 5);
    });

    test("only nginx publishes a port, and only the configured one", async () => {
      const { mocks } = await runProgram(settings);
      const publishing = containers(mocks.resources).filter((c) => Array.isArray(c.inputs.ports) && c.inputs.ports.length > 0);
      assert.deepEqual(publishing.map((c) => c.inputs.name), ["webstack-test-nginx"]);
      const expected = cloud
        ? [{ internal: 80, external: 80, ip: "0.0.0.0", protocol: "tcp" }]
        : [{ internal: 80, external: 8080, ip: "127.0.0.1", protocol: "tcp" }];
      assert.deepEqual(
        (publishing[0].inputs.ports as Inputs[]).map((p) => ({ protocol: "tcp", ...p })),
        expected,
      );
    });

    test("every container has a health check, a restart policy, log rotation and waits until healthy", async () => {
      const { mocks } = await runProgram(settings);
      for (const c of containers(mocks.resources)) {
        const health = c.inputs.healthcheck as Inputs;
        assert.ok(Array.isArray(health.tests) && health.tests.length >= 2, `${c.name} health check`);
        assert.match(String(health.tests[0]), /^CMD(-SHELL)?$/);
        assert.equal(c.inputs.restart, "unless-stopped", `${c.name} restart`);
        assert.equal(c.inputs.wait, true, `${c.name} wait`);
        assert.deepEqual(c.inputs.logOpts, { "max-size": "10m", "max-file": "3" }, `${c.name} logs`);
        assert.deepEqual(
          (c.inputs.networksAdvanced as Inputs[]).map((n) => n.name),
          ["webstack-test"],
          `${c.name} network`,
        );
      }
    });

    test("app replicas run as a non-root user with the app alias and secret URLs", async () => {
      const { mocks } = await runProgram(settings);
      const apps = containers(mocks.resources).filter((c) => (c.inputs.name as string).includes("-app-"));
      for (const app of apps) {
        assert.equal(app.inputs.user, "10001:10001");
        assert.deepEqual((app.inputs.networksAdvanced as Inputs[])[0].aliases, ["app"]);
        const names = envOf(app).map((e) => e.split("=")[0]).sort();
        assert.deepEqual(names, ["DATABASE_URL", "PORT", "REDIS_URL", "REPLICA_ID", "SHUTDOWN_GRACE_MS"]);
        assert.match(app.inputs.image as string, /^sha256:[0-9a-f]{64}$/, "pinned to what was built");
      }
    });

    test("passwords appear in no label, command, name or upload path, and not in the stack outputs", async () => {
      const { mocks, outputs } = await runProgram(settings);
      // The generated passwords, read back from the containers' environment.
      const passwords = ([] as string[])
        .concat(
          envOf(containers(mocks.resources).find((c) => c.inputs.name === "webstack-test-postgres")!)
            .filter((e) => e.startsWith("POSTGRES_PASSWORD="))
            .map((e) => e.slice("POSTGRES_PASSWORD=".length)),
          envOf(containers(mocks.resources).find((c) => c.inputs.name === "webstack-test-redis")!)
            .filter((e) => e.startsWith("REDISCLI_AUTH="))
            .map((e) => e.slice("REDISCLI_AUTH=".length)),
        )
        .filter((p) => p.length >= 16);
      assert.equal(passwords.length, 2, "both generated passwords were found");
      for (const c of containers(mocks.resources)) {
        const uploadPaths = ((c.inputs.uploads as Inputs[] | undefined) ?? []).map((u) => u.file);
        const visible = JSON.stringify([c.inputs.labels, c.inputs.command, c.inputs.entrypoints, c.inputs.name, c.inputs.healthcheck, uploadPaths]);
        for (const password of passwords) assert.ok(!visible.includes(password), `${c.name} shows a password`);
      }
      for (const password of passwords) assert.ok(!JSON.stringify(outputs).includes(password));
    });

    test("secret values reach the engine marked secret: container environments, Redis config, TLS and SSH keys", async () => {
      const { mocks } = await runProgram(settings);
      for (const c of containers(mocks.resources)) {
        const role = String(c.inputs.name).split("-")[2];
        assert.equal(isSecretValue(c.raw.envs), role !== "nginx", `${c.name} envs secret`);
      }
      const redis = containers(mocks.resources).find((c) => c.inputs.name === "webstack-test-redis")!;
      // The SDK may mark the whole list secret rather than the one field.
      const uploads = redis.raw.uploads;
      assert.ok(
        isSecretValue(uploads) || (Array.isArray(uploads) && isSecretValue((uploads[0] as Inputs).content)),
        "redis.conf content is secret",
      );
      assert.match(String((redis.inputs.uploads as Inputs[])[0].content), /^requirepass [A-Za-z0-9]{16,}$/m);
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

    test("the Postgres and Redis passwords and every container's environment are Pulumi secrets", async () => {
      const envs: { name: string; envs: docker.ContainerArgs["envs"] }[] = [];
      const capture = (args: docker.ContainerArgs) => envs.push({ name: String(args.name), envs: args.envs });
      const { built } = await runBuild(settings, { postgres: capture, redis: capture, app: capture });
      assert.equal(await pulumi.isSecret(built.stack.postgresPassword), true);
      assert.equal(await pulumi.isSecret(built.stack.redisPassword), true);
      assert.equal(envs.length, 2 + 3);
      for (const { name, envs: value } of envs) {
        assert.ok(pulumi.Output.isInstance(value), `${name} envs is an Output`);
        assert.equal(await pulumi.isSecret(value as pulumi.Output<string[]>), true, `${name} envs is secret`);
      }
    });

    if (cloud) {
      test("every Docker resource waits for the readiness command", async () => {
        const opts: { name: string; dependsOn: unknown }[] = [];
        const capture = (args: docker.ContainerArgs, o: pulumi.CustomResourceOptions) =>
          opts.push({ name: String(args.name), dependsOn: o.dependsOn });
        const { mocks, built } = await runBuild(settings, {
          postgres: capture,
          redis: capture,
          app: capture,
          nginx: capture,
          network: (_args, o) => opts.push({ name: "network", dependsOn: o.dependsOn }),
          volume: (a, o) => opts.push({ name: String(a.name), dependsOn: o.dependsOn }),
        });
        const [ready] = built.host.ready;
        assert.ok(ready instanceof pulumi.CustomResource);
        assert.equal(opts.length, 4 + 3 + 2);
        for (const o of opts) {
          assert.ok(Array.isArray(o.dependsOn) && o.dependsOn.includes(ready), `${o.name} depends on the readiness command`);
        }
        const readyAt = mocks.named("host-engine-ready").order;
        const onEngine = mocks.resources.filter((r) => r.type.startsWith("docker:"));
        assert.ok(onEngine.length >= 10);
        for (const r of onEngine) assert.ok(r.order > readyAt, `${r.name} registered after the readiness command`);
        assert.ok(mocks.named("host-engine-docker").order > readyAt, "the engine's provider is configured after it");
        assert.equal(mocks.named("host-engine-docker").inputs.host, `tcp://${target === "aws" ? "203.0.113.20" : "203.0.113.10"}:2376`);
      });

      test("a replaced VM gets its engine prepared again and every Docker object recreated", async () => {
        const { mocks } = await runProgram(settings);
        const vmId = target === "aws" ? "i-0123456789abcdef0" : "123456";
        const triggers = mocks.named("host-engine-ready").inputs.triggers as string[];
        assert.equal(triggers.length, 2);
        assert.equal(triggers[0], vmId);
        assert.match(triggers[1], /BEGIN CERTIFICATE/);
        const labelled = mocks.resources.filter((r) =>
          ["docker:index/container:Container", "docker:index/network:Network", "docker:index/volume:Volume"].includes(r.type),
        );
        assert.equal(labelled.length, 6 + 1 + 2);
        for (const r of labelled) {
          assert.deepEqual(
            (r.inputs.labels as Inputs[]).filter((l) => l.label === "webstack.vm"),
            [{ label: "webstack.vm", value: vmId }],
            `${r.name} is labelled with its VM`,
          );
        }
        // Another VM behind the same IP: the readiness command and every Docker object change.
        const other = await runProgram(settings, { mocks: new RecordingMocks({ vmId: target === "aws" ? "i-0fedcba9876543210" : "654321" }) });
        assert.notDeepEqual(other.mocks.named("host-engine-ready").inputs.triggers, triggers);
        for (const r of labelled) {
          assert.notDeepEqual(other.mocks.named(r.name).inputs.labels, r.inputs.labels, `${r.name} changes with the VM`);
        }
      });

      test("the cloud host: firewall rules, TLS material never in user data, stable public IP output", async () => {
        const { mocks, outputs } = await runProgram(settings);
        const ip = target === "aws" ? "203.0.113.20" : "203.0.113.10";
        assert.equal(outputs.publicIp, ip);
        assert.equal(outputs.url, `http://${ip}`);
        if (target === "digitalocean") {
          const firewall = mocks.ofType("digitalocean:index/firewall:Firewall")[0];
          assert.deepEqual(firewall.inputs.inboundRules, [
            { protocol: "tcp", portRange: "80", sourceAddresses: ["0.0.0.0/0", "::/0"] },
            { protocol: "tcp", portRange: "443", sourceAddresses: ["0.0.0.0/0", "::/0"] },
            { protocol: "tcp", portRange: "22", sourceAddresses: ["198.51.100.0/24"] },
            { protocol: "tcp", portRange: "2376", sourceAddresses: ["198.51.100.0/24"] },
          ]);
          assert.deepEqual(firewall.inputs.dropletIds, [123456]);
          assert.deepEqual(mocks.ofType("digitalocean:index/volumeAttachment:VolumeAttachment")[0].inputs.dropletId, 123456);
        } else {
          const group = mocks.ofType("aws:ec2/securityGroup:SecurityGroup")[0];
          assert.deepEqual(
            (group.inputs.ingress as Inputs[]).map((r) => [r.fromPort, r.toPort, r.cidrBlocks, r.ipv6CidrBlocks]),
            [
              [80, 80, ["0.0.0.0/0"], ["::/0"]],
              [443, 443, ["0.0.0.0/0"], ["::/0"]],
              [22, 22, ["198.51.100.0/24"], []],
              [2376, 2376, ["198.51.100.0/24"], []],
            ],
          );
          const instance = mocks.ofType("aws:ec2/instance:Instance")[0];
          assert.deepEqual(instance.inputs.metadataOptions, { httpTokens: "required", httpEndpoint: "enabled", httpPutResponseHopLimit: 1 });
          assert.equal(instance.inputs.ami, "ami-0123456789abcdef0");
          assert.equal(instance.inputs.availabilityZone, "us-east-1a");
          assert.equal(mocks.ofType("aws:ebs/volume:Volume")[0].inputs.availabilityZone, "us-east-1a");
        }
        const vm = mocks.resources.find((r) => r.type === "aws:ec2/instance:Instance" || r.type === "digitalocean:index/droplet:Droplet")!;
        const userData = String(vm.inputs.userData);
        assert.ok(userData.startsWith("#cloud-config\n"));
        assert.ok(!/PRIVATE KEY/.test(userData), "no private key in user data");
        const ready = mocks.named("host-engine-ready");
        assert.ok(!/PRIVATE KEY/.test(String(ready.inputs.create)), "no key on the command line");
        assert.match(String(ready.inputs.stdin), /BEGIN PRIVATE KEY/, "server key travels on stdin");
        const provider = mocks.named("host-engine-docker");
        assert.match(String(provider.inputs.keyMaterial), /BEGIN PRIVATE KEY/);
        assert.match(String(provider.inputs.caMaterial), /BEGIN CERTIFICATE/);
      });
    } else {
      test("Docker objects on the local engine carry no VM label", async () => {
        const { mocks } = await runProgram(settings);
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
  test("a given release names the replicas; another release gives new logical names, same other resources", async () => {
    const a = await runProgram({ release: "0123456789abcdef0123" });
    const b = await runProgram({ release: "fedcba9876" });
    const apps = (r: Registered[]) => containers(r).filter((c) => c.name.includes("-app-")).map((c) => c.name).sort();
    assert.deepEqual(apps(a.mocks.resources), ["webstack-app-0123456789ab-1", "webstack-app-0123456789ab-2", "webstack-app-0123456789ab-3"]);
    assert.deepEqual(apps(b.mocks.resources), ["webstack-app-fedcba9876-1", "webstack-app-fedcba9876-2", "webstack-app-fedcba9876-3"]);
    const others = (r: Registered[]) => r.filter((x) => !x.name.includes("-app-")).map((x) => x.name).sort();
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
  test("aws with imageRegistry cloud pushes to a stack ECR repository and the host pulls by digest", async () => {
    const { mocks } = await runProgram({ target: "aws", region: "us-east-1", adminCidrs: ADMIN, imageRegistry: "cloud" });
    const image = mocks.ofType("docker:index/image:Image")[0];
    assert.equal(image.inputs.skipPush, false);
    assert.match(String(image.inputs.imageName), /^123456789012\.dkr\.ecr\.us-east-1\.amazonaws\.com\/webstack-test-app:[0-9a-f]{12}$/);
    assert.deepEqual(image.inputs.registry, {
      server: "123456789012.dkr.ecr.us-east-1.amazonaws.com",
      username: "AWS",
      password: "ecr-token",
    });
    const pulled = mocks.named("app-pulled");
    assert.match(String(pulled.inputs.name), /^sha256:[0-9a-f]{64}$/);
    const engine = mocks.named("host-engine-docker");
    assert.deepEqual(JSON.parse(String(engine.inputs.registryAuth)), [
      { address: "123456789012.dkr.ecr.us-east-1.amazonaws.com", username: "AWS", password: "ecr-token" },
    ]);
    assert.equal(mocks.named("host-builder").type, "pulumi:providers:docker");
  });

  test("digitalocean with imageRegistry cloud pushes to the named DOCR registry", async () => {
    const { mocks } = await runProgram({
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
  });

  test("without a registry the image is built on the host's engine and never pushed", async () => {
    const { mocks } = await runProgram({ target: "digitalocean", region: "ams3", adminCidrs: ADMIN });
    const image = mocks.ofType("docker:index/image:Image")[0];
    assert.equal(image.inputs.skipPush, true);
    assert.match(String(image.inputs.imageName), /^webstack-test-app:[0-9a-f]{12}$/);
    assert.deepEqual((image.inputs.build as Inputs).args, { NODE_IMAGE: "node:22.20.0-bookworm-slim" });
    // The three stock images, and the stack's own tag of what was built: removed with the stack.
    const remote = mocks.ofType("docker:index/remoteImage:RemoteImage");
    assert.deepEqual(remote.map((r) => r.name).sort(), ["app-local", "webstack-nginx-image", "webstack-postgres-image", "webstack-redis-image"]);
    const local = mocks.named("app-local");
    assert.deepEqual(local.inputs, { name: image.inputs.imageName, keepLocally: false });
    assert.ok(local.order > image.order, "the tag is owned after the build");
    for (const c of mocks.ofType(CONTAINER).filter((r) => r.name.includes("-app-"))) {
      assert.ok(c.order > local.order, `${c.name} registers after the tag it runs, so it is deleted before it`);
    }
  });
});

test("promiseOf resolves an Output", async () => {
  assert.equal(await promiseOf(pulumi.output(5)), 5);
});
