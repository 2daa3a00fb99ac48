import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import { DockerHost } from "./docker-host";

export interface LocalHostArgs {
  /**
   * Address nginx is published on, which is also the address users reach it on.
   * @default "127.0.0.1"
   */
  bindAddress: string;
}

/**
 * The local Docker engine: `DOCKER_HOST` when set, otherwise the default socket. Nothing to
 * provision and nothing to wait for; images are built on the same engine, never pushed.
 */
export class LocalHost extends pulumi.ComponentResource implements DockerHost {
  readonly provider: docker.Provider;
  readonly buildProvider: docker.Provider;
  readonly publicAddress: pulumi.Output<string>;
  readonly ready: pulumi.Resource[] = [];

  constructor(name: string, args: LocalHostArgs, opts?: pulumi.ComponentResourceOptions) {
    super("webstack:hosts:LocalHost", name, {}, opts);
    this.provider = new docker.Provider(`${name}-docker`, {}, { parent: this });
    this.buildProvider = this.provider;
    this.publicAddress = pulumi.output(args.bindAddress);
    this.registerOutputs({ publicAddress: this.publicAddress });
  }
}
