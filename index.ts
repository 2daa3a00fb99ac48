// webstack: read and validate the stack's config, build the host, the app image and the stack,
// export what a user needs. Every decision lives in components/.
import * as pulumi from "@pulumi/pulumi";
import * as path from "node:path";
import { AppImage } from "./components/app-image";
import { readStackConfig } from "./components/config";
import { createHost } from "./components/hosts";
import { hashTree } from "./components/specs/release";
import { WebStack } from "./components/web-stack";

const { config, secrets } = readStackConfig();
const names = { prefix: `webstack-${pulumi.getStack()}`, stack: pulumi.getStack() };
const appDir = path.join(__dirname, "app");

const host = createHost("host", config, names.prefix);

const image = new AppImage("app", {
  host,
  context: appDir,
  sourceHash: hashTree(appDir),
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
});

export const url = stack.url;
export const publicIp = host.publicIp;
export const release = stack.releaseId;
