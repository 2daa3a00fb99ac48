import * as digitalocean from "@pulumi/digitalocean";
import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import * as tls from "@pulumi/tls";
import { cloudInit, DATA_MOUNT } from "../specs/cloud-init";
import { cloudName, inboundRules } from "../specs/firewall";
import { DockerHost, ImageRegistryTarget } from "./docker-host";
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
  /** Prefix of cloud resource names, unique per stack. @example "webstack-prod" */
  namePrefix: string;
  /** Droplet image slug. @default "debian-12-x64" */
  image?: string;
}

const SSH_USER = "root";
const ANYWHERE = ["0.0.0.0/0", "::/0"];

/**
 * A DigitalOcean droplet running Docker: SSH key, droplet, cloud firewall, reserved IP, and a
 * block-storage volume for Postgres data that outlives the droplet. Uses its own explicit
 * provider (token from DIGITALOCEAN_TOKEN), so it can never deploy with an ambient default.
 */
export class DigitalOceanHost extends pulumi.ComponentResource implements DockerHost {
  readonly provider: docker.Provider;
  readonly buildProvider: docker.Provider;
  readonly publicAddress: pulumi.Output<string>;
  readonly publicIp: pulumi.Output<string>;
  readonly dataDir = `${DATA_MOUNT}/postgres`;
  readonly ready: pulumi.Resource[];
  readonly vmId: pulumi.Output<string>;
  readonly registry?: ImageRegistryTarget;

  constructor(name: string, args: DigitalOceanHostArgs, opts?: pulumi.ComponentResourceOptions) {
    super("webstack:hosts:DigitalOceanHost", name, {}, opts);
    const cloud = new digitalocean.Provider(`${name}-provider`, {}, { parent: this });
    const inCloud = { parent: this, provider: cloud };
    const prefix = cloudName(args.namePrefix);

    const sshKey = new tls.PrivateKey(`${name}-ssh-key`, { algorithm: "ED25519" }, { parent: this });
    const doKey = new digitalocean.SshKey(`${name}-ssh-key`, { name: prefix, publicKey: sshKey.publicKeyOpenssh }, inCloud);

    const ip = new digitalocean.ReservedIp(`${name}-ip`, { region: args.region }, inCloud);
    const volume = new digitalocean.Volume(
      `${name}-data`,
      { name: `${prefix}-data`, region: args.region, size: args.dataVolumeGb, description: "webstack Postgres data" },
      { ...inCloud, protect: args.protectData },
    );
    const droplet = new digitalocean.Droplet(
      `${name}-droplet`,
      {
        name: prefix,
        image: args.image ?? "debian-12-x64",
        region: args.region,
        size: args.size,
        sshKeys: [doKey.fingerprint],
        userData: cloudInit({ sshUser: SSH_USER }),
        monitoring: true,
        ipv6: true,
        tags: ["webstack", prefix],
      },
      inCloud,
    );
    const dropletId = droplet.id.apply(Number);
    const firewall = new digitalocean.Firewall(
      `${name}-firewall`,
      {
        name: prefix,
        dropletIds: [dropletId],
        inboundRules: inboundRules(args.adminCidrs, args.httpPort).map((rule) => ({
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

    if (args.docrRegistry !== undefined) {
      this.registry = docrTarget(name, args.docrRegistry, prefix, inCloud);
    }
    const engine = new RemoteEngine(
      `${name}-engine`,
      {
        publicIp: ip.ipAddress,
        sshUser: SSH_USER,
        sshPrivateKey: sshKey.privateKeyOpenssh,
        dataDevice: volume.name.apply((volumeName) => `/dev/disk/by-id/scsi-0DO_Volume_${volumeName}`),
        hostResources: [droplet, firewall, assignment, attachment],
        vmId: droplet.id,
        registry: this.registry,
      },
      { parent: this },
    );
    this.provider = engine.provider;
    this.buildProvider = this.registry ? new docker.Provider(`${name}-builder`, {}, { parent: this }) : engine.provider;
    this.ready = [engine.ready];
    this.vmId = droplet.id;
    this.publicIp = ip.ipAddress;
    this.publicAddress = ip.ipAddress;
    this.registerOutputs({ publicIp: this.publicIp });
  }
}

/** Push credentials for an existing DOCR registry, short-lived and write-enabled. */
function docrTarget(
  name: string,
  registryName: string,
  prefix: string,
  opts: pulumi.CustomResourceOptions,
): ImageRegistryTarget {
  const registry = digitalocean.getContainerRegistryOutput({ name: registryName }, { provider: opts.provider, parent: opts.parent });
  const credentials = new digitalocean.ContainerRegistryDockerCredentials(
    `${name}-registry-credentials`,
    { registryName, write: true },
    opts,
  );
  const auth = credentials.dockerCredentials.apply((json) => parseDockerAuth(json, "registry.digitalocean.com"));
  return {
    server: registry.serverUrl,
    repository: pulumi.interpolate`${registry.endpoint}/${prefix}-app`,
    username: auth.apply((a) => a.username),
    password: pulumi.secret(auth.apply((a) => a.password)),
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
