import * as command from "@pulumi/command";
import * as digitalocean from "@pulumi/digitalocean";
import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import * as tls from "@pulumi/tls";
import { cloudInit, DATA_MOUNT, pullCommand } from "../specs/cloud-init";
import { cloudName, DNS_TTL, dnsNames, inboundRules } from "../specs/firewall";
import { spacesBackupBucket } from "./backup-bucket";
import { BackupBucket, DockerHost, HostHttps, ImageRegistryTarget, RegistryCredentials } from "./docker-host";
import { RemoteEngine } from "./remote-engine";

export interface DigitalOceanHostArgs {
  /** Region slug. @example "nyc3" */
  region: string;
  /** Droplet size slug. @default "s-1vcpu-2gb" */
  size: string;
  /** CIDRs allowed to reach SSH and the Docker API. @example ["203.0.113.7/32"] */
  adminCidrs: string[];
  /** Port nginx is published on, opened to everyone. @default 80 */
  httpPort: number;
  /** Size of the block-storage volume that holds Postgres data. @default 10 */
  dataVolumeGb: number;
  /** Protect the data volume from `pulumi destroy`. @default false */
  protectData: boolean;
  /** Name of an existing DigitalOcean Container Registry to push the app image to; undefined builds on the droplet. */
  docrRegistry?: string;
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
  /** Droplet image slug. @default "debian-12-x64" */
  image?: string;
}

/** A non-root login with sudo; root may not log in at all. */
const SSH_USER = "admin";
const ANYWHERE = ["0.0.0.0/0", "::/0"];
/** Registry credentials live an hour: long enough for one push or one pull, and each is for one image. */
export const REGISTRY_CREDENTIAL_SECONDS = 3600;

/**
 * A DigitalOcean droplet running Docker: SSH key, a tag the cloud firewall attaches by (so the
 * droplet boots behind it, IPv6 included), droplet, reserved IP, and a block-storage volume for
 * Postgres data that outlives the droplet. Uses its own explicit provider (token from
 * DIGITALOCEAN_TOKEN), so it can never deploy with an ambient default.
 */
export class DigitalOceanHost extends pulumi.ComponentResource implements DockerHost {
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

  constructor(name: string, args: DigitalOceanHostArgs, opts?: pulumi.ComponentResourceOptions) {
    super("webstack:hosts:DigitalOceanHost", name, {}, opts);
    const cloud = new digitalocean.Provider(`${name}-provider`, {}, { parent: this });
    const inCloud = { parent: this, provider: cloud };
    const prefix = cloudName(args.namePrefix);
    this.backupBucket =
      args.backups &&
      spacesBackupBucket(
        name,
        { prefix, region: args.backups.region, keepOnDestroy: args.backups.keepOnDestroy },
        inCloud,
      );

    const sshKey = new tls.PrivateKey(`${name}-ssh-key`, { algorithm: "ED25519" }, { parent: this });
    const hostKey = new tls.PrivateKey(`${name}-host-key`, { algorithm: "ED25519" }, { parent: this });
    const doKey = new digitalocean.SshKey(
      `${name}-ssh-key`,
      { name: prefix, publicKey: sshKey.publicKeyOpenssh },
      inCloud,
    );

    const ip = new digitalocean.ReservedIp(`${name}-ip`, { region: args.region }, inCloud);
    const volume = new digitalocean.Volume(
      `${name}-data`,
      { name: `${prefix}-data`, region: args.region, size: args.dataVolumeGb, description: "webstack Postgres data" },
      { ...inCloud, protect: args.protectData },
    );
    const tag = new digitalocean.Tag(`${name}-tag`, { name: prefix }, inCloud);
    // Attached by tag and created first: the droplet carries the tag from its creation, so it is
    // never reachable unfiltered, not even while it boots.
    const firewall = new digitalocean.Firewall(
      `${name}-firewall`,
      {
        name: prefix,
        tags: [tag.name],
        inboundRules: inboundRules(args.adminCidrs, args.httpPort, args.https?.httpsPort).map((rule) => ({
          protocol: "tcp",
          portRange: String(rule.port),
          sourceAddresses: rule.sources,
        })),
        // ICMP has no ports: the API wants no port range for it at all.
        outboundRules: [
          { protocol: "tcp", portRange: "1-65535", destinationAddresses: ANYWHERE },
          { protocol: "udp", portRange: "1-65535", destinationAddresses: ANYWHERE },
          { protocol: "icmp", destinationAddresses: ANYWHERE },
        ],
      },
      inCloud,
    );
    const droplet = new digitalocean.Droplet(
      `${name}-droplet`,
      {
        name: prefix,
        image: args.image ?? "debian-12-x64",
        region: args.region,
        size: args.size,
        // Without a key DigitalOcean would mail a root password; root may not log in anyway.
        sshKeys: [doKey.fingerprint],
        // It holds the host's private SSH key.
        userData: pulumi.secret(
          pulumi
            .all([sshKey.publicKeyOpenssh, hostKey.privateKeyOpenssh, hostKey.publicKeyOpenssh])
            .apply(([authorizedKey, privateKey, publicKey]) =>
              cloudInit({ sshUser: SSH_USER, authorizedKey, hostKey: { privateKey, publicKey } }),
            ),
        ),
        monitoring: true,
        ipv6: true,
        tags: ["webstack", tag.name],
      },
      { ...inCloud, dependsOn: [firewall] },
    );
    const dropletId = droplet.id.apply(Number);
    const assignment = new digitalocean.ReservedIpAssignment(
      `${name}-ip-assignment`,
      { ipAddress: ip.ipAddress, dropletId },
      inCloud,
    );
    const attachment = new digitalocean.VolumeAttachment(
      `${name}-data-attachment`,
      { dropletId, volumeId: volume.id },
      inCloud,
    );

    const engine = new RemoteEngine(
      `${name}-engine`,
      {
        publicIp: ip.ipAddress,
        sshUser: SSH_USER,
        sshPrivateKey: sshKey.privateKeyOpenssh,
        sshHostKey: hostKey.publicKeyOpenssh,
        dataDevice: volume.name.apply((volumeName) => `/dev/disk/by-id/scsi-0DO_Volume_${volumeName}`),
        hostResources: [droplet, firewall, assignment, attachment],
        vmId: droplet.id,
      },
      { parent: this },
    );
    if (args.docrRegistry !== undefined) {
      this.registry = docrTarget(args.docrRegistry, prefix, cloud, engine);
    }
    this.provider = engine.provider;
    this.buildProvider = this.registry ? new docker.Provider(`${name}-builder`, {}, { parent: this }) : engine.provider;
    this.ready = [engine.ready];
    this.runOnHost = (name, script, options) => engine.run(name, script, options);
    this.vmId = droplet.id;
    this.publicIp = ip.ipAddress;
    this.publicAddress = ip.ipAddress;
    // One record per name, named after it: dropping or reordering a name leaves the others be.
    // A records only: a reserved IP is IPv4, and the droplet gets no IPv6 address.
    const { https } = args;
    if (https?.dnsZone !== undefined) {
      dnsNames(https.dnsZone, https.domains).forEach(
        (dns) =>
          new digitalocean.DnsRecord(
            `${name}-dns-${dns.fqdn}`,
            { domain: https.dnsZone!, type: "A", name: dns.relative, value: ip.ipAddress, ttl: DNS_TTL },
            inCloud,
          ),
      );
    }
    this.registerOutputs({ publicIp: this.publicIp });
  }
}

/**
 * An existing DOCR registry. Each image revision gets its own push credential, and each pushed
 * image its own read-only one for the host's pull; both expire within the hour. The provider
 * renews an expired credential only when it reads it (`pulumi refresh`), so a credential is tied to
 * what it is for (`replacementTrigger`): a new revision replaces it, and the replaced one is revoked.
 */
function docrTarget(
  registryName: string,
  prefix: string,
  cloud: digitalocean.Provider,
  engine: RemoteEngine,
): ImageRegistryTarget {
  const registry = digitalocean.getContainerRegistryOutput({ name: registryName }, { provider: cloud, parent: engine });
  const credentials = (name: string, write: boolean, forWhat: pulumi.Input<string>, parent: pulumi.Resource) =>
    new digitalocean.ContainerRegistryDockerCredentials(
      name,
      { registryName, write, expirySeconds: REGISTRY_CREDENTIAL_SECONDS },
      { parent, provider: cloud, replacementTrigger: forWhat },
    );
  return {
    server: registry.serverUrl,
    repository: pulumi.interpolate`${registry.endpoint}/${prefix}-app`,
    pushCredentials(name, release, parent): RegistryCredentials {
      const auth = credentials(name, true, release, parent).dockerCredentials.apply((json) =>
        parseDockerAuth(json, "registry.digitalocean.com"),
      );
      return { username: auth.apply((a) => a.username), password: pulumi.secret(auth.apply((a) => a.password)) };
    },
    pullOnHost(name, image, release, parent) {
      const readOnly = credentials(`${name}-credentials`, false, image, parent);
      return new command.remote.Command(
        name,
        {
          connection: engine.connection,
          create: image.apply((ref) => pullCommand(ref, "stdin", release)),
          stdin: pulumi.secret(readOnly.dockerCredentials),
        },
        { parent, dependsOn: [engine.ready] },
      );
    },
  };
}

/** Reads one registry's username and password out of a Docker config.json document. */
export function parseDockerAuth(configJson: string, server: string): { username: string; password: string } {
  const parsed = JSON.parse(configJson) as { auths?: Record<string, { auth?: string }> };
  const auth = parsed.auths?.[server]?.auth;
  if (auth === undefined) throw new Error(`no credentials for ${server} in the registry's Docker config`);
  const decoded = Buffer.from(auth, "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}
