import * as command from "@pulumi/command";
import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import { DockerHost, HostScript } from "./docker-host";

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
    // Published on every address, the stack is still reached on loopback from this machine.
    this.publicAddress = pulumi.output(args.bindAddress === "0.0.0.0" ? "127.0.0.1" : args.bindAddress);
    this.registerOutputs({ publicAddress: this.publicAddress });
  }

  runOnHost(
    name: string,
    script: HostScript,
    opts: { parent: pulumi.Resource; dependsOn?: pulumi.Input<pulumi.Resource>[] },
  ): pulumi.Resource {
    return new command.local.Command(
      name,
      { create: script.create, delete: script.delete, interpreter: ["/bin/sh", "-c"] },
      { parent: opts.parent, dependsOn: opts.dependsOn },
    );
  }
}
