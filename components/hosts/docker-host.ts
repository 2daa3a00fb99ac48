// The seam between "where" and "what": every target yields a DockerHost, and WebStack and
// AppImage are built from it without knowing which cloud (if any) they run on.
import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";

/** A registry the app image is pushed to, with credentials taken from the cloud provider. */
export interface ImageRegistryTarget {
  /** Registry host, e.g. `registry.digitalocean.com` or `<account>.dkr.ecr.<region>.amazonaws.com`. */
  server: pulumi.Input<string>;
  /** Full repository name without tag, e.g. `registry.digitalocean.com/acme/webstack-prod-app`. */
  repository: pulumi.Input<string>;
  username: pulumi.Input<string>;
  /** A secret. */
  password: pulumi.Input<string>;
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
  /** What every Docker resource on this host must wait for (the readiness command on a cloud host). */
  ready: pulumi.Resource[];
  /**
   * The cloud VM's id; undefined for the local engine. Docker objects carry it as a label, so a
   * replaced VM (same reserved IP, empty engine) gets the whole stack again in the same update.
   */
  vmId?: pulumi.Output<string>;
  /** Where the app image goes; undefined means "build it on the host's own engine, no registry". */
  registry?: ImageRegistryTarget;
}
