// TEST INFRASTRUCTURE — not part of the program. A `pulumi.runtime.Mocks` implementation whose
// `newResource` realises the program's Docker resources on a real engine (networks, volumes,
// images, containers through the Engine API), so the real-engine tests can evaluate the unchanged
// program without a Pulumi CLI or provider plugin. Every other resource type (providers, clouds,
// random, tls, command) is only recorded and answered with plausible outputs; nothing outside the
// engine is ever contacted.
//
// Rules it enforces on purpose: ports are published on 127.0.0.1 only; nothing is pulled (images
// must already be on the engine); secrets reach containers only through the Engine API's Env
// field or uploaded files; a container input the realiser does not understand is an error, so a
// new program setting is never silently ignored.
import dockerignore from "@balena/dockerignore";
import * as pulumi from "@pulumi/pulumi";
import Docker from "dockerode";
import { createHash, generateKeyPairSync, KeyObject, randomBytes, randomInt } from "node:crypto";
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { Readable } from "node:stream";
import * as tar from "tar-stream";

/** Label on every object the realiser creates; `destroy()` removes what carries it. */
export const TEST_STACK_LABEL = "webstack.test.stack";

export interface RecordedResource {
  type: string;
  /** The Pulumi logical name. */
  name: string;
  /** False for component resources. */
  custom: boolean;
  /** Inputs as the SDK sent them (secret values still wrapped as secrets). */
  inputs: Record<string, unknown>;
  outputs: Record<string, unknown>;
  id: string | undefined;
  /** True when the resource exists on the engine (docker networks, volumes, images, containers). */
  realised: boolean;
  /** The program evaluation it was registered in (see `beginUpdate`). */
  update: number;
  /** True once `finishUpdate` deleted it because a later evaluation no longer registered it. */
  deleted: boolean;
}

/** One step in the life of a registration, in the order they happened. */
export interface RealiserEvent {
  phase: "registered" | "completed" | "failed";
  type: string;
  name: string;
}

export interface RecordedCall {
  token: string;
  inputs: Record<string, unknown>;
}

export interface EngineRealiserArgs {
  /** Engine API client (see startEngine). */
  docker: Docker;
  /** Stack name: the `webstack.test.stack` label value, and the stack `install()` sets. */
  stack: string;
  /** Network mode for RUN steps of image builds; only the host network reaches registries here. @default "host" */
  buildNetworkMode?: string;
  /** Progress lines (never inputs or secrets). @default silent */
  log?: (line: string) => void;
}

/** What `destroy()` removed, by Docker name (images by tag; an untagged image by id). */
export interface DestroySummary {
  containers: string[];
  networks: string[];
  volumes: string[];
  images: string[];
}

/** What `destroyStack()` did. */
export interface StackDestroySummary {
  /** Logical names of the deleted resources, in the order they were deleted. */
  deleted: string[];
  /** Docker objects removed from the engine. */
  removed: DestroySummary;
  /**
   * Images whose resource was deleted but which the provider leaves on the engine: an Image's tag
   * (pulumi-docker's Image never deletes it) and a RemoteImage with `keepLocally`.
   */
  kept: string[];
}

type Json = Record<string, unknown>;
interface PortSpec {
  internal: number;
  external: number | undefined;
  ip: string;
  protocol: string;
}
/** Realises one resource from its plain inputs; returns the outputs the provider computes. */
type Realise = (name: string, inputs: Json) => Promise<{ id: string; outputs: Json }>;

const CONTAINER_INPUTS = new Set([
  "name", "image", "envs", "command", "entrypoints", "user", "workingDir", "labels", "networksAdvanced",
  "ports", "volumes", "uploads", "healthcheck", "restart", "maxRetryCount", "logDriver", "logOpts",
  "stopSignal", "stopTimeout", "destroyGraceSeconds", "init", "readOnly", "tmpfs", "capabilities",
  "securityOpts", "memory", "memorySwap", "wait", "waitTimeout", "mustRun", "start", "hostname",
  "shmSize", "removeVolumes", "attach", "networkMode",
]);

export class EngineRealiser {
  readonly docker: Docker;
  readonly stack: string;
  /** Every registered resource, in registration order. */
  readonly resources: RecordedResource[] = [];
  /** Every invoke, in order. */
  readonly calls: RecordedCall[] = [];
  /**
   * When each `newResource` began and returned, so a test can check the SDK's ordering (e.g. a
   * container registers only after what it depends on has completed).
   */
  readonly events: RealiserEvent[] = [];
  /** Failures of `newResource`, also rethrown by `settled()`. */
  readonly errors: Error[] = [];
  readonly mocks: pulumi.runtime.Mocks;

  private readonly buildNetworkMode: string;
  private readonly log: (line: string) => void;
  private readonly realisers: Record<string, Realise>;
  private readonly inFlight = new Set<Promise<unknown>>();
  private currentUpdate = 0;
  /** Hash of the plain inputs each container was created from; in memory only, as they hold secrets. */
  private readonly appliedInputs = new Map<string, string>();

  constructor(args: EngineRealiserArgs) {
    this.docker = args.docker;
    this.stack = args.stack;
    this.buildNetworkMode = args.buildNetworkMode ?? "host";
    this.log = args.log ?? (() => undefined);
    this.realisers = {
      "docker:index/network:Network": (n, i) => this.realiseNetwork(n, i),
      "docker:index/volume:Volume": (n, i) => this.realiseVolume(n, i),
      "docker:index/remoteImage:RemoteImage": (n, i) => this.realiseRemoteImage(n, i),
      "docker:index/image:Image": (n, i) => this.realiseImage(n, i),
      "docker:index/container:Container": (n, i) => this.realiseContainer(n, i),
    };
    this.mocks = {
      newResource: (mockArgs) => this.track(this.newResource(mockArgs)),
      call: (mockArgs) => this.call(mockArgs),
    };
  }

  /** Installs the mocks for this stack (project "webstack" unless given). */
  async install(project = "webstack"): Promise<void> {
    await pulumi.runtime.setMocks(this.mocks, project, this.stack, false);
  }

  /**
   * Resolves once no realisation has been in flight for `quietMs` (registrations that depend on
   * outputs arrive after their dependencies finish), and rejects with the first failure.
   */
  async settled(options: { quietMs?: number; timeoutMs?: number } = {}): Promise<void> {
    const quietMs = options.quietMs ?? 500;
    const deadline = Date.now() + (options.timeoutMs ?? 15 * 60_000);
    for (;;) {
      if (this.inFlight.size > 0) {
        await Promise.allSettled([...this.inFlight]);
      } else {
        const before = this.resources.length;
        await new Promise((resolve) => setTimeout(resolve, quietMs));
        if (this.inFlight.size === 0 && this.resources.length === before) break;
      }
      if (Date.now() > deadline) throw new Error("realiser: resources were still being registered at the deadline");
    }
    if (this.errors.length > 0) throw this.errors[0];
  }

  /** Position of an event in `events` (-1 when it did not happen). */
  eventIndex(phase: RealiserEvent["phase"], name: string): number {
    return this.events.findIndex((e) => e.phase === phase && e.name === name);
  }

  /** The recorded resources of one type, e.g. "docker:index/container:Container". */
  ofType(type: string): RecordedResource[] {
    return this.resources.filter((r) => r.type === type);
  }

  /**
   * Starts a new evaluation of the program, like a second `pulumi up`: containers registered
   * again with the same inputs are kept as they are, changed ones are replaced (deleted, then
   * created), and `finishUpdate()` deletes those the new evaluation did not register. Install the
   * mocks again (`install()`) before evaluating the program anew.
   */
  beginUpdate(): number {
    return ++this.currentUpdate;
  }

  /**
   * Ends the current update: deletes the containers of earlier updates that this one did not
   * register (e.g. the previous release's app replicas), each after its stop grace period, as
   * Pulumi does at the end of an update. Returns their Docker names.
   */
  async finishUpdate(): Promise<string[]> {
    const containers = this.ofType("docker:index/container:Container");
    const current = new Set(containers.filter((r) => r.update === this.currentUpdate).map((r) => String(r.outputs.name)));
    const stale = containers.filter((r) => r.update < this.currentUpdate && r.realised && !r.deleted && !current.has(String(r.outputs.name)));
    await Promise.all(
      stale.map(async (r) => {
        await this.deleteContainer(String(r.outputs.name), reveal(r.inputs) as Json);
        this.appliedInputs.delete(String(r.outputs.name));
        r.deleted = true;
      }),
    );
    return stale.map((r) => String(r.outputs.name));
  }

  /** The latest recorded, not deleted container by Docker name or logical name. */
  container(name: string): RecordedResource {
    const all = this.ofType("docker:index/container:Container").filter((r) => !r.deleted);
    const found = all.filter((r) => r.name === name || r.outputs.name === name).at(-1);
    if (found === undefined) {
      const known = all.map((r) => String(r.outputs.name ?? r.name));
      throw new Error(`realiser: no recorded container named '${name}' (known: ${known.join(", ") || "none"})`);
    }
    return found;
  }

  /**
   * Deletes one container (stopping it with its grace period) and creates it again from its
   * recorded inputs — what the provider does on a replacement. Volumes are kept.
   */
  async recreateContainer(name: string): Promise<Json> {
    const record = this.container(name);
    await this.deleteContainer(String(record.outputs.name), reveal(record.inputs) as Json);
    const { id, outputs } = await this.realiseContainer(record.name, reveal(record.inputs) as Json, { replace: true });
    record.id = id;
    record.outputs = { ...record.inputs, ...outputs };
    return record.outputs;
  }

  /**
   * Destroys the stack as `pulumi destroy` does: every resource of the recorded state (the latest
   * registration of each, not already deleted) is deleted the way the provider deletes it, those
   * depending on others first. A resource registers only after its dependencies completed, so
   * reverse registration order is such an order; resources of earlier updates the last one did not
   * register (an old release `finishUpdate` has not removed yet) depend on current ones, never the
   * reverse, so they go first. One at a time: Pulumi deletes independent resources in parallel,
   * which only makes it faster.
   *
   * What the mocks cannot see is not honoured: `protect` and `retainOnDelete` are resource options,
   * not inputs.
   */
  async destroyStack(): Promise<StackDestroySummary> {
    const latest = new Map<string, RecordedResource>();
    for (const r of this.resources) latest.set(`${r.type}::${r.name}`, r);
    const state = [...latest.values()].filter((r) => r.custom && !r.deleted && r.id !== undefined);
    const position = (r: RecordedResource) => this.resources.indexOf(r);
    const ordered = [
      ...state.filter((r) => r.update < this.currentUpdate).sort((a, b) => position(b) - position(a)),
      ...state.filter((r) => r.update === this.currentUpdate).sort((a, b) => position(b) - position(a)),
    ];
    const summary: StackDestroySummary = { deleted: [], removed: { containers: [], networks: [], volumes: [], images: [] }, kept: [] };
    for (const record of ordered) {
      await this.deleteResource(record, summary);
      for (const r of this.resources) if (r.type === record.type && r.name === record.name) r.deleted = true;
      summary.deleted.push(record.name);
    }
    this.appliedInputs.clear();
    return summary;
  }

  /**
   * Removes every container, network and volume labelled with this stack (also those a crashed
   * earlier run left), and with `images: true` the images built for it. Containers go first,
   * each stopped with its own grace period. Images are untagged by name, never removed by id with
   * force, which would also take the tags other stacks have on the same image.
   */
  async destroy(options: { images?: boolean } = {}): Promise<DestroySummary> {
    const filters = { label: [`${TEST_STACK_LABEL}=${this.stack}`] };
    const summary: DestroySummary = { containers: [], networks: [], volumes: [], images: [] };
    const containers = await this.docker.listContainers({ all: true, filters });
    await Promise.all(
      containers.map(async (c) => {
        const name = c.Names[0]?.replace(/^\//, "") ?? c.Id;
        const grace = Number(c.Labels["webstack.test.destroy-grace"] ?? "10");
        await this.removeContainer(c.Id, grace);
        summary.containers.push(name);
      }),
    );
    for (const n of await this.docker.listNetworks({ filters })) {
      await this.docker.getNetwork(n.Id).remove();
      summary.networks.push(n.Name);
    }
    const { Volumes } = await this.docker.listVolumes({ filters });
    for (const v of Volumes ?? []) {
      await this.docker.getVolume(v.Name).remove();
      summary.volumes.push(v.Name);
    }
    if (options.images === true) {
      for (const image of await this.docker.listImages({ filters })) {
        const tags = (image.RepoTags ?? []).filter((tag) => tag !== "<none>:<none>");
        for (const tag of tags) await this.docker.getImage(tag).remove();
        if (tags.length === 0) await this.docker.getImage(image.Id).remove();
        summary.images.push(...(tags.length > 0 ? tags : [image.Id]));
      }
    }
    return summary;
  }

  /** Counts of objects still labelled with this stack (images not counted). */
  async leftovers(): Promise<{ containers: number; networks: number; volumes: number }> {
    const filters = { label: [`${TEST_STACK_LABEL}=${this.stack}`] };
    const [containers, networks, volumes] = await Promise.all([
      this.docker.listContainers({ all: true, filters }),
      this.docker.listNetworks({ filters }),
      this.docker.listVolumes({ filters }),
    ]);
    return { containers: containers.length, networks: networks.length, volumes: (volumes.Volumes ?? []).length };
  }

  // ---- mocks ---------------------------------------------------------------------------------

  private track<T>(promise: Promise<T>): Promise<T> {
    this.inFlight.add(promise);
    const done = () => this.inFlight.delete(promise);
    promise.then(done, done);
    return promise;
  }

  private async newResource(args: pulumi.runtime.MockResourceArgs): Promise<pulumi.runtime.MockResourceResult> {
    const raw = (args.inputs ?? {}) as Json;
    const record: RecordedResource = {
      type: args.type,
      name: args.name,
      custom: args.custom ?? true,
      inputs: raw,
      outputs: {},
      id: undefined,
      realised: false,
      update: this.currentUpdate,
      deleted: false,
    };
    this.resources.push(record);
    this.events.push({ phase: "registered", type: args.type, name: args.name });
    try {
      const realise = this.realisers[args.type];
      if (realise !== undefined) {
        this.log(`realising ${args.type} ${args.name}`);
        const { id, outputs } = await realise(args.name, reveal(raw) as Json);
        record.id = id;
        // Outputs echo the inputs as sent, so values the program marked secret stay secret.
        record.outputs = { ...raw, ...outputs };
        record.realised = true;
      } else if (!record.custom) {
        record.outputs = raw;
      } else {
        // Unchanged inputs in a later evaluation keep their outputs, as Pulumi's state would
        // (a generated password must not change between updates).
        const previous = this.resources.find(
          (r) => r.update < record.update && r.type === args.type && r.name === args.name && sameJson(r.inputs, raw),
        );
        record.id = previous?.id ?? `${args.name}-id`;
        record.outputs = previous?.outputs ?? { ...raw, ...plausibleOutputs(args.type, reveal(raw) as Json) };
      }
      this.events.push({ phase: "completed", type: args.type, name: args.name });
      return { id: record.id, state: record.outputs };
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      this.errors.push(error);
      this.events.push({ phase: "failed", type: args.type, name: args.name });
      throw error;
    }
  }

  private call(args: pulumi.runtime.MockCallArgs): Json {
    const inputs = (args.inputs ?? {}) as Json;
    this.calls.push({ token: args.token, inputs });
    return plausibleInvoke(args.token, reveal(inputs) as Json);
  }

  // ---- docker resources -------------------------------------------------------------------------

  private labels(name: string, given: unknown): Record<string, string> {
    const labels: Record<string, string> = {};
    for (const entry of list(given, `${name}.labels`)) {
      const { label, value } = entry as { label?: unknown; value?: unknown };
      labels[str(label, `${name}.labels[].label`)] = str(value, `${name}.labels[].value`);
    }
    return { ...labels, [TEST_STACK_LABEL]: this.stack };
  }

  /** Adopts an object of this stack that already exists under the name (a re-run), refuses others. */
  private ensureOurs(kind: string, name: string, labels: Record<string, string> | null | undefined): void {
    if (labels?.[TEST_STACK_LABEL] !== this.stack) {
      throw new Error(`realiser: a ${kind} named '${name}' exists and does not belong to test stack '${this.stack}'`);
    }
  }

  private async realiseNetwork(logical: string, inputs: Json): Promise<{ id: string; outputs: Json }> {
    const name = optStr(inputs.name, `${logical}.name`) ?? autoName(logical);
    const driver = optStr(inputs.driver, `${logical}.driver`) ?? "bridge";
    const existing = (await this.docker.listNetworks({ filters: { name: [name] } })).find((n) => n.Name === name);
    let id: string;
    if (existing !== undefined) {
      this.ensureOurs("network", name, existing.Labels);
      id = existing.Id;
    } else {
      const created = await this.docker.createNetwork({
        Name: name,
        Driver: driver,
        Internal: optBool(inputs.internal, `${logical}.internal`) ?? false,
        Attachable: optBool(inputs.attachable, `${logical}.attachable`) ?? false,
        CheckDuplicate: true,
        Labels: this.labels(logical, inputs.labels),
        Options: stringMap(inputs.options, `${logical}.options`),
      });
      id = created.id;
    }
    return { id, outputs: { name, driver, scope: "local" } };
  }

  private async realiseVolume(logical: string, inputs: Json): Promise<{ id: string; outputs: Json }> {
    const name = optStr(inputs.name, `${logical}.name`) ?? autoName(logical);
    const driver = optStr(inputs.driver, `${logical}.driver`) ?? "local";
    const existing = await this.docker
      .getVolume(name)
      .inspect()
      .catch(() => undefined);
    let mountpoint: string;
    if (existing !== undefined) {
      this.ensureOurs("volume", name, existing.Labels);
      mountpoint = existing.Mountpoint;
    } else {
      const created = (await this.docker.createVolume({
        Name: name,
        Driver: driver,
        DriverOpts: stringMap(inputs.driverOpts, `${logical}.driverOpts`),
        Labels: this.labels(logical, inputs.labels),
      })) as unknown as { Mountpoint: string };
      mountpoint = created.Mountpoint;
    }
    return { id: name, outputs: { name, driver, mountpoint } };
  }

  private async realiseRemoteImage(logical: string, inputs: Json): Promise<{ id: string; outputs: Json }> {
    const name = str(inputs.name, `${logical}.name`);
    const image = await this.docker
      .getImage(name)
      .inspect()
      .catch(() => undefined);
    if (image === undefined) {
      throw new Error(
        `RemoteImage ${logical}: image '${name}' is not on the engine, and nothing can be pulled here; ` +
          "build the stand-ins (scripts/engine/build-standin-images.sh) and configure their webstack-standin/* tags",
      );
    }
    return { id: `${image.Id}${name}`, outputs: { imageId: image.Id, repoDigest: image.Id } };
  }

  private async realiseImage(logical: string, inputs: Json): Promise<{ id: string; outputs: Json }> {
    const imageName = str(inputs.imageName, `${logical}.imageName`);
    const build = (inputs.build ?? {}) as Json;
    if (optBool(inputs.skipPush, `${logical}.skipPush`) !== true) {
      throw new Error(`Image ${logical}: skipPush must be true here (no registry is reachable to push ${imageName} to)`);
    }
    const builder = optStr(build.builderVersion, `${logical}.build.builderVersion`);
    if (builder !== undefined && builder !== "BuilderV1") {
      throw new Error(`Image ${logical}: build.builderVersion '${builder}' is not available; this engine has only BuilderV1`);
    }
    const context = path.resolve(optStr(build.context, `${logical}.build.context`) ?? ".");
    const dockerfile = path.resolve(optStr(build.dockerfile, `${logical}.build.dockerfile`) ?? path.join(context, "Dockerfile"));
    for (const [setting, file, kind] of [["build.context", context, "directory"], ["build.dockerfile", dockerfile, "file"]] as const) {
      const stat = await fs.stat(file).catch(() => undefined);
      if (kind === "directory" ? !stat?.isDirectory() : !stat?.isFile()) {
        throw new Error(`Image ${logical}: ${setting} '${file}' is not an existing ${kind}`);
      }
    }
    const { stream, dockerfileInContext } = await packContext(context, dockerfile);
    const buildArgs = stringMap(build.args, `${logical}.build.args`);
    const target = optStr(build.target, `${logical}.build.target`);
    const platform = optStr(build.platform, `${logical}.build.platform`);
    this.log(`building ${imageName} from ${context}`);
    const progress = await this.docker.buildImage(stream, {
      t: imageName,
      dockerfile: dockerfileInContext,
      buildargs: buildArgs,
      target,
      platform,
      networkmode: this.buildNetworkMode,
      labels: { [TEST_STACK_LABEL]: this.stack },
      rm: true,
      forcerm: true,
      version: "1",
    });
    const lines = await followBuild(this.docker, progress);
    const failure = lines.find((l) => l.error !== undefined);
    if (failure !== undefined) {
      const tail = lines.slice(-30).map((l) => l.stream ?? l.error ?? "").join("");
      throw new Error(`Image ${logical}: building ${imageName} failed: ${failure.error}\n${tail}`);
    }
    const built = await this.docker.getImage(imageName).inspect();
    return {
      id: built.Id,
      outputs: {
        imageName,
        repoDigest: built.Id,
        baseImageName: imageName,
        context,
        dockerfile,
        platform: platform ?? "",
        registryServer: "",
      },
    };
  }

  private async realiseContainer(
    logical: string,
    inputs: Json,
    options: { replace?: boolean } = {},
  ): Promise<{ id: string; outputs: Json }> {
    for (const key of Object.keys(inputs)) {
      if (!CONTAINER_INPUTS.has(key) && !key.startsWith("__")) {
        throw new Error(
          `Container ${logical}: input '${key}' is not supported by the engine realiser ` +
            `(supported: ${[...CONTAINER_INPUTS].sort().join(", ")}); teach test/engine/support/realiser.ts about it`,
        );
      }
    }
    const name = optStr(inputs.name, `${logical}.name`) ?? autoName(logical);
    const spec = this.containerSpec(logical, name, inputs);

    // A later evaluation keeps an unchanged running container and replaces a changed one,
    // delete-before-replace like the provider.
    const inputsHash = createHash("sha256").update(JSON.stringify(inputs)).digest("hex");
    const existing = await this.docker
      .getContainer(name)
      .inspect()
      .catch(() => undefined);
    if (existing !== undefined) {
      this.ensureOurs("container", name, existing.Config.Labels);
      // A one-off (`attach`) that ran to its end is left alone too, as the provider leaves it.
      const current = existing.State.Running || (inputs.attach === true && existing.State.Status === "exited");
      if (options.replace !== true && this.appliedInputs.get(name) === inputsHash && current) {
        return { id: existing.Id, outputs: containerOutputs(existing, name, spec.ports) };
      }
      await this.deleteContainer(existing.Id, inputs);
      this.appliedInputs.delete(name);
    }

    const container = await this.docker.createContainer(spec.create);
    for (const network of spec.extraNetworks) {
      await this.docker.getNetwork(network.name).connect({ Container: container.id, EndpointConfig: { Aliases: network.aliases } });
    }
    for (const upload of spec.uploads) {
      await container.putArchive(await upload, { path: "/" });
    }
    if (optBool(inputs.start, `${logical}.start`) !== false) {
      await container.start();
      // Like the provider's `attach`: wait for the end of the run; its exit code is an output.
      if (optBool(inputs.attach, `${logical}.attach`) === true) await container.wait();
      if (optBool(inputs.wait, `${logical}.wait`) === true) {
        await waitHealthy(container, logical, optNum(inputs.waitTimeout, `${logical}.waitTimeout`) ?? 60);
      }
    }
    this.appliedInputs.set(name, inputsHash);
    const state = await container.inspect();
    return { id: state.Id, outputs: containerOutputs(state, name, spec.ports) };
  }

  /** Translates the provider's container inputs into Engine API create options. */
  private containerSpec(
    logical: string,
    name: string,
    inputs: Json,
  ): {
    create: Docker.ContainerCreateOptions;
    extraNetworks: { name: string; aliases: string[] }[];
    uploads: Promise<Buffer>[];
    ports: PortSpec[];
  } {
    const at = (key: string) => `${logical}.${key}`;
    const networks = list(inputs.networksAdvanced, at("networksAdvanced")).map((n, i) => {
      const entry = n as Json;
      for (const key of Object.keys(entry)) {
        if (key !== "name" && key !== "aliases") throw new Error(`Container ${logical}: networksAdvanced[${i}].${key} is not supported`);
      }
      return { name: str(entry.name, at(`networksAdvanced[${i}].name`)), aliases: strList(entry.aliases, at(`networksAdvanced[${i}].aliases`)) };
    });

    const ports = list(inputs.ports, at("ports")).map((p, i) => {
      const entry = p as Json;
      const ip = optStr(entry.ip, at(`ports[${i}].ip`));
      if (ip !== "127.0.0.1") {
        throw new Error(
          `Container ${logical}: ports[${i}].ip is ${ip === undefined ? "unset (the provider's default is 0.0.0.0)" : `'${ip}'`}; ` +
            "the test engine publishes only on 127.0.0.1",
        );
      }
      return {
        internal: num(entry.internal, at(`ports[${i}].internal`)),
        external: optNum(entry.external, at(`ports[${i}].external`)),
        ip,
        protocol: optStr(entry.protocol, at(`ports[${i}].protocol`)) ?? "tcp",
      };
    });

    const mounts: Docker.MountSettings[] = list(inputs.volumes, at("volumes")).map((v, i) => {
      const entry = v as Json;
      const target = str(entry.containerPath, at(`volumes[${i}].containerPath`));
      const readOnly = optBool(entry.readOnly, at(`volumes[${i}].readOnly`)) ?? false;
      const volumeName = optStr(entry.volumeName, at(`volumes[${i}].volumeName`));
      const hostPath = optStr(entry.hostPath, at(`volumes[${i}].hostPath`));
      if (volumeName !== undefined && hostPath === undefined) return { Type: "volume", Source: volumeName, Target: target, ReadOnly: readOnly };
      if (hostPath !== undefined && volumeName === undefined && path.isAbsolute(hostPath)) {
        return { Type: "bind", Source: hostPath, Target: target, ReadOnly: readOnly };
      }
      throw new Error(`Container ${logical}: volumes[${i}] needs exactly one of volumeName or an absolute hostPath`);
    });

    const healthcheck = inputs.healthcheck as Json | undefined;
    const capabilities = (inputs.capabilities ?? {}) as Json;
    const restart = optStr(inputs.restart, at("restart")) ?? "no";
    if (!["no", "on-failure", "always", "unless-stopped"].includes(restart)) {
      throw new Error(`Container ${logical}: restart '${restart}' is not one of no, on-failure, always, unless-stopped`);
    }
    const memory = optNum(inputs.memory, at("memory"));
    const memorySwap = optNum(inputs.memorySwap, at("memorySwap"));
    const shmSize = optNum(inputs.shmSize, at("shmSize"));
    const labels = this.labels(logical, inputs.labels);
    labels["webstack.test.destroy-grace"] = String(destroyGrace(inputs));

    const create: Docker.ContainerCreateOptions = {
      name,
      Image: str(inputs.image, at("image")),
      Env: strList(inputs.envs, at("envs")),
      Cmd: inputs.command === undefined ? undefined : strList(inputs.command, at("command")),
      Entrypoint: inputs.entrypoints === undefined ? undefined : strList(inputs.entrypoints, at("entrypoints")),
      User: optStr(inputs.user, at("user")),
      WorkingDir: optStr(inputs.workingDir, at("workingDir")),
      Hostname: optStr(inputs.hostname, at("hostname")),
      Labels: labels,
      StopSignal: optStr(inputs.stopSignal, at("stopSignal")),
      StopTimeout: optNum(inputs.stopTimeout, at("stopTimeout")),
      ExposedPorts: Object.fromEntries(ports.map((p) => [`${p.internal}/${p.protocol}`, {}])),
      Healthcheck:
        healthcheck === undefined
          ? undefined
          : {
              Test: strList(healthcheck.tests, at("healthcheck.tests")),
              Interval: goDuration(healthcheck.interval, at("healthcheck.interval")),
              Timeout: goDuration(healthcheck.timeout, at("healthcheck.timeout")),
              StartPeriod: goDuration(healthcheck.startPeriod, at("healthcheck.startPeriod")),
              Retries: optNum(healthcheck.retries, at("healthcheck.retries")),
            },
      HostConfig: {
        NetworkMode: networks[0]?.name ?? optStr(inputs.networkMode, at("networkMode")),
        PortBindings: Object.fromEntries(
          ports.map((p) => [`${p.internal}/${p.protocol}`, [{ HostIp: p.ip, HostPort: p.external === undefined ? "" : String(p.external) }]]),
        ),
        Mounts: mounts,
        RestartPolicy: {
          Name: restart,
          MaximumRetryCount: restart === "on-failure" ? (optNum(inputs.maxRetryCount, at("maxRetryCount")) ?? 0) : 0,
        },
        LogConfig: {
          Type: optStr(inputs.logDriver, at("logDriver")) ?? "json-file",
          Config: stringMap(inputs.logOpts, at("logOpts")) ?? {},
        },
        Init: optBool(inputs.init, at("init")),
        ReadonlyRootfs: optBool(inputs.readOnly, at("readOnly")),
        Tmpfs: stringMap(inputs.tmpfs, at("tmpfs")),
        CapAdd: capabilities.adds === undefined ? undefined : strList(capabilities.adds, at("capabilities.adds")),
        CapDrop: capabilities.drops === undefined ? undefined : strList(capabilities.drops, at("capabilities.drops")),
        SecurityOpt: inputs.securityOpts === undefined ? undefined : strList(inputs.securityOpts, at("securityOpts")),
        // The provider takes megabytes.
        Memory: memory === undefined ? undefined : memory * 1024 * 1024,
        MemorySwap: memorySwap === undefined ? undefined : memorySwap * 1024 * 1024,
        ShmSize: shmSize === undefined ? undefined : shmSize * 1024 * 1024,
      },
      NetworkingConfig:
        networks[0] === undefined ? undefined : { EndpointsConfig: { [networks[0].name]: { Aliases: networks[0].aliases } } },
    };
    return { create, extraNetworks: networks.slice(1), uploads: uploadArchives(logical, inputs.uploads), ports };
  }

  /** Deletes one recorded resource the way the provider's Delete does. */
  private async deleteResource(record: RecordedResource, summary: StackDestroySummary): Promise<void> {
    const inputs = reveal(record.inputs) as Json;
    const name = String(record.outputs.name ?? record.outputs.imageName ?? record.name);
    const gone = (err: { statusCode?: number }) => {
      if (err.statusCode !== 404) throw err;
    };
    switch (record.type) {
      case "docker:index/container:Container":
        await this.deleteContainer(name, inputs);
        summary.removed.containers.push(name);
        break;
      case "docker:index/network:Network":
        await this.docker.getNetwork(name).remove().catch(gone);
        summary.removed.networks.push(name);
        break;
      case "docker:index/volume:Volume":
        await this.docker.getVolume(name).remove().catch(gone);
        summary.removed.volumes.push(name);
        break;
      case "docker:index/remoteImage:RemoteImage":
        if (inputs.keepLocally === true) {
          summary.kept.push(name);
        } else {
          await this.docker.getImage(name).remove({ force: inputs.forceRemove === true }).catch(gone);
          summary.removed.images.push(name);
        }
        break;
      case "docker:index/image:Image":
        summary.kept.push(name);
        break;
      default:
        // Recorded only: nothing of it exists on the engine.
        break;
    }
  }

  /** Deletes a container as the provider does, on destroy and on replacement alike. */
  private deleteContainer(idOrName: string, inputs: Json): Promise<void> {
    return this.removeContainer(idOrName, destroyGrace(inputs), inputs.removeVolumes !== false);
  }

  /**
   * Stops the container first (its stop signal, then SIGKILL after `graceSeconds`) only when there
   * is a grace period, then force-removes it, which kills whatever still runs at once.
   */
  private async removeContainer(idOrName: string, graceSeconds: number, removeVolumes = true): Promise<void> {
    const container = this.docker.getContainer(idOrName);
    if (graceSeconds > 0) {
      // 304 (already stopped) and 404 (already gone) are both fine here.
      await container.stop({ t: graceSeconds }).catch((err: { statusCode?: number }) => {
        if (err.statusCode !== 304 && err.statusCode !== 404) throw err;
      });
    }
    await container.remove({ force: true, v: removeVolumes }).catch((err: { statusCode?: number }) => {
      if (err.statusCode !== 404) throw err;
    });
  }
}

// ---- container helpers --------------------------------------------------------------------------

/** The outputs the provider computes for a container, read back from the engine. */
function containerOutputs(state: Docker.ContainerInspectInfo, name: string, ports: PortSpec[]): Json {
  const networkData = Object.entries(state.NetworkSettings.Networks).map(([networkName, n]) => ({
    networkName,
    ipAddress: n.IPAddress,
    ipPrefixLength: n.IPPrefixLen,
    gateway: n.Gateway,
    macAddress: n.MacAddress,
    globalIpv6Address: n.GlobalIPv6Address,
    ipv6Gateway: n.IPv6Gateway,
  }));
  const bound = ports.map((p) => {
    const binding = state.NetworkSettings.Ports[`${p.internal}/${p.protocol}`]?.[0];
    return { ...p, external: binding === undefined ? p.external : Number(binding.HostPort) };
  });
  return {
    id: state.Id,
    name,
    hostname: state.Config.Hostname,
    networkData,
    ...(ports.length > 0 ? { ports: bound } : {}),
    ...(state.State.Running ? {} : { exitCode: state.State.ExitCode }),
  };
}

/**
 * Seconds the provider lets a container stop before removing it: `destroyGraceSeconds`, and none
 * at all without it (not `stopTimeout`, not Docker's default), which means killed by the removal.
 */
function destroyGrace(inputs: Json): number {
  const grace = inputs.destroyGraceSeconds;
  return typeof grace === "number" && grace > 0 ? grace : 0;
}

/** One tar archive per upload, extracted at "/" (Docker creates missing parent directories). */
function uploadArchives(logical: string, given: unknown): Promise<Buffer>[] {
  return list(given, `${logical}.uploads`).map((u, i) => {
    const entry = u as Json;
    const at = `${logical}.uploads[${i}]`;
    const file = str(entry.file, `${at}.file`);
    if (!path.posix.isAbsolute(file)) throw new Error(`Container ${logical}: uploads[${i}].file '${file}' must be an absolute path`);
    for (const key of Object.keys(entry)) {
      if (!["file", "content", "contentBase64", "executable", "permissions"].includes(key)) {
        throw new Error(`Container ${logical}: uploads[${i}].${key} is not supported by the engine realiser`);
      }
    }
    const content = optStr(entry.content, `${at}.content`);
    const base64 = optStr(entry.contentBase64, `${at}.contentBase64`);
    if ((content === undefined) === (base64 === undefined)) {
      throw new Error(`Container ${logical}: uploads[${i}] needs exactly one of content or contentBase64`);
    }
    const body = content !== undefined ? Buffer.from(content, "utf8") : Buffer.from(base64 ?? "", "base64");
    const permissions = optStr(entry.permissions, `${at}.permissions`);
    const mode = permissions !== undefined ? parseInt(permissions, 8) : optBool(entry.executable, `${at}.executable`) ? 0o755 : 0o644;
    return tarOf([{ name: file.replace(/^\/+/, ""), body, mode }]);
  });
}

/**
 * Waits like the provider's `wait`, but gives up early once Docker reports the container
 * unhealthy (retries exhausted after the start period) or stopped, rather than sitting out the
 * whole timeout.
 */
async function waitHealthy(container: Docker.Container, logical: string, timeoutSeconds: number): Promise<void> {
  const started = Date.now();
  const deadline = started + timeoutSeconds * 1000;
  for (;;) {
    const state = (await container.inspect()).State;
    const health = state.Health;
    if (health === undefined ? state.Running : health.Status === "healthy") return;
    const gaveUp = Date.now() > deadline || health?.Status === "unhealthy" || (!state.Running && !state.Restarting);
    if (gaveUp) {
      const lastCheck = health?.Log?.at(-1);
      const logs = await container.logs({ stdout: true, stderr: true, tail: 20 }).catch(() => Buffer.alloc(0));
      throw new Error(
        `Container ${logical}: not healthy after ${Math.round((Date.now() - started) / 1000)}s of its ${timeoutSeconds}s wait (status ${state.Status}, health ${health?.Status ?? "none"}, exit code ${state.ExitCode}); ` +
          `last health check: ${lastCheck === undefined ? "none" : `exit ${lastCheck.ExitCode}: ${lastCheck.Output.trim()}`}; ` +
          `last log lines:\n${demux(logs)}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

/** Strips the 8-byte frame headers Docker puts on non-TTY log streams. */
function demux(buffer: Buffer): string {
  const parts: Buffer[] = [];
  let offset = 0;
  while (offset + 8 <= buffer.length) {
    const size = buffer.readUInt32BE(offset + 4);
    parts.push(buffer.subarray(offset + 8, offset + 8 + size));
    offset += 8 + size;
  }
  return Buffer.concat(parts).toString("utf8");
}

/** Go duration ("5s", "1m30s", "500ms") to nanoseconds, as the Engine API wants them. */
export function goDuration(value: unknown, setting: string): number | undefined {
  if (value === undefined || value === "") return undefined;
  const text = str(value, setting);
  const units: Record<string, number> = { ns: 1, us: 1e3, "µs": 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };
  const part = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/gy;
  let total = 0;
  let consumed = 0;
  for (let match = part.exec(text); match !== null; match = part.exec(text)) {
    total += Number(match[1]) * units[match[2]];
    consumed = part.lastIndex;
  }
  if (consumed !== text.length || consumed === 0) {
    throw new Error(`${setting}: '${text}' is not a Go duration (e.g. "5s", "1m30s", "500ms")`);
  }
  return Math.round(total);
}

// ---- image build helpers ------------------------------------------------------------------------

interface BuildLine {
  stream?: string;
  error?: string;
  aux?: { ID?: string };
}

function followBuild(docker: Docker, progress: NodeJS.ReadableStream): Promise<BuildLine[]> {
  return new Promise((resolve, reject) => {
    docker.modem.followProgress(progress, (err: Error | null, lines: BuildLine[]) => (err ? reject(err) : resolve(lines)));
  });
}

/**
 * The build context as a tar stream, honouring .dockerignore like the docker CLI. A Dockerfile
 * outside the context travels inside the archive under a reserved name.
 */
async function packContext(context: string, dockerfile: string): Promise<{ stream: Readable; dockerfileInContext: string }> {
  const ignoreFile = await fs.readFile(path.join(context, ".dockerignore"), "utf8").catch(() => "");
  const ignore = dockerignore({ ignorecase: false }).add(ignoreFile);
  const entries: { name: string; body: Buffer; mode: number }[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const dirent of await fs.readdir(path.join(context, dir), { withFileTypes: true })) {
      const rel = dir === "" ? dirent.name : `${dir}/${dirent.name}`;
      if (ignore.ignores(rel)) continue;
      if (dirent.isDirectory()) await walk(rel);
      else if (dirent.isFile()) {
        const full = path.join(context, rel);
        const stat = await fs.stat(full);
        entries.push({ name: rel, body: await fs.readFile(full), mode: stat.mode & 0o777 });
      }
    }
  };
  await walk("");
  let dockerfileInContext = path.relative(context, dockerfile).split(path.sep).join("/");
  if (dockerfileInContext.startsWith("..") || path.isAbsolute(dockerfileInContext)) {
    dockerfileInContext = ".webstack-test-dockerfile";
    entries.push({ name: dockerfileInContext, body: await fs.readFile(dockerfile), mode: 0o644 });
  } else if (!entries.some((e) => e.name === dockerfileInContext)) {
    // Docker always sends the Dockerfile, even when .dockerignore lists it.
    entries.push({ name: dockerfileInContext, body: await fs.readFile(dockerfile), mode: 0o644 });
  }
  return { stream: Readable.from(await tarOf(entries)), dockerfileInContext };
}

async function tarOf(entries: { name: string; body: Buffer; mode: number }[]): Promise<Buffer> {
  const pack = tar.pack();
  for (const e of entries) pack.entry({ name: e.name, mode: e.mode, mtime: new Date(0), uid: 0, gid: 0 }, e.body);
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of pack) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

// ---- recorded-only resources ------------------------------------------------------------------

/** Outputs a real provider would compute, for types that are recorded but never realised. */
function plausibleOutputs(type: string, inputs: Json): Json {
  switch (type) {
    case "random:index/randomPassword:RandomPassword":
    case "random:index/randomString:RandomString":
      return { result: randomText(inputs) };
    case "random:index/randomId:RandomId": {
      const bytes = randomBytes(typeof inputs.byteLength === "number" ? inputs.byteLength : 8);
      return { hex: bytes.toString("hex"), b64Url: bytes.toString("base64url"), b64Std: bytes.toString("base64"), dec: BigInt(`0x${bytes.toString("hex")}`).toString() };
    }
    case "tls:index/privateKey:PrivateKey":
      return keyPair(inputs);
    case "tls:index/selfSignedCert:SelfSignedCert":
    case "tls:index/locallySignedCert:LocallySignedCert":
      return { certPem: fakePem("CERTIFICATE"), validityStartTime: new Date().toISOString() };
    case "tls:index/certRequest:CertRequest":
      return { certRequestPem: fakePem("CERTIFICATE REQUEST") };
    case "digitalocean:index/droplet:Droplet":
      return { ipv4Address: "203.0.113.10", ipv4AddressPrivate: "10.10.0.10", urn: "do:droplet:1", status: "active" };
    case "digitalocean:index/reservedIp:ReservedIp":
      return { ipAddress: "203.0.113.20", urn: "do:floatingip:203.0.113.20" };
    case "digitalocean:index/volume:Volume":
      return { urn: "do:volume:1", filesystemType: inputs.initialFilesystemType ?? "ext4" };
    case "digitalocean:index/sshKey:SshKey":
      return { fingerprint: "00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff" };
    case "digitalocean:index/containerRegistryDockerCredentials:ContainerRegistryDockerCredentials":
      return { dockerCredentials: JSON.stringify({ auths: { "registry.digitalocean.com": { auth: "bW9jazptb2Nr" } } }) };
    case "aws:ec2/instance:Instance":
      return { publicIp: "203.0.113.30", privateIp: "10.0.0.30", arn: "arn:aws:ec2:eu-central-1:123456789012:instance/i-0123456789abcdef0" };
    case "aws:ec2/eip:Eip":
      return { publicIp: "203.0.113.40", allocationId: "eipalloc-0123456789abcdef0" };
    case "aws:ecr/repository:Repository":
      return { repositoryUrl: `123456789012.dkr.ecr.eu-central-1.amazonaws.com/${String(inputs.name ?? "repo")}`, registryId: "123456789012" };
    case "command:remote:Command":
    case "command:local:Command":
      return { stdout: "", stderr: "" };
    default:
      return {};
  }
}

function plausibleInvoke(token: string, inputs: Json): Json {
  switch (token) {
    case "aws:ec2/getAmi:getAmi":
      return { ...inputs, id: "ami-0123456789abcdef0", imageId: "ami-0123456789abcdef0", architecture: "x86_64", name: "debian-12-amd64-mock" };
    case "aws:index/getRegion:getRegion":
      return { id: "eu-central-1", name: "eu-central-1", region: "eu-central-1", endpoint: "ec2.eu-central-1.amazonaws.com", description: "mock" };
    case "aws:index/getCallerIdentity:getCallerIdentity":
      return { id: "123456789012", accountId: "123456789012", arn: "arn:aws:iam::123456789012:user/mock", userId: "MOCK" };
    case "aws:ecr/getAuthorizationToken:getAuthorizationToken":
      return { id: "mock", userName: "AWS", password: randomBytes(16).toString("hex"), authorizationToken: "bW9jaw==", proxyEndpoint: "https://123456789012.dkr.ecr.eu-central-1.amazonaws.com", expiresAt: "2099-01-01T00:00:00Z" };
    case "digitalocean:index/getContainerRegistry:getContainerRegistry":
      return { ...inputs, id: String(inputs.name ?? "registry"), endpoint: `registry.digitalocean.com/${String(inputs.name ?? "registry")}`, serverUrl: "registry.digitalocean.com" };
    default:
      return inputs;
  }
}

function randomText(inputs: Json): string {
  const length = typeof inputs.length === "number" ? inputs.length : 16;
  let alphabet = "";
  if (inputs.upper !== false) alphabet += "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
  if (inputs.lower !== false) alphabet += "abcdefghijklmnopqrstuvwxyz";
  if (inputs.numeric !== false) alphabet += "0123456789";
  if (inputs.special !== false) alphabet += typeof inputs.overrideSpecial === "string" ? inputs.overrideSpecial : "!@#$%&*()-_=+[]{}<>:?";
  return Array.from({ length }, () => alphabet[randomInt(alphabet.length)]).join("");
}

/** A real key pair from node:crypto; the OpenSSH private key is given in PKCS#8 PEM, which ssh reads. */
function keyPair(inputs: Json): Json {
  const algorithm = typeof inputs.algorithm === "string" ? inputs.algorithm : "RSA";
  const { publicKey, privateKey } =
    algorithm === "ED25519"
      ? generateKeyPairSync("ed25519")
      : algorithm === "ECDSA"
        ? generateKeyPairSync("ec", { namedCurve: "prime256v1" })
        : generateKeyPairSync("rsa", { modulusLength: typeof inputs.rsaBits === "number" ? inputs.rsaBits : 2048 });
  const privateKeyPem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
  const publicKeyOpenssh = `${opensshPublicKey(publicKey)}\n`;
  const blob = Buffer.from(publicKeyOpenssh.split(" ")[1], "base64");
  return {
    privateKeyPem,
    privateKeyPemPkcs8: privateKeyPem,
    privateKeyOpenssh: privateKeyPem,
    publicKeyPem: publicKey.export({ type: "spki", format: "pem" }).toString(),
    publicKeyOpenssh,
    publicKeyFingerprintSha256: `SHA256:${createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`,
    publicKeyFingerprintMd5: createHash("md5").update(blob).digest("hex").replace(/(..)(?!$)/g, "$1:"),
  };
}

function opensshPublicKey(key: KeyObject): string {
  const sshString = (b: Buffer) => Buffer.concat([Buffer.from([0, 0, 0, 0].map((_, i) => (b.length >>> (24 - 8 * i)) & 0xff)), b]);
  const mpint = (b: Buffer) => sshString(b[0] & 0x80 ? Buffer.concat([Buffer.from([0]), b]) : b);
  const jwk = key.export({ format: "jwk" });
  const b64 = (s: string | undefined) => Buffer.from(s ?? "", "base64url");
  let parts: Buffer[];
  let kind: string;
  if (jwk.kty === "OKP") {
    kind = "ssh-ed25519";
    parts = [sshString(Buffer.from(kind)), sshString(b64(jwk.x))];
  } else if (jwk.kty === "EC") {
    kind = "ecdsa-sha2-nistp256";
    const point = Buffer.concat([Buffer.from([4]), b64(jwk.x), b64(jwk.y)]);
    parts = [sshString(Buffer.from(kind)), sshString(Buffer.from("nistp256")), sshString(point)];
  } else {
    kind = "ssh-rsa";
    parts = [sshString(Buffer.from(kind)), mpint(b64(jwk.e)), mpint(b64(jwk.n))];
  }
  return `${kind} ${Buffer.concat(parts).toString("base64")}`;
}

function fakePem(label: string): string {
  return `-----BEGIN ${label}-----\n${randomBytes(48).toString("base64")}\n-----END ${label}-----\n`;
}

// ---- input helpers -------------------------------------------------------------------------------

/** Unwraps the SDK's secret envelopes (recursively) into plain values. */
export function reveal(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(reveal);
  if (value !== null && typeof value === "object") {
    const obj = value as Json;
    if (obj[pulumi.runtime.specialSigKey] === pulumi.runtime.specialSecretSig) return reveal(obj.value);
    return Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, reveal(v)]));
  }
  return value;
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function autoName(logical: string): string {
  return `${logical}-${randomBytes(4).toString("hex").slice(0, 7)}`;
}

function str(value: unknown, setting: string): string {
  if (typeof value !== "string" || value === "") throw new Error(`${setting}: expected a non-empty string, got ${describe(value)}`);
  return value;
}

function optStr(value: unknown, setting: string): string | undefined {
  return value === undefined || value === null || value === "" ? undefined : str(value, setting);
}

function num(value: unknown, setting: string): number {
  if (typeof value !== "number" || !Number.isFinite(value)) throw new Error(`${setting}: expected a number, got ${describe(value)}`);
  return value;
}

function optNum(value: unknown, setting: string): number | undefined {
  return value === undefined || value === null ? undefined : num(value, setting);
}

function optBool(value: unknown, setting: string): boolean | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "boolean") throw new Error(`${setting}: expected true or false, got ${describe(value)}`);
  return value;
}

function list(value: unknown, setting: string): unknown[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw new Error(`${setting}: expected a list, got ${describe(value)}`);
  return value;
}

function strList(value: unknown, setting: string): string[] {
  return list(value, setting).map((v, i) => str(v, `${setting}[${i}]`));
}

function stringMap(value: unknown, setting: string): Record<string, string> | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "object" || Array.isArray(value)) throw new Error(`${setting}: expected a map of strings, got ${describe(value)}`);
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, typeof v === "string" ? v : str(v, `${setting}.${k}`)]));
}

/** Names the type of a bad value without printing it (it may be a secret). */
function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  return typeof value === "string" ? "an empty string" : typeof value;
}
