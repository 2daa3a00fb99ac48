import * as pulumi from "@pulumi/pulumi";
import { WebstackConfig } from "../config";
import { AwsHost } from "./aws";
import { DigitalOceanHost } from "./digitalocean";
import { DockerHost } from "./docker-host";
import { LocalHost } from "./local";

export { DockerHost } from "./docker-host";

/** The DockerHost of the configured target. */
export function createHost(
  name: string,
  config: WebstackConfig,
  namePrefix: string,
  opts?: pulumi.ComponentResourceOptions,
  kind: { throwaway: boolean } = { throwaway: false },
): DockerHost {
  const { region, size } = config;
  // A throwaway stack's backups go with it; an environment's outlive `pulumi destroy`.
  const backups = (bucketRegion: string) =>
    config.backups && { region: config.backups.bucketRegion ?? bucketRegion, keepOnDestroy: !kind.throwaway };
  switch (config.target) {
    case "local":
      return new LocalHost(name, { bindAddress: config.httpBindAddress }, opts);
    case "digitalocean":
      return new DigitalOceanHost(
        name,
        {
          region: required(region, "region"),
          size: required(size, "size"),
          adminCidrs: config.adminCidrs,
          httpPort: config.httpPort,
          dataVolumeGb: config.dataVolumeGb,
          protectData: config.protectData,
          docrRegistry: config.imageRegistry === "cloud" ? config.docrRegistry : undefined,
          https: config.https,
          backups: backups(required(region, "region")),
          namePrefix,
        },
        opts,
      );
    case "aws":
      return new AwsHost(
        name,
        {
          region: required(region, "region"),
          availabilityZone: required(config.availabilityZone, "availabilityZone"),
          size: required(size, "size"),
          adminCidrs: config.adminCidrs,
          httpPort: config.httpPort,
          dataVolumeGb: config.dataVolumeGb,
          protectData: config.protectData,
          useEcr: config.imageRegistry === "cloud",
          https: config.https,
          backups: backups(required(region, "region")),
          namePrefix,
        },
        opts,
      );
  }
}

/** parseConfig guarantees these for cloud targets; this only narrows the type. */
function required<T>(value: T | undefined, key: string): T {
  if (value === undefined) throw new Error(`webstack:${key} is required for this target`);
  return value;
}
