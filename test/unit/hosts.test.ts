// The cloud hosts as registered: the remote engine's TLS and readiness, and each cloud's VM,
// address, volume and firewall, from the real index.ts under Pulumi's mocks.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { parseConfig } from "../../components/config";
import { createHost } from "../../components/hosts";
import { parseDockerAuth } from "../../components/hosts/digitalocean";
import { dependsOn, evaluated, ProgramRun, runProgram } from "./support/mocks";

// The deployer's own engine is the Docker provider's default, read from DOCKER_HOST: these tests
// describe a deployer without it set, whatever the shell that runs them has.
delete process.env.DOCKER_HOST;

const ADMIN = '["198.51.100.0/24"]';
const CLOUDS = [
  {
    target: "digitalocean",
    settings: { target: "digitalocean", region: "nyc3", adminCidrs: ADMIN },
    ip: "203.0.113.10",
  },
  { target: "aws", settings: { target: "aws", region: "us-east-1", adminCidrs: ADMIN }, ip: "203.0.113.20" },
] as const;

for (const { target, settings, ip } of CLOUDS) {
  describe(`${target} host`, () => {
    test("the Docker API's TLS: webstack's own CA, a server certificate for the public IP, a client certificate; P-256 keys; renewed 30 days ahead", async () => {
      const { mocks } = await evaluated(settings);
      for (const key of ["ca", "server", "client"].map((role) => mocks.named(`host-engine-${role}-key`))) {
        assert.deepEqual([key.inputs.algorithm, key.inputs.ecdsaCurve], ["ECDSA", "P256"], key.name);
      }
      const ca = mocks.named("host-engine-ca");
      assert.equal(ca.inputs.isCaCertificate, true);
      assert.deepEqual(ca.inputs.allowedUses, ["cert_signing", "crl_signing", "digital_signature"]);
      assert.deepEqual(ca.inputs.subject, { commonName: "host-engine Docker CA", organization: "webstack" });
      assert.deepEqual([ca.inputs.validityPeriodHours, ca.inputs.earlyRenewalHours], [5 * 365 * 24, 30 * 24]);
      assert.equal(ca.inputs.privateKeyPem, mocks.named("host-engine-ca-key").outputs.privateKeyPem);

      const uses = { server: "server_auth", client: "client_auth" };
      for (const role of ["server", "client"] as const) {
        const csr = mocks.named(`host-engine-${role}-csr`);
        assert.deepEqual(csr.inputs.subject, { commonName: `host-engine docker ${role}` });
        // Only the server is named, by the address the deployer connects to.
        assert.deepEqual(csr.inputs.ipAddresses, role === "server" ? [ip] : undefined, role);
        const cert = mocks.named(`host-engine-${role}-cert`);
        assert.deepEqual(cert.inputs.allowedUses, ["digital_signature", "key_encipherment", uses[role]], role);
        assert.deepEqual([cert.inputs.validityPeriodHours, cert.inputs.earlyRenewalHours], [365 * 24, 30 * 24]);
        assert.equal(cert.inputs.caCertPem, ca.outputs.certPem, `${role} is signed by the stack's CA`);
        assert.equal(cert.inputs.certRequestPem, csr.outputs.certRequestPem);
        assert.equal(
          cert.inputs.caPrivateKeyPem,
          mocks.named("host-engine-ca-key").outputs.privateKeyPem,
          `${role} is signed with the CA's key`,
        );
      }
    });

    test("the readiness command: runs once the host exists, again for a new VM or a renewed certificate; the provider waits for it", async () => {
      const { mocks } = await evaluated(settings);
      const ready = mocks.named("host-engine-ready");
      const vm = mocks.resources.find((r) => /droplet:Droplet|instance:Instance/.test(r.type))!;
      const vmId = target === "aws" ? "i-0123456789abcdef0" : "123456";
      assert.deepEqual(ready.inputs.triggers, [vmId, mocks.named("host-engine-server-cert").outputs.certPem]);
      assert.ok(dependsOn(ready, vm), "the readiness command waits for the VM");
      const connection = ready.inputs.connection as Record<string, unknown>;
      assert.equal(connection.host, ip);
      assert.equal(connection.user, "admin", "the non-root user cloud-init creates");
      // The host key cloud-init installs, without its trailing newline, pins the first connection.
      assert.equal(connection.hostKey, String(mocks.named("host-host-key").outputs.publicKeyOpenssh).trim());
      assert.equal(connection.privateKey, mocks.named("host-ssh-key").outputs.privateKeyOpenssh);

      const provider = mocks.named("host-engine-docker");
      assert.equal(provider.inputs.host, `tcp://${ip}:2376`);
      assert.ok(dependsOn(provider, ready), "the Docker provider waits for the engine");
      assert.equal(provider.inputs.certMaterial, mocks.named("host-engine-client-cert").outputs.certPem);
      assert.equal(provider.inputs.caMaterial, mocks.named("host-engine-ca").outputs.certPem);
      assert.equal(provider.inputs.keyMaterial, mocks.named("host-engine-client-key").outputs.privateKeyPem);
    });
  });
}

for (const { target, settings } of CLOUDS) {
  describe(`${target} host's keys and data`, () => {
    test("SSH keys are Ed25519; Postgres's volume is bound to the block volume's mount", async () => {
      const { mocks } = await evaluated(settings);
      for (const key of ["host-ssh-key", "host-host-key"]) {
        assert.deepEqual(mocks.named(key).inputs, { algorithm: "ED25519" }, key);
      }
      const volume = mocks.ofType("docker:index/volume:Volume").find((v) => v.name.endsWith("-postgres-data"))!;
      assert.deepEqual(volume.inputs.driverOpts, { type: "none", o: "bind", device: "/srv/webstack-data/postgres" });
      const redis = mocks.ofType("docker:index/volume:Volume").find((v) => v.name.endsWith("-redis-data"))!;
      assert.equal(redis.inputs.driverOpts, undefined, "Redis's data stays on the VM's disk");
    });

    test("pushing to the cloud registry: images are built by the deployer's engine, the host pulls once its engine is ready", async () => {
      const registry: Record<string, string> =
        target === "aws" ? { imageRegistry: "cloud" } : { imageRegistry: "cloud", docrRegistry: "acme" };
      const { mocks } = await evaluated({ ...settings, ...registry });
      const builder = mocks.named("host-builder");
      assert.deepEqual(builder.inputs, {}, "the deployer's own Docker engine, from its environment");
      const component = target === "aws" ? "AwsHost" : "DigitalOceanHost";
      assert.match(builder.urn, new RegExp(`::webstack:hosts:${component}\\$`), "the builder is the host's child");
      const image = mocks.ofType("docker:index/image:Image")[0];
      assert.equal(image.provider, `${builder.urn}::host-builder-provider-id`, "the image is built with the builder");
      const pull = mocks.resources.find((r) => r.type === "command:remote:Command" && r.name.endsWith("-pull"))!;
      assert.ok(dependsOn(pull, mocks.named("host-engine-ready")), "the host pulls once its engine is ready");
      if (target === "digitalocean") {
        const provider = mocks.ofType("pulumi:providers:digitalocean")[0];
        const lookup = mocks.calls.find(
          (c) => c.token === "digitalocean:index/getContainerRegistry:getContainerRegistry",
        )!;
        assert.deepEqual(lookup.inputs, { name: "acme" });
        assert.equal(
          lookup.provider,
          `${provider.urn}::${provider.name}-provider-id`,
          "the registry is looked up in the stack's account",
        );
      }
    });
  });
}

describe("aws host's registry and rights", () => {
  const settings = CLOUDS[1].settings;
  const userData = (run: ProgramRun) => String(run.mocks.ofType("aws:ec2/instance:Instance")[0].inputs.userData);

  test("ECR: one immutable, scanned repository named by the stack; the newest images kept; the instance may pull from it alone", async () => {
    const run = await evaluated({ ...settings, imageRegistry: "cloud" });
    const { mocks } = run;
    const [repository, lifecycle, role, policy, profile] = onOwnProvider(mocks, "pulumi:providers:aws", [
      "aws:ecr/repository:Repository",
      "aws:ecr/lifecyclePolicy:LifecyclePolicy",
      "aws:iam/role:Role",
      "aws:iam/rolePolicy:RolePolicy",
      "aws:iam/instanceProfile:InstanceProfile",
    ]);
    assert.deepEqual(repository.inputs, {
      name: "webstack-test-app",
      // The images are rebuilt from source; the stack's own repository goes with the stack.
      forceDelete: true,
      imageTagMutability: "IMMUTABLE",
      imageScanningConfiguration: { scanOnPush: true },
    });
    assert.equal(lifecycle.inputs.repository, "webstack-test-app");
    assert.deepEqual(JSON.parse(String(lifecycle.inputs.policy)), {
      rules: [
        {
          rulePriority: 1,
          description: "keep the 10 newest images",
          selection: { tagStatus: "any", countType: "imageCountMoreThan", countNumber: 10 },
          action: { type: "expire" },
        },
      ],
    });
    assert.equal(role.inputs.name, "webstack-test-host");
    assert.deepEqual(JSON.parse(String(role.inputs.assumeRolePolicy)), {
      Version: "2012-10-17",
      Statement: [{ Effect: "Allow", Principal: { Service: "ec2.amazonaws.com" }, Action: "sts:AssumeRole" }],
    });
    assert.equal(policy.inputs.role, "host-role-id", "the rights are the role's");
    assert.deepEqual(JSON.parse(String(policy.inputs.policy)), {
      Version: "2012-10-17",
      Statement: [
        { Effect: "Allow", Action: "ecr:GetAuthorizationToken", Resource: "*" },
        {
          Effect: "Allow",
          Action: ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
          Resource: "arn:aws:ecr:us-east-1:123456789012:repository/webstack-test-app",
        },
      ],
    });
    assert.deepEqual(profile.inputs, { name: "webstack-test-host", role: "webstack-test-host" });
    assert.equal(mocks.ofType("aws:ec2/instance:Instance")[0].inputs.iamInstanceProfile, "webstack-test-host");
    const token = mocks.calls.find((call) => call.token === "aws:ecr/getAuthorizationToken:getAuthorizationToken")!;
    assert.equal(token.inputs.registryId, "123456789012", "the token is for the stack's registry");
    assert.match(userData(run), /"amazon-ecr-credential-helper"/, "the host pulls through the credential helper");
  });

  test("without ECR: no repository, no role, and no credential helper on the host; the only IAM identity is the backups' user", async () => {
    const run = await evaluated(settings);
    // The backups' bucket has a user of its own (see backups.test.ts); the instance gets no role.
    assert.deepEqual(
      run.mocks.resources
        .filter((r) => /aws:(ecr|iam)\//.test(r.type))
        .map((r) => `${r.type} ${r.name}`)
        .sort(),
      [
        "aws:iam/accessKey:AccessKey host-backups-key",
        "aws:iam/user:User host-backups-user",
        "aws:iam/userPolicy:UserPolicy host-backups-policy",
      ],
    );
    assert.doesNotMatch(userData(run), /ecr-credential-helper/);
    assert.match(
      String(run.mocks.ofType("aws:ec2/securityGroup:SecurityGroup")[0].inputs.description),
      /^webstack host: HTTP\(S\) from anywhere, SSH and Docker API from admin CIDRs$/,
    );
  });
});

/** The resources a host registers with its own cloud provider, and that provider's reference. */
function onOwnProvider(mocks: ProgramRun["mocks"], providerType: string, types: string[]) {
  const provider = mocks.ofType(providerType)[0];
  const reference = `${provider.urn}::${provider.name}-provider-id`;
  return types.map((type) => {
    const [resource] = mocks.ofType(type);
    assert.ok(resource, `registers a ${type}`);
    assert.equal(resource.provider, reference, `${type} is created with the host's own provider`);
    return resource;
  });
}

describe("digitalocean host", () => {
  const settings = CLOUDS[0].settings;

  test("droplet, reserved IP, data volume and firewall: on the stack's own provider, named by the stack, in the region", async () => {
    const { mocks } = await evaluated({ ...settings, dataVolumeGb: "25" });
    const [sshKey, ip, volume, tag, firewall, droplet, assignment, attachment] = onOwnProvider(
      mocks,
      "pulumi:providers:digitalocean",
      [
        "digitalocean:index/sshKey:SshKey",
        "digitalocean:index/reservedIp:ReservedIp",
        "digitalocean:index/volume:Volume",
        "digitalocean:index/tag:Tag",
        "digitalocean:index/firewall:Firewall",
        "digitalocean:index/droplet:Droplet",
        "digitalocean:index/reservedIpAssignment:ReservedIpAssignment",
        "digitalocean:index/volumeAttachment:VolumeAttachment",
      ],
    );
    assert.deepEqual(sshKey.inputs, {
      name: "webstack-test",
      publicKey: mocks.named("host-ssh-key").outputs.publicKeyOpenssh,
    });
    assert.deepEqual(ip.inputs, { region: "nyc3" });
    assert.deepEqual(volume.inputs, {
      name: "webstack-test-data",
      region: "nyc3",
      size: 25,
      description: "webstack Postgres data",
    });
    assert.equal(tag.inputs.name, "webstack-test");
    assert.deepEqual(firewall.inputs.outboundRules, [
      { protocol: "tcp", portRange: "1-65535", destinationAddresses: ["0.0.0.0/0", "::/0"] },
      { protocol: "udp", portRange: "1-65535", destinationAddresses: ["0.0.0.0/0", "::/0"] },
      { protocol: "icmp", destinationAddresses: ["0.0.0.0/0", "::/0"] },
    ]);
    // The user data has tests of its own (cloud-init, and no TLS key in it).
    const dropletInputs = Object.fromEntries(Object.entries(droplet.inputs).filter(([key]) => key !== "userData"));
    assert.deepEqual(dropletInputs, {
      name: "webstack-test",
      image: "debian-12-x64",
      region: "nyc3",
      size: "s-1vcpu-2gb",
      sshKeys: [sshKey.outputs.fingerprint],
      monitoring: true,
      ipv6: true,
      tags: ["webstack", "webstack-test"],
    });
    // DigitalOcean's ids are numbers; the provider takes the droplet's as one.
    assert.deepEqual(assignment.inputs, { ipAddress: "203.0.113.10", dropletId: 123456 });
    assert.deepEqual(attachment.inputs, { dropletId: 123456, volumeId: "host-data-id" });

    const ready = mocks.named("host-engine-ready");
    for (const before of [droplet, firewall, assignment, attachment]) {
      assert.ok(dependsOn(ready, before), `the readiness command waits for ${before.type}`);
    }
    assert.match(String(ready.inputs.create), /\/dev\/disk\/by-id\/scsi-0DO_Volume_webstack-test-data/);
  });
});

describe("aws host", () => {
  const settings = CLOUDS[1].settings;

  test("instance, Elastic IP, encrypted data volume and security group: on the stack's own provider, in the zone", async () => {
    const { mocks } = await evaluated({ ...settings, dataVolumeGb: "25" });
    const [keyPair, group, ip, volume, instance, association, attachment] = onOwnProvider(
      mocks,
      "pulumi:providers:aws",
      [
        "aws:ec2/keyPair:KeyPair",
        "aws:ec2/securityGroup:SecurityGroup",
        "aws:ec2/eip:Eip",
        "aws:ebs/volume:Volume",
        "aws:ec2/instance:Instance",
        "aws:ec2/eipAssociation:EipAssociation",
        "aws:ec2/volumeAttachment:VolumeAttachment",
      ],
    );
    assert.equal(mocks.ofType("pulumi:providers:aws")[0].inputs.region, "us-east-1");
    const tags = { "webstack:stack": "webstack-test", Name: "webstack-test" };
    assert.deepEqual(keyPair.inputs, {
      keyName: "webstack-test",
      publicKey: mocks.named("host-ssh-key").outputs.publicKeyOpenssh,
      tags,
    });
    assert.equal(group.inputs.name, "webstack-test");
    assert.deepEqual(group.inputs.egress, [
      { protocol: "-1", fromPort: 0, toPort: 0, cidrBlocks: ["0.0.0.0/0"], ipv6CidrBlocks: ["::/0"] },
    ]);
    assert.deepEqual(
      (group.inputs.ingress as Record<string, unknown>[]).map((rule) => rule.protocol),
      ["tcp", "tcp", "tcp"],
    );
    assert.deepEqual(group.inputs.tags, tags);
    assert.deepEqual(ip.inputs, { domain: "vpc", tags });
    assert.deepEqual(volume.inputs, { availabilityZone: "us-east-1a", size: 25, type: "gp3", encrypted: true, tags });

    assert.equal(instance.inputs.instanceType, "t3.small");
    assert.equal(instance.inputs.keyName, "webstack-test");
    assert.deepEqual(instance.inputs.vpcSecurityGroupIds, ["host-firewall-id"], "the instance is in the group");
    assert.equal(instance.inputs.userDataReplaceOnChange, true);
    assert.deepEqual(instance.inputs.rootBlockDevice, { volumeSize: 20, volumeType: "gp3", encrypted: true });
    assert.deepEqual(instance.inputs.tags, tags);
    // A newer AMI must not replace a running host.
    assert.deepEqual(instance.ignoreChanges, ["ami"]);
    assert.equal(instance.inputs.iamInstanceProfile, undefined, "no instance profile without ECR");

    const ami = mocks.calls.find((call) => call.token === "aws:ec2/getAmi:getAmi")!;
    const provider = mocks.ofType("pulumi:providers:aws")[0];
    assert.equal(ami.provider, `${provider.urn}::${provider.name}-provider-id`, "the image is looked up in the region");
    assert.deepEqual(ami.inputs, {
      owners: ["136693071363"],
      mostRecent: true,
      filters: [
        { name: "name", values: ["debian-12-amd64-*"] },
        { name: "architecture", values: ["x86_64"] },
        { name: "virtualization-type", values: ["hvm"] },
      ],
    });

    assert.deepEqual(association.inputs, {
      allocationId: "eipalloc-0123456789abcdef0",
      instanceId: "i-0123456789abcdef0",
    });
    assert.deepEqual(attachment.inputs, {
      deviceName: "/dev/sdf",
      volumeId: "vol-0123456789abcdef0",
      instanceId: "i-0123456789abcdef0",
    });
    const ready = mocks.named("host-engine-ready");
    for (const before of [instance, group, association, attachment]) {
      assert.ok(dependsOn(ready, before), `the readiness command waits for ${before.type}`);
    }
    assert.match(
      String(ready.inputs.create),
      / \/dev\/disk\/by-id\/nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0$/,
    );
  });

  test("a Graviton type gets the arm64 Debian image", async () => {
    const { mocks } = await evaluated({ ...settings, size: "t4g.small" });
    const ami = mocks.calls.find((call) => call.token === "aws:ec2/getAmi:getAmi")!;
    assert.deepEqual(
      (ami.inputs.filters as { values: string[] }[]).map((f) => f.values[0]),
      ["debian-12-arm64-*", "arm64", "hvm"],
    );
  });
});

describe("createHost", () => {
  test("a cloud target without its region, size or zone is refused by name, before any resource", () => {
    const base = parseConfig({ target: "aws", region: "us-east-1", adminCidrs: ADMIN });
    for (const key of ["region", "size", "availabilityZone"] as const) {
      assert.throws(
        () => createHost("host", { ...base, [key]: undefined }, "webstack-test"),
        new RegExp(`^Error: webstack:${key} is required for this target$`),
      );
    }
    const ocean = parseConfig({ target: "digitalocean", region: "nyc3", adminCidrs: ADMIN });
    for (const key of ["region", "size"] as const) {
      assert.throws(
        () => createHost("host", { ...ocean, [key]: undefined }, "webstack-test"),
        new RegExp(`^Error: webstack:${key} is required for this target$`),
      );
    }
  });
});

describe("every host", () => {
  for (const { target, settings } of [{ target: "local", settings: {} }, ...CLOUDS]) {
    test(`${target}: what the host registers is its child, so its URNs stay put and it is read as one component`, async () => {
      const { mocks } = await evaluated(settings);
      const component = { local: "LocalHost", digitalocean: "DigitalOceanHost", aws: "AwsHost" }[target];
      const own = mocks.resources.filter((r) => r.name.startsWith("host-"));
      assert.ok(own.length >= (target === "local" ? 1 : 15), `${own.length} resources named host-*`);
      // (The mock monitor's URNs carry the parent's type only, not the whole chain.)
      for (const r of own) {
        const parent = r.name.startsWith("host-engine-") ? "RemoteEngine" : component;
        assert.match(r.urn, new RegExp(`::webstack:hosts:${parent}\\$`), `${r.type} ${r.name} is a child of ${parent}`);
      }
    });
  }

  test("local: the published address is the bind address, or loopback for every address", async () => {
    assert.equal((await runProgram({ httpBindAddress: "10.1.2.3" })).outputs.url, "http://10.1.2.3:8080");
    assert.equal((await runProgram({ httpBindAddress: "0.0.0.0" })).outputs.url, "http://127.0.0.1:8080");
  });

  test("digitalocean: a registry name alone, with images built on the host, creates no registry credential", async () => {
    const { mocks } = await runProgram({ ...CLOUDS[0].settings, docrRegistry: "acme" });
    assert.deepEqual(
      mocks.resources.filter((r) => /containerRegistry|app-pull|host-builder/.test(`${r.type} ${r.name}`)),
      [],
    );
  });

  test("aws with ECR: the registry token is read with the stack's own provider, and the push goes to the bare host name", async () => {
    const { mocks } = await runProgram({ ...CLOUDS[1].settings, imageRegistry: "cloud" });
    const provider = mocks.ofType("pulumi:providers:aws")[0];
    const token = mocks.calls.find((call) => call.token === "aws:ecr/getAuthorizationToken:getAuthorizationToken")!;
    assert.equal(token.provider, `${provider.urn}::${provider.name}-provider-id`);
    const image = mocks.ofType("docker:index/image:Image")[0];
    assert.equal(
      (image.inputs.registry as { server?: string } | undefined)?.server,
      "123456789012.dkr.ecr.us-east-1.amazonaws.com",
    );
  });

  test("a registry's Docker config without that registry is refused by name", () => {
    for (const json of ["{}", '{"auths":{}}', '{"auths":{"registry.example":{"auth":"dTpw"}}}']) {
      assert.throws(
        () => parseDockerAuth(json, "registry.digitalocean.com"),
        /^Error: no credentials for registry\.digitalocean\.com in the registry's Docker config$/,
        json,
      );
    }
  });
});
