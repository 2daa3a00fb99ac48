import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import {
  ContainerFile,
  dockerNginxVars,
  NGINX_CERT_FILE,
  NGINX_COMMAND,
  NGINX_CONF_PATH,
  nginxContainerFiles,
} from "../nginx/render";
import { AcmeConfig, BackupConfig } from "./config";
import { BackupBucket, DockerHost } from "./hosts/docker-host";
import { BackupRepository, pgbackrestConf } from "./specs/backups";
import {
  acmeSpec,
  backupSpec,
  APP_SECRET_FILES,
  APP_USER,
  appReplicaSpec,
  ContainerSpec,
  databaseUrl,
  DEFAULT_LIMITS,
  filesRunSpec,
  FilesRunOptions,
  LimitedRole,
  migrationFailure,
  migrationRunSpec,
  NetworkRole,
  NGINX_DIR,
  nginxSpec,
  postgresCheckFailure,
  postgresCheckSpec,
  postgresSpec,
  redisConf,
  redisSpec,
  redisUrl,
  ResourceLimits,
  SecretDocument,
  softLimitMb,
  specFingerprint,
  StackNames,
  VolumeRole,
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
  /** Pinned images of the stock services; `acme` only with `https`. */
  images: { postgres: string; redis: string; nginx: string; acme?: string };
  /**
   * HTTPS on `httpsPort` with a certificate an ACME client beside nginx gets and renews (by
   * HTTP-01 through nginx). @default undefined (HTTP only)
   */
  https?: StackHttps;
  /**
   * Continuous backups of Postgres with pgBackRest: WAL archived as it is written, base backups on
   * the schedule, to `bucket` or else to a volume of the host. @default undefined (none)
   */
  backups?: StackBackups;
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
  /**
   * Let `/reset` through nginx; the app still requires the stack's admin token (see `adminToken`).
   * @default false
   */
  adminRoutes: boolean;
  /** Requests one client address may have in progress at once; 0 is off. @default 0 @example 20 */
  limitConnPerIp: number;
  /** Requests per second one client address may make; 0 is off. @default 0 @example 20 */
  limitRatePerIp: number;
  /** Requests above the rate one address may make at once. @default twice `limitRatePerIp` */
  limitBurst?: number;
  /**
   * Memory and CPU weight per role; the app's apply to each replica.
   * @default DEFAULT_LIMITS, for each role not given
   * @example { app: { memoryMb: 384, cpuShares: 1024 } }
   */
  limits?: Partial<Record<LimitedRole, ResourceLimits>>;
  /** Tasks the app's user may have on the host, all replicas together. @default DEFAULT_APP_PROCESSES */
  appProcesses?: number;
  /** Change what WebStack did not foresee, per child. */
  transform?: {
    /** Both networks: the front one (`webstack-<stack>`) and the internal back one (`…-back`). */
    network?: Transform<docker.NetworkArgs>;
    volume?: Transform<docker.VolumeArgs>;
    postgres?: Transform<docker.ContainerArgs>;
    redis?: Transform<docker.ContainerArgs>;
    app?: Transform<docker.ContainerArgs>;
    nginx?: Transform<docker.ContainerArgs>;
    /** The ACME client (with `https`). */
    acme?: Transform<docker.ContainerArgs>;
    /** The backup container (with `backups`). */
    backup?: Transform<docker.ContainerArgs>;
    /** The one-off runs that write the app's and nginx's read-only files. */
    files?: Transform<docker.ContainerArgs>;
    /** A release's one-off migration run. */
    migrate?: Transform<docker.ContainerArgs>;
    /** The one-off check of a new Postgres image against the data directory's major version. */
    postgresCheck?: Transform<docker.ContainerArgs>;
  };
}

/** What WebStack needs of the HTTPS settings (see HttpsConfig): one of `acme` and `certificate`. */
export interface StackHttps {
  domains: string[];
  hstsSeconds: number;
  httpsPort: number;
  /** An ACME client beside nginx gets and renews the certificate (cloud hosts). */
  acme?: AcmeConfig;
  /** The private key and certificate chain as one PEM (a secret), given to nginx as a file (the local CA's). */
  certificate?: pulumi.Input<string>;
}

/** What WebStack needs of the backup settings. */
export interface StackBackups {
  schedule: BackupConfig;
  /** The cloud host's bucket (see DockerHost.backupBucket); none keeps the backups on a volume of the host. */
  bucket?: BackupBucket;
}

/** The directory the stack's Postgres image is built from (pgBackRest over the pinned image). */
const POSTGRES_CONTEXT = path.join(__dirname, "..", "postgres", "image");
const POSTGRES_DOCKERFILE = readFileSync(path.join(POSTGRES_CONTEXT, "Dockerfile"), "utf8");
/** The backup container's script and its health check, run by the image's shell. */
const BACKUP_SCRIPT = readFileSync(path.join(__dirname, "..", "postgres", "backup.sh"), "utf8");
const BACKUP_HEALTH_SCRIPT = readFileSync(path.join(__dirname, "..", "postgres", "backup-health.sh"), "utf8");

/** The ACME client's script, run by the image's shell. */
const ACME_SCRIPT = readFileSync(path.join(__dirname, "..", "acme", "acme.sh"), "utf8");

/**
 * The release id a stack's replicas are named after (see `releaseId`): the given one, or else a
 * hash of the app's revision and the replica spec minus the release. Known before anything is
 * built, so the app image can be tagged with it.
 */
export function stackReleaseId(
  args: Pick<WebStackArgs, "names" | "release" | "appRevision" | "shutdownGraceSeconds" | "limits" | "appProcesses">,
): string {
  const template = appReplicaSpec(args.names, {
    release: "",
    index: 0,
    shutdownGraceSeconds: args.shutdownGraceSeconds,
    limits: roleLimits(args, "app"),
    userProcesses: args.appProcesses,
  });
  return releaseId(args.release, args.appRevision, template);
}

function roleLimits(args: Pick<WebStackArgs, "limits">, role: LimitedRole): ResourceLimits {
  return args.limits?.[role] ?? DEFAULT_LIMITS[role];
}

interface Built {
  spec: ContainerSpec;
  container: docker.Container;
}

interface AcmeVolumes {
  certs: docker.Volume;
  live: docker.Volume;
  webroot: docker.Volume;
}

interface FilesRun extends Built {
  volume: docker.Volume;
}

/**
 * The containers of a webstack: a front network (nginx ↔ app) and an internal back network (app
 * ↔ Postgres and Redis); Postgres and Redis on volumes with generated passwords; N app replicas
 * named after their release; nginx, the only container with a published port. Secrets reach
 * containers only as files; every container drops all capabilities but the few its image needs.
 */
export class WebStack extends pulumi.ComponentResource {
  readonly url: pulumi.Output<string>;
  /** The site over HTTPS, by its name (`https://app.example.com`), when the stack serves HTTPS. */
  readonly httpsUrl?: string;
  readonly releaseId: string;
  readonly replicaNames: string[];
  /** The release's app replicas: what runs once the release is live. */
  readonly replicas: docker.Container[];
  readonly postgresPassword: pulumi.Output<string>;
  readonly redisPassword: pulumi.Output<string>;
  /** The bearer token `POST /reset` requires (a secret, generated per stack). */
  readonly adminToken: pulumi.Output<string>;
  /** The passphrase the backups are encrypted with (a secret, generated per stack), with backups on. */
  readonly backupPassphrase?: pulumi.Output<string>;

  private readonly args: WebStackArgs;
  private readonly name: string;
  private readonly networks: Partial<Record<NetworkRole, docker.Network>>;
  private readonly secrets: Partial<Record<SecretDocument, pulumi.Output<string>>>;

  constructor(name: string, args: WebStackArgs, opts?: pulumi.ComponentResourceOptions) {
    super("webstack:index:WebStack", name, {}, opts);
    this.name = name;
    this.args = args;

    this.postgresPassword = this.password("postgres", args.postgresPassword);
    this.redisPassword = this.password("redis", args.redisPassword);
    this.adminToken = this.password("admin-token", undefined, 40);
    if (args.backups !== undefined) {
      const cipher = new random.RandomPassword(
        `${this.name}-backup-cipher`,
        { length: 64, special: false },
        { parent: this },
      );
      this.backupPassphrase = pulumi.secret(cipher.result);
    }
    this.secrets = this.secretDocuments();
    this.networks = {
      front: this.createNetwork("front"),
      back: this.createNetwork("back"),
      ...(args.https?.acme === undefined ? {} : { acme: this.createNetwork("acme") }),
      ...(args.backups?.bucket === undefined ? {} : { backup: this.createNetwork("backup") }),
    };
    const postgres = this.createPostgres();
    const redis = this.createRedis();
    this.releaseId = stackReleaseId(args);
    const replicas = this.createReplicas(postgres.container, redis.container);
    this.replicaNames = replicas.map((r) => r.spec.containerName);
    this.replicas = replicas.map((r) => r.container);
    const acmeVolumes = args.https?.acme === undefined ? undefined : this.createAcmeVolumes();
    const proxy = this.createProxy(
      replicas.map((r) => r.container),
      acmeVolumes,
    );
    // After nginx, which answers its challenges: its first order does not meet a stale nginx.
    if (args.https?.acme !== undefined && acmeVolumes !== undefined) {
      this.createAcme(args.https, args.https.acme, acmeVolumes, proxy.container);
    }

    this.url = pulumi.interpolate`http://${args.host.publicAddress}${this.boundPort(proxy.container)}`;
    if (args.https !== undefined) {
      const { domains, httpsPort } = args.https;
      this.httpsUrl = `https://${domains[0]}${httpsPort === 443 ? "" : `:${httpsPort}`}`;
    }
    this.registerOutputs({
      url: this.url,
      httpsUrl: this.httpsUrl,
      releaseId: this.releaseId,
      replicaNames: this.replicaNames,
    });
  }

  /** The URL's port part: none for 80, the configured port, or the one Docker picked for port 0. */
  private boundPort(proxy: docker.Container): pulumi.Output<string> {
    const { httpPort } = this.args;
    const port =
      httpPort !== 0
        ? pulumi.output(httpPort)
        : proxy.ports.apply((ports) => {
            const bound = ports?.find((p) => p.internal === 80)?.external;
            if (bound === undefined || bound === 0)
              throw new Error("nginx's container reports no host port for port 80");
            return bound;
          });
    return port.apply((p) => (p === 80 ? "" : `:${p}`));
  }

  private password(
    role: "postgres" | "redis" | "admin-token",
    given: pulumi.Input<string> | undefined,
    length = 32,
  ): pulumi.Output<string> {
    if (given !== undefined) return pulumi.secret(given);
    // Letters and digits only: safe in URLs and in Redis's config file without quoting.
    const generated = new random.RandomPassword(
      role === "admin-token" ? `${this.name}-admin-token` : `${this.name}-${role}-password`,
      { length, special: false },
      { parent: this },
    );
    return pulumi.secret(generated.result);
  }

  /** Every secret a container may receive as a file, by the name specs use for it. */
  private secretDocuments(): Partial<Record<SecretDocument, pulumi.Output<string>>> {
    const appendOnly = this.args.redisAof;
    const maxMemoryMb = softLimitMb(this.limits("redis"));
    return {
      postgresPassword: this.postgresPassword,
      redisConf: pulumi.secret(
        this.redisPassword.apply((password) => redisConf({ password, appendOnly, maxMemoryMb })),
      ),
      databaseUrl: pulumi.secret(this.postgresPassword.apply(databaseUrl)),
      redisUrl: pulumi.secret(this.redisPassword.apply(redisUrl)),
      adminToken: this.adminToken,
      ...(this.args.https?.certificate === undefined ? {} : { tlsBundle: pulumi.secret(this.args.https.certificate) }),
      ...(this.args.backups === undefined ? {} : { pgbackrestConf: this.pgbackrestConf(this.args.backups) }),
    };
  }

  /**
   * pgBackRest's configuration, with a passphrase generated for the stack that encrypts every file
   * of the repository: without it (`pulumi config`'s secrets or the stack's state), the backups
   * are unreadable, to the bucket's owner too.
   */
  private pgbackrestConf(backups: StackBackups): pulumi.Output<string> {
    const cipher = this.backupPassphrase;
    if (cipher === undefined) throw new Error("WebStack: backups need their passphrase");
    const { bucket, schedule } = backups;
    if (bucket === undefined) {
      return pulumi.secret(cipher.apply((cipherPass) => pgbackrestConf({ kind: "volume" }, schedule, { cipherPass })));
    }
    return pulumi.secret(
      pulumi
        .all([cipher, bucket.bucket, bucket.endpoint, bucket.accessKeyId, bucket.secretAccessKey])
        .apply(([cipherPass, name, endpoint, accessKeyId, secretAccessKey]) => {
          const repository: BackupRepository = {
            kind: "bucket",
            bucket: name,
            endpoint,
            region: bucket.region,
            pathStyle: bucket.pathStyle,
          };
          return pgbackrestConf(repository, schedule, { cipherPass, accessKeyId, secretAccessKey });
        }),
    );
  }

  private createNetwork(role: NetworkRole): docker.Network {
    const { names } = this.args;
    const args: docker.NetworkArgs = {
      name: role === "front" ? names.prefix : `${names.prefix}-${role}`,
      driver: "bridge",
      // No route out and no published port: what is only on the back network talks to the app alone.
      internal: role === "back" ? true : undefined,
      labels: this.labels({ "webstack.stack": names.stack }),
    };
    const opts = this.onHost();
    this.args.transform?.network?.(args, opts);
    // The front network keeps the logical name the single network had, so it is not replaced.
    return new docker.Network(role === "front" ? `${this.name}-network` : `${this.name}-${role}-network`, args, opts);
  }

  private createVolume(role: VolumeRole, bindTo?: string, after: pulumi.Resource[] = []): docker.Volume {
    const { names, protectData } = this.args;
    const args: docker.VolumeArgs = {
      name: `${names.prefix}-${role}`,
      labels: this.labels({ "webstack.stack": names.stack, "webstack.role": role }),
      // On a cloud host the data lives on block storage that outlives the VM.
      driverOpts: bindTo ? { type: "none", o: "bind", device: bindTo } : undefined,
    };
    const opts: pulumi.CustomResourceOptions = {
      ...this.onHost(),
      dependsOn: [...this.args.host.ready, ...after],
      protect: role === "postgres-data" && protectData,
    };
    this.args.transform?.volume?.(args, opts);
    return new docker.Volume(`${this.name}-${role}`, args, opts);
  }

  private createPostgres(): Built {
    const volume = this.createVolume("postgres-data", this.args.host.dataDir);
    const { backups } = this.args;
    const image = backups === undefined ? this.stockImage("postgres", this.args.images.postgres) : this.postgresImage();
    const checked = this.createPostgresCheck(image, volume);
    if (backups === undefined) {
      const spec = postgresSpec(this.args.names, this.limits("postgres"));
      return this.createContainer(`${this.name}-postgres`, spec, {
        image,
        volumes: { "postgres-data": volume.name },
        dependsOn: [checked],
        waitTimeout: 180,
        transform: this.args.transform?.postgres,
      });
    }
    const bucket = backups.bucket !== undefined;
    const socket = this.createVolume("postgres-socket");
    const repository = bucket ? undefined : this.createVolume("backups");
    const volumes = {
      "postgres-data": volume.name,
      "postgres-socket": socket.name,
      ...(repository === undefined ? {} : { backups: repository.name }),
    };
    const { archiveTimeoutSeconds, fullDays, diffHours } = backups.schedule;
    const spec = postgresSpec(this.args.names, this.limits("postgres"), { archiveTimeoutSeconds, bucket });
    const postgres = this.createContainer(`${this.name}-postgres`, spec, {
      image,
      volumes,
      dependsOn: [checked],
      waitTimeout: 180,
      transform: this.args.transform?.postgres,
    });
    const backupContainer = backupSpec(this.args.names, {
      archiveTimeoutSeconds,
      bucket,
      script: BACKUP_SCRIPT,
      healthScript: BACKUP_HEALTH_SCRIPT,
      fullDays,
      diffHours,
      limits: this.limits("backup"),
    });
    this.createContainer(`${this.name}-backup`, backupContainer, {
      image,
      volumes,
      dependsOn: [postgres.container],
      transform: this.args.transform?.backup,
    });
    return postgres;
  }

  /**
   * The check each new Postgres image passes before the server is replaced by it: a new major
   * version never starts on the old data directory. Resolves to the run once it ended well; a
   * failed check fails the update here, with the running server untouched, and names the way up.
   */
  private createPostgresCheck(image: pulumi.Output<string>, volume: docker.Volume): pulumi.Output<pulumi.Resource> {
    const ref = this.args.images.postgres;
    const spec = postgresCheckSpec(
      this.args.names,
      this.args.backups === undefined ? ref : `${ref} ${POSTGRES_DOCKERFILE}`,
    );
    const { container } = this.createContainer(`${this.name}-postgres-check`, spec, {
      image,
      volumes: { "postgres-data": volume.name },
      transform: this.args.transform?.postgresCheck,
    });
    const { stack } = this.args.names;
    return pulumi.all([container.exitCode, container.containerLogs]).apply(([exitCode, logs]) => {
      if (exitCode !== 0) {
        const why =
          postgresCheckFailure(logs) ?? `it exited with code ${exitCode} (see \`docker logs ${spec.containerName}\`)`;
        throw new Error(
          `webstack:postgresImage ${ref} cannot run on this stack's data: ${why}. Postgres was not replaced; the server ` +
            `before serves on. A new major version needs its data moved over first: run \`npm run upgrade-postgres -- ` +
            `--stack ${stack} --image ${ref}\`, then \`pulumi up --refresh\` (see the README's "Postgres upgrades"), or set ` +
            "webstack:postgresImage back",
        );
      }
      return container;
    });
  }

  /**
   * The pinned Postgres image with pgBackRest, built on the host from the image the host pulled.
   * Its tag is a hash of the Dockerfile and the base image, so either change is a visible rebuild.
   */
  private postgresImage(): pulumi.Output<string> {
    const base = this.args.images.postgres;
    const pulled = new docker.RemoteImage(
      `${this.name}-postgres-image`,
      { name: base, keepLocally: true },
      this.onHost(),
    );
    const tag = createHash("sha256").update(POSTGRES_DOCKERFILE).update(base).digest("hex").slice(0, 12);
    const imageName = `${this.args.names.prefix}-postgres:${tag}`;
    const built = new docker.Image(
      `${this.name}-postgres-build`,
      {
        imageName,
        build: {
          context: POSTGRES_CONTEXT,
          dockerfile: path.join(POSTGRES_CONTEXT, "Dockerfile"),
          args: { POSTGRES_IMAGE: base },
          builderVersion: "BuilderV1",
        },
        skipPush: true,
      },
      { ...this.onHost(), dependsOn: [...this.args.host.ready, pulled] },
    );
    // The stack's own tag: removed with the stack, and an old one once a new image replaced it.
    const local = new docker.RemoteImage(
      `${this.name}-postgres-local`,
      { name: imageName, keepLocally: false },
      { ...this.onHost(), dependsOn: [...this.args.host.ready, built] },
    );
    return pulumi.all([built.repoDigest, local.imageId]).apply(([digest]) => digest);
  }

  private createRedis(): Built {
    const volume = this.createVolume("redis-data");
    const image = this.stockImage("redis", this.args.images.redis);
    const spec = redisSpec(this.args.names, this.limits("redis"));
    return this.createContainer(`${this.name}-redis`, spec, {
      image,
      volumes: { "redis-data": volume.name },
      transform: this.args.transform?.redis,
    });
  }

  /**
   * The provider uploads files only into a writable root, so a read-only container gets its files
   * from a volume that a one-off run of its own image fills first.
   */
  private createFilesRun(image: pulumi.Input<string>, options: FilesRunOptions): FilesRun {
    const volume = this.createVolume(`files-${options.consumer}`);
    const spec = filesRunSpec(this.args.names, options);
    const built = this.createContainer(`${this.name}-files-${options.consumer}-run`, spec, {
      image,
      volumes: { [spec.role]: volume.name },
      transform: this.args.transform?.files,
    });
    return { ...built, volume };
  }

  /**
   * The release's replicas, created only after the release's migration run ended well: a failed
   * migration stops the update before any of them exists, and the previous release serves on.
   */
  private createReplicas(postgres: pulumi.Resource, redis: pulumi.Resource): Built[] {
    const { replicas, shutdownGraceSeconds } = this.args;
    // Handed to the app's user, readable by it alone.
    const files = this.createFilesRun(this.args.appImage, {
      consumer: "app",
      files: Object.values(APP_SECRET_FILES).map(({ file, secret }) => ({
        path: path.posix.basename(file),
        mode: "0400" as const,
        content: { secret },
      })),
      owner: APP_USER,
    });
    const migrated = this.createMigrationRun(files, postgres);
    return Array.from({ length: replicas }, (_, i) => {
      const spec = appReplicaSpec(this.args.names, {
        release: this.releaseId,
        index: i + 1,
        shutdownGraceSeconds,
        limits: this.limits("app"),
        userProcesses: this.args.appProcesses,
      });
      return this.createContainer(`${this.name}-app-${this.releaseId}-${i + 1}`, spec, {
        image: this.args.appImage,
        volumes: { "files-app": files.volume.name },
        filesRun: files,
        dependsOn: [postgres, redis, migrated],
        transform: this.args.transform?.app,
      });
    });
  }

  /**
   * The release's migration run, named after the release: each release runs its migrations once,
   * and the run of the release before is removed with that release's replicas. Resolves to the
   * run once it ended well; a failed run fails the update with the migration's own error.
   */
  private createMigrationRun(files: FilesRun, postgres: pulumi.Resource): pulumi.Output<pulumi.Resource> {
    const spec = migrationRunSpec(this.args.names, {
      release: this.releaseId,
      limits: this.limits("app"),
      userProcesses: this.args.appProcesses,
    });
    const { container } = this.createContainer(`${this.name}-migrate-${this.releaseId}`, spec, {
      image: this.args.appImage,
      volumes: { "files-app": files.volume.name },
      filesRun: files,
      // It reads the database URL once, as it runs: new files are no reason to run it again.
      newFiles: "keep",
      dependsOn: [postgres],
      transform: this.args.transform?.migrate,
    });
    return pulumi.all([container.exitCode, container.containerLogs]).apply(([exitCode, logs]) => {
      if (exitCode !== 0) {
        const why = migrationFailure(logs) ?? "see its log";
        throw new Error(
          `${spec.containerName} exited with code ${exitCode}: ${why}. No replica of release ${this.releaseId} ` +
            `was created; the release before it serves on (see \`docker logs ${spec.containerName}\`)`,
        );
      }
      return container;
    });
  }

  /**
   * The ACME client and its two volumes: the certificates (on the cloud host's block storage, so
   * a replaced VM does not order again) and the webroot nginx answers challenges from.
   */
  /**
   * The ACME client's volumes: its account and certificates (on the cloud host's block storage, so
   * a replaced VM does not order again), the one file nginx reads (`tls-live`: nginx never sees the
   * account key), and the webroot nginx answers challenges from.
   */
  private createAcmeVolumes(): AcmeVolumes {
    // The block storage of a VM made before HTTPS existed has no directory for them yet.
    const { certsDir } = this.args.host;
    const made =
      certsDir === undefined
        ? []
        : [this.args.host.runOnHost(`${this.name}-certs-dir`, { create: `mkdir -p ${certsDir}` }, { parent: this })];
    return {
      certs: this.createVolume("certs", certsDir, made),
      live: this.createVolume("tls-live"),
      webroot: this.createVolume("acme-webroot"),
    };
  }

  private createAcme(https: StackHttps, client: AcmeConfig, volumes: AcmeVolumes, proxy: pulumi.Resource): Built {
    const ref = this.args.images.acme;
    if (ref === undefined) throw new Error("WebStack: https needs images.acme, the ACME client's image");
    const spec = acmeSpec(this.args.names, {
      script: ACME_SCRIPT,
      env: {
        ACME_SERVER: client.server,
        ACME_EMAIL: client.email,
        ACME_DOMAINS: https.domains.join(" "),
        ACME_RETRY_SECONDS: String(client.retrySeconds),
        ...(client.caCertificate === undefined ? {} : { ACME_CA_PEM: client.caCertificate }),
      },
      limits: this.limits("acme"),
    });
    return this.createContainer(`${this.name}-acme`, spec, {
      image: this.stockImage("acme", ref),
      volumes: { certs: volumes.certs.name, "tls-live": volumes.live.name, "acme-webroot": volumes.webroot.name },
      dependsOn: [proxy],
      transform: this.args.transform?.acme,
    });
  }

  private createProxy(replicas: pulumi.Resource[], acme?: AcmeVolumes): Built {
    const { names, httpPort, bindAddress, maxRequestBody, https } = this.args;
    const files = nginxContainerFiles(
      dockerNginxVars({
        clientMaxBodySize: maxRequestBody,
        adminRoutes: this.args.adminRoutes,
        limitConnPerIp: this.args.limitConnPerIp,
        limitRatePerIp: this.args.limitRatePerIp,
        limitBurst: this.args.limitBurst,
        // limit_conn counts only connections with a request in progress: the rest share this
        // bound, which one address opening thousands of connections must not fill for everyone.
        workerConnections: PROXY_WORKER_CONNECTIONS,
        tls:
          https === undefined
            ? undefined
            : {
                publicPort: https.httpsPort,
                hstsSeconds: https.hstsSeconds,
                nginxVersion: imageVersion(this.args.images.nginx),
                source: https.acme === undefined ? "file" : "acme",
                // The local CA's certificate is for localhost and 127.0.0.1 as well.
                names: https.acme === undefined ? [...https.domains, "localhost", "127.0.0.1"] : https.domains,
              },
      }),
    );
    const startHash = nginxStartHash(files);
    const image = this.stockImage("nginx", this.args.images.nginx);
    // The image's own /etc/nginx (mime.types) under the stack's config and start script.
    // A certificate given as a value goes with nginx's files, readable by root (the master) alone.
    const certificate: FilesRunOptions["files"] =
      https?.certificate === undefined
        ? []
        : [{ path: path.posix.relative(NGINX_DIR, NGINX_CERT_FILE), mode: "0400", content: { secret: "tlsBundle" } }];
    const run = this.createFilesRun(image, {
      consumer: "nginx",
      files: [...files.map(nginxFile), ...certificate],
      seed: NGINX_DIR,
    });
    const spec = nginxSpec(names, {
      httpPort,
      bindAddress,
      command: NGINX_COMMAND,
      startHash,
      limits: this.limits("nginx"),
      httpsPort: https?.httpsPort,
      acmeVolumes: acme !== undefined,
    });
    return this.createContainer(`${this.name}-nginx`, spec, {
      image,
      volumes: {
        "files-nginx": run.volume.name,
        ...(acme === undefined ? {} : { "tls-live": acme.live.name, "acme-webroot": acme.webroot.name }),
      },
      filesRun: run,
      // nginx's watcher reloads a new config itself (see nginxStartHash for the rest).
      newFiles: "keep",
      // nginx resolves the app alias at start, so at least the first release must exist by then.
      dependsOn: replicas,
      transform: this.args.transform?.nginx,
    });
  }

  private limits(role: LimitedRole): ResourceLimits {
    return roleLimits(this.args, role);
  }

  /** A pinned public image, present on the host before any container needs it. */
  private stockImage(role: string, ref: string): pulumi.Output<string> {
    const image = new docker.RemoteImage(`${this.name}-${role}-image`, { name: ref, keepLocally: true }, this.onHost());
    return image.imageId;
  }

  /** The id of a files run that ended well; a failed run fails the update here, before its consumer exists. */
  private filesWritten(run: FilesRun): pulumi.Output<string> {
    return pulumi.all([run.container.id, run.container.exitCode]).apply(([id, exitCode]) => {
      if (exitCode !== 0) {
        throw new Error(
          `${run.spec.containerName} exited with code ${exitCode}: the files of ${run.spec.role.replace(/^files-/, "")} ` +
            `were not written (see \`docker logs ${run.spec.containerName}\`)`,
        );
      }
      return id;
    });
  }

  private createContainer(
    logicalName: string,
    spec: ContainerSpec,
    options: {
      image: pulumi.Input<string>;
      volumes?: Partial<Record<VolumeRole, pulumi.Input<string>>>;
      /** The run that wrote this container's read-only files: created after it ended well. */
      filesRun?: FilesRun;
      /**
       * What a new files run does to the container: "replace" it (the default: the run's id labels
       * it), or "keep" it (it picks up new files itself, or reads them only once).
       */
      newFiles?: "replace" | "keep";
      dependsOn?: pulumi.Input<pulumi.Resource>[];
      waitTimeout?: number;
      transform?: Transform<docker.ContainerArgs>;
    },
  ): Built {
    const uploads = spec.files.map((f) => ({
      file: f.path,
      permissions: f.mode,
      content: "secret" in f.content ? this.secret(spec.role, f.content.secret) : f.content.text,
    }));
    if (uploads.length > 0 && spec.readOnlyRoot) {
      throw new Error(`${spec.role}: Docker refuses uploads into a read-only root; give it a files run instead`);
    }
    const extraLabels: Record<string, pulumi.Input<string>> = { "webstack.spec": specFingerprint(spec) };
    const { filesRun } = options;
    // The run's id once it ended well: a failed run fails the update before this container exists.
    const written = filesRun && { id: this.filesWritten(filesRun), run: filesRun.container };
    if (written !== undefined && options.newFiles !== "keep") extraLabels["webstack.files"] = written.id;

    const args: docker.ContainerArgs = {
      name: spec.containerName,
      image: options.image,
      command: spec.command,
      entrypoints: spec.entrypoint,
      user: spec.user,
      envs: Object.entries(spec.env).map(([k, v]) => `${k}=${v}`),
      labels: this.labels(spec.labels, extraLabels),
      networksAdvanced:
        spec.networks.length > 0
          ? spec.networks.map((n) => ({ name: this.network(n.network).name, aliases: n.aliases }))
          : undefined,
      networkMode: spec.networks.length === 0 ? "none" : undefined,
      ports: spec.ports.length > 0 ? spec.ports : undefined,
      volumes:
        spec.volumes.length > 0
          ? spec.volumes.map((v) => {
              const volumeName = options.volumes?.[v.volume];
              if (volumeName === undefined) throw new Error(`${spec.role}: volume ${v.volume} was not created`);
              return { volumeName, containerPath: v.containerPath, readOnly: v.readOnly || undefined };
            })
          : undefined,
      uploads: uploads.length > 0 ? uploads : undefined,
      capabilities: { drops: ["ALL"], adds: spec.capabilities.length > 0 ? spec.capabilities : undefined },
      securityOpts: ["no-new-privileges:true"],
      readOnly: spec.readOnlyRoot,
      tmpfs: Object.keys(spec.tmpfs).length > 0 ? spec.tmpfs : undefined,
      healthcheck: spec.healthcheck,
      restart: spec.restart,
      logDriver: "json-file",
      logOpts: spec.logOpts,
      stopSignal: spec.stopSignal,
      stopTimeout: spec.stopTimeout,
      init: spec.init,
      // No swap past the limit: a container over it is stopped by the kernel, not slowed to a crawl.
      memory: spec.limits?.memoryMb,
      memorySwap: spec.limits?.memoryMb,
      cpuShares: spec.limits?.cpuShares,
      ulimits:
        spec.userProcesses === undefined
          ? undefined
          : [{ name: "nproc", soft: spec.userProcesses, hard: spec.userProcesses }],
      ...(spec.oneOff
        ? // The provider waits for a one-off to end and records its exit code (and its log, which
          // names what failed); it must not expect it running.
          { attach: true, mustRun: false, logs: true }
        : spec.waitHealthy === false
          ? { destroyGraceSeconds: spec.stopTimeout, wait: false }
          : { destroyGraceSeconds: spec.stopTimeout, wait: true, waitTimeout: options.waitTimeout ?? 90 }),
    };
    const opts: pulumi.CustomResourceOptions = {
      ...this.onHost(),
      dependsOn: [
        ...this.args.host.ready,
        ...(options.dependsOn ?? []),
        // Waiting on the run's exit code, not only its end: a failed run stops the update here.
        ...(written === undefined ? [] : [written.id.apply(() => written.run)]),
      ],
    };
    options.transform?.(args, opts);
    return { spec, container: new docker.Container(logicalName, args, opts) };
  }

  /** Docker labels from a spec's labels and computed ones, plus the VM the object lives on (cloud hosts). */
  private labels(
    labels: Record<string, string>,
    computed: Record<string, pulumi.Input<string>> = {},
  ): pulumi.Input<docker.types.input.ContainerLabel[]> {
    const all: Record<string, pulumi.Input<string>> = { ...labels, ...computed };
    const { vmId } = this.args.host;
    if (vmId !== undefined) all["webstack.vm"] = vmId;
    return pulumi.output(all).apply((values) => Object.entries(values).map(([label, value]) => ({ label, value })));
  }

  private secret(role: string, name: SecretDocument): pulumi.Output<string> {
    const value = this.secrets[name];
    if (value === undefined) throw new Error(`${role}: the secret ${name} was not made for this stack`);
    return value;
  }

  private network(role: NetworkRole): docker.Network {
    const network = this.networks[role];
    if (network === undefined) throw new Error(`WebStack: the ${role} network was not created`);
    return network;
  }

  /** Options of every Docker resource: on the host's engine, after the host is ready. */
  private onHost(): pulumi.CustomResourceOptions {
    return { parent: this, provider: this.args.host.provider, dependsOn: this.args.host.ready };
  }
}

/** The version in an image reference's tag ("nginx:1.28.0-bookworm" → "1.28.0"), if it has one. */
export function imageVersion(ref: string): string | undefined {
  const tag = /:([^/@:]+)(@|$)/.exec(ref)?.[1];
  return tag === undefined ? undefined : /^\d+(\.\d+){1,2}/.exec(tag)?.[0];
}

/** Connections per nginx worker (clients and upstreams together). */
export const PROXY_WORKER_CONNECTIONS = 8192;

/**
 * A hash of the nginx files that take effect only when nginx starts (all but its config): nginx's
 * watcher reloads a new config gracefully in the running container, and a change to the rest
 * replaces the container through this hash, which labels it.
 */
export function nginxStartHash(files: ContainerFile[]): string {
  const atStart = files.filter((f) => f.path !== NGINX_CONF_PATH);
  return createHash("sha256").update(JSON.stringify(atStart)).digest("hex").slice(0, 16);
}

/** An nginx container file as a file of nginx's files run, relative to /etc/nginx. */
export function nginxFile(file: ContainerFile): FilesRunOptions["files"][number] {
  // (path.relative never returns an absolute path: outside means up, or the directory itself.)
  const relative = path.posix.relative(NGINX_DIR, file.path);
  if (relative === "" || relative.startsWith("..")) {
    throw new Error(`nginx file ${file.path} is outside ${NGINX_DIR}, the only directory its files run writes`);
  }
  return { path: relative, mode: file.executable ? "0555" : "0444", content: { text: file.content } };
}
