import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import { createHash } from "node:crypto";
import * as path from "node:path";
import { DockerHost } from "./hosts/docker-host";
import { releaseImage } from "./specs/images";

export interface AppImageArgs {
  /** Where the image is built and where it runs. */
  host: DockerHost;
  /** The app's build context; holds its Dockerfile. @example "./app" */
  context: string;
  /** Content hash of the build context (see `hashTree`); it tags the image, so a change is a rebuild. */
  sourceHash: string;
  /** Base image given to the Dockerfile as build argument NODE_IMAGE. @example "node:22.20.0-bookworm-slim" */
  nodeImage: string;
  /** Local image name when no registry is used, unique per stack. @example "webstack-dev-app" */
  localName: string;
  /** The release the image is built for; it tags the image (see `releaseImage`). @example "4f1c2ab9e0d3" */
  release: string;
  /** Change what AppImage did not foresee. */
  transform?: {
    image?: (args: docker.ImageArgs, opts: pulumi.CustomResourceOptions) => void;
  };
}

/**
 * The app image, built from `app/`'s Dockerfile. Without a registry it is built by the host's own
 * engine and never pushed; with one it is built on the deployer's engine, pushed with credentials
 * for this revision only, and pulled by the host by digest with read-only rights. Either way `ref`
 * pins containers to exactly what was built, so a rebuild is a visible diff of every replica, and
 * the stack's image goes with the stack.
 */
export class AppImage extends pulumi.ComponentResource {
  /** Image reference containers run: the image id (local) or the pulled digest (registry). */
  readonly ref: pulumi.Output<string>;
  /** Hash of everything the image is built from (sources and base image). */
  readonly revision: string;

  constructor(name: string, args: AppImageArgs, opts?: pulumi.ComponentResourceOptions) {
    super("webstack:index:AppImage", name, {}, opts);
    const { host } = args;
    this.revision = imageRevision(args.sourceHash, args.nodeImage);
    const registry = host.registry;
    const push = registry?.pushCredentials(`${name}-push`, args.release, this);

    const imageArgs: docker.ImageArgs = {
      imageName: registry
        ? pulumi.output(registry.repository).apply((repository) => releaseImage(repository, args.release))
        : releaseImage(args.localName, args.release),
      build: {
        context: args.context,
        dockerfile: path.join(args.context, "Dockerfile"),
        args: { NODE_IMAGE: args.nodeImage },
        // The Dockerfile needs no BuildKit feature, and every engine still has the classic builder.
        builderVersion: "BuilderV1",
      },
      skipPush: registry === undefined,
      registry:
        registry && push ? { server: registry.server, username: push.username, password: push.password } : undefined,
    };
    const imageOpts: pulumi.CustomResourceOptions = {
      parent: this,
      provider: registry ? host.buildProvider : host.provider,
      dependsOn: registry ? [] : host.ready,
    };
    args.transform?.image?.(imageArgs, imageOpts);
    const image = new docker.Image(`${name}-image`, imageArgs, imageOpts);

    if (registry) {
      // The host pulled it already; the provider finds it there and needs no credentials of its own.
      const onHost = registry.pullOnHost(`${name}-pull`, image.repoDigest, args.release, this);
      const pulled = new docker.RemoteImage(
        `${name}-pulled`,
        { name: image.repoDigest, keepLocally: true },
        { parent: this, provider: host.provider, dependsOn: [...host.ready, onHost] },
      );
      this.ref = pulled.imageId;
    } else {
      // pulumi-docker's Image never removes what it built, and neither does this: the release's
      // tag stays for a rollback until the host's prune removes it (see ReleaseImages).
      const local = new docker.RemoteImage(
        `${name}-local`,
        { name: imageArgs.imageName, keepLocally: true },
        { parent: this, provider: host.provider, dependsOn: [image, ...host.ready] },
      );
      // Containers that run the image depend on both: it is built and on the host before they start.
      this.ref = pulumi.all([image.repoDigest, local.imageId]).apply(([digest]) => digest);
    }
    this.registerOutputs({ ref: this.ref, revision: this.revision });
  }
}

/** The hash of everything an app image is built from: its sources and its base image. */
export function imageRevision(sourceHash: string, nodeImage: string): string {
  return createHash("sha256").update(sourceHash).update(nodeImage).digest("hex").slice(0, 12);
}
