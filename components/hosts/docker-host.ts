// The seam between "where" and "what": every target yields a DockerHost, and WebStack and
// AppImage are built from it without knowing which cloud (if any) they run on.
import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";

/** A registry user and password, both secrets where the registry treats them as such. */
export interface RegistryCredentials {
  username: pulumi.Output<string>;
  password: pulumi.Output<string>;
}

/**
 * A registry the app image is pushed to. The deployer pushes with credentials that last no longer
 * than one image revision; the host pulls over SSH with read-only rights, so no credential that can
 * push ever reaches the host, and the Docker provider on the host holds none.
 */
export interface ImageRegistryTarget {
  /** Registry host, e.g. `registry.digitalocean.com` or `<account>.dkr.ecr.<region>.amazonaws.com`. */
  server: pulumi.Input<string>;
  /** Full repository name without tag, e.g. `registry.digitalocean.com/acme/webstack-prod-app`. */
  repository: pulumi.Input<string>;
  /** Push credentials for one release's image, issued anew for the next; `name`d children of `parent`. */
  pushCredentials(name: string, release: string, parent: pulumi.Resource): RegistryCredentials;
  /**
   * Pulls a pushed image (`<repository>@sha256:<digest>`) onto the host with read-only rights and
   * tags it there with its release (`<repository>:<release>`); what uses the image on the host
   * depends on the returned resource.
   */
  pullOnHost(name: string, image: pulumi.Output<string>, release: string, parent: pulumi.Resource): pulumi.Resource;
}

/** A shell script run where the engine is (see DockerHost.runOnHost). */
export interface HostScript {
  /** Runs when the resource is created, and again whenever the script changes. */
  create: pulumi.Input<string>;
  /** Runs when the resource is deleted; only where the host outlives the stack (the local engine). */
  delete?: pulumi.Input<string>;
}

/** What a cloud host does for HTTPS (see HttpsConfig). */
export interface HostHttps {
  httpsPort: number;
  domains: string[];
  dnsZone?: string;
}

/** An S3-compatible bucket and a key scoped to it, as pgBackRest reaches them. */
export interface BackupBucket {
  bucket: pulumi.Output<string>;
  /** The S3 API's host name. @example "fra1.digitaloceanspaces.com" */
  endpoint: pulumi.Input<string>;
  region: string;
  /** Path-style URLs (`endpoint/bucket/key`), for S3 servers without virtual hosts. @default false */
  pathStyle?: boolean;
  /** The key's id and secret (both secrets). */
  accessKeyId: pulumi.Output<string>;
  secretAccessKey: pulumi.Output<string>;
}

export interface DockerHost {
  /** The engine the stack's containers run on. */
  provider: docker.Provider;
  /** The engine images are built on when they go through a registry (the deployer's own). */
  buildProvider: docker.Provider;
  /** Address users reach nginx on: 127.0.0.1 (or the configured bind address) locally, the public IP on a cloud host. */
  publicAddress: pulumi.Output<string>;
  /** The cloud host's public IP; undefined for the local engine. */
  publicIp?: pulumi.Output<string>;
  /** Host directory on persistent block storage for Postgres data; undefined means a plain named volume. */
  dataDir?: string;
  /** Host directory on the same block storage for the stack's certificates; undefined means a plain named volume. */
  certsDir?: string;
  /** What every Docker resource on this host must wait for (the readiness command on a cloud host). */
  ready: pulumi.Resource[];
  /**
   * The cloud VM's id; undefined for the local engine. Docker objects carry it as a label, so a
   * replaced VM (same reserved IP, empty engine) gets the whole stack again in the same update.
   */
  vmId?: pulumi.Output<string>;
  /** The bucket the stack's backups go to (cloud hosts with backups); undefined means a volume on the host. */
  backupBucket?: BackupBucket;
  /** Where the app image goes; undefined means "build it on the host's own engine, no registry". */
  registry?: ImageRegistryTarget;
  /**
   * Runs a POSIX shell script with the Docker CLI of the stack's engine: on this machine for the
   * local engine (the CLI and the provider find the engine alike, by DOCKER_HOST or the default
   * socket), over the verified SSH connection on a cloud host, after the host is ready.
   */
  runOnHost(
    name: string,
    script: HostScript,
    opts: { parent: pulumi.Resource; dependsOn?: pulumi.Input<pulumi.Resource>[] },
  ): pulumi.Resource;
}
