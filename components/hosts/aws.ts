import * as aws from "@pulumi/aws";
import * as command from "@pulumi/command";
import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import * as tls from "@pulumi/tls";
import { cloudInit, DATA_MOUNT, pullCommand } from "../specs/cloud-init";
import { cloudName, DNS_TTL, dnsNames, inboundRules } from "../specs/firewall";
import { s3BackupBucket } from "./backup-bucket";
import { BackupBucket, DockerHost, HostHttps, ImageRegistryTarget } from "./docker-host";
import { RemoteEngine } from "./remote-engine";

export interface AwsHostArgs {
  /** AWS region. @example "us-east-1" */
  region: string;
  /** Availability zone of the instance and of its data volume. @default "<region>a" */
  availabilityZone: string;
  /** EC2 instance type. @default "t3.small" */
  size: string;
  /** CIDRs allowed to reach SSH and the Docker API. @example ["203.0.113.7/32"] */
  adminCidrs: string[];
  /** Port nginx is published on, opened to everyone. @default 80 */
  httpPort: number;
  /** Size of the EBS volume that holds Postgres data. @default 10 */
  dataVolumeGb: number;
  /** Protect the data volume from `pulumi destroy`. @default false */
  protectData: boolean;
  /** Push the app image to an ECR repository of this stack instead of building it on the instance. @default false */
  useEcr: boolean;
  /**
   * HTTPS: the port the firewall opens for it, and the names the stack serves with the zone of
   * the cloud's DNS their A records go in (none: the records are someone else's).
   * @default undefined (HTTP only)
   */
  https?: HostHttps;
  /**
   * A bucket for the stack's backups and a key scoped to it, in `region`; `keepOnDestroy` keeps
   * it when the stack is destroyed. @default undefined (no bucket)
   */
  backups?: { region: string; keepOnDestroy: boolean };
  /** Prefix of cloud resource names, unique per stack. @example "webstack-prod" */
  namePrefix: string;
}

/** Debian's official AMIs are published by this account. */
const DEBIAN_OWNER = "136693071363";
const SSH_USER = "admin";
/** Images an ECR repository keeps; older ones expire. A release needs the running one and a few to roll back to. */
export const ECR_KEEP_IMAGES = 10;
/** Only what pulling one repository's images takes (GetAuthorizationToken has no resource scope). */
const ECR_PULL_ACTIONS = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"];

/** Graviton families (t4g, m7g, c6gn, …) need an arm64 image; everything else here is x86_64. */
export function amiArchitecture(instanceType: string): "arm64" | "x86_64" {
  const family = instanceType.split(".")[0];
  return /^[a-z]+[0-9]+[a-z]*g[a-z]*$/.test(family) ? "arm64" : "x86_64";
}

/** Nitro instances show an EBS volume as an NVMe disk whose by-id name carries the volume id. */
export function ebsDevicePath(volumeId: string): string {
  return `/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_${volumeId.replace("-", "")}`;
}

/**
 * An EC2 instance running Docker: key pair, security group, instance from the newest Debian 12
 * AMI, Elastic IP, and an encrypted EBS volume for Postgres data in the same zone. Uses its own
 * explicit provider for the configured region, so it can never deploy elsewhere by accident.
 */
export class AwsHost extends pulumi.ComponentResource implements DockerHost {
  readonly provider: docker.Provider;
  readonly buildProvider: docker.Provider;
  readonly publicAddress: pulumi.Output<string>;
  readonly publicIp: pulumi.Output<string>;
  readonly dataDir = `${DATA_MOUNT}/postgres`;
  readonly certsDir = `${DATA_MOUNT}/certs`;
  readonly ready: pulumi.Resource[];
  readonly vmId: pulumi.Output<string>;
  readonly registry?: ImageRegistryTarget;
  readonly backupBucket?: BackupBucket;
  readonly runOnHost: DockerHost["runOnHost"];

  constructor(name: string, args: AwsHostArgs, opts?: pulumi.ComponentResourceOptions) {
    super("webstack:hosts:AwsHost", name, {}, opts);
    const cloud = new aws.Provider(`${name}-provider`, { region: args.region as aws.Region }, { parent: this });
    const inCloud = { parent: this, provider: cloud };
    const prefix = cloudName(args.namePrefix);
    const tags = { "webstack:stack": prefix, Name: prefix };
    this.backupBucket =
      args.backups &&
      s3BackupBucket(name, { prefix, region: args.region, keepOnDestroy: args.backups.keepOnDestroy, tags }, inCloud);

    const sshKey = new tls.PrivateKey(`${name}-ssh-key`, { algorithm: "ED25519" }, { parent: this });
    const hostKey = new tls.PrivateKey(`${name}-host-key`, { algorithm: "ED25519" }, { parent: this });
    const keyPair = new aws.ec2.KeyPair(
      `${name}-key`,
      { keyName: prefix, publicKey: sshKey.publicKeyOpenssh, tags },
      inCloud,
    );

    const rules = inboundRules(args.adminCidrs, args.httpPort, args.https?.httpsPort);
    const group = new aws.ec2.SecurityGroup(
      `${name}-firewall`,
      {
        name: prefix,
        description: "webstack host: HTTP(S) from anywhere, SSH and Docker API from admin CIDRs",
        ingress: rules.map((rule) => ({
          protocol: "tcp",
          fromPort: rule.port,
          toPort: rule.port,
          cidrBlocks: rule.sources.filter((s) => !s.includes(":")),
          ipv6CidrBlocks: rule.sources.filter((s) => s.includes(":")),
          description: rule.description,
        })),
        egress: [{ protocol: "-1", fromPort: 0, toPort: 0, cidrBlocks: ["0.0.0.0/0"], ipv6CidrBlocks: ["::/0"] }],
        tags,
      },
      inCloud,
    );

    const ami = aws.ec2.getAmiOutput(
      {
        owners: [DEBIAN_OWNER],
        mostRecent: true,
        filters: [
          { name: "name", values: [`debian-12-${amiArchitecture(args.size) === "arm64" ? "arm64" : "amd64"}-*`] },
          { name: "architecture", values: [amiArchitecture(args.size)] },
          { name: "virtualization-type", values: ["hvm"] },
        ],
      },
      { provider: cloud, parent: this },
    );
    const ip = new aws.ec2.Eip(`${name}-ip`, { domain: "vpc", tags }, inCloud);
    const volume = new aws.ebs.Volume(
      `${name}-data`,
      { availabilityZone: args.availabilityZone, size: args.dataVolumeGb, type: "gp3", encrypted: true, tags },
      { ...inCloud, protect: args.protectData },
    );
    const ecr = args.useEcr ? ecrRepository(name, prefix, inCloud) : undefined;
    const instance = new aws.ec2.Instance(
      `${name}-instance`,
      {
        ami: ami.id,
        instanceType: args.size,
        availabilityZone: args.availabilityZone,
        keyName: keyPair.keyName,
        vpcSecurityGroupIds: [group.id],
        iamInstanceProfile: ecr?.profile.name,
        // It holds the host's private SSH key.
        userData: pulumi.secret(
          pulumi
            .all([sshKey.publicKeyOpenssh, hostKey.privateKeyOpenssh, hostKey.publicKeyOpenssh])
            .apply(([authorizedKey, privateKey, publicKey]) =>
              cloudInit({
                sshUser: SSH_USER,
                authorizedKey,
                hostKey: { privateKey, publicKey },
                extraPackages: ecr === undefined ? [] : ["amazon-ecr-credential-helper"],
              }),
            ),
        ),
        userDataReplaceOnChange: true,
        metadataOptions: { httpTokens: "required", httpEndpoint: "enabled", httpPutResponseHopLimit: 1 },
        rootBlockDevice: { volumeSize: 20, volumeType: "gp3", encrypted: true },
        tags,
      },
      // A newer AMI must not replace a running host behind the user's back.
      { ...inCloud, ignoreChanges: ["ami"] },
    );
    const association = new aws.ec2.EipAssociation(
      `${name}-ip-association`,
      { allocationId: ip.allocationId, instanceId: instance.id },
      inCloud,
    );
    const attachment = new aws.ec2.VolumeAttachment(
      `${name}-data-attachment`,
      { deviceName: "/dev/sdf", volumeId: volume.id, instanceId: instance.id },
      inCloud,
    );

    const engine = new RemoteEngine(
      `${name}-engine`,
      {
        publicIp: ip.publicIp,
        sshUser: SSH_USER,
        sshPrivateKey: sshKey.privateKeyOpenssh,
        sshHostKey: hostKey.publicKeyOpenssh,
        dataDevice: volume.id.apply(ebsDevicePath),
        hostResources: [instance, group, association, attachment],
        vmId: instance.id,
      },
      { parent: this },
    );
    if (ecr !== undefined) this.registry = ecrTarget(ecr.repository, inCloud, engine);
    this.provider = engine.provider;
    this.buildProvider = this.registry ? new docker.Provider(`${name}-builder`, {}, { parent: this }) : engine.provider;
    this.ready = [engine.ready];
    this.runOnHost = (name, script, options) => engine.run(name, script, options);
    this.vmId = instance.id;
    this.publicIp = ip.publicIp;
    this.publicAddress = ip.publicIp;
    // One record per name, named after it: dropping or reordering a name leaves the others be.
    // A records only: an Elastic IP is IPv4, and the instance gets no IPv6 address.
    const { https } = args;
    if (https?.dnsZone !== undefined) {
      const zone = aws.route53.getZoneOutput(
        { name: https.dnsZone, privateZone: false },
        { provider: cloud, parent: this },
      );
      dnsNames(https.dnsZone, https.domains).forEach(
        (dns) =>
          new aws.route53.Record(
            `${name}-dns-${dns.fqdn}`,
            { zoneId: zone.zoneId, name: dns.fqdn, type: "A", ttl: DNS_TTL, records: [ip.publicIp] },
            inCloud,
          ),
      );
    }
    this.registerOutputs({ publicIp: this.publicIp });
  }
}

/**
 * The stack's ECR repository: tags are release ids and never move (immutable), the oldest
 * images expire, and the instance may only pull from it: a role with read-only rights on this one
 * repository, through an instance profile.
 */
function ecrRepository(name: string, prefix: string, opts: pulumi.CustomResourceOptions) {
  const repository = new aws.ecr.Repository(
    `${name}-registry`,
    {
      name: `${prefix}-app`,
      forceDelete: true,
      imageTagMutability: "IMMUTABLE",
      imageScanningConfiguration: { scanOnPush: true },
    },
    opts,
  );
  new aws.ecr.LifecyclePolicy(
    `${name}-registry-lifecycle`,
    { repository: repository.name, policy: JSON.stringify(ecrLifecyclePolicy(ECR_KEEP_IMAGES)) },
    opts,
  );
  const role = new aws.iam.Role(
    `${name}-role`,
    {
      name: `${prefix}-host`,
      assumeRolePolicy: JSON.stringify({
        Version: "2012-10-17",
        Statement: [{ Effect: "Allow", Principal: { Service: "ec2.amazonaws.com" }, Action: "sts:AssumeRole" }],
      }),
    },
    opts,
  );
  new aws.iam.RolePolicy(
    `${name}-registry-pull`,
    { role: role.id, policy: repository.arn.apply((arn) => JSON.stringify(ecrPullPolicy(arn))) },
    opts,
  );
  const profile = new aws.iam.InstanceProfile(`${name}-profile`, { name: `${prefix}-host`, role: role.name }, opts);
  return { repository, profile };
}

/** Keep the newest `keep` images, whatever their tags. */
export function ecrLifecyclePolicy(keep: number) {
  return {
    rules: [
      {
        rulePriority: 1,
        description: `keep the ${keep} newest images`,
        selection: { tagStatus: "any", countType: "imageCountMoreThan", countNumber: keep },
        action: { type: "expire" },
      },
    ],
  };
}

/** Pull from one repository, and nothing else (a registry token has no resource scope of its own). */
export function ecrPullPolicy(repositoryArn: string) {
  return {
    Version: "2012-10-17",
    Statement: [
      { Effect: "Allow", Action: "ecr:GetAuthorizationToken", Resource: "*" },
      { Effect: "Allow", Action: ECR_PULL_ACTIONS, Resource: repositoryArn },
    ],
  };
}

/**
 * The deployer pushes with its own ECR token (12 hours, read at each update, never stored on the
 * host); the host pulls through the ECR credential helper with its instance profile's rights.
 */
function ecrTarget(
  repository: aws.ecr.Repository,
  opts: pulumi.CustomResourceOptions,
  engine: RemoteEngine,
): ImageRegistryTarget {
  const token = aws.ecr.getAuthorizationTokenOutput(
    { registryId: repository.registryId },
    { provider: opts.provider, parent: opts.parent },
  );
  return {
    server: token.proxyEndpoint.apply((endpoint) => endpoint.replace(/^https:\/\//, "")),
    repository: repository.repositoryUrl,
    pushCredentials: () => ({ username: token.userName, password: pulumi.secret(token.password) }),
    pullOnHost: (name, image, release, parent) =>
      new command.remote.Command(
        name,
        { connection: engine.connection, create: image.apply((ref) => pullCommand(ref, "ecr-login", release)) },
        { parent, dependsOn: [engine.ready] },
      ),
  };
}
