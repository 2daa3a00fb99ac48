// Issue 9 under mocks: each security setting of the real program, checked by a function that
// returns what is wrong, and each check shown to catch the insecure variant of its setting.
import * as pulumi from "@pulumi/pulumi";
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ECR_KEEP_IMAGES } from "../../components/hosts/aws";
import { REGISTRY_CREDENTIAL_SECONDS } from "../../components/hosts/digitalocean";
import { programFailures, RecordingMocks, Registered, runBuild, runProgram } from "./support/mocks";

type Inputs = Record<string, unknown>;
const ADMIN = '["198.51.100.0/24"]';
const LOCAL = {};
const DO = { target: "digitalocean", region: "nyc3", adminCidrs: ADMIN };
const AWS = { target: "aws", region: "us-east-1", adminCidrs: ADMIN };
const TYPES = {
  container: "docker:index/container:Container",
  network: "docker:index/network:Network",
  command: "command:remote:Command",
  droplet: "digitalocean:index/droplet:Droplet",
  firewall: "digitalocean:index/firewall:Firewall",
  tag: "digitalocean:index/tag:Tag",
  docrCredentials: "digitalocean:index/containerRegistryDockerCredentials:ContainerRegistryDockerCredentials",
  ecr: "aws:ecr/repository:Repository",
  ecrLifecycle: "aws:ecr/lifecyclePolicy:LifecyclePolicy",
  rolePolicy: "aws:iam/rolePolicy:RolePolicy",
  profile: "aws:iam/instanceProfile:InstanceProfile",
  instance: "aws:ec2/instance:Instance",
  dockerProvider: "pulumi:providers:docker",
} as const;

const ofType = (resources: Registered[], type: string) => resources.filter((r) => r.type === type);
const named = (resources: Registered[], name: string) => {
  const found = resources.find((r) => r.name === name);
  assert.ok(found, `${name} was registered`);
  return found;
};
const containerNamed = (resources: Registered[], dockerName: string) => {
  const found = ofType(resources, TYPES.container).find((c) => c.inputs.name === dockerName);
  assert.ok(found, `container ${dockerName} was registered`);
  return found;
};
/** A recorded resource with some inputs changed, as if the program had set them. */
const withInputs = (r: Registered, changes: Inputs): Registered => ({ ...r, inputs: { ...r.inputs, ...changes } });
const replace = (resources: Registered[], r: Registered) =>
  resources.map((x) => (x.urn === r.urn && x.name === r.name ? r : x));
const labelsOf = (c: Registered) =>
  Object.fromEntries(
    ((c.inputs.labels as { label: string; value: string }[] | undefined) ?? []).map((l) => [l.label, l.value]),
  );
const roleOf = (c: Registered) => labelsOf(c)["webstack.role"];

async function resources(settings: Record<string, string>): Promise<Registered[]> {
  return (await runProgram(settings)).mocks.resources;
}

// ---------------------------------------------------------------------------------------------
// The checks

/**
 * The generated secrets (Postgres and Redis passwords, admin token, the backups' passphrase) and,
 * on a cloud target, the backups' bucket key (its id and its secret).
 */
function secretsOf(rs: Registered[]): string[] {
  const generated = ["webstack-postgres-password", "webstack-redis-password", "webstack-admin-token"].map((n) =>
    String(named(rs, n).outputs.result),
  );
  const cipher = rs.filter((r) => r.name === "webstack-backup-cipher").map((r) => String(r.outputs.result));
  const bucketKeys = rs.flatMap((r) =>
    r.type === "digitalocean:index/spacesKey:SpacesKey"
      ? [String(r.outputs.accessKey), String(r.outputs.secretKey)]
      : r.type === "aws:iam/accessKey:AccessKey"
        ? [String(r.outputs.secret)]
        : [],
  );
  return [...generated, ...cipher, ...bucketKeys];
}

/** Secrets anywhere `docker inspect` shows: environment, labels, command, entrypoint, health check. */
function leakProblems(rs: Registered[]): string[] {
  const secrets = secretsOf(rs);
  return ofType(rs, TYPES.container).flatMap((c) =>
    (["envs", "labels", "command", "entrypoints", "healthcheck"] as const)
      .filter((field) => secrets.some((s) => JSON.stringify(c.inputs[field] ?? null).includes(s)))
      .map((field) => `${String(c.inputs.name)} shows a secret in ${field}`),
  );
}

/** The app's and Postgres's secrets as files: the variables name paths, the files are tight. */
function secretFileProblems(rs: Registered[]): string[] {
  const problems: string[] = [];
  const uploads = (c: Registered) => (c.inputs.uploads as Inputs[] | undefined) ?? [];
  const postgres = containerNamed(rs, "webstack-test-postgres");
  if (!(postgres.inputs.envs as string[]).includes("POSTGRES_PASSWORD_FILE=/run/secrets/postgres-password"))
    problems.push("Postgres has no password file");
  // Its password file is root's alone (the entrypoint reads it before dropping to postgres);
  // pgBackRest's config is read by archive-push as postgres, the only user the container runs,
  // and the upload is root's: 0444. Any other file is a problem.
  const postgresModes: Record<string, string> = {
    "/run/secrets/postgres-password": "0400",
    "/etc/pgbackrest/pgbackrest.conf": "0444",
  };
  for (const u of uploads(postgres)) {
    const mode = postgresModes[String(u.file)];
    if (mode === undefined) problems.push(`Postgres gets the file ${String(u.file)}`);
    else if (u.permissions !== mode) {
      problems.push(
        u.file === "/run/secrets/postgres-password"
          ? "Postgres's password file is not 0400"
          : `Postgres's ${String(u.file)} is ${String(u.permissions)}, not ${mode}`,
      );
    }
  }
  const run = containerNamed(rs, "webstack-test-files-app");
  if (uploads(run).some((u) => u.permissions !== "0400")) problems.push("the app's staged files are not 0400");
  if (!(run.inputs.command as string[]).includes("owner=10001:10001"))
    problems.push("the app's files are not handed to the app's user");
  for (const app of ofType(rs, TYPES.container).filter((c) => roleOf(c) === "app")) {
    const envs = app.inputs.envs as string[];
    for (const v of ["DATABASE_URL_FILE", "REDIS_URL_FILE", "ADMIN_TOKEN_FILE"]) {
      if (!envs.some((e) => e.startsWith(`${v}=/run/secrets/`))) problems.push(`${String(app.inputs.name)} lacks ${v}`);
    }
    const mount = (app.inputs.volumes as Inputs[]).find((v) => v.containerPath === "/run/secrets");
    if (mount?.readOnly !== true) problems.push(`${String(app.inputs.name)} does not mount its secrets read-only`);
  }
  // The migration run is told of the database's URL file alone.
  for (const run of ofType(rs, TYPES.container).filter((c) => roleOf(c) === "migrate")) {
    const told = (run.inputs.envs as string[]).filter((e) => e.includes("_FILE="));
    if (JSON.stringify(told) !== '["DATABASE_URL_FILE=/run/secrets/database-url"]')
      problems.push(`${String(run.inputs.name)} is told of ${told.join(", ")}`);
    const mount = (run.inputs.volumes as Inputs[]).find((v) => v.containerPath === "/run/secrets");
    if (mount?.readOnly !== true) problems.push(`${String(run.inputs.name)} does not mount its secrets read-only`);
  }
  return problems;
}

/** Capabilities each role may keep; everything else dropped. */
const ALLOWED_CAPABILITIES: Record<string, string[]> = {
  postgres: ["CAP_CHOWN", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_SETGID", "CAP_SETUID"],
  redis: ["CAP_CHOWN", "CAP_DAC_READ_SEARCH", "CAP_SETGID", "CAP_SETUID"],
  nginx: ["CAP_CHOWN", "CAP_NET_BIND_SERVICE", "CAP_SETGID", "CAP_SETUID"],
  app: [],
  migrate: [],
  "files-app": ["CAP_CHOWN"],
  "files-nginx": [],
  // pgBackRest runs as postgres from the start: it needs no capability.
  backup: [],
  // The Postgres image's check runs as root to read the data directory whichever uid owns it: it
  // may read past file permissions, nothing more (no chown, no setuid, no write).
  "postgres-check": ["CAP_DAC_READ_SEARCH"],
};

function hardeningProblems(rs: Registered[]): string[] {
  return ofType(rs, TYPES.container).flatMap((c) => {
    const name = String(c.inputs.name);
    const role = roleOf(c);
    const problems: string[] = [];
    const caps = (c.inputs.capabilities as { drops?: string[]; adds?: string[] } | undefined) ?? {};
    if (JSON.stringify(caps.drops) !== '["ALL"]') problems.push(`${name} does not drop all capabilities`);
    const extra = (caps.adds ?? []).filter((cap) => !(ALLOWED_CAPABILITIES[role] ?? []).includes(cap));
    if (extra.length > 0) problems.push(`${name} adds ${extra.join(", ")}`);
    if (!((c.inputs.securityOpts as string[] | undefined) ?? []).includes("no-new-privileges:true"))
      problems.push(`${name} may gain privileges`);
    const readOnly = role === "app" || role === "migrate" || role === "nginx";
    // The Postgres check writes nothing at all: a read-only root, and no tmpfs to need.
    if ((readOnly || role === "postgres-check") && c.inputs.readOnly !== true)
      problems.push(`${name} has a writable root`);
    if (readOnly && Object.keys((c.inputs.tmpfs as Inputs | undefined) ?? {}).length === 0) {
      problems.push(`${name} has nowhere to write`);
    }
    if (!/^[0-9a-f]{16}$/.test(labelsOf(c)["webstack.spec"] ?? "")) problems.push(`${name} has no spec fingerprint`);
    if (c.inputs.privileged === true) problems.push(`${name} is privileged`);
    return problems;
  });
}

/**
 * nginx on front only, Postgres and Redis on back only, the app on both; back internal. With a
 * bucket (cloud targets), Postgres (which archives WAL) and the backup container also join the
 * `backup` network, their way out to it and nobody else's; locally the backup container has no
 * network at all (the socket and the repository are volumes).
 */
function networkProblems(rs: Registered[], bucket: boolean): string[] {
  const problems: string[] = [];
  const networks = Object.fromEntries(ofType(rs, TYPES.network).map((n) => [String(n.inputs.name), n]));
  const back = networks["webstack-test-back"];
  if (back?.inputs.internal !== true) problems.push("the back network is not internal");
  if (networks["webstack-test"]?.inputs.internal === true) problems.push("the front network is internal");
  const backup = networks["webstack-test-backup"];
  if (bucket && backup === undefined) problems.push("there is no way out to the bucket");
  if (bucket && backup?.inputs.internal === true)
    problems.push("the backup network is internal: the bucket is out of reach");
  if (!bucket && backup !== undefined) problems.push("a backup network without a bucket");
  const expected: Record<string, string[][]> = {
    nginx: [["webstack-test", "nginx"]],
    postgres: [["webstack-test-back", "postgres"], ...(bucket ? [["webstack-test-backup"]] : [])],
    redis: [["webstack-test-back", "redis"]],
    app: [["webstack-test", "app"], ["webstack-test-back"]],
    // The migration run needs Postgres alone.
    migrate: [["webstack-test-back"]],
    // The Postgres image's check reads the data volume and talks to nobody: no network at all.
    "postgres-check": [],
    backup: bucket ? [["webstack-test-backup"]] : [],
  };
  for (const c of ofType(rs, TYPES.container)) {
    const role = roleOf(c);
    const joined = ((c.inputs.networksAdvanced as Inputs[] | undefined) ?? []).map((n) => [
      String(n.name),
      ...((n.aliases as string[]) ?? []),
    ]);
    const want = expected[role] ?? [];
    if (JSON.stringify(joined) !== JSON.stringify(want))
      problems.push(`${String(c.inputs.name)} is on ${JSON.stringify(joined)}, not ${JSON.stringify(want)}`);
    if (want.length === 0 && c.inputs.networkMode !== "none") problems.push(`${String(c.inputs.name)} is on a network`);
  }
  return problems;
}

/** Every command on the host verifies the host key cloud-init installed, as the non-root user. */
function hostKeyProblems(rs: Registered[]): string[] {
  const problems: string[] = [];
  const publicKey = String(named(rs, "host-host-key").outputs.publicKeyOpenssh).trim();
  const vm = rs.find((r) => r.type === TYPES.droplet || r.type === TYPES.instance);
  const userData = JSON.parse(String(vm?.inputs.userData).slice("#cloud-config\n".length)) as {
    ssh_keys?: Record<string, string>;
  };
  if (userData.ssh_keys?.ed25519_public !== publicKey) problems.push("cloud-init installs another host key");
  for (const c of ofType(rs, TYPES.command)) {
    const connection = c.inputs.connection as Inputs;
    if (connection.hostKey !== publicKey) problems.push(`${c.name} does not pin the host key`);
    if (connection.user !== "admin") problems.push(`${c.name} logs in as ${String(connection.user)}`);
  }
  return problems;
}

/** The droplet boots behind the firewall: attached by a tag the droplet carries from its creation. */
function firewallProblems(rs: Registered[]): string[] {
  const problems: string[] = [];
  const [firewall] = ofType(rs, TYPES.firewall);
  const [droplet] = ofType(rs, TYPES.droplet);
  const [tag] = ofType(rs, TYPES.tag);
  if (tag === undefined || !((firewall.inputs.tags as string[] | undefined) ?? []).includes(String(tag.inputs.name)))
    problems.push("the firewall attaches by no tag");
  if (firewall.inputs.dropletIds !== undefined)
    problems.push("the firewall attaches by droplet id, after the droplet booted");
  if (tag === undefined || !((droplet.inputs.tags as string[]) ?? []).includes(String(tag.inputs.name)))
    problems.push("the droplet does not carry the firewall's tag");
  if (!droplet.dependencies.includes(firewall.urn)) problems.push("the droplet may be created before its firewall");
  for (const rule of firewall.inputs.inboundRules as Inputs[]) {
    const sources = rule.sourceAddresses as string[];
    if (["22", "2376"].includes(String(rule.portRange)) && sources.some((s) => s.endsWith("/0")))
      problems.push(`port ${String(rule.portRange)} is open to all`);
  }
  return problems;
}

/** No registry credential on the host's Docker provider; push credentials short-lived and per pushed image; pulls read-only. */
function docrProblems(rs: Registered[]): string[] {
  const problems: string[] = [];
  if (named(rs, "host-engine-docker").inputs.registryAuth !== undefined)
    problems.push("the host's Docker provider holds a registry credential");
  // The pushed image's tag: its release.
  const tag = /:([0-9a-z_.-]+)$/.exec(String(ofType(rs, "docker:index/image:Image")[0].inputs.imageName))?.[1];
  for (const c of ofType(rs, TYPES.docrCredentials)) {
    const seconds = c.inputs.expirySeconds as number | undefined;
    if (seconds === undefined || seconds > REGISTRY_CREDENTIAL_SECONDS)
      problems.push(`${c.name} lives ${seconds ?? "the provider's default of about 50 years of"} seconds`);
    if (c.replacementTrigger === undefined) problems.push(`${c.name} is never renewed`);
    if (c.name === "app-push" && c.replacementTrigger !== tag)
      problems.push("the push credential is not per pushed image");
    if (c.name !== "app-push" && c.inputs.write !== false) problems.push(`${c.name} can push`);
  }
  const push = ofType(rs, TYPES.docrCredentials).filter((c) => c.inputs.write === true);
  if (push.length !== 1) problems.push(`${push.length} credentials can push`);
  return problems;
}

/** ECR: immutable tags, bounded images, the instance may pull from this repository only. */
function ecrProblems(rs: Registered[]): string[] {
  const problems: string[] = [];
  const [repository] = ofType(rs, TYPES.ecr);
  if (repository.inputs.imageTagMutability !== "IMMUTABLE") problems.push("tags can be moved");
  const [lifecycle] = ofType(rs, TYPES.ecrLifecycle);
  const rules =
    lifecycle === undefined
      ? []
      : (JSON.parse(String(lifecycle.inputs.policy)) as { rules: { selection: Inputs; action: Inputs }[] }).rules;
  if (
    !rules.some(
      (r) =>
        r.selection.countType === "imageCountMoreThan" && r.selection.tagStatus === "any" && r.action.type === "expire",
    )
  ) {
    problems.push("images are kept forever");
  }
  const statements = ofType(rs, TYPES.rolePolicy).flatMap(
    (p) => (JSON.parse(String(p.inputs.policy)) as { Statement: Inputs[] }).Statement,
  );
  const arn = `arn:aws:ecr:us-east-1:123456789012:repository/${String(repository.inputs.name)}`;
  for (const s of statements) {
    const actions = [s.Action].flat() as string[];
    const readOnly = actions.every((a) =>
      [
        "ecr:GetAuthorizationToken",
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
        "ecr:BatchCheckLayerAvailability",
      ].includes(a),
    );
    if (!readOnly) problems.push(`the instance may ${actions.join(", ")}`);
    if (s.Resource === "*" && !(actions.length === 1 && actions[0] === "ecr:GetAuthorizationToken"))
      problems.push("the instance's rights reach every repository");
    if (s.Resource !== "*" && s.Resource !== arn) problems.push(`the instance's rights reach ${String(s.Resource)}`);
  }
  if (statements.length === 0) problems.push("the instance has no pull rights");
  const [instance] = ofType(rs, TYPES.instance);
  const [profile] = ofType(rs, TYPES.profile);
  if (profile === undefined || instance.inputs.iamInstanceProfile !== profile.inputs.name)
    problems.push("the instance has no instance profile");
  if (named(rs, "host-engine-docker").inputs.registryAuth !== undefined)
    problems.push("the host's Docker provider holds a registry credential");
  if (!String(named(rs, "app-pull").inputs.create).includes('"ecr-login"'))
    problems.push("the host does not pull with its own read-only rights");
  return problems;
}

/** The nginx config the stack runs: the files run's staged nginx.conf. */
function nginxConf(rs: Registered[]): string {
  const run = containerNamed(rs, "webstack-test-files-nginx");
  const conf = ((run.inputs.uploads as Inputs[]) ?? []).find((u) => u.file === "/webstack/files/nginx.conf");
  assert.ok(conf, "nginx.conf is staged");
  return String(conf.content);
}

// ---------------------------------------------------------------------------------------------

describe("the admin token and the admin route", () => {
  test("a generated 40-character token per stack, exported as the secret output adminToken, reaching the app only as a 0400 file", async () => {
    const { mocks, outputs, secretOutputs } = await runProgram(LOCAL);
    const token = named(mocks.resources, "webstack-admin-token");
    assert.deepEqual(token.inputs, { length: 40, special: false });
    assert.equal(outputs.adminToken, token.outputs.result);
    assert.ok(secretOutputs.includes("adminToken"));
    const staged = (containerNamed(mocks.resources, "webstack-test-files-app").inputs.uploads as Inputs[]).filter(
      (u) => u.content === token.outputs.result,
    );
    assert.deepEqual(
      staged.map((u) => [u.file, u.permissions]),
      [["/webstack/files/admin-token", "0400"]],
    );
    assert.deepEqual(leakProblems(mocks.resources), []);
    assert.deepEqual(secretFileProblems(mocks.resources), []);

    // The token (or a password) in an environment or a label shows in `docker inspect`: caught.
    const leaky = await runBuild(LOCAL, {
      app: (args) => {
        args.envs = [...((args.envs ?? []) as string[]), `ADMIN_TOKEN=${String(token.outputs.result)}`];
      },
      postgres: (args) => {
        args.labels = pulumi
          .output(args.labels ?? [])
          .apply((labels) => [
            ...(labels ?? []),
            { label: "pw", value: String(named(mocks.resources, "webstack-postgres-password").outputs.result) },
          ]);
      },
    });
    const problems = leakProblems(leaky.mocks.resources);
    assert.ok(problems.includes("webstack-test-postgres shows a secret in labels"), problems.join("; "));
    assert.equal(problems.filter((p) => p.endsWith("shows a secret in envs")).length, 3, "each replica");
  });

  test("adminRoutes off by default: nginx answers /reset itself; on: it reaches the app", async () => {
    const off = nginxConf(await resources(LOCAL));
    assert.match(
      off,
      /location ~\* \^\/\(reset\|admin\)\(\/\|\$\) \{\n\s+default_type application\/json;\n\s+return 404/,
    );
    const on = nginxConf(await resources({ adminRoutes: "true" }));
    assert.doesNotMatch(on, /location ~\* \^\/\(reset\|admin\)/);
  });

  test("per-address limits off by default; set, they reach nginx's config", async () => {
    const off = nginxConf(await resources(LOCAL));
    assert.doesNotMatch(off, /^\s*limit_(conn|req) /m);
    // Room for one address's thousands of idle connections beside everyone else's.
    assert.match(off, /^\s*worker_connections 8192;$/m);
    const on = nginxConf(await resources({ limitConnPerIp: "20", limitRatePerIp: "10", limitBurst: "30" }));
    assert.match(on, /^\s*limit_conn_zone \$binary_remote_addr zone=webstack_conn_per_ip:10m;$/m);
    assert.match(on, /^\s*limit_conn webstack_conn_per_ip 20;$/m);
    assert.match(on, /^\s*limit_req_zone \$binary_remote_addr zone=webstack_req_per_ip:10m rate=10r\/s;$/m);
    assert.match(on, /^\s*limit_req zone=webstack_req_per_ip burst=30 nodelay;$/m);
  });
});

describe("containers", () => {
  for (const [target, settings] of [
    ["local", LOCAL],
    ["digitalocean", DO],
    ["aws", AWS],
  ] as const) {
    test(`${target}: no secret in any environment, label, command or health check; secrets are tight files`, async () => {
      const rs = await resources(settings);
      assert.deepEqual(leakProblems(rs), []);
      assert.deepEqual(secretFileProblems(rs), []);
    });

    test(`${target}: every container drops all capabilities but its image's start-up needs, no new privileges, read-only app, nginx and the Postgres check`, async () => {
      assert.deepEqual(hardeningProblems(await resources(settings)), []);
    });

    test(`${target}: nginx on the front network, Postgres and Redis on the internal back network, the app on both; ${target === "local" ? "the backup container on none" : "Postgres and the backup container on the way out to the bucket"}`, async () => {
      const rs = await resources(settings);
      assert.deepEqual(networkProblems(rs, target !== "local"), []);
      // And each target's layout is caught on the other.
      assert.ok(networkProblems(rs, target === "local").length > 0);
    });
  }

  test("the insecure variants are caught: capabilities kept, privileges gained, a writable root, no fingerprint", async () => {
    const { mocks } = await runBuild(LOCAL, {
      nginx: (args) => {
        args.capabilities = undefined;
        args.readOnly = false;
      },
      redis: (args) => {
        args.securityOpts = [];
        args.capabilities = { drops: ["ALL"], adds: ["CAP_CHOWN", "CAP_SYS_ADMIN"] };
      },
      app: (args) => {
        args.tmpfs = undefined;
        args.labels = [{ label: "webstack.role", value: "app" }];
      },
      postgresCheck: (args) => {
        args.readOnly = false;
        args.capabilities = { drops: ["ALL"], adds: ["CAP_DAC_READ_SEARCH", "CAP_DAC_OVERRIDE"] };
      },
    });
    const problems = hardeningProblems(mocks.resources);
    const check = String(
      ofType(mocks.resources, TYPES.container).find((c) => roleOf(c) === "postgres-check")?.inputs.name,
    );
    for (const expected of [
      "webstack-test-nginx does not drop all capabilities",
      "webstack-test-nginx has a writable root",
      "webstack-test-redis may gain privileges",
      "webstack-test-redis adds CAP_SYS_ADMIN",
      `${check} has a writable root`,
      `${check} adds CAP_DAC_OVERRIDE`,
    ]) {
      assert.ok(problems.includes(expected), `${expected} in ${problems.join("; ")}`);
    }
    assert.equal(
      problems.filter((p) => p.endsWith("has nowhere to write") || p.endsWith("has no spec fingerprint")).length,
      6,
      "each replica, twice",
    );
  });

  test("the insecure variants are caught: Redis on the front network, a back network with a way out, a password in Postgres's environment", async () => {
    const { mocks } = await runBuild(LOCAL, {
      redis: (args) => {
        args.networksAdvanced = [{ name: "webstack-test", aliases: ["redis"] }];
      },
      network: (args) => {
        if (args.name === "webstack-test-back") args.internal = false;
      },
      postgres: (args) => {
        args.envs = ["POSTGRES_PASSWORD=in-plain-sight-password"];
      },
    });
    assert.deepEqual(networkProblems(mocks.resources, false), [
      "the back network is not internal",
      'webstack-test-redis is on [["webstack-test","redis"]], not [["webstack-test-back","redis"]]',
    ]);
    assert.deepEqual(secretFileProblems(mocks.resources), ["Postgres has no password file"]);
  });

  test("a files run that fails stops the update before the container it writes for exists", async () => {
    // The files runs fail; every other one-off (the migration run, the Postgres image's check) would pass.
    const ending = (name: string) =>
      /-files-(app|nginx)$/.test(name) ? { exitCode: 1, logs: "" } : { exitCode: 0, logs: "" };
    const { mocks, failures } = await programFailures(LOCAL, { mocks: new RecordingMocks({ exitCode: ending }) });
    assert.deepEqual(
      [...new Set(failures.map((f) => f.message.replace(/^error serializing property "labels": /, "")))].sort(),
      ["app", "nginx"].map(
        (role) =>
          `webstack-test-files-${role} exited with code 1: the files of ${role} were not written (see \`docker logs webstack-test-files-${role}\`)`,
      ),
    );
    const names = ofType(mocks.resources, TYPES.container).map((c) => String(c.inputs.name));
    assert.ok(names.includes("webstack-test-files-app"));
    assert.ok(!names.some((n) => /-app-.+-[0-9]+$/.test(n) || n === "webstack-test-nginx"), names.join(", "));
  });

  test("a failed migration run stops the update before any replica of the release exists, and the error names the migration", async () => {
    // The run's log as Docker keeps it: the app's JSON lines, after an 8-byte stream header each.
    const header = "\u0001\u0000\u0000\u0000\u0000\u0000\u0000\u007f";
    const logs = [
      `${header}{"level":30,"msg":"> Migrating files:"}`,
      `${header}{"level":50,"library":"node-pg-migrate","msg":"Error executing: ALTER TABLE nope"}`,
      `${header}{"level":50,"migration":"0002_add-source","msg":"migration 0002_add-source failed: relation \\"nope\\" does not exist"}`,
      "",
    ].join("\n");
    const ending = (name: string) => (name.includes("-migrate-") ? { exitCode: 1, logs } : { exitCode: 0, logs: "" });
    const { mocks, failures } = await programFailures(
      { ...LOCAL, release: "r7" },
      {
        mocks: new RecordingMocks({ exitCode: ending }),
      },
    );
    assert.deepEqual(
      [...new Set(failures.map((f) => f.message))],
      [
        'webstack-test-migrate-r7 exited with code 1: migration 0002_add-source failed: relation "nope" does not exist. ' +
          "No replica of release r7 was created; the release before it serves on (see `docker logs webstack-test-migrate-r7`)",
      ],
    );
    const names = ofType(mocks.resources, TYPES.container).map((c) => String(c.inputs.name));
    assert.ok(names.includes("webstack-test-migrate-r7"));
    assert.ok(!names.some((n) => n.startsWith("webstack-test-app-")), names.join(", "));
    const migrate = containerNamed(mocks.resources, "webstack-test-migrate-r7");
    const postgres = containerNamed(mocks.resources, "webstack-test-postgres");
    const files = containerNamed(mocks.resources, "webstack-test-files-app");
    assert.ok(migrate.dependencies.includes(postgres.urn) && migrate.dependencies.includes(files.urn));
    // New secret files are no reason to run the migrations again.
    assert.equal(labelsOf(migrate)["webstack.files"], undefined);
  });

  test("replicas wait for the release's migration run, which ends before any of them is created", async () => {
    const rs = await resources({ ...LOCAL, release: "r7" });
    const migrate = containerNamed(rs, "webstack-test-migrate-r7");
    const replicas = ofType(rs, TYPES.container).filter((c) => roleOf(c) === "app");
    assert.equal(replicas.length, 3);
    for (const app of replicas) {
      assert.ok(app.dependencies.includes(migrate.urn), `${app.name} waits for the migrations`);
      assert.ok(app.order > migrate.order, `${app.name} registers after the migration run completed`);
    }
  });

  test("a replica is labelled with the run that wrote its files, so new files mean new replicas; nginx waits for its run and reloads what it writes", async () => {
    const rs = await resources(LOCAL);
    const run = containerNamed(rs, "webstack-test-files-app");
    for (const app of ofType(rs, TYPES.container).filter((c) => roleOf(c) === "app")) {
      assert.equal(labelsOf(app)["webstack.files"], `${run.name}-id`);
      assert.ok(app.dependencies.includes(run.urn), `${app.name} waits for its files`);
    }
    const nginx = containerNamed(rs, "webstack-test-nginx");
    assert.equal(labelsOf(nginx)["webstack.files"], undefined);
    assert.ok(nginx.dependencies.includes(containerNamed(rs, "webstack-test-files-nginx").urn));
  });

  test("a spec change, even one the provider would not apply to a running container, changes the fingerprint label", async () => {
    // The shutdown grace period is in the replicas' spec (stop timeout, environment), not in Redis's.
    const base = await resources({ release: "r1" });
    const graced = await resources({ release: "r1", shutdownGraceSeconds: "20" });
    const prints = (rs: Registered[], role: string) =>
      ofType(rs, TYPES.container)
        .filter((c) => roleOf(c) === role)
        .map((c) => labelsOf(c)["webstack.spec"]);
    assert.equal(new Set([...prints(base, "app"), ...prints(graced, "app")]).size, 6, "every replica's print changes");
    assert.deepEqual(prints(graced, "redis"), prints(base, "redis"));
  });
});

describe("cloud hosts", () => {
  for (const [target, settings] of [
    ["digitalocean", DO],
    ["aws", AWS],
  ] as const) {
    test(`${target}: the host key is generated, installed by cloud-init and pinned by every command; logins as admin`, async () => {
      const rs = await resources(settings);
      assert.deepEqual(named(rs, "host-host-key").inputs, { algorithm: "ED25519" });
      assert.deepEqual(hostKeyProblems(rs), []);
      const ready = named(rs, "host-engine-ready");
      const unpinned = withInputs(ready, {
        connection: { ...(ready.inputs.connection as Inputs), hostKey: undefined },
      });
      const asRoot = withInputs(ready, { connection: { ...(ready.inputs.connection as Inputs), user: "root" } });
      assert.deepEqual(hostKeyProblems(replace(rs, unpinned)), ["host-engine-ready does not pin the host key"]);
      assert.deepEqual(hostKeyProblems(replace(rs, asRoot)), ["host-engine-ready logs in as root"]);
    });
  }

  test("digitalocean: the firewall attaches by tag and exists before the droplet, which carries the tag", async () => {
    const rs = await resources(DO);
    assert.deepEqual(firewallProblems(rs), []);
    const [firewall] = ofType(rs, TYPES.firewall);
    const [droplet] = ofType(rs, TYPES.droplet);
    assert.deepEqual(droplet.inputs.ipv6, true, "IPv6 too is behind the firewall");
    const byId = withInputs(firewall, { tags: undefined, dropletIds: [123456] });
    const eager = { ...droplet, dependencies: droplet.dependencies.filter((u) => u !== firewall.urn) };
    assert.deepEqual(firewallProblems(replace(replace(rs, byId), eager)), [
      "the firewall attaches by no tag",
      "the firewall attaches by droplet id, after the droplet booted",
      "the droplet may be created before its firewall",
    ]);
  });

  test("digitalocean registry: a push credential per pushed image, expiring within the hour; the host pulls with a read-only one", async () => {
    const rs = await resources({ ...DO, imageRegistry: "cloud", docrRegistry: "acme" });
    assert.deepEqual(docrProblems(rs), []);
    const push = named(rs, "app-push");
    assert.deepEqual(push.inputs, { registryName: "acme", write: true, expirySeconds: 3600 });
    assert.deepEqual(named(rs, "app-pull-credentials").inputs, {
      registryName: "acme",
      write: false,
      expirySeconds: 3600,
    });
    assert.equal(
      named(rs, "app-pull-credentials").replacementTrigger,
      named(rs, "app-pulled").inputs.name,
      "renewed for each image pulled",
    );

    const lasting = withInputs(push, { expirySeconds: undefined });
    const writable = withInputs(named(rs, "app-pull-credentials"), { write: true });
    const provider = withInputs(named(rs, "host-engine-docker"), {
      registryAuth: [{ address: "registry.digitalocean.com" }],
    });
    assert.deepEqual(docrProblems(replace(replace(replace(rs, lasting), writable), provider)), [
      "the host's Docker provider holds a registry credential",
      "app-push lives the provider's default of about 50 years of seconds",
      "app-pull-credentials can push",
      "2 credentials can push",
    ]);
    assert.deepEqual(docrProblems(replace(rs, { ...push, replacementTrigger: undefined })), [
      "app-push is never renewed",
      "the push credential is not per pushed image",
    ]);
  });

  test("aws registry: immutable tags, the newest images kept, the instance pulls this repository only through its profile", async () => {
    const rs = await resources({ ...AWS, imageRegistry: "cloud" });
    assert.deepEqual(ecrProblems(rs), []);
    const [lifecycle] = ofType(rs, TYPES.ecrLifecycle);
    assert.equal(
      (JSON.parse(String(lifecycle.inputs.policy)) as { rules: { selection: Inputs }[] }).rules[0].selection
        .countNumber,
      ECR_KEEP_IMAGES,
    );
    assert.deepEqual(
      ofType(rs, "aws:ec2/instance:Instance")[0].inputs.userData !== undefined &&
        String(ofType(rs, "aws:ec2/instance:Instance")[0].inputs.userData).includes('"amazon-ecr-credential-helper"'),
      true,
      "the instance has the credential helper",
    );

    const [repository] = ofType(rs, TYPES.ecr);
    const [policy] = ofType(rs, TYPES.rolePolicy);
    const [instance] = ofType(rs, TYPES.instance);
    const mutable = withInputs(repository, { imageTagMutability: "MUTABLE" });
    const broad = withInputs(policy, {
      policy: JSON.stringify({ Statement: [{ Effect: "Allow", Action: "ecr:*", Resource: "*" }] }),
    });
    const noProfile = withInputs(instance, { iamInstanceProfile: undefined });
    const variant = replace(replace(replace(rs, mutable), broad), noProfile).filter(
      (r) => r.type !== TYPES.ecrLifecycle,
    );
    assert.deepEqual(ecrProblems(variant), [
      "tags can be moved",
      "images are kept forever",
      "the instance may ecr:*",
      "the instance's rights reach every repository",
      "the instance has no instance profile",
    ]);
  });

  test("without a registry there is no registry credential, role or pull at all", async () => {
    for (const settings of [DO, AWS]) {
      const rs = await resources(settings);
      for (const type of [TYPES.docrCredentials, TYPES.ecr, TYPES.rolePolicy, TYPES.profile])
        assert.deepEqual(ofType(rs, type), []);
      assert.deepEqual(
        ofType(rs, TYPES.command).map((c) => c.name),
        // The host's readiness, and the prune of old release images after each release.
        ["host-engine-ready", "app-releases-prune"],
      );
    }
  });
});
