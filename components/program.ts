import * as pulumi from "@pulumi/pulumi";
import { AppImage } from "./app-image";
import { SecretKey, WebstackConfig } from "./config";
import { createHost, DockerHost } from "./hosts";
import { StackNames } from "./specs/containers";
import { hashTree } from "./specs/release";
import { WebStack, WebStackArgs } from "./web-stack";

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
  image: AppImage;
  stack: WebStack;
}

/** Builds the whole program from a validated config: host → image → stack. */
export function buildWebstack(
  config: WebstackConfig,
  secrets: Partial<Record<SecretKey, pulumi.Output<string>>>,
  options: WebstackOptions,
): Webstack {
  const names: StackNames = { prefix: `webstack-${options.stack}`, stack: options.stack };
  const host = createHost("host", config, names.prefix);
  const image = new AppImage("app", {
    host,
    context: options.appDir,
    sourceHash: hashTree(options.appDir),
    nodeImage: config.nodeImage,
    localName: `${names.prefix}-app`,
  });
  const stack = new WebStack("webstack", {
    host,
    names,
    appImage: image.ref,
    appRevision: image.revision,
    release: config.release,
    replicas: config.replicas,
    httpPort: config.httpPort,
    bindAddress: config.httpBindAddress,
    images: { postgres: config.postgresImage, redis: config.redisImage, nginx: config.nginxImage },
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
    transform: options.transform,
  });
  return { host, image, stack };
}
