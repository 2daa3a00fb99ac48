import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import { DockerHost } from "./hosts/docker-host";
import { imagePruneScript, imageRemoveAllScript, releaseImage } from "./specs/images";

export interface ReleaseImagesArgs {
  /** Where the release images are kept. */
  host: DockerHost;
  /** The local image name when no registry is used (see AppImageArgs.localName). */
  localName: string;
  /** How many releases' images the host keeps, the live one included. */
  keep: number;
}

/**
 * The app's release images on the host: every release's image stays tagged with its release, so a
 * rollback runs it again without a build; after each release only the newest `keep` remain. On the
 * local engine, which outlives the stack, they are all removed with the stack; a cloud host's go
 * with its VM.
 */
export class ReleaseImages extends pulumi.ComponentResource {
  /** The repository the images are tagged in on the host (the local name, or the registry's repository). */
  readonly repository: pulumi.Output<string>;
  private readonly name: string;
  private readonly args: ReleaseImagesArgs;
  private readonly cleanup?: pulumi.Resource;

  constructor(name: string, args: ReleaseImagesArgs, opts?: pulumi.ComponentResourceOptions) {
    super("webstack:index:ReleaseImages", name, {}, opts);
    this.name = name;
    this.args = args;
    const { host } = args;
    this.repository = host.registry ? pulumi.output(host.registry.repository) : pulumi.output(args.localName);
    if (host.vmId === undefined) {
      // Containers that run a release image depend on this, so it is deleted after them.
      this.cleanup = host.runOnHost(
        `${name}-cleanup`,
        {
          create: this.repository.apply((repo) => `# webstack: the images of ${repo} are removed with the stack`),
          delete: this.repository.apply(imageRemoveAllScript),
        },
        { parent: this, dependsOn: host.ready },
      );
    }
    this.registerOutputs({ repository: this.repository });
  }

  /**
   * An image reference that containers may run: the same reference, carrying the dependency that
   * keeps the release images until those containers are gone.
   */
  held(ref: pulumi.Input<string>): pulumi.Output<string> {
    if (this.cleanup === undefined) return pulumi.output(ref);
    return pulumi.all([ref, this.cleanup.urn]).apply(([value]) => value);
  }

  /**
   * A release's kept image, for a rollback: nothing is built or pulled. A release whose image is
   * no longer on the host fails the update before any container changes, naming it.
   */
  kept(release: string): pulumi.Output<string> {
    const { host, keep } = this.args;
    const ref = this.repository.apply((repo) => releaseImage(repo, release));
    const present = host.runOnHost(
      `${this.name}-rollback-check`,
      {
        create: ref.apply(
          (image) =>
            `docker image inspect '${image}' >/dev/null 2>&1 || { echo "webstack:rollbackTo: release ${release}'s image ${image} is not on the host (it keeps the ${keep} newest, see webstack:keepReleases); deploy that release's commit instead" >&2; exit 1; }`,
        ),
      },
      { parent: this, dependsOn: host.ready },
    );
    const image = new docker.RemoteImage(
      `${this.name}-rollback`,
      { name: ref, keepLocally: true },
      { parent: this, provider: host.provider, dependsOn: [...host.ready, present] },
    );
    return this.held(image.imageId);
  }

  /** Removes all but the newest `keep` release images once `after` (the live release) is up. */
  prune(release: string, after: pulumi.Input<pulumi.Resource>[]): pulumi.Resource {
    return this.args.host.runOnHost(
      `${this.name}-prune`,
      // The release in the script makes each release's update run it again.
      {
        create: this.repository.apply(
          (repo) => `${imagePruneScript(repo, this.args.keep)}\n# after release ${release}`,
        ),
      },
      { parent: this, dependsOn: after },
    );
  }
}
