// TEST INFRASTRUCTURE — not part of the program. A `pulumi.runtime.Mocks` implementation whose
// `newResource` realises the program's Docker resources on a real engine (networks, volumes,
// images, containers through the Engine API), so the real-engine tests can evaluate the unchanged
// program without a Pulumi CLI or provider plugin. Every other resource type (providers, clouds,
// random, tls, command) is only recorded and answered with plausible outputs (tls keys and
// certificates are real ones, made with Node's crypto and openssl); nothing outside the engine is
// ever contacted.
//
// It does what pulumi-docker 5.2.0 (terraform-provider-docker underneath; its Image is native) and
// the Pulumi engine would do, and where it cannot, it fails rather than doing less: a test that
// passes here must not be one a real `pulumi up` could fail. Rules it adds on purpose: Docker
// resources only on the providers the test engine stands in for; ports published on 127.0.0.1 or
// 0.0.0.0 only; nothing is pulled (images must already be on the engine); secrets reach containers
// only through the Engine API's Env field or uploaded files; an input it does not understand is an
// error, so a new program setting is never silently ignored.
import dockerignore from "@balena/dockerignore";
import * as pulumi from "@pulumi/pulumi";
import Docker from "dockerode";
import { execFile, execFileSync } from "node:child_process";
import { createHash, generateKeyPairSync, KeyObject, randomBytes, randomInt, randomUUID } from "node:crypto";
import { promises as fs, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Readable } from "node:stream";
import { inspect, promisify } from "node:util";
import * as tar from "tar-stream";
import { demux } from "../../../ops/backups";

/** Label on every object the realiser creates; `destroy()` removes what carries it. */
export const TEST_STACK_LABEL = "webstack.test.stack";
/** The grace period, in seconds, the realiser gave a container it made; the sweep stops it with that. */
const DESTROY_GRACE_LABEL = "webstack.test.destroy-grace";

/** The local target's Docker provider: it talks to DOCKER_HOST, which startEngine points at the test engine. */
export const LOCAL_ENGINE_PROVIDER = "host-docker";

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
  /** True once it left the state: deleted, replaced, or dropped by `refresh()`. */
  deleted: boolean;
  /** The provider reference the SDK sent (`<provider URN>::<provider id>`), if any. */
  provider: string | undefined;
  /** Position of its "registered" event in `events`. */
  registeredAt: number;
  /** Position of its "completed" event in `events`; -1 until it completed. */
  completedAt: number;
}

/** One step in the life of a registration, in the order they happened. */
export interface RealiserEvent {
  phase: "registered" | "completed" | "failed";
  type: string;
  name: string;
  /** When it happened (ms since the epoch). */
  time: number;
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
  /**
   * Logical names of the `pulumi:providers:docker` resources whose engine the test engine stands in
   * for. A Docker resource on any other provider, or on none, is refused: a real update would put it
   * on another engine. Naming a provider that points at another host (a cloud host's engine) is the
   * test's explicit decision to realise that engine's resources here.
   * @default [LOCAL_ENGINE_PROVIDER], accepted only while its `host` is the test engine's
   * @example ["host-engine-docker"]
   */
  engineProviders?: string[];
  /** The test engine's address as a provider's `host` names it. @default DOCKER_HOST (startEngine sets it) */
  dockerHost?: string;
  /**
   * Milliseconds a created or replaced command (`command:remote:Command`, `command:local:Command`)
   * takes to complete, so what waits for it can be told from what does not. An unchanged command in
   * a later update completes at once: Pulumi does not run it again.
   * @default 0
   */
  commandDelayMs?: number;
  /** Progress lines (never inputs or secrets). @default silent */
  log?: (line: string) => void;
  /**
   * Called with each network's name as soon as it exists, before anything joins it: where a test
   * puts a stand-in on it (a cloud service under its real name, as a network alias).
   */
  onNetwork?: (name: string) => Promise<void>;
}

/** What `destroy()` removed, by Docker name (images by tag; an untagged image by id). */
export interface DestroySummary {
  containers: string[];
  networks: string[];
  volumes: string[];
  images: string[];
}

/** What `destroyStack()` or `finishUpdate()` deleted. */
export interface StackDestroySummary {
  /** Logical names of the deleted resources, in the order their deletion finished. */
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
/**
 * Realises one resource from its plain inputs; `previous` is its record in the state when its
 * inputs changed since. Returns its id and the outputs the provider computes.
 */
type Realise = (
  record: RecordedResource,
  inputs: Json,
  previous: RecordedResource | undefined,
) => Promise<{ id: string; computed: Json }>;

const CONTAINER = "docker:index/container:Container";
const IMAGE = "docker:index/image:Image";
const DOCKER_PROVIDER = "pulumi:providers:docker";
const LOCAL_COMMAND = "command:local:Command";
const execFileAsync = promisify(execFile);
const COMMANDS = new Set(["command:remote:Command", LOCAL_COMMAND]);

const CONTAINER_INPUTS = new Set([
  "name",
  "image",
  "envs",
  "command",
  "entrypoints",
  "user",
  "workingDir",
  "labels",
  "networksAdvanced",
  "ports",
  "volumes",
  "uploads",
  "healthcheck",
  "restart",
  "maxRetryCount",
  "logDriver",
  "logOpts",
  "stopSignal",
  "stopTimeout",
  "destroyGraceSeconds",
  "init",
  "readOnly",
  "tmpfs",
  "capabilities",
  "securityOpts",
  "memory",
  "memorySwap",
  "cpuShares",
  "ulimits",
  "wait",
  "waitTimeout",
  "mustRun",
  "start",
  "hostname",
  "shmSize",
  "removeVolumes",
  "attach",
  "logs",
  "networkMode",
]);
/** Container inputs the provider's Update applies to the running container (resourceDockerContainerUpdate). */
const UPDATED_IN_PLACE = new Set(["restart", "maxRetryCount", "memory", "memorySwap", "cpuShares"]);
/**
 * Container inputs that are not ForceNew in the provider's schema and that its Update ignores: a
 * change reaches the state, never the container. Every other container input forces a replacement.
 */
const STATE_ONLY = new Set([
  "start",
  "attach",
  "logs",
  "mustRun",
  "wait",
  "waitTimeout",
  "destroyGraceSeconds",
  "removeVolumes",
  "healthcheck",
  "init",
  "tmpfs",
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
  /** Failures of `newResource` in the current update (see beginUpdate), also rethrown by `settled()`. */
  readonly errors: Error[] = [];
  readonly mocks: pulumi.runtime.Mocks;

  private readonly engineProviders: Set<string>;
  /** The default mapping holds only for a provider whose host is the test engine. */
  private readonly mappedByDefault: boolean;
  private readonly engineAddress: string | undefined;
  private readonly commandDelayMs: number;
  private readonly log: (line: string) => void;
  private readonly onNetwork: ((name: string) => Promise<void>) | undefined;
  private readonly realisers: Record<string, Realise>;
  private readonly inFlight = new Set<Promise<unknown>>();
  private currentUpdate = 0;
  /** What the provider computed for each realised record (the rest of its outputs echo its inputs). */
  private readonly computed = new WeakMap<RecordedResource, Json>();
  /** Records replaced create-before-delete (a RemoteImage's old tag): Pulumi deletes them at the end of the update. */
  private pendingDeletes: RecordedResource[] = [];

  constructor(args: EngineRealiserArgs) {
    this.docker = args.docker;
    this.stack = args.stack;
    this.engineProviders = new Set(args.engineProviders ?? [LOCAL_ENGINE_PROVIDER]);
    this.mappedByDefault = args.engineProviders === undefined;
    this.engineAddress = args.dockerHost ?? process.env.DOCKER_HOST;
    this.commandDelayMs = args.commandDelayMs ?? 0;
    this.log = args.log ?? (() => undefined);
    this.onNetwork = args.onNetwork;
    this.realisers = {
      "docker:index/network:Network": (r, i, p) => this.realiseNetwork(r.name, i, p),
      "docker:index/volume:Volume": (r, i, p) => this.realiseVolume(r.name, i, p),
      "docker:index/remoteImage:RemoteImage": (r, i, p) => this.realiseRemoteImage(r.name, i, p),
      [IMAGE]: (r, i, p) => this.realiseImage(r.name, i, p),
      [CONTAINER]: (r, i, p) => this.realiseContainer(r, i, p),
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
        await sleep(quietMs);
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
   * Starts a new evaluation of the program, like a second `pulumi up` (without `--refresh`; call
   * `refresh()` first for that): a resource registered again with the same inputs and provider is
   * left alone, engine untouched and outputs as recorded; a changed one is updated or replaced as
   * the provider would; `finishUpdate()` deletes what the new evaluation did not register. Install
   * the mocks again (`install()`) before evaluating the program anew.
   */
  beginUpdate(): number {
    // A failed update ended with its failures; they are no failure of this one.
    this.errors.length = 0;
    return ++this.currentUpdate;
  }

  /**
   * Ends the current update as Pulumi does: deletes every resource of the state this update did not
   * register (the previous release's replicas, a renamed volume, a network or image the program
   * dropped) and what was replaced create-before-delete, dependents first, each as the provider
   * deletes it.
   */
  async finishUpdate(): Promise<StackDestroySummary> {
    const stale = this.stateRecords().filter((r) => r.update < this.currentUpdate);
    const doomed = [...this.pendingDeletes, ...stale];
    this.pendingDeletes = [];
    return this.deleteInOrder(doomed);
  }

  /**
   * `pulumi refresh` for containers, through the provider's Read: a container gone from the engine
   * leaves the state; a stopped one with `mustRun` (the default) is deleted by the Read and leaves
   * the state too, so the next update creates it again; a running one reports its live ports and
   * addresses. Returns the logical names that left the state.
   */
  async refresh(): Promise<string[]> {
    const dropped: string[] = [];
    for (const record of this.stateRecords().filter((r) => r.type === CONTAINER)) {
      const inputs = reveal(record.inputs) as Json;
      const info = await this.docker.getContainer(String(record.id)).inspect().catch(notFound(undefined));
      if (info === undefined || (!info.State.Running && inputs.mustRun !== false)) {
        if (info !== undefined) await this.removeAsProvider(info.Id, inputs);
        this.markDeleted(record);
        dropped.push(record.name);
        continue;
      }
      const computed = containerOutputs(
        info,
        String(record.outputs.name),
        portSpecs(record.name, inputs),
        this.computed.get(record),
      );
      this.computed.set(record, computed);
      record.outputs = { ...record.inputs, ...computed };
    }
    return dropped;
  }

  /** The latest recorded, not deleted container by Docker name or logical name. */
  container(name: string): RecordedResource {
    const all = this.ofType(CONTAINER).filter((r) => !r.deleted && r.id !== undefined);
    const found = all.filter((r) => r.name === name || r.outputs.name === name).at(-1);
    if (found === undefined) {
      const known = all.map((r) => nameText(r.outputs.name ?? r.name));
      throw new Error(`realiser: no recorded container named '${name}' (known: ${known.join(", ") || "none"})`);
    }
    return found;
  }

  /**
   * Deletes one container as the provider deletes it (its grace period, from its recorded inputs)
   * and creates it again from those inputs: what a replacement does. Volumes are kept.
   */
  async recreateContainer(name: string): Promise<Json> {
    const [outputs] = await this.recreateContainers([name]);
    return outputs;
  }

  /**
   * Deletes these containers as the provider does, runs `meanwhile` (what happens to the host while
   * they are gone: a volume lost, say), and creates them again in the order given, as the next
   * update would.
   */
  async recreateContainers(names: string[], meanwhile?: () => Promise<void>): Promise<Json[]> {
    const records = names.map((name) => this.container(name));
    for (const record of records) await this.deleteContainer(record);
    await meanwhile?.();
    const outputs: Json[] = [];
    for (const record of records) {
      const { id, computed } = await this.createContainer(record.name, reveal(record.inputs) as Json);
      record.id = id;
      this.computed.set(record, computed);
      record.outputs = { ...record.inputs, ...computed };
      outputs.push(record.outputs);
    }
    return outputs;
  }

  /**
   * Destroys the stack as `pulumi destroy` does: every resource of the recorded state (the latest
   * registration of each, not already deleted), and what a replacement left for the end of an
   * update, each deleted the way the provider deletes it, those that may depend on others first.
   *
   * What the mocks cannot see is not honoured: `protect` and `retainOnDelete` are resource options,
   * not inputs.
   */
  async destroyStack(): Promise<StackDestroySummary> {
    const doomed = [...this.pendingDeletes, ...this.stateRecords()];
    this.pendingDeletes = [];
    return this.deleteInOrder(doomed);
  }

  /**
   * Removes every container, network and volume labelled with this stack (also those a crashed
   * earlier run left), and with `images: true` the images built for it. Containers go first:
   * the stack's own (those the realiser made, labelled with their grace period), each stopped
   * with its grace period; then the test's stand-ins for what is outside the stack (a cloud's
   * bucket), removed at once. The stand-ins outlive the stack's containers, as the cloud's services
   * do: Postgres, stopping, still archives its last WAL to the bucket. Images are untagged by name,
   * never removed by id with force, which would also take the tags other stacks have on the same
   * image.
   */
  async destroy(options: { images?: boolean } = {}): Promise<DestroySummary> {
    const filters = { label: [`${TEST_STACK_LABEL}=${this.stack}`] };
    const summary: DestroySummary = { containers: [], networks: [], volumes: [], images: [] };
    const containers = await this.docker.listContainers({ all: true, filters });
    const own = containers.filter((c) => DESTROY_GRACE_LABEL in c.Labels);
    const standins = containers.filter((c) => !(DESTROY_GRACE_LABEL in c.Labels));
    for (const wave of [own, standins]) {
      await Promise.all(
        wave.map(async (c) => {
          const name = c.Names[0]?.replace(/^\//, "") ?? c.Id;
          const grace = Number(c.Labels[DESTROY_GRACE_LABEL] ?? "0");
          const container = this.docker.getContainer(c.Id);
          // A sweep, not the provider: whatever is already stopped or gone is fine.
          if (grace > 0) await container.stop({ t: grace }).catch(ignoreStatus(304, 404));
          await container.remove({ force: true, v: true }).catch(ignoreStatus(404));
          summary.containers.push(name);
        }),
      );
    }
    for (const n of await this.docker.listNetworks({ filters })) {
      await this.sweepNetwork(n.Id, n.Name);
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

  /**
   * Removes a network of the sweep. The engine may still list an endpoint of a container the sweep
   * has just removed (the endpoint goes when the engine has handled the container's exit): such an
   * endpoint is disconnected and the removal tried again, for up to 10 s. A container that still
   * exists and is not the stack's is never touched: the error names it.
   */
  private async sweepNetwork(id: string, name: string): Promise<void> {
    const network = this.docker.getNetwork(id);
    const deadline = Date.now() + 10_000;
    for (;;) {
      const failure = await network.remove().then(
        () => undefined,
        (err: EngineError) => err,
      );
      if (failure === undefined || failure.statusCode === 404) return;
      if (failure.statusCode !== 403) throw failure;
      const info = (await network.inspect()) as { Containers?: Record<string, { Name?: string }> };
      const foreign: string[] = [];
      for (const [container, endpoint] of Object.entries(info.Containers ?? {})) {
        const found = await this.docker.getContainer(container).inspect().catch(notFound(undefined));
        if (found === undefined) {
          await network.disconnect({ Container: container, Force: true }).catch(ignoreStatus(404));
        } else {
          foreign.push(`${endpoint.Name ?? container} (${found.State.Status})`);
        }
      }
      if (foreign.length > 0) {
        throw new Error(
          `network ${name}: still in use by ${foreign.join(", ")}, which the sweep did not remove ` +
            `(not labelled ${TEST_STACK_LABEL}=${this.stack}, or made while the sweep ran)`,
        );
      }
      if (Date.now() > deadline) throw failure;
      await sleep(250);
    }
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
    const record: RecordedResource = {
      type: args.type,
      name: args.name,
      custom: args.custom ?? true,
      inputs: (args.inputs ?? {}) as Json,
      outputs: {},
      id: undefined,
      realised: false,
      update: this.currentUpdate,
      deleted: false,
      provider: args.provider === undefined || args.provider === "" ? undefined : args.provider,
      registeredAt: this.events.length,
      completedAt: -1,
    };
    const previous = this.inState(record.type, record.name);
    this.resources.push(record);
    this.events.push({ phase: "registered", type: args.type, name: args.name, time: Date.now() });
    try {
      if (args.type.startsWith("docker:")) {
        await this.realise(record, previous, args.id);
      } else if (!record.custom) {
        record.outputs = record.inputs;
      } else {
        await this.recordOnly(record, previous);
      }
      record.completedAt = this.events.length;
      this.events.push({ phase: "completed", type: args.type, name: args.name, time: Date.now() });
      return { id: record.id, state: record.outputs };
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      this.errors.push(error);
      this.events.push({ phase: "failed", type: args.type, name: args.name, time: Date.now() });
      throw error;
    }
  }

  private call(args: pulumi.runtime.MockCallArgs): Json {
    if (args.token.startsWith("docker:")) {
      throw new Error(
        `invoke ${args.token}: Docker functions are not realised by the engine realiser; teach test/engine/support/realiser.ts about it`,
      );
    }
    const inputs = (args.inputs ?? {}) as Json;
    this.calls.push({ token: args.token, inputs });
    return plausibleInvoke(args.token, reveal(inputs) as Json);
  }

  /** Realises a Docker resource, or leaves it alone when nothing about it changed. */
  private async realise(
    record: RecordedResource,
    previous: RecordedResource | undefined,
    importId: string | undefined,
  ): Promise<void> {
    const what = `${record.type} ${record.name}`;
    if (importId !== undefined && importId !== "")
      throw new Error(`${what}: reading or importing an existing object is not supported by the engine realiser`);
    const realise = this.realisers[record.type];
    if (realise === undefined)
      throw new Error(
        `${what}: a Docker resource type the engine realiser does not realise; teach test/engine/support/realiser.ts about it`,
      );
    this.checkProvider(record);
    const inputs = reveal(record.inputs) as Json;
    const unchanged =
      previous !== undefined && previous.provider === record.provider && sameJson(reveal(previous.inputs), inputs);
    // Without a diff, `pulumi up` neither calls the provider nor re-reads the object: a stopped
    // container stays stopped, a removed one stays removed, outputs stay as recorded. pulumi-docker's
    // Image is the exception: it hashes its build context on every update, so it is built again
    // (a warm cache makes that a no-op when nothing changed).
    if (unchanged && record.type !== IMAGE) {
      record.id = previous.id;
      record.outputs = previous.outputs;
      this.computed.set(record, this.computed.get(previous) ?? {});
      record.realised = true;
      return;
    }
    this.log(`realising ${what}`);
    const { id, computed } = await realise(record, inputs, unchanged ? undefined : previous);
    record.id = id;
    this.computed.set(record, computed);
    // Outputs echo the inputs as sent, so values the program marked secret stay secret.
    record.outputs = { ...record.inputs, ...computed };
    record.realised = true;
  }

  /** Types that are recorded, never realised: unchanged inputs keep their outputs, as Pulumi's state would. */
  private async recordOnly(record: RecordedResource, previous: RecordedResource | undefined): Promise<void> {
    if (previous !== undefined && sameJson(previous.inputs, record.inputs)) {
      // A generated password must not change between updates, and an unchanged command does not run again.
      record.id = previous.id;
      record.outputs = previous.outputs;
      return;
    }
    if (COMMANDS.has(record.type) && this.commandDelayMs > 0) await sleep(this.commandDelayMs);
    // Provider references carry the id; a new id (a replaced provider) changes every reference.
    record.id = record.type === DOCKER_PROVIDER ? randomUUID() : `${record.name}-id`;
    const inputs = reveal(record.inputs) as Json;
    const ran = record.type === LOCAL_COMMAND ? await this.runLocalCommand(record.name, inputs, "create") : undefined;
    record.outputs = { ...record.inputs, ...plausibleOutputs(record.type, inputs), ...ran };
  }

  /**
   * Runs a local command's `create` (on creation and on every change, as the provider does without
   * an `update`) or its `delete`, with the Docker CLI pointed at the test engine: the engine the
   * local target's provider and CLI both find through DOCKER_HOST. A non-zero exit fails it, with
   * its standard error, as the provider does.
   */
  private async runLocalCommand(
    logical: string,
    inputs: Json,
    which: "create" | "delete",
  ): Promise<{ stdout: string; stderr: string } | undefined> {
    onlyKeys(`Command ${logical}`, inputs, ["create", "delete", "interpreter"]);
    const script = inputs[which];
    if (script === undefined) return undefined;
    const interpreter = list(inputs.interpreter ?? ["/bin/sh", "-c"], `${logical}.interpreter`).map((part) =>
      str(part, `${logical}.interpreter[]`),
    );
    this.log(`running ${logical}'s ${which} command`);
    // Asynchronous: load generators in this process keep running meanwhile.
    const result = await execFileAsync(interpreter[0], [...interpreter.slice(1), str(script, `${logical}.${which}`)], {
      env: { ...process.env, DOCKER_HOST: this.engineAddress },
      timeout: 120_000,
    }).then(
      ({ stdout, stderr }) => ({ code: "0", stdout, stderr }),
      (error: Error & { code?: number | string; stdout?: string; stderr?: string }) => ({
        code: String(error.code ?? error.message),
        stdout: error.stdout ?? "",
        stderr: error.stderr ?? error.message,
      }),
    );
    const stdout = result.stdout.trimEnd();
    const stderr = result.stderr.trimEnd();
    if (result.code !== "0") {
      throw new Error(`Command ${logical}: ${which} exited with ${result.code}: ${stderr || stdout}`);
    }
    return { stdout, stderr };
  }

  /**
   * Refuses a Docker resource whose provider is not one the test engine stands in for: with the
   * real provider it would be created on another engine, and here it would land on this one.
   */
  private checkProvider(record: RecordedResource): void {
    const what = `${record.type} ${record.name}`;
    const mapped = [...this.engineProviders].join(", ");
    if (record.provider === undefined) {
      throw new Error(
        `${what}: no provider; Pulumi.yaml disables the default Docker provider, so a real update fails on it too (the test engine stands in for ${mapped})`,
      );
    }
    const ref = parseProviderRef(record.provider);
    if (ref.type !== DOCKER_PROVIDER)
      throw new Error(`${what}: its provider '${ref.name}' is a ${ref.type}, not a Docker provider`);
    if (!this.engineProviders.has(ref.name)) {
      throw new Error(
        `${what}: its provider '${ref.name}' manages an engine the test engine does not stand in for (it stands in for ${mapped}); ` +
          "a real update would create it there. If the test means to realise that engine's resources here, name the provider in engineProviders",
      );
    }
    const provider = this.resources
      .filter((r) => r.type === DOCKER_PROVIDER && r.name === ref.name && r.id === ref.id)
      .at(-1);
    if (provider === undefined)
      throw new Error(`${what}: its provider '${ref.name}' (id ${ref.id}) was never registered with this realiser`);
    // The SDK fills `host` from DOCKER_HOST; without either, the provider reads DOCKER_HOST itself or uses its default socket.
    const given = optStr((reveal(provider.inputs) as Json).host, `${ref.name}.host`);
    const host = given ?? process.env.DOCKER_HOST ?? "unix:///var/run/docker.sock";
    if (this.mappedByDefault && host !== this.engineAddress) {
      throw new Error(
        `${what}: its provider '${ref.name}' talks to '${host}', not to the test engine (${this.engineAddress ?? "DOCKER_HOST unset"}); ` +
          "name it in engineProviders if the test means to realise that engine's resources here",
      );
    }
  }

  /** The record of a resource in the state before the current update, if any. */
  private inState(type: string, name: string): RecordedResource | undefined {
    return this.stateRecords().find((r) => r.type === type && r.name === name && r.update < this.currentUpdate);
  }

  /** The state Pulumi would hold: the latest created registration of each custom resource, unless deleted since. */
  private stateRecords(): RecordedResource[] {
    const latest = new Map<string, RecordedResource>();
    for (const r of this.resources) if (r.custom && r.id !== undefined) latest.set(`${r.type}::${r.name}`, r);
    return [...latest.values()].filter((r) => !r.deleted);
  }

  /** Marks a record and the earlier registrations of the same resource as gone from the state. */
  private markDeleted(record: RecordedResource): void {
    for (const r of this.resources)
      if (r.type === record.type && r.name === record.name && r.update <= record.update) r.deleted = true;
  }

  /**
   * Deletes records as Pulumi does: a resource only after everything that may depend on it, the
   * independent ones in parallel. The mocks do not see dependencies, but the SDK registers a
   * resource only once what it depends on has completed; so in the update a record was registered
   * in, it may depend on whatever completed before it registered, and on nothing else.
   */
  private async deleteInOrder(doomed: RecordedResource[]): Promise<StackDestroySummary> {
    const summary: StackDestroySummary = {
      deleted: [],
      removed: { containers: [], networks: [], volumes: [], images: [] },
      kept: [],
    };
    const mayDependOn = (dependent: RecordedResource, dependency: RecordedResource) => {
      const then = this.resources.find(
        (r) => r.update === dependent.update && r.type === dependency.type && r.name === dependency.name,
      );
      return (
        then !== undefined && then !== dependent && then.completedAt >= 0 && then.completedAt < dependent.registeredAt
      );
    };
    const deletions = new Map<RecordedResource, Promise<void>>();
    const remove = (record: RecordedResource): Promise<void> => {
      let deletion = deletions.get(record);
      if (deletion === undefined) {
        deletion = (async () => {
          await Promise.all(doomed.filter((d) => d !== record && mayDependOn(d, record)).map(remove));
          await this.deleteResource(record, summary);
          this.markDeleted(record);
          summary.deleted.push(record.name);
        })();
        deletions.set(record, deletion);
      }
      return deletion;
    };
    await Promise.all(doomed.map(remove));
    return summary;
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

  private async realiseNetwork(
    logical: string,
    inputs: Json,
    previous: RecordedResource | undefined,
  ): Promise<{ id: string; computed: Json }> {
    onlyKeys(`Network ${logical}`, inputs, ["name", "driver", "internal", "attachable", "labels", "options"]);
    if (previous !== undefined) throw replacementRefused("Network", logical);
    const name = optStr(inputs.name, `${logical}.name`) ?? autoName(logical);
    const driver = optStr(inputs.driver, `${logical}.driver`) ?? "bridge";
    // A network of that name that is not in the state is an error, as a second network of one name would be.
    const created = await this.docker.createNetwork({
      Name: name,
      Driver: driver,
      Internal: optBool(inputs.internal, `${logical}.internal`) ?? false,
      Attachable: optBool(inputs.attachable, `${logical}.attachable`) ?? false,
      CheckDuplicate: true,
      Labels: this.labels(logical, inputs.labels),
      Options: stringMap(inputs.options, `${logical}.options`),
    });
    await this.onNetwork?.(name);
    return { id: created.id, computed: { name, driver, scope: "local" } };
  }

  private async realiseVolume(
    logical: string,
    inputs: Json,
    previous: RecordedResource | undefined,
  ): Promise<{ id: string; computed: Json }> {
    onlyKeys(`Volume ${logical}`, inputs, ["name", "driver", "driverOpts", "labels"]);
    if (previous !== undefined) throw replacementRefused("Volume", logical);
    const name = optStr(inputs.name, `${logical}.name`) ?? autoName(logical);
    const driver = optStr(inputs.driver, `${logical}.driver`) ?? "local";
    // Docker answers a create for an existing name with that volume, and so does the provider; it
    // is only adopted here when it belongs to this test stack.
    await this.docker.createVolume({
      Name: name,
      Driver: driver,
      DriverOpts: stringMap(inputs.driverOpts, `${logical}.driverOpts`),
      Labels: this.labels(logical, inputs.labels),
    });
    const volume = await this.docker.getVolume(name).inspect();
    if (volume.Labels?.[TEST_STACK_LABEL] !== this.stack) {
      throw new Error(
        `Volume ${logical}: a volume named '${name}' exists and does not belong to test stack '${this.stack}'`,
      );
    }
    return { id: name, computed: { name, driver, mountpoint: volume.Mountpoint } };
  }

  private async realiseRemoteImage(
    logical: string,
    inputs: Json,
    previous: RecordedResource | undefined,
  ): Promise<{ id: string; computed: Json }> {
    onlyKeys(`RemoteImage ${logical}`, inputs, ["name", "keepLocally", "forceRemove"]);
    const name = str(inputs.name, `${logical}.name`);
    const image = await this.docker.getImage(name).inspect().catch(notFound(undefined));
    if (image === undefined) {
      throw new Error(
        `RemoteImage ${logical}: image '${name}' is not on the engine, and nothing can be pulled here; ` +
          "build the stand-ins (scripts/engine/build-standin-images.sh) and configure their webstack-standin/* tags",
      );
    }
    // A new name replaces it, create-before-delete: the old tag goes at the end of the update.
    if (previous !== undefined && (reveal(previous.inputs) as Json).name !== name) this.pendingDeletes.push(previous);
    return { id: `${image.Id}${name}`, computed: { imageId: image.Id, repoDigest: image.Id } };
  }

  private async realiseImage(
    logical: string,
    inputs: Json,
    previous: RecordedResource | undefined,
  ): Promise<{ id: string; computed: Json }> {
    // buildOnPreview only matters to `pulumi preview`, which nothing here runs.
    onlyKeys(`Image ${logical}`, inputs, ["imageName", "build", "skipPush", "registry", "buildOnPreview"]);
    const imageName = str(inputs.imageName, `${logical}.imageName`);
    const build = (inputs.build ?? {}) as Json;
    onlyKeys(`Image ${logical}: build`, build, [
      "context",
      "dockerfile",
      "args",
      "target",
      "platform",
      "builderVersion",
      "network",
    ]);
    if (optBool(inputs.skipPush, `${logical}.skipPush`) !== true) {
      throw new Error(
        `Image ${logical}: skipPush must be true here (no registry is reachable to push ${imageName} to)`,
      );
    }
    const builder = optStr(build.builderVersion, `${logical}.build.builderVersion`);
    if (builder !== "BuilderV1") {
      throw new Error(
        `Image ${logical}: build.builderVersion is ${builder === undefined ? "unset, which means BuildKit (the provider's default)" : `'${builder}'`}; ` +
          "the realiser builds with the classic builder only, so set BuilderV1",
      );
    }
    const context = path.resolve(optStr(build.context, `${logical}.build.context`) ?? ".");
    const dockerfile = path.resolve(
      optStr(build.dockerfile, `${logical}.build.dockerfile`) ?? path.join(context, "Dockerfile"),
    );
    for (const [setting, file, kind] of [
      ["build.context", context, "directory"],
      ["build.dockerfile", dockerfile, "file"],
    ] as const) {
      const stat = await fs.stat(file).catch(() => undefined);
      if (kind === "directory" ? !stat?.isDirectory() : !stat?.isFile()) {
        throw new Error(`Image ${logical}: ${setting} '${file}' is not an existing ${kind}`);
      }
    }
    const { stream, dockerfileInContext } = await packContext(context, dockerfile);
    const buildArgs = stringMap(build.args, `${logical}.build.args`);
    const target = optStr(build.target, `${logical}.build.target`);
    const platform = optStr(build.platform, `${logical}.build.platform`);
    // RUN steps get the network the program names, else the engine's default, as the provider builds.
    const network = optStr(build.network, `${logical}.build.network`);
    this.log(`building ${imageName} from ${context}`);
    const progress = await this.docker.buildImage(stream, {
      t: imageName,
      dockerfile: dockerfileInContext,
      buildargs: buildArgs,
      target,
      platform,
      ...(network === undefined ? {} : { networkmode: network }),
      labels: { [TEST_STACK_LABEL]: this.stack },
      rm: true,
      forcerm: true,
      version: "1",
    });
    const lines = await followBuild(this.docker, progress);
    const failure = lines.find((l) => l.error !== undefined);
    if (failure !== undefined) {
      const tail = lines
        .slice(-30)
        .map((l) => l.stream ?? l.error ?? "")
        .join("");
      throw new Error(`Image ${logical}: building ${imageName} failed: ${failure.error}\n${tail}`);
    }
    const built = await this.docker.getImage(imageName).inspect();
    // pulumi-docker's Delete of an Image does nothing; a replaced one only leaves the state.
    if (previous !== undefined) this.pendingDeletes.push(previous);
    return {
      id: imageName,
      computed: {
        imageName,
        // Since pulumi-docker 4.4 an image that is not pushed reports its image id here.
        repoDigest: built.Id,
        baseImageName: imageName,
        context: optStr(build.context, `${logical}.build.context`) ?? ".",
        dockerfile: path.relative(context, dockerfile).split(path.sep).join("/"),
        platform: platform ?? "",
        registryServer: "",
      },
    };
  }

  /**
   * A container as the provider manages it: created when new; when its inputs changed, updated in
   * place (restart policy, memory, CPU weight), left as it is (what the provider's Update ignores), or replaced
   * delete-before-replace (everything else), the old one deleted as its recorded state says.
   */
  private async realiseContainer(
    record: RecordedResource,
    inputs: Json,
    previous: RecordedResource | undefined,
  ): Promise<{ id: string; computed: Json }> {
    const logical = record.name;
    checkContainerInputs(logical, inputs);
    if (previous !== undefined) {
      const changed = changedKeys(reveal(previous.inputs) as Json, inputs);
      const replace =
        previous.provider !== record.provider ||
        changed.some((key) => !UPDATED_IN_PLACE.has(key) && !STATE_ONLY.has(key));
      if (!replace) {
        const id = String(previous.id);
        if (changed.some((key) => UPDATED_IN_PLACE.has(key))) await this.updateContainer(id, logical, inputs);
        return { id, computed: this.computed.get(previous) ?? {} };
      }
      await this.deleteContainer(previous);
      this.markDeleted(previous);
    }
    return this.createContainer(logical, inputs);
  }

  /** The provider's Create: create, connect its networks, upload, start, wait, attach, then its Read's checks. */
  private async createContainer(logical: string, inputs: Json): Promise<{ id: string; computed: Json }> {
    const name = optStr(inputs.name, `${logical}.name`) ?? autoName(logical);
    const spec = this.containerSpec(logical, name, inputs);
    const image = String(spec.create.Image);
    await this.docker
      .getImage(image)
      .inspect()
      .catch((err: { statusCode?: number }) => {
        if (err.statusCode !== 404) throw err;
        throw new Error(`Container ${logical}: image '${image}' is not on the engine, and nothing is pulled here`);
      });
    // A container of that name, in the state or not, makes this fail as it fails the provider.
    const container = await this.docker.createContainer(spec.create);
    if (spec.networks.length > 0) {
      // The provider creates on the default network, then moves the container to its own.
      await this.docker
        .getNetwork("bridge")
        .disconnect({ Container: container.id, Force: false })
        .catch((err: { statusCode?: number; message?: string }) => {
          if (!String(err.message).includes("is not connected to the network")) throw err;
        });
      for (const network of spec.networks) {
        await this.docker
          .getNetwork(network.name)
          .connect({ Container: container.id, EndpointConfig: { Aliases: network.aliases } });
      }
    }
    for (const upload of spec.uploads) await container.putArchive(await upload, { path: "/" });

    const start = optBool(inputs.start, `${logical}.start`) ?? true;
    if (start) {
      await container.start();
      if (optBool(inputs.wait, `${logical}.wait`) === true) {
        await waitHealthy(container, logical, optNum(inputs.waitTimeout, `${logical}.waitTimeout`) ?? 60);
      }
    }
    let logs: string | undefined;
    if (optBool(inputs.attach, `${logical}.attach`) === true) {
      // Waits for the end of the run; a non-zero exit is no error, only the exitCode output.
      await container.wait({ condition: "not-running" });
      if (optBool(inputs.logs, `${logical}.logs`) === true) {
        logs = demux(await container.logs({ stdout: true, stderr: true, follow: false }));
      }
    }
    // The provider's Read looks 100 ms after the create returns (containerReadRefreshDelay).
    await sleep(100);
    const state = await container.inspect();
    if (!state.State.Running && optBool(inputs.mustRun, `${logical}.mustRun`) !== false) {
      const tail = await container.logs({ stdout: true, stderr: true, tail: 20 }).catch(() => Buffer.alloc(0));
      // The provider's Read deletes a container that is not running under mustRun, then fails.
      await this.removeAsProvider(state.Id, inputs);
      throw new Error(
        `Container ${logical}: ${start ? `not running after its start (status ${state.State.Status}, exit code ${state.State.ExitCode})` : "created but not started"}, ` +
          `and mustRun is true (the default): the provider deletes it and fails ("container failed to be in running state"); last log lines:\n${demux(tail)}`,
      );
    }
    return {
      id: state.Id,
      computed: containerOutputs(state, name, spec.ports, logs === undefined ? undefined : { containerLogs: logs }),
    };
  }

  /** The provider's Update: restart policy and limits applied to the running container, unset ones as 0. */
  private async updateContainer(id: string, logical: string, inputs: Json): Promise<void> {
    const memory = optNum(inputs.memory, `${logical}.memory`);
    const memorySwap = optNum(inputs.memorySwap, `${logical}.memorySwap`);
    await this.docker.getContainer(id).update({
      RestartPolicy: restartPolicy(logical, inputs),
      CpuShares: optNum(inputs.cpuShares, `${logical}.cpuShares`) ?? 0,
      Memory: (memory ?? 0) * 1024 * 1024,
      ...(memorySwap === undefined ? {} : { MemorySwap: megabytesOrUnlimited(memorySwap) }),
    });
  }

  /** Translates the provider's container inputs into Engine API create options. */
  private containerSpec(
    logical: string,
    name: string,
    inputs: Json,
  ): {
    create: Docker.ContainerCreateOptions;
    networks: { name: string; aliases: string[] }[];
    uploads: Promise<Buffer>[];
    ports: PortSpec[];
  } {
    const at = (key: string) => `${logical}.${key}`;
    const networks = list(inputs.networksAdvanced, at("networksAdvanced")).map((n, i) => {
      const entry = n as Json;
      onlyKeys(`Container ${logical}: networksAdvanced[${i}]`, entry, ["name", "aliases"]);
      return {
        name: str(entry.name, at(`networksAdvanced[${i}].name`)),
        aliases: strList(entry.aliases, at(`networksAdvanced[${i}].aliases`)),
      };
    });
    const ports = portSpecs(logical, inputs);

    const mounts: Docker.MountSettings[] = list(inputs.volumes, at("volumes")).map((v, i) => {
      const entry = v as Json;
      onlyKeys(`Container ${logical}: volumes[${i}]`, entry, ["containerPath", "volumeName", "hostPath", "readOnly"]);
      const target = str(entry.containerPath, at(`volumes[${i}].containerPath`));
      const readOnly = optBool(entry.readOnly, at(`volumes[${i}].readOnly`)) ?? false;
      const volumeName = optStr(entry.volumeName, at(`volumes[${i}].volumeName`));
      const hostPath = optStr(entry.hostPath, at(`volumes[${i}].hostPath`));
      if (volumeName !== undefined && hostPath === undefined)
        return { Type: "volume", Source: volumeName, Target: target, ReadOnly: readOnly };
      if (hostPath !== undefined && volumeName === undefined && path.isAbsolute(hostPath)) {
        return { Type: "bind", Source: hostPath, Target: target, ReadOnly: readOnly };
      }
      throw new Error(`Container ${logical}: volumes[${i}] needs exactly one of volumeName or an absolute hostPath`);
    });

    const healthcheck = inputs.healthcheck as Json | undefined;
    if (healthcheck !== undefined)
      onlyKeys(`Container ${logical}: healthcheck`, healthcheck, [
        "tests",
        "interval",
        "timeout",
        "startPeriod",
        "retries",
      ]);
    const capabilities = (inputs.capabilities ?? {}) as Json;
    onlyKeys(`Container ${logical}: capabilities`, capabilities, ["adds", "drops"]);
    const memory = optNum(inputs.memory, at("memory"));
    const memorySwap = optNum(inputs.memorySwap, at("memorySwap"));
    const shmSize = optNum(inputs.shmSize, at("shmSize"));
    const labels = this.labels(logical, inputs.labels);
    labels[DESTROY_GRACE_LABEL] = String(destroyGrace(inputs));

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
        // Unset means the engine's default network, which networksAdvanced then replaces.
        NetworkMode: optStr(inputs.networkMode, at("networkMode")),
        PortBindings: Object.fromEntries(
          ports.map((p) => [
            `${p.internal}/${p.protocol}`,
            [{ HostIp: p.ip, HostPort: p.external === undefined ? "" : String(p.external) }],
          ]),
        ),
        Mounts: mounts,
        RestartPolicy: restartPolicy(logical, inputs),
        LogConfig: {
          Type: optStr(inputs.logDriver, at("logDriver")) ?? "json-file",
          Config: stringMap(inputs.logOpts, at("logOpts")) ?? {},
        },
        // The provider always sends init, false when unset, overriding the daemon's default.
        Init: optBool(inputs.init, at("init")) ?? false,
        ReadonlyRootfs: optBool(inputs.readOnly, at("readOnly")),
        Tmpfs: stringMap(inputs.tmpfs, at("tmpfs")),
        CapAdd: capabilities.adds === undefined ? undefined : strList(capabilities.adds, at("capabilities.adds")),
        CapDrop: capabilities.drops === undefined ? undefined : strList(capabilities.drops, at("capabilities.drops")),
        SecurityOpt: inputs.securityOpts === undefined ? undefined : strList(inputs.securityOpts, at("securityOpts")),
        // The provider takes megabytes; a memorySwap of -1 (unlimited) passes through.
        Memory: memory === undefined ? undefined : memory * 1024 * 1024,
        MemorySwap: memorySwap === undefined ? undefined : megabytesOrUnlimited(memorySwap),
        CpuShares: optNum(inputs.cpuShares, at("cpuShares")),
        ShmSize: shmSize === undefined ? undefined : shmSize * 1024 * 1024,
        Ulimits:
          inputs.ulimits === undefined
            ? undefined
            : list(inputs.ulimits, at("ulimits")).map((u, i) => {
                const entry = u as Json;
                onlyKeys(`Container ${logical}: ulimits[${i}]`, entry, ["name", "soft", "hard"]);
                return {
                  Name: str(entry.name, at(`ulimits[${i}].name`)),
                  Soft: optNum(entry.soft, at(`ulimits[${i}].soft`)),
                  Hard: optNum(entry.hard, at(`ulimits[${i}].hard`)),
                };
              }),
      },
    };
    return { create, networks, uploads: uploadArchives(logical, inputs.uploads), ports };
  }

  /**
   * Deletes a network as the provider does: while the engine answers that it has active endpoints
   * (an endpoint goes when the engine has handled its container's exit), the removal is tried
   * again, for up to 30 s; gone already is done.
   */
  private async deleteNetwork(id: string): Promise<void> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const failure = await this.docker
        .getNetwork(id)
        .remove()
        .then(
          () => undefined,
          (err: EngineError) => err,
        );
      if (failure === undefined || failure.statusCode === 404) return;
      if (!/has active endpoints/.test(failure.message) || Date.now() > deadline) throw failure;
      await sleep(250);
    }
  }

  /** Deletes one recorded resource the way the provider's Delete does. */
  private async deleteResource(record: RecordedResource, summary: StackDestroySummary): Promise<void> {
    const inputs = reveal(record.inputs) as Json;
    switch (record.type) {
      case CONTAINER:
        await this.deleteContainer(record);
        summary.removed.containers.push(String(record.outputs.name));
        break;
      case "docker:index/network:Network":
        await this.deleteNetwork(String(record.id));
        summary.removed.networks.push(String(record.outputs.name));
        break;
      case "docker:index/volume:Volume":
        await this.docker.getVolume(String(record.id)).remove({ force: true }).catch(ignoreStatus(404));
        summary.removed.volumes.push(String(record.outputs.name));
        break;
      case "docker:index/remoteImage:RemoteImage": {
        const name = str(inputs.name, `${record.name}.name`);
        if (inputs.keepLocally === true) {
          summary.kept.push(name);
        } else {
          // Untags by name without pruning untagged parents, as the provider's ImageRemove does.
          await this.docker
            .getImage(name)
            .remove({ force: inputs.forceRemove === true, noprune: true })
            .catch(ignoreStatus(404));
          summary.removed.images.push(name);
        }
        break;
      }
      case IMAGE:
        summary.kept.push(String(record.outputs.imageName));
        break;
      case LOCAL_COMMAND:
        await this.runLocalCommand(record.name, inputs, "delete");
        break;
      default:
        // Recorded only: nothing of it exists on the engine.
        break;
    }
  }

  /** Deletes a container as the provider does, from its recorded state, on destroy and on replacement alike. */
  private deleteContainer(record: RecordedResource): Promise<void> {
    return this.removeAsProvider(String(record.id), reveal(record.inputs) as Json);
  }

  /**
   * The provider's Delete: unless attached, stop within `destroyGraceSeconds` (0 without it: the
   * stop signal, then SIGKILL at once), then remove by force. A container that is already gone
   * fails the stop, as it fails the provider.
   */
  private async removeAsProvider(id: string, inputs: Json): Promise<void> {
    const container = this.docker.getContainer(id);
    if (inputs.attach !== true) await container.stop({ t: destroyGrace(inputs) }).catch(ignoreStatus(304));
    await container.remove({ force: true, v: inputs.removeVolumes !== false }).catch(ignoreStatus(404));
  }
}

// ---- container helpers --------------------------------------------------------------------------

/** Refuses what the realiser does not understand and what the provider itself refuses. */
function checkContainerInputs(logical: string, inputs: Json): void {
  for (const key of Object.keys(inputs)) {
    if (!CONTAINER_INPUTS.has(key) && !key.startsWith("__")) {
      throw new Error(
        `Container ${logical}: input '${key}' is not supported by the engine realiser ` +
          `(supported: ${[...CONTAINER_INPUTS].sort().join(", ")}); teach test/engine/support/realiser.ts about it`,
      );
    }
  }
  if (list(inputs.command, `${logical}.command`).some((part) => part === "")) {
    throw new Error(`Container ${logical}: values for command may not be empty (the provider refuses them)`);
  }
}

/** Input keys whose values differ (a missing key and an undefined value are the same). */
function changedKeys(before: Json, after: Json): string[] {
  const keys = new Set([...Object.keys(before), ...Object.keys(after)].filter((key) => !key.startsWith("__")));
  return [...keys].filter((key) => !sameJson(before[key], after[key]));
}

function replacementRefused(kind: string, logical: string): Error {
  return new Error(
    `${kind} ${logical}: its inputs changed, which replaces it; the provider deletes a named ${kind.toLowerCase()} before creating it ` +
      "again and Pulumi first replaces what depends on it. The engine realiser does not do that; do not rely on it in a test",
  );
}

function restartPolicy(logical: string, inputs: Json): { Name: string; MaximumRetryCount: number } {
  const restart = optStr(inputs.restart, `${logical}.restart`) ?? "no";
  if (!["no", "on-failure", "always", "unless-stopped"].includes(restart)) {
    throw new Error(`Container ${logical}: restart '${restart}' is not one of no, on-failure, always, unless-stopped`);
  }
  return {
    Name: restart,
    MaximumRetryCount: restart === "on-failure" ? (optNum(inputs.maxRetryCount, `${logical}.maxRetryCount`) ?? 0) : 0,
  };
}

function megabytesOrUnlimited(value: number): number {
  return value > 0 ? value * 1024 * 1024 : value;
}

/** Published ports; an unset address is the provider's default, 0.0.0.0. Tests reach them on 127.0.0.1. */
function portSpecs(logical: string, inputs: Json): PortSpec[] {
  return list(inputs.ports, `${logical}.ports`).map((p, i) => {
    const entry = p as Json;
    const at = `${logical}.ports[${i}]`;
    onlyKeys(`Container ${logical}: ports[${i}]`, entry, ["internal", "external", "ip", "protocol"]);
    const ip = optStr(entry.ip, `${at}.ip`) ?? "0.0.0.0";
    if (ip !== "127.0.0.1" && ip !== "0.0.0.0") {
      throw new Error(
        `Container ${logical}: ports[${i}].ip is '${ip}'; the test engine publishes only on 127.0.0.1 or 0.0.0.0`,
      );
    }
    return {
      internal: num(entry.internal, `${at}.internal`),
      external: optNum(entry.external, `${at}.external`),
      ip,
      protocol: optStr(entry.protocol, `${at}.protocol`) ?? "tcp",
    };
  });
}

/** The outputs the provider computes for a container, read back from the engine. */
function containerOutputs(
  state: Docker.ContainerInspectInfo,
  name: string,
  ports: PortSpec[],
  kept: Json | undefined,
): Json {
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
    // Logs are captured at creation only; a refresh keeps them.
    ...(kept?.containerLogs === undefined ? {} : { containerLogs: kept.containerLogs }),
  };
}

/**
 * Seconds the provider lets a container stop before removing it: `destroyGraceSeconds`, and none
 * at all without it (not `stopTimeout`, not Docker's default): the stop signal, then SIGKILL.
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
    onlyKeys(`Container ${logical}: uploads[${i}]`, entry, [
      "file",
      "content",
      "contentBase64",
      "executable",
      "permissions",
    ]);
    const file = str(entry.file, `${at}.file`);
    if (!path.posix.isAbsolute(file))
      throw new Error(`Container ${logical}: uploads[${i}].file '${file}' must be an absolute path`);
    const content = optStr(entry.content, `${at}.content`);
    const base64 = optStr(entry.contentBase64, `${at}.contentBase64`);
    if ((content === undefined) === (base64 === undefined)) {
      throw new Error(`Container ${logical}: uploads[${i}] needs exactly one of content or contentBase64`);
    }
    const body = content !== undefined ? Buffer.from(content, "utf8") : Buffer.from(base64 ?? "", "base64");
    const permissions = optStr(entry.permissions, `${at}.permissions`);
    if (permissions !== undefined && !/^0?[0-7]{3,4}$/.test(permissions)) {
      throw new Error(`Container ${logical}: uploads[${i}].permissions '${permissions}' is not an octal file mode`);
    }
    // `permissions` wins over `executable`, which means 0744 (executable by the owner only), not 0755.
    const mode =
      permissions !== undefined
        ? parseInt(permissions, 8)
        : optBool(entry.executable, `${at}.executable`)
          ? 0o744
          : 0o644;
    return tarOf([{ name: file.replace(/^\/+/, ""), body, mode }]);
  });
}

/**
 * Waits like the provider's `wait` (which polls until Docker reports the container healthy), but
 * gives up early once Docker reports it unhealthy (retries exhausted after the start period) or
 * stopped, rather than sitting out the whole timeout. Without a health check there is nothing to
 * wait for, and the provider fails.
 */
async function waitHealthy(container: Docker.Container, logical: string, timeoutSeconds: number): Promise<void> {
  const started = Date.now();
  const deadline = started + timeoutSeconds * 1000;
  for (;;) {
    const state = (await container.inspect()).State;
    const health = state.Health;
    if (health === undefined) {
      throw new Error(
        `Container ${logical}: wait is true but the container has no health check. Docker sets State.Health only for ` +
          "containers with one, and the provider's wait reads State.Health.Status unchecked: the plugin crashes (nil pointer dereference)",
      );
    }
    if (health.Status === "healthy") return;
    const gaveUp = Date.now() > deadline || health.Status === "unhealthy" || (!state.Running && !state.Restarting);
    if (gaveUp) {
      const lastCheck = health.Log?.at(-1);
      const logs = await container.logs({ stdout: true, stderr: true, tail: 20 }).catch(() => Buffer.alloc(0));
      throw new Error(
        `Container ${logical}: not healthy after ${Math.round((Date.now() - started) / 1000)}s of its ${timeoutSeconds}s wait (status ${state.Status}, health ${health.Status}, exit code ${state.ExitCode}); ` +
          `last health check: ${lastCheck === undefined ? "none" : `exit ${lastCheck.ExitCode}: ${lastCheck.Output.trim()}`}; ` +
          `last log lines:\n${demux(logs)}`,
      );
    }
    await sleep(500);
  }
}

/** Strips the 8-byte frame headers Docker puts on non-TTY log streams. */

/** Go duration ("5s", "1m30s", "500ms") to nanoseconds, as the Engine API wants them. */
export function goDuration(value: unknown, setting: string): number | undefined {
  if (value === undefined || value === "") return undefined;
  const text = str(value, setting);
  const units: Record<string, number> = { ns: 1, us: 1e3, µs: 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };
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
    docker.modem.followProgress(progress, (err: Error | null, lines: BuildLine[]) =>
      err ? reject(err) : resolve(lines),
    );
  });
}

/**
 * The build context as a tar stream, honouring .dockerignore like the docker CLI. A Dockerfile
 * outside the context travels inside the archive under a reserved name.
 */
async function packContext(
  context: string,
  dockerfile: string,
): Promise<{ stream: Readable; dockerfileInContext: string }> {
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
      return {
        hex: bytes.toString("hex"),
        b64Url: bytes.toString("base64url"),
        b64Std: bytes.toString("base64"),
        dec: BigInt(`0x${bytes.toString("hex")}`).toString(),
      };
    }
    case "tls:index/privateKey:PrivateKey":
      return keyPair(inputs);
    case "tls:index/selfSignedCert:SelfSignedCert":
    case "tls:index/locallySignedCert:LocallySignedCert":
      // Real certificates (openssl), so what serves TLS with them here can be checked for real.
      return { certPem: certificate(type, inputs), validityStartTime: new Date().toISOString() };
    case "tls:index/certRequest:CertRequest":
      return { certRequestPem: certificateRequest(inputs) };
    case "digitalocean:index/droplet:Droplet":
      return { ipv4Address: "203.0.113.10", ipv4AddressPrivate: "10.10.0.10", urn: "do:droplet:1", status: "active" };
    case "digitalocean:index/reservedIp:ReservedIp":
      return { ipAddress: "203.0.113.20", urn: "do:floatingip:203.0.113.20" };
    case "digitalocean:index/volume:Volume":
      return { urn: "do:volume:1", filesystemType: inputs.initialFilesystemType ?? "ext4" };
    case "digitalocean:index/sshKey:SshKey":
      return { fingerprint: "00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff" };
    case "digitalocean:index/containerRegistryDockerCredentials:ContainerRegistryDockerCredentials":
      return {
        dockerCredentials: JSON.stringify({ auths: { "registry.digitalocean.com": { auth: "bW9jazptb2Nr" } } }),
      };
    case "digitalocean:index/spacesBucket:SpacesBucket":
      return { name: nameText(inputs.name ?? "backups"), urn: "do:space:backups" };
    case "digitalocean:index/spacesKey:SpacesKey":
      // s3rver's own credentials: what the scenario's stand-in for Spaces accepts.
      return { accessKey: "S3RVER", secretKey: "S3RVER" };
    case "aws:ec2/instance:Instance":
      return {
        publicIp: "203.0.113.30",
        privateIp: "10.0.0.30",
        arn: "arn:aws:ec2:eu-central-1:123456789012:instance/i-0123456789abcdef0",
      };
    case "aws:ec2/eip:Eip":
      return { publicIp: "203.0.113.40", allocationId: "eipalloc-0123456789abcdef0" };
    case "aws:ecr/repository:Repository":
      return {
        repositoryUrl: `123456789012.dkr.ecr.eu-central-1.amazonaws.com/${nameText(inputs.name ?? "repo")}`,
        registryId: "123456789012",
      };
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
      return {
        ...inputs,
        id: "ami-0123456789abcdef0",
        imageId: "ami-0123456789abcdef0",
        architecture: "x86_64",
        name: "debian-12-amd64-mock",
      };
    case "aws:index/getRegion:getRegion":
      return {
        id: "eu-central-1",
        name: "eu-central-1",
        region: "eu-central-1",
        endpoint: "ec2.eu-central-1.amazonaws.com",
        description: "mock",
      };
    case "aws:index/getCallerIdentity:getCallerIdentity":
      return {
        id: "123456789012",
        accountId: "123456789012",
        arn: "arn:aws:iam::123456789012:user/mock",
        userId: "MOCK",
      };
    case "aws:ecr/getAuthorizationToken:getAuthorizationToken":
      return {
        id: "mock",
        userName: "AWS",
        password: randomBytes(16).toString("hex"),
        authorizationToken: "bW9jaw==",
        proxyEndpoint: "https://123456789012.dkr.ecr.eu-central-1.amazonaws.com",
        expiresAt: "2099-01-01T00:00:00Z",
      };
    case "digitalocean:index/getContainerRegistry:getContainerRegistry":
      return {
        ...inputs,
        id: nameText(inputs.name ?? "registry"),
        endpoint: `registry.digitalocean.com/${nameText(inputs.name ?? "registry")}`,
        serverUrl: "registry.digitalocean.com",
      };
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
  if (inputs.special !== false)
    alphabet += typeof inputs.overrideSpecial === "string" ? inputs.overrideSpecial : "!@#$%&*()-_=+[]{}<>:?";
  return Array.from({ length }, () => alphabet[randomInt(alphabet.length)]).join("");
}

/** A real key pair from node:crypto; the OpenSSH private key is given in PKCS#8 PEM, which ssh reads. */
/** The tls provider's `allowedUses` as openssl extensions: key usages and extended key usages. */
function usageExtensions(inputs: Json, ca: boolean): string[] {
  const uses = Array.isArray(inputs.allowedUses) ? inputs.allowedUses.map(String) : [];
  const keyUsage: Record<string, string> = {
    cert_signing: "keyCertSign",
    crl_signing: "cRLSign",
    digital_signature: "digitalSignature",
    key_encipherment: "keyEncipherment",
  };
  const extended: Record<string, string> = { server_auth: "serverAuth", client_auth: "clientAuth" };
  const lines = [`basicConstraints=critical,CA:${ca ? "TRUE" : "FALSE"}`];
  const usages = uses.filter((u) => keyUsage[u]).map((u) => keyUsage[u]);
  if (usages.length > 0) lines.push(`keyUsage=critical,${usages.join(",")}`);
  const ext = uses.filter((u) => extended[u]).map((u) => extended[u]);
  if (ext.length > 0) lines.push(`extendedKeyUsage=${ext.join(",")}`);
  return lines;
}

/** Runs openssl in a scratch directory holding `files`; returns the file `out` it wrote. */
function openssl(files: Record<string, string>, args: string[], out: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), "webstack-realiser-tls-"));
  try {
    for (const [name, content] of Object.entries(files)) writeFileSync(path.join(dir, name), content, { mode: 0o600 });
    execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
    return readFileSync(path.join(dir, out), "utf8");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function subjectOf(inputs: Json): string {
  const subject = (inputs.subject ?? {}) as Json;
  const parts = [
    typeof subject.organization === "string" ? `/O=${subject.organization}` : "",
    typeof subject.commonName === "string" ? `/CN=${subject.commonName}` : "",
  ];
  return parts.join("") || "/";
}

function certificateRequest(inputs: Json): string {
  const names = [
    ...(Array.isArray(inputs.dnsNames) ? inputs.dnsNames.map((n) => `DNS:${String(n)}`) : []),
    ...(Array.isArray(inputs.ipAddresses) ? inputs.ipAddresses.map((n) => `IP:${String(n)}`) : []),
  ];
  return openssl(
    { "key.pem": String(inputs.privateKeyPem) },
    [
      ...["req", "-new", "-key", "key.pem", "-subj", subjectOf(inputs), "-out", "csr.pem"],
      ...(names.length > 0 ? ["-addext", `subjectAltName=${names.join(",")}`] : []),
    ],
    "csr.pem",
  );
}

function certificate(type: string, inputs: Json): string {
  const days = String(Math.max(1, Math.round(Number(inputs.validityPeriodHours ?? 24) / 24)));
  if (type === "tls:index/selfSignedCert:SelfSignedCert") {
    return openssl(
      { "key.pem": String(inputs.privateKeyPem) },
      [
        ...["req", "-x509", "-new", "-key", "key.pem", "-subj", subjectOf(inputs), "-days", days, "-out", "cert.pem"],
        ...usageExtensions(inputs, inputs.isCaCertificate === true).flatMap((line) => ["-addext", line]),
      ],
      "cert.pem",
    );
  }
  return openssl(
    {
      "csr.pem": String(inputs.certRequestPem),
      "ca.pem": String(inputs.caCertPem),
      "ca-key.pem": String(inputs.caPrivateKeyPem),
      "ext.cnf": usageExtensions(inputs, false).join("\n") + "\n",
    },
    [
      ...["x509", "-req", "-in", "csr.pem", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-days", days],
      ...["-set_serial", `0x${randomBytes(8).toString("hex")}`, "-copy_extensions", "copyall"],
      ...["-extfile", "ext.cnf", "-out", "cert.pem"],
    ],
    "cert.pem",
  );
}

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
    publicKeyFingerprintMd5: createHash("md5")
      .update(blob)
      .digest("hex")
      .replace(/(..)(?!$)/g, "$1:"),
  };
}

function opensshPublicKey(key: KeyObject): string {
  const sshString = (b: Buffer) =>
    Buffer.concat([Buffer.from([0, 0, 0, 0].map((_, i) => (b.length >>> (24 - 8 * i)) & 0xff)), b]);
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
  if (typeof value !== "string" || value === "")
    throw new Error(`${setting}: expected a non-empty string, got ${describe(value)}`);
  return value;
}

function optStr(value: unknown, setting: string): string | undefined {
  return value === undefined || value === null || value === "" ? undefined : str(value, setting);
}

function num(value: unknown, setting: string): number {
  if (typeof value !== "number" || !Number.isFinite(value))
    throw new Error(`${setting}: expected a number, got ${describe(value)}`);
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
  if (typeof value !== "object" || Array.isArray(value))
    throw new Error(`${setting}: expected a map of strings, got ${describe(value)}`);
  return Object.fromEntries(
    Object.entries(value).map(([k, v]) => [k, typeof v === "string" ? v : str(v, `${setting}.${k}`)]),
  );
}

/** Names the type of a bad value without printing it (it may be a secret). */
function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  return typeof value === "string" ? "an empty string" : typeof value;
}

/** A name as text: names are strings, and anything else shows as Node prints it, not as "[object Object]". */
function nameText(value: unknown): string {
  return typeof value === "string" ? value : inspect(value);
}

/** Refuses keys the realiser does not understand, so a new setting is never silently ignored. */
function onlyKeys(what: string, value: Json, allowed: string[]): void {
  const unknown = Object.keys(value).filter((key) => !allowed.includes(key) && !key.startsWith("__"));
  if (unknown.length > 0) {
    throw new Error(
      `${what}: ${unknown.join(", ")} not supported by the engine realiser (supported: ${allowed.join(", ")}); teach test/engine/support/realiser.ts about it`,
    );
  }
}

/** Splits a provider reference, `<provider URN>::<provider id>`, where the URN ends `::<qualified type>::<name>`. */
function parseProviderRef(ref: string): { type: string; name: string; id: string } {
  const parts = ref.split("::");
  return { id: parts.at(-1) ?? "", name: parts.at(-2) ?? "", type: (parts.at(-3) ?? "").split("$").at(-1) ?? "" };
}

// dockerode rejects with Errors that carry the Engine API's status.
type EngineError = Error & { statusCode?: number };

/** A catch handler that tolerates the given Engine API statuses and rethrows anything else. */
function ignoreStatus(...statuses: number[]): (err: EngineError) => void {
  return (err) => {
    if (err.statusCode === undefined || !statuses.includes(err.statusCode)) throw err;
  };
}

/** A catch handler that turns 404 into `value` and rethrows anything else. */
function notFound<T>(value: T): (err: EngineError) => T {
  return (err) => {
    if (err.statusCode !== 404) throw err;
    return value;
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
