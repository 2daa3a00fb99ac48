import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import { createHash } from "node:crypto";
import { dockerNginxVars, NGINX_COMMAND, nginxContainerFiles } from "../nginx/render";
import { DockerHost } from "./hosts/docker-host";
import {
  appReplicaSpec,
  ContainerSpec,
  databaseUrl,
  nginxSpec,
  postgresSpec,
  REDIS_CONF,
  redisConf,
  redisSpec,
  redisUrl,
  StackNames,
} from "./specs/containers";
import { releaseId } from "./specs/release";

/** A hook that may change a child's arguments and options before it is created. */
export type Transform<T> = (args: T, opts: pulumi.CustomResourceOptions) => void;

export interface WebStackArgs {
  /** The engine everything runs on. */
  host: DockerHost;
  /** Docker object names and labels. @example { prefix: "webstack-dev", stack: "dev" } */
  names: StackNames;
  /** The app image reference replicas run (see AppImage.ref). */
  appImage: pulumi.Input<string>;
  /** What the app image was built from (see AppImage.revision); names the release when `release` is not set. */
  appRevision: string;
  /**
   * Release id replicas are named after, usually the git SHA from CI. A new release creates new
   * replicas and removes the old ones at the end of the update.
   * @default a hash of `appRevision` and the replica spec
   */
  release?: string;
  /** Number of app replicas. @default 3 */
  replicas: number;
  /** Host port nginx is published on. @example 8080 */
  httpPort: number;
  /** Host address nginx is published on. @example "127.0.0.1" */
  bindAddress: string;
  /** Pinned images of the stock services. */
  images: { postgres: string; redis: string; nginx: string };
  /** Postgres password (a secret). @default a generated 32-character password */
  postgresPassword?: pulumi.Input<string>;
  /** Redis password (a secret; letters, digits, '_' and '-'). @default a generated 32-character password */
  redisPassword?: pulumi.Input<string>;
  /** Keep Redis's append-only file. @default true */
  redisAof: boolean;
  /** nginx's request body limit. @default "1m" */
  maxRequestBody: string;
  /** Seconds an app replica gets to finish in-flight requests when stopped. @default 10 */
  shutdownGraceSeconds: number;
  /** Protect the Postgres volume from `pulumi destroy`. @default false */
  protectData: boolean;
  /** Change what WebStack did not foresee, per child. */
  transform?: {
    network?: Transform<docker.NetworkArgs>;
    volume?: Transform<docker.VolumeArgs>;
    postgres?: Transform<docker.ContainerArgs>;
    redis?: Transform<docker.ContainerArgs>;
    app?: Transform<docker.ContainerArgs>;
    nginx?: Transform<docker.ContainerArgs>;
  };
}

interface Built {
  spec: ContainerSpec;
  container: docker.Container;
}

/**
 * The containers of a webstack: one private network; Postgres and Redis on volumes with
 * generated passwords; N app replicas named after their release; nginx, the only container with
 * a published port.
 */
export class WebStack extends pulumi.ComponentResource {
  readonly url: pulumi.Output<string>;
  readonly releaseId: string;
  readonly replicaNames: string[];
  readonly postgresPassword: pulumi.Output<string>;
  readonly redisPassword: pulumi.Output<string>;

  private readonly args: WebStackArgs;
  private readonly name: string;
  private readonly network: docker.Network;

  constructor(name: string, args: WebStackArgs, opts?: pulumi.ComponentResourceOptions) {
    super("webstack:index:WebStack", name, {}, opts);
    this.name = name;
    this.args = args;

    this.postgresPassword = this.password("postgres", args.postgresPassword);
    this.redisPassword = this.password("redis", args.redisPassword);
    this.network = this.createNetwork();
    const postgres = this.createPostgres();
    const redis = this.createRedis();
    this.releaseId = releaseId(args.release, args.appRevision, this.replicaTemplate());
    const replicas = this.createReplicas([postgres.container, redis.container]);
    this.replicaNames = replicas.map((r) => r.spec.containerName);
    const proxy = this.createProxy(replicas.map((r) => r.container));

    this.url = pulumi.interpolate`http://${args.host.publicAddress}${this.boundPort(proxy.container)}`;
    this.registerOutputs({ url: this.url, releaseId: this.releaseId, replicaNames: this.replicaNames });
  }

  /** The URL's port part: none for 80, the configured port, or the one Docker picked for port 0. */
  private boundPort(proxy: docker.Container): pulumi.Output<string> {
    const { httpPort } = this.args;
    const port =
      httpPort !== 0
        ? pulumi.output(httpPort)
        : proxy.ports.apply((ports) => {
            const bound = ports?.find((p) => p.internal === 80)?.external;
            if (bound === undefined || bound === 0) throw new Error("nginx's container reports no host port for port 80");
            return bound;
          });
    return port.apply((p) => (p === 80 ? "" : `:${p}`));
  }

  private password(role: "postgres" | "redis", given: pulumi.Input<string> | undefined): pulumi.Output<string> {
    if (given !== undefined) return pulumi.secret(given);
    // Letters and digits only: safe in URLs and in Redis's config file without quoting.
    const generated = new random.RandomPassword(
      `${this.name}-${role}-password`,
      { length: 32, special: false },
      { parent: this },
    );
    return pulumi.secret(generated.result);
  }

  private createNetwork(): docker.Network {
    const { names } = this.args;
    const args: docker.NetworkArgs = {
      name: names.prefix,
      driver: "bridge",
      labels: this.labels({ "webstack.stack": names.stack }),
    };
    const opts = this.onHost();
    this.args.transform?.network?.(args, opts);
    return new docker.Network(`${this.name}-network`, args, opts);
  }

  private createVolume(role: "postgres-data" | "redis-data", bindTo?: string): docker.Volume {
    const { names, protectData } = this.args;
    const args: docker.VolumeArgs = {
      name: `${names.prefix}-${role}`,
      labels: this.labels({ "webstack.stack": names.stack, "webstack.role": role }),
      // On a cloud host the data lives on block storage that outlives the VM.
      driverOpts: bindTo ? { type: "none", o: "bind", device: bindTo } : undefined,
    };
    const opts: pulumi.CustomResourceOptions = { ...this.onHost(), protect: role === "postgres-data" && protectData };
    this.args.transform?.volume?.(args, opts);
    return new docker.Volume(`${this.name}-${role}`, args, opts);
  }

  private createPostgres(): Built {
    const volume = this.createVolume("postgres-data", this.args.host.dataDir);
    const image = this.stockImage("postgres", this.args.images.postgres);
    const spec = postgresSpec(this.args.names);
    return this.createContainer(`${this.name}-postgres`, spec, {
      image,
      secretEnv: { POSTGRES_PASSWORD: this.postgresPassword },
      volumes: { "postgres-data": volume.name },
      waitTimeout: 180,
      transform: this.args.transform?.postgres,
    });
  }

  private createRedis(): Built {
    const volume = this.createVolume("redis-data");
    const image = this.stockImage("redis", this.args.images.redis);
    const spec = redisSpec(this.args.names);
    const appendOnly = this.args.redisAof;
    return this.createContainer(`${this.name}-redis`, spec, {
      image,
      secretEnv: { REDISCLI_AUTH: this.redisPassword },
      volumes: { "redis-data": volume.name },
      uploads: [
        {
          file: REDIS_CONF,
          content: pulumi.secret(this.redisPassword.apply((password) => redisConf({ password, appendOnly }))),
        },
      ],
      transform: this.args.transform?.redis,
    });
  }

  /** The replica spec minus the release, which the release id is derived from. */
  private replicaTemplate(): ContainerSpec {
    return appReplicaSpec(this.args.names, {
      release: "",
      index: 0,
      shutdownGraceSeconds: this.args.shutdownGraceSeconds,
    });
  }

  private createReplicas(dependencies: pulumi.Resource[]): Built[] {
    const { replicas, shutdownGraceSeconds } = this.args;
    const secretEnv = {
      DATABASE_URL: this.postgresPassword.apply(databaseUrl),
      REDIS_URL: this.redisPassword.apply(redisUrl),
    };
    return Array.from({ length: replicas }, (_, i) => {
      const spec = appReplicaSpec(this.args.names, { release: this.releaseId, index: i + 1, shutdownGraceSeconds });
      return this.createContainer(`${this.name}-app-${this.releaseId}-${i + 1}`, spec, {
        image: this.args.appImage,
        secretEnv,
        dependsOn: dependencies,
        transform: this.args.transform?.app,
      });
    });
  }

  private createProxy(replicas: pulumi.Resource[]): Built {
    const { names, httpPort, bindAddress, maxRequestBody } = this.args;
    const files = nginxContainerFiles(dockerNginxVars({ clientMaxBodySize: maxRequestBody }));
    const configHash = createHash("sha256")
      .update(JSON.stringify(files))
      .digest("hex")
      .slice(0, 16);
    const spec = nginxSpec(names, { httpPort, bindAddress, command: NGINX_COMMAND, configHash });
    return this.createContainer(`${this.name}-nginx`, spec, {
      image: this.stockImage("nginx", this.args.images.nginx),
      secretEnv: {},
      uploads: files.map((f) => ({ file: f.path, content: f.content, executable: f.executable })),
      // nginx resolves the app alias at start, so at least the first release must exist by then.
      dependsOn: replicas,
      transform: this.args.transform?.nginx,
    });
  }

  /** A pinned public image, present on the host before any container needs it. */
  private stockImage(role: string, ref: string): pulumi.Output<string> {
    const image = new docker.RemoteImage(`${this.name}-${role}-image`, { name: ref, keepLocally: true }, this.onHost());
    return image.imageId;
  }

  private createContainer(
    logicalName: string,
    spec: ContainerSpec,
    options: {
      image: pulumi.Input<string>;
      secretEnv: Record<string, pulumi.Output<string>>;
      volumes?: Partial<Record<"postgres-data" | "redis-data", pulumi.Input<string>>>;
      uploads?: docker.types.input.ContainerUpload[];
      dependsOn?: pulumi.Resource[];
      waitTimeout?: number;
      transform?: Transform<docker.ContainerArgs>;
    },
  ): Built {
    const missing = spec.secretEnv.filter((key) => !(key in options.secretEnv));
    if (missing.length > 0) throw new Error(`${spec.role}: no value for secret environment ${missing.join(", ")}`);

    const plainEnv = Object.entries(spec.env).map(([k, v]) => `${k}=${v}`);
    const secretKeys = spec.secretEnv;
    const envs: pulumi.Input<string[]> =
      secretKeys.length === 0
        ? plainEnv
        : pulumi.secret(
            pulumi
              .all(secretKeys.map((k) => options.secretEnv[k]))
              .apply((values) => [...plainEnv, ...values.map((v, i) => `${secretKeys[i]}=${v}`)]),
          );

    const args: docker.ContainerArgs = {
      name: spec.containerName,
      image: options.image,
      command: spec.command,
      user: spec.user,
      envs,
      labels: this.labels(spec.labels),
      networksAdvanced: [{ name: this.network.name, aliases: spec.aliases }],
      ports: spec.ports.length > 0 ? spec.ports : undefined,
      volumes:
        spec.volumes.length > 0
          ? spec.volumes.map((v) => {
              const volumeName = options.volumes?.[v.volume];
              if (volumeName === undefined) throw new Error(`${spec.role}: volume ${v.volume} was not created`);
              return { volumeName, containerPath: v.containerPath };
            })
          : undefined,
      uploads: options.uploads,
      healthcheck: spec.healthcheck,
      restart: spec.restart,
      logDriver: "json-file",
      logOpts: spec.logOpts,
      stopSignal: spec.stopSignal,
      stopTimeout: spec.stopTimeout,
      destroyGraceSeconds: spec.stopTimeout,
      wait: true,
      waitTimeout: options.waitTimeout ?? 90,
    };
    const opts: pulumi.CustomResourceOptions = {
      ...this.onHost(),
      dependsOn: [...this.args.host.ready, ...(options.dependsOn ?? [])],
    };
    options.transform?.(args, opts);
    return { spec, container: new docker.Container(logicalName, args, opts) };
  }

  /** Docker labels from a spec's labels, plus the VM the object lives on (cloud hosts). */
  private labels(labels: Record<string, string>): pulumi.Input<docker.types.input.ContainerLabel[]> {
    const plain = Object.entries(labels).map(([label, value]) => ({ label, value }));
    const { vmId } = this.args.host;
    return vmId === undefined ? plain : vmId.apply((id) => [...plain, { label: "webstack.vm", value: id }]);
  }

  /** Options of every Docker resource: on the host's engine, after the host is ready. */
  private onHost(): pulumi.CustomResourceOptions {
    return { parent: this, provider: this.args.host.provider, dependsOn: this.args.host.ready };
  }
}
