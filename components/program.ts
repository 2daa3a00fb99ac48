import * as pulumi from "@pulumi/pulumi";
import { AppImage, imageRevision } from "./app-image";
import { replicaAdvice, SecretKey, WebstackConfig } from "./config";
import { createHost, DockerHost } from "./hosts";
import { StackNames } from "./specs/containers";
import { hashTree } from "./specs/release";
import { isThrowawayStack } from "./specs/stacks";
import { LocalCertificate } from "./local-ca";
import { ReleaseImages } from "./release-images";
import { stackReleaseId, WebStack, WebStackArgs } from "./web-stack";

export interface WebstackOptions {
  /** The Pulumi stack name; Docker and cloud object names are prefixed `webstack-<stack>`. */
  stack: string;
  /** The app's build context. */
  appDir: string;
  /** Per-child hooks passed on to WebStack. */
  transform?: WebStackArgs["transform"];
}

export interface Webstack {
  host: DockerHost;
  /** The build of the checkout; undefined for a rollback, which builds nothing. */
  image?: AppImage;
  images: ReleaseImages;
  stack: WebStack;
  /** The local target's CA and certificate, when it serves HTTPS. */
  localCertificate?: LocalCertificate;
}

/** Builds the whole program from a validated config: host → image → stack. */
export function buildWebstack(
  config: WebstackConfig,
  secrets: Partial<Record<SecretKey, pulumi.Output<string>>>,
  options: WebstackOptions,
): Webstack {
  const names: StackNames = { prefix: `webstack-${options.stack}`, stack: options.stack };
  const host = createHost("host", config, names.prefix, undefined, { throwaway: isThrowawayStack(options.stack) });
  const localName = `${names.prefix}-app`;
  const sourceHash = hashTree(options.appDir);
  const revision = imageRevision(sourceHash, config.nodeImage);
  const release = stackReleaseId({
    names,
    release: config.rollbackTo ?? config.release,
    appRevision: revision,
    shutdownGraceSeconds: config.shutdownGraceSeconds,
    limits: config.limits,
    appProcesses: config.appProcesses,
  });
  const images = new ReleaseImages("app-releases", { host, localName, keep: config.keepReleases });
  let image: AppImage | undefined;
  let appImage: pulumi.Output<string>;
  const advice = replicaAdvice(config);
  if (advice !== undefined) void pulumi.log.warn(advice);
  if (config.rollbackTo !== undefined) {
    void pulumi.log.warn(
      `webstack:rollbackTo is set: release ${release} runs again from its image on the host, and this checkout is ` +
        "not built. Remove the setting (`pulumi config rm webstack:rollbackTo`) to deploy the checkout.",
    );
    appImage = images.kept(release);
  } else {
    image = new AppImage("app", {
      host,
      context: options.appDir,
      sourceHash,
      nodeImage: config.nodeImage,
      localName,
      release,
    });
    appImage = images.held(image.ref);
  }
  // The local target's certificate comes from a CA the stack makes; a cloud host's from its ACME CA.
  const localCertificate =
    config.https !== undefined && config.https.acme === undefined
      ? new LocalCertificate("local-https", { domains: config.https.domains, stack: options.stack })
      : undefined;
  const stack = new WebStack("webstack", {
    host,
    names,
    appImage,
    appRevision: revision,
    release,
    replicas: config.replicas,
    httpPort: config.httpPort,
    bindAddress: config.httpBindAddress,
    images: {
      postgres: config.postgresImage,
      redis: config.redisImage,
      nginx: config.nginxImage,
      acme: config.acmeImage,
    },
    https: config.https && { ...config.https, certificate: localCertificate?.bundle },
    backups: config.backups && { schedule: config.backups, bucket: host.backupBucket },
    postgresPassword: secrets.postgresPassword,
    redisPassword: secrets.redisPassword,
    redisAof: config.redisAof,
    maxRequestBody: config.maxRequestBody,
    shutdownGraceSeconds: config.shutdownGraceSeconds,
    protectData: config.protectData,
    adminRoutes: config.adminRoutes,
    limitConnPerIp: config.limitConnPerIp,
    limitRatePerIp: config.limitRatePerIp,
    limitBurst: config.limitBurst,
    limits: config.limits,
    appProcesses: config.appProcesses,
    transform: options.transform,
  });
  images.prune(release, stack.replicas);
  return { host, image, images, stack, localCertificate };
}
