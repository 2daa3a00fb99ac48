// The CrossGuard pack (policy/) against the real program's resources, evaluated under mocks.
//
// Each resource reaches the policies the way @pulumi/policy hands it over in a pack the CLI runs:
// the registered inputs go through a protobuf Struct (the wire) and @pulumi/policy's own
// deserializer and unknown-checking proxy; remediation args keep secrets, validation args do
// not; getConfig returns the schema defaults overlaid by a config file, as the CLI reconciles
// them. The last tests start the pack itself, as the CLI's policy analyzer shim does, and talk
// to it over gRPC.
import * as grpc from "@grpc/grpc-js";
import * as aws from "@pulumi/aws";
import * as docker from "@pulumi/docker";
import * as policySdk from "@pulumi/policy";
import {
  EnforcementLevel,
  Policies,
  PolicyPackArgs,
  PolicyResource,
  ResourceValidationArgs,
  ResourceValidationPolicy,
  StackValidationArgs,
  StackValidationPolicy,
} from "@pulumi/policy";
import * as pulumi from "@pulumi/pulumi";
import * as analyzer from "@pulumi/pulumi/proto/analyzer_pb";
import { AnalyzerClient } from "@pulumi/pulumi/proto/analyzer_grpc_pb";
import { Empty } from "google-protobuf/google/protobuf/empty_pb";
import { JavaScriptValue, Struct } from "google-protobuf/google/protobuf/struct_pb";
import assert from "node:assert/strict";
import { ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { after, describe, test } from "node:test";
import {
  adminExposureProblems,
  DEFAULT_VM_SIZES,
  doPortRange,
  exposesDockerSocket,
  isPinnedImage,
  needsSecret,
  TYPES,
  webstackPolicies,
} from "../../policy/policies";
import { DEFAULT_IMAGES, parseConfig } from "../../components/config";
import { promiseOf, RecordingMocks, Registered, runBuild, runProgram, watchRegistrations } from "./support/mocks";

const POLICY_DIR = path.join(__dirname, "..", "..", "policy");
const ADMIN = '["198.51.100.0/24"]';

// ---------------------------------------------------------------------------------------------
// How @pulumi/policy presents a resource to a policy

// Internal modules of @pulumi/policy: the deserializer every RPC runs the engine's properties
// through. Its types are stripped, so the shape is declared here.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { deserializeProperties } = require("@pulumi/policy/deserialize") as {
  deserializeProperties: (properties: Struct, keepSecrets: boolean) => Record<string, unknown>;
};
const { unknownCheckingProxy } = policySdk as unknown as { unknownCheckingProxy: <T>(value: T) => T };

type Policy = Policies[number];

/** A policy's config after the CLI reconciled it: its level, the schema's defaults, then the config file's values. */
type ReconciledConfig = Record<string, { enforcementLevel: EnforcementLevel; properties: Record<string, unknown> }>;

/** What the CLI does with `--policy-pack-config` (ReconcilePolicyPackConfig in pulumi/pulumi). */
function reconcile(policies: Policies, file: Record<string, unknown> = {}): ReconciledConfig {
  const result: ReconciledConfig = {};
  for (const p of policies) {
    const defaults = Object.entries(p.configSchema?.properties ?? {}).filter(
      ([, schema]) => schema.default !== undefined,
    );
    result[p.name] = {
      enforcementLevel: p.enforcementLevel ?? "mandatory",
      properties: Object.fromEntries(defaults.map(([key, schema]) => [key, structuredClone(schema.default)])),
    };
  }
  const all = file.all;
  if (typeof all === "string")
    for (const config of Object.values(result)) config.enforcementLevel = all as EnforcementLevel;
  for (const [name, given] of Object.entries(file)) {
    const target = result[name];
    if (target === undefined) continue;
    if (typeof given === "string") {
      target.enforcementLevel = given as EnforcementLevel;
    } else {
      const { enforcementLevel, ...properties } = given as { enforcementLevel?: EnforcementLevel };
      if (enforcementLevel !== undefined) target.enforcementLevel = enforcementLevel;
      Object.assign(target.properties, properties);
    }
  }
  return result;
}

const toStruct = (value: Record<string, unknown>) => Struct.fromJavaScript(value as Record<string, JavaScriptValue>);

/** Properties as the pack sees them: through the wire, @pulumi/policy's deserializer and its unknown-checking proxy. */
function packProps(properties: Record<string, unknown>, remediation: boolean): Record<string, unknown> {
  return unknownCheckingProxy(deserializeProperties(toStruct(properties), remediation));
}

class NotApplicable extends Error {}

function typeChecks(type: string, props: Record<string, unknown>) {
  const matches = (resourceClass: unknown) => (resourceClass as { __pulumiType?: string }).__pulumiType === type;
  return { isType: matches, asType: (resourceClass: unknown) => (matches(resourceClass) ? props : undefined) };
}

/** The args server.js builds for validateResource (remediation: false) and remediateResource (true). */
function resourceArgs(
  r: Registered,
  policy: Policy,
  config: ReconciledConfig,
  remediation: boolean,
): ResourceValidationArgs {
  const props = packProps(r.raw, remediation);
  return {
    type: r.type,
    props,
    urn: r.urn,
    name: r.name,
    opts: {
      protect: r.protect,
      ignoreChanges: [],
      aliases: [],
      customTimeouts: { createSeconds: 0, updateSeconds: 0, deleteSeconds: 0 },
      additionalSecretOutputs: [],
    },
    stackTags: new Map(),
    ...typeChecks(r.type, props),
    getConfig: <T extends object>() => (config[policy.name]?.properties ?? {}) as T,
    notApplicable: (reason?: string): never => {
      throw new NotApplicable(reason);
    },
  } as ResourceValidationArgs;
}

/** The args server.js builds for validateStack: each resource's outputs and options. */
function stackArgs(resources: Registered[], policy: Policy, config: ReconciledConfig): StackValidationArgs {
  return {
    resources: resources.map((r) => {
      const props = packProps(r.outputs, false);
      return {
        type: r.type,
        props,
        urn: r.urn,
        name: r.name,
        opts: {
          protect: r.protect,
          ignoreChanges: [],
          aliases: [],
          customTimeouts: { createSeconds: 0, updateSeconds: 0, deleteSeconds: 0 },
          additionalSecretOutputs: [],
        },
        dependencies: [],
        propertyDependencies: {},
        ...typeChecks(r.type, props),
      } as unknown as PolicyResource;
    }),
    stackTags: new Map(),
    getConfig: <T extends object>() => (config[policy.name]?.properties ?? {}) as T,
    notApplicable: (reason?: string): never => {
      throw new NotApplicable(reason);
    },
  };
}

/** Stack names are injected: in the pack they come from PULUMI_NODEJS_STACK. */
function policiesFor(stack: string): Policies {
  return webstackPolicies({ stackName: () => stack });
}

function policyNamed(policies: Policies, name: string): Policy {
  const found = policies.find((p) => p.name === name);
  assert.ok(found, `policy ${name} exists`);
  return found;
}

/**
 * Runs one resource policy over resources as the engine does, per resource: the remediation pass
 * (only at level "remediate"; it must leave the resource as it is), then the validation pass.
 */
async function resourceViolations(
  name: string,
  resources: Registered[],
  options: { stack?: string; file?: Record<string, unknown> } = {},
): Promise<string[]> {
  const policies = policiesFor(options.stack ?? "test");
  const policy = policyNamed(policies, name) as ResourceValidationPolicy;
  const config = reconcile(policies, options.file);
  const level = config[name].enforcementLevel;
  const messages: string[] = [];
  for (const r of resources) {
    if (level === "remediate" && policy.remediateResource !== undefined) {
      assert.equal(
        await policy.remediateResource(resourceArgs(r, policy, config, true)),
        undefined,
        `${name} changes nothing`,
      );
    }
    if (level === "disabled") continue;
    for (const validate of [policy.validateResource ?? []].flat()) {
      await validate(resourceArgs(r, policy, config, false), (message) => messages.push(message));
    }
  }
  return messages;
}

async function stackViolations(
  name: string,
  resources: Registered[],
  stack: string,
): Promise<{ message: string; urn?: string }[]> {
  const policies = policiesFor(stack);
  const policy = policyNamed(policies, name) as StackValidationPolicy;
  const found: { message: string; urn?: string }[] = [];
  await policy.validateStack(stackArgs(resources, policy, reconcile(policies)), (message, urn) =>
    found.push({ message, urn }),
  );
  return found;
}

// ---------------------------------------------------------------------------------------------
// The real program's resources

const TARGETS = [
  { target: "local", settings: {} as Record<string, string>, cloud: false },
  { target: "digitalocean", settings: { target: "digitalocean", region: "nyc3", adminCidrs: ADMIN }, cloud: true },
  { target: "aws", settings: { target: "aws", region: "us-east-1", adminCidrs: ADMIN }, cloud: true },
] as const;

const ofType = (resources: Registered[], type: string) => resources.filter((r) => r.type === type);
const containers = (resources: Registered[]) => ofType(resources, TYPES.container);
const named = (resources: Registered[], name: string) => {
  const found = resources.find((r) => r.name === name);
  assert.ok(found, `resource ${name} was registered`);
  return found;
};

/** A recorded resource with one field changed, as if the program had set it. */
function withField(r: Registered, field: string, value: unknown): Registered {
  return { ...r, raw: { ...r.raw, [field]: value }, outputs: { ...r.outputs, [field]: value } };
}

function memo<T>(make: () => Promise<T>): () => Promise<T> {
  let made: Promise<T> | undefined;
  return () => (made ??= make());
}

const program = new Map<string, () => Promise<Registered[]>>();
/** The program's resources for one config and stack, evaluated once per test file. */
function resourcesOf(settings: Record<string, string>, stack = "test"): Promise<Registered[]> {
  const key = JSON.stringify([settings, stack]);
  if (!program.has(key))
    program.set(
      key,
      memo(async () => (await runProgram(settings, { stack })).mocks.resources),
    );
  return program.get(key)!();
}

type Transforms = Parameters<typeof runBuild>[1];
async function builtWith(settings: Record<string, string>, transform: Transforms): Promise<Registered[]> {
  return (await runBuild(settings, transform)).mocks.resources;
}

const SECRET_RULE =
  "variables named *PASSWORD*, *PASSWD*, *TOKEN*, *SECRET*, *_KEY or *_AUTH, and any holding a URL with a password, must be Pulumi secrets (pulumi.secret() or `pulumi config set --secret`)";
const PIN_HINT =
  "use a tag that names a version (contains a digit, not latest) such as nginx:1.28.0-bookworm, or a digest (@sha256:…)";
const ADMIN_RULE =
  "SSH (22) and the Docker API (2376) may be opened only to specific admin CIDRs (webstack:adminCidrs), never to 0.0.0.0/0 or ::/0";

for (const { target, settings, cloud } of TARGETS) {
  describe(`policies on target ${target}`, () => {
    const base = () => resourcesOf(settings);
    // The default count: 3 locally, the VM's vCPUs (at least 2, at most 3) on a cloud host.
    const replicas = parseConfig(settings).replicas;

    test("only-nginx-publishes-ports: the program passes; a Redis port published by a transform fails", async () => {
      const resources = await base();
      assert.ok(Array.isArray(named(resources, "webstack-nginx").inputs.ports), "nginx does publish a port");
      assert.deepEqual(await resourceViolations("only-nginx-publishes-ports", resources), []);

      const exposed = await builtWith(settings, {
        redis: (args) => {
          args.ports = [{ internal: 6379, external: 6379 }];
        },
      });
      assert.deepEqual(await resourceViolations("only-nginx-publishes-ports", exposed), [
        `container "webstack-redis" publishes ports 0.0.0.0:6379->6379 but its webstack.role label is "redis": only the nginx container (webstack.role "nginx") may publish ports`,
      ]);
    });

    test("no-privileged-containers: the program passes; privileged, host namespaces and the Docker socket fail", async () => {
      assert.deepEqual(await resourceViolations("no-privileged-containers", await base()), []);

      const risky = await builtWith(settings, {
        app: (args) => {
          args.privileged = true;
        },
        redis: (args) => {
          args.networkMode = "host";
        },
        postgres: (args) => {
          args.volumes = [
            ...((args.volumes ?? []) as docker.types.input.ContainerVolume[]),
            { hostPath: "/var/run", containerPath: "/host-run" },
          ];
        },
        nginx: (args) => {
          args.pidMode = "host";
          args.ipcMode = "host";
          args.mounts = [{ type: "bind", source: "/run/docker.sock", target: "/var/run/docker.sock" }];
        },
      });
      const apps = containers(risky)
        .filter((c) => c.name.startsWith("webstack-app-"))
        .map((c) => c.name);
      assert.equal(apps.length, replicas);
      const socket = "no host path may be or contain /var/run/docker.sock or /run/docker.sock";
      // Data and socket volumes, and locally the backups' volume, come before the one added.
      const added = cloud ? 2 : 3;
      assert.deepEqual(
        (await resourceViolations("no-privileged-containers", risky)).sort(),
        [
          `container "webstack-nginx" mounts the Docker socket: mounts[0].source is "/run/docker.sock": ${socket}`,
          `container "webstack-nginx" sets ipcMode to "host": containers must not share the host's namespaces (any ipcMode but "host")`,
          `container "webstack-nginx" sets pidMode to "host": containers must not share the host's namespaces (any pidMode but "host")`,
          `container "webstack-postgres" mounts the Docker socket: volumes[${added}].hostPath is "/var/run": ${socket}`,
          `container "webstack-redis" sets networkMode to "host": containers must not share the host's namespaces (any networkMode but "host")`,
          ...apps.map(
            (a) =>
              `container "${a}" sets privileged to true: containers must not be privileged (leave privileged unset or false)`,
          ),
        ].sort(),
      );
    });

    test("memory-limits: the program passes, files runs included; a service without a limit, or with swap past it, fails", async () => {
      assert.deepEqual(await resourceViolations("memory-limits", await base()), []);
      const unlimited = await builtWith(settings, {
        app: (args) => {
          delete args.memory;
        },
        postgres: (args) => {
          args.memorySwap = -1;
        },
        redis: (args) => {
          delete args.memorySwap;
        },
        nginx: (args) => {
          args.memory = 0;
        },
        files: (args) => {
          delete args.memory;
        },
      });
      const apps = containers(unlimited)
        .filter((c) => c.name.startsWith("webstack-app-"))
        .map((c) => c.name);
      assert.equal(apps.length, replicas);
      assert.deepEqual(
        (await resourceViolations("memory-limits", unlimited)).sort(),
        [
          `container "webstack-nginx" has no memory limit (memory is 0): a long-running container must set memory in MB (webstack:limits)`,
          `container "webstack-postgres" may swap past its memory limit (memorySwap is -1): set memorySwap equal to memory (512)`,
          `container "webstack-redis" may swap past its memory limit (memorySwap is "unset"): set memorySwap equal to memory (128)`,
          ...apps.map(
            (a) =>
              `container "${a}" has no memory limit (memory is "unset"): a long-running container must set memory in MB (webstack:limits)`,
          ),
        ].sort(),
      );
    });

    test("pinned-images: the program's images pass; unpinned stock images, base image and container image fail", async () => {
      const resources = await base();
      const pulled = ofType(resources, TYPES.remoteImage).map((r) => r.inputs.name);
      for (const image of [DEFAULT_IMAGES.nginxImage, DEFAULT_IMAGES.redisImage, DEFAULT_IMAGES.postgresImage]) {
        assert.ok(pulled.includes(image), `${image} is pulled`);
      }
      assert.equal(
        containers(resources).length,
        replicas + 3 + 1 + 2 + 1 + 1,
        "the replicas, nginx, Postgres, Redis, the backup container, two files runs, a migration run, the Postgres image's check",
      );
      assert.deepEqual(
        ofType(resources, TYPES.image)
          .map((r) => (r.inputs.build as { args: unknown }).args)
          .sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b))),
        [{ NODE_IMAGE: DEFAULT_IMAGES.nodeImage }, { POSTGRES_IMAGE: DEFAULT_IMAGES.postgresImage }],
      );
      assert.deepEqual(await resourceViolations("pinned-images", resources), []);

      const unpinned = await builtWith(
        {
          ...settings,
          nginxImage: "nginx",
          redisImage: "redis:latest",
          postgresImage: "postgres:bookworm",
          nodeImage: "node:lts-slim",
        },
        {
          app: (args) => {
            args.image = "webstack-app:latest";
          },
        },
      );
      const apps = containers(unpinned)
        .filter((c) => c.name.startsWith("webstack-app-"))
        .map((c) => c.name);
      assert.deepEqual(
        (await resourceViolations("pinned-images", unpinned)).sort(),
        [
          `image "app-image" build.args.NODE_IMAGE (the app's base image) is "node:lts-slim", which is not pinned: ${PIN_HINT}`,
          `remote image "webstack-nginx-image" name is "nginx", which is not pinned: ${PIN_HINT}`,
          `remote image "webstack-postgres-image" name is "postgres:bookworm", which is not pinned: ${PIN_HINT}`,
          `image "webstack-postgres-build" build.args.POSTGRES_IMAGE (Postgres's base image) is "postgres:bookworm", which is not pinned: ${PIN_HINT}`,
          `remote image "webstack-redis-image" name is "redis:latest", which is not pinned: ${PIN_HINT}`,
          ...apps.map((a) => `container "${a}" image is "webstack-app:latest", which is not pinned: ${PIN_HINT}`),
        ].sort(),
      );
    });

    test("secret-environment: the program's environments (secrets as *_FILE paths) pass; secrets put back in plaintext fail by name and by credential URL", async () => {
      const resources = await base();
      const postgresEnvs = named(resources, "webstack-postgres").inputs.envs as string[];
      assert.ok(
        postgresEnvs.includes("POSTGRES_PASSWORD_FILE=/run/secrets/postgres-password"),
        "a secret-looking name that holds a path",
      );
      assert.deepEqual(await resourceViolations("secret-environment", resources), []);

      const plaintext =
        (...entries: string[]) =>
        (args: docker.ContainerArgs) => {
          args.envs = pulumi.output(args.envs ?? []).apply((envs) => [...(envs ?? []), ...entries]);
        };
      const leaky = await builtWith(settings, {
        postgres: plaintext("POSTGRES_PASSWORD=plaintext-password"),
        redis: plaintext("REDISCLI_AUTH=plaintext-password"),
        app: plaintext(
          "DATABASE_URL=postgres://webstack:pw@postgres:5432/webstack",
          "REDIS_URL=redis://:pw@redis:6379",
        ),
        // One variable marked secret on its own, the rest of the list plain: that passes.
        nginx: (args) => {
          args.envs = [...((args.envs ?? []) as string[]), pulumi.secret("SESSION_SECRET=0123456789abcdef")];
        },
        // A path that is no path is not taken for one.
        files: plaintext("ADMIN_TOKEN_FILE=redis://:pw@redis:6379"),
      });
      const apps = containers(leaky)
        .filter((c) => c.name.startsWith("webstack-app-"))
        .map((c) => c.name);
      assert.deepEqual(
        (await resourceViolations("secret-environment", leaky)).sort(),
        [
          `container "webstack-files-app-run" has ADMIN_TOKEN_FILE in plaintext envs: ${SECRET_RULE}`,
          `container "webstack-files-nginx-run" has ADMIN_TOKEN_FILE in plaintext envs: ${SECRET_RULE}`,
          `container "webstack-postgres" has POSTGRES_PASSWORD in plaintext envs: ${SECRET_RULE}`,
          `container "webstack-redis" has REDISCLI_AUTH in plaintext envs: ${SECRET_RULE}`,
          ...apps.flatMap((a) => [
            `container "${a}" has DATABASE_URL in plaintext envs: ${SECRET_RULE}`,
            `container "${a}" has REDIS_URL in plaintext envs: ${SECRET_RULE}`,
          ]),
        ].sort(),
      );

      // The same variable in plaintext, added to nginx's recorded environment, fails.
      const nginx = named(resources, "webstack-nginx");
      const leakyNginx = withField(nginx, "envs", [
        ...((nginx.raw.envs as string[] | undefined) ?? []),
        "SESSION_SECRET=0123456789abcdef",
      ]);
      assert.deepEqual(await resourceViolations("secret-environment", [leakyNginx]), [
        `container "webstack-nginx" has SESSION_SECRET in plaintext envs: ${SECRET_RULE}`,
      ]);
    });

    test("secret-environment: validateResource alone sees secrets unwrapped, so below level remediate the policy refuses to guess", async () => {
      // The program itself has no secret in any environment; a secret one is put in to show how the pack sees it.
      const resources = await builtWith(settings, {
        postgres: (args) => {
          args.envs = pulumi.secret(
            pulumi.output(args.envs ?? []).apply((envs) => [...(envs ?? []), "POSTGRES_PASSWORD=kept-secret-password"]),
          );
        },
      });
      const postgres = named(resources, "webstack-postgres");
      const policies = policiesFor("test");
      const policy = policyNamed(policies, "secret-environment");
      const config = reconcile(policies);
      assert.deepEqual(await resourceViolations("secret-environment", [postgres]), [], "a secret environment passes");
      // What @pulumi/policy gives validateResource: the secret list, unwrapped, indistinguishable from plaintext.
      const validated: unknown = resourceArgs(postgres, policy, config, false).props.envs;
      assert.deepEqual(validated, postgres.inputs.envs);
      assert.equal(
        Object.getOwnPropertyDescriptor(resourceArgs(postgres, policy, config, false).props, "envs")?.value instanceof
          policySdk.Secret,
        false,
      );
      assert.equal(
        Object.getOwnPropertyDescriptor(resourceArgs(postgres, policy, config, true).props, "envs")?.value instanceof
          policySdk.Secret,
        true,
      );

      const mandatory = await resourceViolations("secret-environment", containers(resources), {
        file: { "secret-environment": "mandatory" },
      });
      assert.deepEqual(mandatory, [
        `container "webstack-postgres" has POSTGRES_PASSWORD in envs, and secret-environment cannot tell whether they are secrets: @pulumi/policy shows secrets only at enforcement level "remediate", so set secret-environment back to "remediate" in the policy config`,
      ]);
    });

    if (!cloud) {
      test("allowed-vm-sizes and admin-ports-not-public have nothing to check without a VM, and pass", async () => {
        const resources = await base();
        assert.equal(ofType(resources, TYPES.droplet).length + ofType(resources, TYPES.ec2Instance).length, 0);
        assert.deepEqual(await resourceViolations("allowed-vm-sizes", resources, { stack: "pr-12" }), []);
        assert.deepEqual(await resourceViolations("admin-ports-not-public", resources), []);
      });
    }
  });
}

describe("data-protection", () => {
  test("local stacks need not protect data; a pr-<number> stack must protect nothing", async () => {
    const dev = await resourcesOf({}, "dev");
    assert.equal(named(dev, "webstack-postgres-data").protect, false);
    assert.deepEqual(await stackViolations("data-protection", dev, "dev"), []);

    const pr = await resourcesOf({ protectData: "true" }, "pr-12");
    const volume = named(pr, "webstack-postgres-data");
    assert.deepEqual(await stackViolations("data-protection", pr, "pr-12"), [
      {
        urn: volume.urn,
        message:
          'stack "pr-12" is a throwaway stack but docker:index/volume:Volume "webstack-postgres-data" is protected: resources of pr-<number> stacks must not be protected, so `pulumi destroy` removes them (set webstack:protectData to false)',
      },
    ]);
    assert.deepEqual(await stackViolations("data-protection", await resourcesOf({}, "pr-12"), "pr-12"), []);
  });

  for (const { target, settings } of TARGETS.filter((t) => t.cloud)) {
    const volumeType = target === "aws" ? TYPES.ebsVolume : TYPES.doVolume;

    test(`${target}: an environment stack must protect the cloud volume and the Postgres volume`, async () => {
      const protectedStack = await resourcesOf({ ...settings, protectData: "true" }, "production");
      assert.deepEqual(await stackViolations("data-protection", protectedStack, "production"), []);

      const unprotected = await resourcesOf(settings, "production");
      const notProtected = (r: Registered) =>
        `stack "production" runs on a cloud host but ${r.type} "${r.name}" (Postgres data) is not protected: every stack other than pr-<number> must protect its data volumes (set webstack:protectData to true)`;
      const cloudVolume = named(unprotected, "host-data");
      const postgresVolume = named(unprotected, "webstack-postgres-data");
      assert.equal(cloudVolume.type, volumeType);
      assert.deepEqual(await stackViolations("data-protection", unprotected, "production"), [
        { urn: cloudVolume.urn, message: notProtected(cloudVolume) },
        { urn: postgresVolume.urn, message: notProtected(postgresVolume) },
      ]);

      // In the first preview of a cloud stack the volume's labels (they carry the VM id) are unknown; its name is not.
      const previewed = unprotected.map((r) =>
        r === postgresVolume ? withField(r, "labels", pulumi.runtime.unknownValue) : r,
      );
      assert.deepEqual(await stackViolations("data-protection", previewed, "production"), [
        { urn: cloudVolume.urn, message: notProtected(cloudVolume) },
        { urn: postgresVolume.urn, message: notProtected(postgresVolume) },
      ]);
    });

    test(`${target}: a pr-<number> stack passes unprotected and fails protected`, async () => {
      assert.deepEqual(await stackViolations("data-protection", await resourcesOf(settings, "pr-12"), "pr-12"), []);
      const pr = await resourcesOf({ ...settings, protectData: "true" }, "pr-12");
      const found = await stackViolations("data-protection", pr, "pr-12");
      assert.deepEqual(
        found.map((f) => f.urn),
        [named(pr, "host-data").urn, named(pr, "webstack-postgres-data").urn],
      );
      assert.match(
        found[0].message,
        new RegExp(`^stack "pr-12" is a throwaway stack but ${volumeType} "host-data" is protected: `),
      );
    });
  }

  test("without a stack name the policy says it cannot decide", async () => {
    assert.deepEqual(await stackViolations("data-protection", await resourcesOf({}, "dev"), ""), [
      {
        urn: undefined,
        message:
          "the stack's name is unknown (the Pulumi CLI sets PULUMI_NODEJS_STACK for policy packs): data-protection cannot tell a throwaway stack from an environment",
      },
    ]);
  });
});

describe("admin-ports-not-public", () => {
  for (const { target, settings } of TARGETS.filter((t) => t.cloud)) {
    const firewallType = target === "aws" ? TYPES.securityGroup : TYPES.doFirewall;

    test(`${target}: SSH and the Docker API from admin CIDRs pass; from anywhere they fail`, async () => {
      const resources = await resourcesOf(settings);
      assert.equal(ofType(resources, firewallType).length, 1);
      assert.deepEqual(await resourceViolations("admin-ports-not-public", resources), []);

      // webstack:adminCidrs refuses a /0, so the open firewall is the program's with the admin rules widened.
      const firewall = ofType(resources, firewallType)[0];
      const rulesKey = target === "aws" ? "ingress" : "inboundRules";
      const widened = (firewall.raw[rulesKey] as Record<string, unknown>[]).map((rule, i) =>
        i < 1
          ? rule
          : target === "aws"
            ? { ...rule, cidrBlocks: ["0.0.0.0/0"], ipv6CidrBlocks: ["::/0"] }
            : { ...rule, sourceAddresses: ["0.0.0.0/0", "::/0"] },
      );
      const open = [withField(firewall, rulesKey, widened)];
      const expected =
        target === "aws"
          ? [
              `security group "host-firewall" ingress[1] opens port 22 (SSH) with protocol "tcp" ports 22-22 to 0.0.0.0/0 and ::/0: ${ADMIN_RULE}`,
              `security group "host-firewall" ingress[2] opens port 2376 (the Docker API) with protocol "tcp" ports 2376-2376 to 0.0.0.0/0 and ::/0: ${ADMIN_RULE}`,
            ]
          : [
              `firewall "host-firewall" inboundRules[1] opens port 22 (SSH) with portRange "22" to 0.0.0.0/0 and ::/0: ${ADMIN_RULE}`,
              `firewall "host-firewall" inboundRules[2] opens port 2376 (the Docker API) with portRange "2376" to 0.0.0.0/0 and ::/0: ${ADMIN_RULE}`,
            ];
      assert.deepEqual(await resourceViolations("admin-ports-not-public", open), expected);
    });

    test(`${target}: a public rule widened to a range covering 22 and 2376 fails`, async () => {
      const firewall = ofType(await resourcesOf(settings), firewallType)[0];
      const rulesKey = target === "aws" ? "ingress" : "inboundRules";
      const rules = firewall.raw[rulesKey] as Record<string, unknown>[];
      // Rule 0 is HTTP from anywhere; widen it.
      const widenings: Record<string, unknown>[] =
        target === "aws"
          ? [
              { ...rules[0], protocol: "-1", fromPort: 0, toPort: 0 },
              { ...rules[0], fromPort: 1, toPort: 65535 },
            ]
          : [
              { ...rules[0], portRange: "1-65535" },
              { ...rules[0], portRange: "all" },
            ];
      for (const widened of widenings) {
        const changed = withField(firewall, rulesKey, [widened, ...rules.slice(1)]);
        const found = await resourceViolations("admin-ports-not-public", [changed]);
        assert.equal(found.length, 2, JSON.stringify(widened));
        assert.match(found[0], /\[0\] opens port 22 \(SSH\) with .* to 0\.0\.0\.0\/0 and ::\/0: /);
        assert.match(found[1], /\[0\] opens port 2376 \(the Docker API\) with .* to 0\.0\.0\.0\/0 and ::\/0: /);
      }
    });
  }

  test("aws: standalone ingress rules, built with @pulumi/aws from the program's SSH rule, pass from admin CIDRs and fail from anywhere", async () => {
    const group = named(await resourcesOf(TARGETS[2].settings), "host-firewall");
    const ssh = (group.inputs.ingress as Record<string, unknown>[]).find((r) => r.fromPort === 22)!;
    const mocks = new RecordingMocks();
    await pulumi.runtime.setMocks(mocks, "webstack", "test", false);
    watchRegistrations(mocks);
    const rules = [
      new aws.ec2.SecurityGroupRule("ssh-admin", {
        type: "ingress",
        securityGroupId: "host-firewall-id",
        protocol: String(ssh.protocol),
        fromPort: Number(ssh.fromPort),
        toPort: Number(ssh.toPort),
        cidrBlocks: ssh.cidrBlocks as string[],
      }),
      new aws.ec2.SecurityGroupRule("ssh-world", {
        type: "ingress",
        securityGroupId: "host-firewall-id",
        protocol: String(ssh.protocol),
        fromPort: Number(ssh.fromPort),
        toPort: Number(ssh.toPort),
        cidrBlocks: ["0.0.0.0/0"],
      }),
      new aws.vpc.SecurityGroupIngressRule("ssh-admin-v2", {
        securityGroupId: "host-firewall-id",
        ipProtocol: String(ssh.protocol),
        fromPort: Number(ssh.fromPort),
        toPort: Number(ssh.toPort),
        cidrIpv4: (ssh.cidrBlocks as string[])[0],
      }),
      new aws.vpc.SecurityGroupIngressRule("all-world-v6", {
        securityGroupId: "host-firewall-id",
        ipProtocol: "-1",
        cidrIpv6: "::/0",
      }),
    ];
    await Promise.all(rules.map((r) => promiseOf(r.urn)));
    await pulumi.runtime.disconnect();
    const registered = mocks.resources.filter(
      (r) => r.type === TYPES.securityGroupRule || r.type === TYPES.securityGroupIngressRule,
    );
    assert.equal(registered.length, 4);
    assert.deepEqual((await resourceViolations("admin-ports-not-public", registered)).sort(), [
      `security group ingress rule "all-world-v6" opens port 22 (SSH) with ipProtocol "-1" ports all-all to ::/0: ${ADMIN_RULE}`,
      `security group ingress rule "all-world-v6" opens port 2376 (the Docker API) with ipProtocol "-1" ports all-all to ::/0: ${ADMIN_RULE}`,
      `security group rule "ssh-world" opens port 22 (SSH) with protocol "tcp" ports 22-22 to 0.0.0.0/0: ${ADMIN_RULE}`,
    ]);
  });
});

describe("allowed-vm-sizes", () => {
  for (const { target, settings } of TARGETS.filter((t) => t.cloud)) {
    const vmType = target === "aws" ? TYPES.ec2Instance : TYPES.droplet;
    const vmName = target === "aws" ? "host-instance" : "host-droplet";
    const setting = target === "aws" ? "instanceType" : "size";
    const what = target === "aws" ? "EC2 instance" : "droplet";
    const cloud = target === "aws" ? "aws" : "digitalocean";
    const [large, middle] = target === "aws" ? ["m5.4xlarge", "t3.medium"] : ["s-8vcpu-16gb", "s-2vcpu-4gb"];

    test(`${target}: the default size passes on every stack; a large one fails`, async () => {
      for (const stack of ["production", "pr-12"]) {
        const resources = await resourcesOf(settings, stack);
        assert.equal(ofType(resources, vmType).length, 1);
        assert.deepEqual(await resourceViolations("allowed-vm-sizes", resources, { stack }), [], stack);
      }
      const big = await resourcesOf({ ...settings, size: large }, "production");
      assert.deepEqual(await resourceViolations("allowed-vm-sizes", big, { stack: "production" }), [
        `${what} "${vmName}" has ${setting} "${large}": stack "production" may use only ${DEFAULT_VM_SIZES.sizes[cloud].join(", ")} (policy config allowed-vm-sizes.sizes.${cloud})`,
      ]);
    });

    test(`${target}: a size an environment may use is refused to a pr-<number> stack`, async () => {
      const vm = ofType(await resourcesOf({ ...settings, size: middle }, "pr-12"), vmType);
      assert.deepEqual(await resourceViolations("allowed-vm-sizes", vm, { stack: "production" }), []);
      assert.deepEqual(await resourceViolations("allowed-vm-sizes", vm, { stack: "pr-12" }), [
        `${what} "${vmName}" has ${setting} "${middle}": throwaway stack "pr-12" may use only ${DEFAULT_VM_SIZES.throwawaySizes[cloud].join(", ")} (policy config allowed-vm-sizes.throwawaySizes.${cloud})`,
      ]);
    });

    test(`${target}: policy/config.example.json widens the environment list`, async () => {
      const file = JSON.parse(readFileSync(path.join(POLICY_DIR, "config.example.json"), "utf8")) as Record<
        string,
        unknown
      >;
      const wider = target === "aws" ? "t3.large" : "s-4vcpu-8gb";
      const vm = withField(ofType(await resourcesOf(settings, "production"), vmType)[0], setting, wider);
      assert.equal(
        (await resourceViolations("allowed-vm-sizes", [vm], { stack: "production" })).length,
        1,
        "refused by default",
      );
      assert.deepEqual(await resourceViolations("allowed-vm-sizes", [vm], { stack: "production", file }), []);
      assert.equal(
        (await resourceViolations("allowed-vm-sizes", [vm], { stack: "pr-3", file })).length,
        1,
        "not for throwaway stacks",
      );
    });
  }
});

// ---------------------------------------------------------------------------------------------
// The pure checks' edges

describe("checks", () => {
  test("a pinned image names a version or a digest", () => {
    for (const ref of [
      "nginx:1.28.0-bookworm",
      "redis:8",
      "registry.example.com:5000/team/app:v2",
      "webstack-dev-app:abcdefabcdef",
      `node@sha256:${"a".repeat(64)}`,
      `sha256:${"b".repeat(64)}`,
    ]) {
      assert.equal(isPinnedImage(ref), true, ref);
    }
    for (const ref of [
      "nginx",
      "nginx:latest",
      "nginx:LATEST",
      "postgres:bookworm",
      "registry.example.com:5000/app",
      "node:lts-slim",
    ]) {
      assert.equal(isPinnedImage(ref), false, ref);
    }
  });

  test("the Docker socket is exposed by its own path or any directory above it", () => {
    for (const p of [
      "/var/run/docker.sock",
      "/run/docker.sock",
      "/var/run",
      "/var/run/",
      "/run",
      "/var",
      "/",
      "/var/./run",
      "/srv/../run",
    ]) {
      assert.equal(exposesDockerSocket(p), true, p);
    }
    for (const p of ["/var/lib/docker", "/srv/run", "/var/run/docker.sock.d", "/runner", "/var/running"]) {
      assert.equal(exposesDockerSocket(p), false, p);
    }
  });

  test("secret-looking variables: by name, or by a password in a URL; a *_FILE path is none", () => {
    for (const e of [
      "POSTGRES_PASSWORD=x",
      "GITHUB_TOKEN=x",
      "client_secret=x",
      "AWS_SECRET_ACCESS_KEY=x",
      "API_KEY=x",
      "REDISCLI_AUTH=x",
      "DATABASE_URL=postgres://u:p@db/x",
      "CACHE=redis://:p@redis:6379",
      // Named like a file but holding no path (or a credential): still a secret.
      "ADMIN_TOKEN_FILE=s3cr3t-token",
      "POSTGRES_PASSWORD_FILE=",
      "DATABASE_URL_FILE=postgres://u:p@db/x",
    ]) {
      assert.equal(needsSecret(e), true, e);
    }
    for (const e of [
      "PORT=3000",
      "PUBLIC_URL=https://example.com/a:b",
      "DATABASE_URL=postgres://user@db/x",
      "KEYBOARD=us",
      "AUTHOR=me",
      "POSTGRES_PASSWORD_FILE=/run/secrets/postgres-password",
      "ADMIN_TOKEN_FILE=/run/secrets/admin-token",
    ]) {
      assert.equal(needsSecret(e), false, e);
    }
  });

  test("port ranges: DigitalOcean's forms and AWS's protocol -1", () => {
    assert.deepEqual(doPortRange("22"), [22, 22]);
    assert.deepEqual(doPortRange("8000-9000"), [8000, 9000]);
    assert.deepEqual(doPortRange("all"), [1, 65535]);
    assert.deepEqual(doPortRange(undefined), [1, 65535]);
    const udp = adminExposureProblems(TYPES.doFirewall, "fw", {
      inboundRules: [{ protocol: "udp", portRange: "all", sourceAddresses: ["0.0.0.0/0"] }],
    });
    assert.deepEqual(udp, [], "UDP reaches neither SSH nor the Docker API");
    const sg = adminExposureProblems(TYPES.securityGroup, "sg", {
      ingress: [{ protocol: "udp", fromPort: 0, toPort: 65535, cidrBlocks: ["0.0.0.0/0"] }],
    });
    assert.deepEqual(sg, []);
  });
});

// ---------------------------------------------------------------------------------------------
// The pack itself

describe("the pack", () => {
  test("policy/index.ts serves exactly webstackPolicies() as pack webstack, versioned by policy/package.json", () => {
    // Loading index.ts constructs the PolicyPack, which starts the gRPC server and keeps the
    // process alive; the constructor calls server.serve through the module object, so a
    // stand-in records what it would have served. The constructor reads ./package.json from the
    // working directory, as it does in the pack's directory under the CLI.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const server = require("@pulumi/policy/server") as { serve: (...args: unknown[]) => void };
    const serve = server.serve;
    const served: unknown[][] = [];
    server.serve = (...args) => served.push(args);
    const cwd = process.cwd();
    process.chdir(POLICY_DIR);
    try {
      const index = path.join(POLICY_DIR, "index.ts");
      delete require.cache[require.resolve(index)];
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      require(index);
    } finally {
      process.chdir(cwd);
      server.serve = serve;
    }
    assert.equal(served.length, 1);
    const [name, version, level, args] = served[0] as [string, string, EnforcementLevel, PolicyPackArgs];
    assert.equal(name, "webstack");
    assert.equal(
      version,
      (JSON.parse(readFileSync(path.join(POLICY_DIR, "package.json"), "utf8")) as { version: string }).version,
    );
    assert.equal(level, "mandatory");
    const expected = webstackPolicies();
    assert.deepEqual(
      args.policies.map((p) => [p.name, p.enforcementLevel]),
      expected.map((p) => [p.name, p.enforcementLevel]),
    );
    assert.deepEqual(
      args.policies.map((p) => p.name),
      [
        "only-nginx-publishes-ports",
        "no-privileged-containers",
        "memory-limits",
        "pinned-images",
        "secret-environment",
        "admin-ports-not-public",
        "data-protection",
        "allowed-vm-sizes",
      ],
    );
    for (const p of args.policies) {
      assert.match(p.name, /^[a-z]+(-[a-z]+)*$/);
      assert.match(p.description, /^[A-Z][^]*\.$/, `${p.name}: a sentence`);
      assert.doesNotMatch(p.description.slice(0, -1), /\.\s/, `${p.name}: one sentence`);
      assert.equal(p.enforcementLevel, p.name === "secret-environment" ? "remediate" : "mandatory");
    }
    assert.equal("validateStack" in policyNamed(args.policies, "data-protection"), true);
  });

  test("policy/config.example.json configures only policies of the pack, with the schema's shapes", () => {
    const file = JSON.parse(readFileSync(path.join(POLICY_DIR, "config.example.json"), "utf8")) as Record<
      string,
      unknown
    >;
    const policies = webstackPolicies();
    const levels = ["advisory", "mandatory", "remediate", "disabled"];
    for (const [name, value] of Object.entries(file)) {
      const policy = policyNamed(policies, name);
      if (typeof value === "string") {
        assert.ok(levels.includes(value), `${name}: ${value}`);
        continue;
      }
      const schema = policy.configSchema?.properties ?? {};
      for (const [key, lists] of Object.entries(value as Record<string, unknown>)) {
        assert.ok(key in schema, `${name}.${key} is in the schema`);
        assert.deepEqual(Object.keys(lists as object).sort(), ["aws", "digitalocean"]);
      }
    }
  });

  describe("run as the Pulumi CLI runs it", () => {
    // The CLI starts `pulumi-analyzer-policy` in the pack's directory; that shim resolves
    // @pulumi/pulumi/cmd/run-policy-pack from there (here: the repository's node_modules) and runs
    // it on ".", which compiles index.ts with ts-node. The stack's name arrives as
    // PULUMI_NODEJS_STACK. The first line the pack prints is the port of its gRPC server.
    let pack: ChildProcess | undefined;
    let client: AnalyzerClient | undefined;
    after(() => {
      client?.close();
      pack?.kill();
    });

    const started = memo(async () => {
      const script = require.resolve("@pulumi/pulumi/cmd/run-policy-pack", { paths: [POLICY_DIR] });
      const env = Object.fromEntries(
        Object.entries(process.env).filter(([key]) => key !== "NODE_OPTIONS" && !key.startsWith("TSX")),
      );
      const child = spawn(process.execPath, [script, "127.0.0.1:0", "."], {
        cwd: POLICY_DIR,
        env: { ...env, PULUMI_NODEJS_STACK: "pr-42", PULUMI_NODEJS_PROJECT: "webstack", PULUMI_NODEJS_DRY_RUN: "true" },
        stdio: ["ignore", "pipe", "pipe"],
      });
      pack = child;
      const port = await new Promise<string>((resolve, reject) => {
        let stdout = "";
        let stderr = "";
        const timer = setTimeout(() => reject(new Error(`the pack printed no port within 180 s: ${stderr}`)), 180_000);
        child.stdout.on("data", (chunk: Buffer) => {
          stdout += chunk.toString();
          const line = /^([0-9]+)\n/.exec(stdout);
          if (line !== null) {
            clearTimeout(timer);
            resolve(line[1]);
          }
        });
        child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
        child.on("exit", (code) => {
          clearTimeout(timer);
          reject(new Error(`the pack exited with ${code}: ${stderr}`));
        });
      });
      client = new AnalyzerClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
      return client;
    });

    const unary = <Res>(call: (callback: (err: grpc.ServiceError | null, res: Res) => void) => unknown) =>
      new Promise<Res>((resolve, reject) => call((err, res) => (err ? reject(err) : resolve(res))));

    function request(r: Registered, properties = r.raw): analyzer.AnalyzeRequest {
      const req = new analyzer.AnalyzeRequest();
      req.setType(r.type);
      req.setName(r.name);
      req.setUrn(r.urn);
      req.setProperties(toStruct(properties));
      const options = new analyzer.AnalyzerResourceOptions();
      options.setProtect(r.protect);
      req.setOptions(options);
      return req;
    }

    /** What the engine does per resource: remediate, then analyze; the messages of mandatory violations. */
    async function engineCheck(client: AnalyzerClient, r: Registered): Promise<string[]> {
      const remediated = await unary<analyzer.RemediateResponse>((cb) => client.remediate(request(r), cb));
      assert.deepEqual(remediated.getRemediationsList(), [], `${r.name}: nothing remediated`);
      const analyzed = await unary<analyzer.AnalyzeResponse>((cb) => client.analyze(request(r), cb));
      return analyzed.getDiagnosticsList().map((d) => {
        assert.equal(d.getEnforcementlevel(), analyzer.EnforcementLevel.MANDATORY, d.getMessage());
        return d.getMessage();
      });
    }

    test("describes its policies, and takes the example config as the CLI passes it", async () => {
      const client = await started();
      const info = await unary<analyzer.AnalyzerInfo>((cb) => client.getAnalyzerInfo(new Empty(), cb));
      assert.equal(info.getName(), "webstack");
      assert.equal(info.getSupportsconfig(), true);
      const level = (p: analyzer.PolicyInfo) => p.getEnforcementlevel();
      assert.deepEqual(
        info.getPoliciesList().map((p) => [p.getName(), level(p)]),
        webstackPolicies().map((p) => [
          p.name,
          p.enforcementLevel === "remediate"
            ? analyzer.EnforcementLevel.REMEDIATE
            : analyzer.EnforcementLevel.MANDATORY,
        ]),
      );
      const schema = info
        .getPoliciesList()
        .find((p) => p.getName() === "allowed-vm-sizes")
        ?.getConfigschema()
        ?.getProperties()
        ?.toJavaScript();
      assert.deepEqual((schema?.sizes as { default: unknown }).default, DEFAULT_VM_SIZES.sizes);

      const file = JSON.parse(readFileSync(path.join(POLICY_DIR, "config.example.json"), "utf8")) as Record<
        string,
        unknown
      >;
      const configure = new analyzer.ConfigureAnalyzerRequest();
      const levels: Record<EnforcementLevel, analyzer.EnforcementLevel> = {
        advisory: analyzer.EnforcementLevel.ADVISORY,
        mandatory: analyzer.EnforcementLevel.MANDATORY,
        remediate: analyzer.EnforcementLevel.REMEDIATE,
        disabled: analyzer.EnforcementLevel.DISABLED,
      };
      for (const [name, config] of Object.entries(reconcile(webstackPolicies(), file))) {
        const entry = new analyzer.PolicyConfig();
        entry.setEnforcementlevel(levels[config.enforcementLevel]);
        entry.setProperties(toStruct(config.properties));
        configure.getPolicyconfigMap().set(name, entry);
      }
      await unary((cb) => client.configure(configure, cb));
    });

    test("sees secrets only where @pulumi/policy shows them: secret envs pass, plaintext ones fail", async () => {
      const client = await started();
      const resources = await builtWith(TARGETS[1].settings, {
        postgres: (args) => {
          args.envs = pulumi.secret(
            pulumi.output(args.envs ?? []).apply((envs) => [...(envs ?? []), "POSTGRES_PASSWORD=kept-secret-password"]),
          );
        },
      });
      const postgres = named(resources, "webstack-postgres");
      assert.deepEqual(await engineCheck(client, postgres), []);
      const description = policyNamed(webstackPolicies(), "secret-environment").description;
      assert.deepEqual(await engineCheck(client, withField(postgres, "envs", postgres.inputs.envs)), [
        `${description}\ncontainer "webstack-postgres" has POSTGRES_PASSWORD in plaintext envs: ${SECRET_RULE}`,
      ]);
    });

    test("knows its stack from the CLI: pr-42 is throwaway, so its cheaper sizes apply and nothing may be protected", async () => {
      const client = await started();
      const resources = await resourcesOf(
        { ...TARGETS[1].settings, protectData: "true", size: "s-2vcpu-4gb" },
        "pr-42",
      );
      const droplet = named(resources, "host-droplet");
      const sizes = policyNamed(webstackPolicies(), "allowed-vm-sizes").description;
      assert.deepEqual(await engineCheck(client, droplet), [
        `${sizes}\ndroplet "host-droplet" has size "s-2vcpu-4gb": throwaway stack "pr-42" may use only s-1vcpu-1gb, s-1vcpu-2gb (policy config allowed-vm-sizes.throwawaySizes.digitalocean)`,
      ]);

      const stack = new analyzer.AnalyzeStackRequest();
      stack.setResourcesList(
        resources.map((r) => {
          const resource = new analyzer.AnalyzerResource();
          resource.setType(r.type);
          resource.setName(r.name);
          resource.setUrn(r.urn);
          resource.setProperties(toStruct(r.outputs));
          const options = new analyzer.AnalyzerResourceOptions();
          options.setProtect(r.protect);
          resource.setOptions(options);
          return resource;
        }),
      );
      const analyzed = await unary<analyzer.AnalyzeResponse>((cb) => client.analyzeStack(stack, cb));
      assert.deepEqual(
        analyzed.getDiagnosticsList().map((d) => [d.getPolicyname(), d.getUrn()]),
        [
          ["data-protection", named(resources, "host-data").urn],
          ["data-protection", named(resources, "webstack-postgres-data").urn],
        ],
      );
      assert.match(analyzed.getDiagnosticsList()[0].getMessage(), /stack "pr-42" is a throwaway stack but/);
    });
  });
});
