// Runs the real program (index.ts) under Pulumi's mocks and records what it registers.
import * as pulumi from "@pulumi/pulumi";
import { createHash } from "node:crypto";
import * as path from "node:path";
import { parseConfig } from "../../../components/config";
import { buildWebstack } from "../../../components/program";
import { unhandledRejectionsOf } from "../../support/rejections";

export interface Registered {
  type: string;
  name: string;
  /** Inputs with secret markers removed. */
  inputs: Record<string, unknown>;
  /** Inputs as the mock monitor received them: secrets still wrapped (see `isSecretValue`). */
  raw: Record<string, unknown>;
  /** Position in registration order. */
  order: number;
  /** The `protect` option the resource was registered with (MockResourceArgs leaves options out). */
  protect: boolean;
  /** Its `retainOnDelete` option: the engine leaves it in the cloud when the stack lets go of it. */
  retainOnDelete: boolean;
  /** The URN the mock monitor gave the resource. */
  urn: string;
  /** The state newResource returned (inputs plus mocked outputs), secrets still wrapped. */
  outputs: Record<string, unknown>;
  /** URNs of the resources it was registered depending on (`dependsOn` and those its inputs came from). */
  dependencies: string[];
  /** Its `replacementTrigger` option as the engine would diff it, if any. */
  replacementTrigger: unknown;
  /** Its `ignoreChanges` option. */
  ignoreChanges: string[];
  /** The provider reference it was registered with ("<urn>::<id>"), or "" for the default provider. */
  provider: string;
  /** A component's `registerOutputs`, as the engine stores them (secrets revealed); undefined before it is called. */
  componentOutputs?: Record<string, unknown>;
}

/** The host port the mocked engine "picks" for a port published without `external`. */
export const MOCK_BOUND_PORT = 49153;

// The SDK types a mock's inputs as any; they are always the resource's or the invoke's property map.
type Inputs = Record<string, unknown>;

const hex = (text: string, length = 64) => createHash("sha256").update(text).digest("hex").slice(0, length);

/** How a one-off container ends: its exit code and what it logged. */
export interface OneOffEnding {
  exitCode: number;
  logs: string;
}

function oneOffOutputs(ending: OneOffEnding, keepsLogs: boolean): Record<string, unknown> {
  return keepsLogs ? { exitCode: ending.exitCode, containerLogs: ending.logs } : { exitCode: ending.exitCode };
}

/** Deterministic outputs, so two evaluations of one config are comparable byte for byte. */
export class RecordingMocks implements pulumi.runtime.Mocks {
  readonly resources: Registered[] = [];
  private readonly vmId: string | undefined;

  private readonly ending: (name: string) => OneOffEnding;

  /**
   * `vmId`: the id the droplet or EC2 instance gets (default "123456" / "i-0123456789abcdef0").
   * `exitCode`: what a one-off container (`attach`) ends with (default 0), or a function of its
   * container name that gives its exit code and log.
   */
  constructor(options: { vmId?: string; exitCode?: number | ((name: string) => OneOffEnding) } = {}) {
    this.vmId = options.vmId;
    const { exitCode } = options;
    this.ending = typeof exitCode === "function" ? exitCode : () => ({ exitCode: exitCode ?? 0, logs: "" });
  }
  /** Invokes, with the provider reference each was made with ("" for the default provider). */
  readonly calls: { token: string; inputs: Record<string, unknown>; provider: string }[] = [];
  /** Options of registrations on their way to newResource, by type and name (see watchRegistrations). */
  private readonly registering = new Map<string, RegistrationOptions>();

  /** Called by the mock monitor's register hook just before it calls newResource. */
  noteRegistration(type: string, name: string, options: RegistrationOptions): void {
    this.registering.set(`${type}::${name}`, options);
  }

  /** Called by the mock monitor's hook when a component registers its outputs. */
  noteComponentOutputs(urn: string, outputs: Record<string, unknown>): void {
    const component = this.resources.find((r) => r.urn === urn);
    if (component === undefined) throw new Error(`outputs registered for an unknown resource ${urn}`);
    component.componentOutputs = reveal(outputs) as Inputs;
  }

  newResource(args: pulumi.runtime.MockResourceArgs): { id: string | undefined; state: Record<string, unknown> } {
    const inputs = args.inputs as Inputs;
    const options = this.registering.get(`${args.type}::${args.name}`);
    this.registering.delete(`${args.type}::${args.name}`);
    const registered: Registered = {
      type: args.type,
      name: args.name,
      inputs: reveal(inputs) as Inputs,
      raw: inputs,
      order: this.resources.length,
      protect: options?.protect ?? false,
      retainOnDelete: options?.retainOnDelete ?? false,
      urn: options?.urn ?? "",
      outputs: {},
      dependencies: options?.dependencies ?? [],
      replacementTrigger: options?.replacementTrigger,
      ignoreChanges: options?.ignoreChanges ?? [],
      provider: options?.provider ?? "",
    };
    this.resources.push(registered);
    // VM ids look like the clouds' (DigitalOcean's are numbers the program converts); everything
    // else gets a readable id.
    const id =
      args.type === "digitalocean:index/droplet:Droplet"
        ? (this.vmId ?? "123456")
        : args.type === "aws:ec2/instance:Instance"
          ? (this.vmId ?? "i-0123456789abcdef0")
          : args.type === "aws:ebs/volume:Volume"
            ? "vol-0123456789abcdef0"
            : args.type.startsWith("pulumi:providers:")
              ? `${args.name}-provider-id`
              : `${args.name}-id`;
    registered.outputs = {
      ...inputs,
      ...outputsOf({ type: args.type, name: args.name, inputs: reveal(inputs) as Inputs }),
      // Like the provider: a container it waited for (attach) reports how it ended, and its log
      // when asked to keep it.
      ...(args.type === "docker:index/container:Container" && inputs.attach === true
        ? oneOffOutputs(this.ending(String(inputs.name)), inputs.logs === true)
        : {}),
    };
    return { id, state: registered.outputs };
  }

  call(args: pulumi.runtime.MockCallArgs): Record<string, unknown> {
    const inputs = args.inputs as Inputs;
    this.calls.push({ token: args.token, inputs, provider: args.provider ?? "" });
    switch (args.token) {
      case "aws:route53/getZone:getZone":
        return { zoneId: "Z0123456789ABCDEFGHIJ", name: String(inputs.name) };
      case "aws:ec2/getAmi:getAmi":
        return { id: "ami-0123456789abcdef0", name: "debian-12-amd64-20260101-0000", architecture: "x86_64" };
      case "aws:ecr/getAuthorizationToken:getAuthorizationToken":
        return {
          userName: "AWS",
          password: "ecr-token",
          proxyEndpoint: "https://123456789012.dkr.ecr.us-east-1.amazonaws.com",
        };
      case "digitalocean:index/getContainerRegistry:getContainerRegistry":
        return {
          name: inputs.name,
          endpoint: `registry.digitalocean.com/${String(inputs.name)}`,
          serverUrl: "registry.digitalocean.com",
        };
      default:
        throw new Error(`unexpected invoke ${args.token}`);
    }
  }

  ofType(type: string): Registered[] {
    return this.resources.filter((r) => r.type === type);
  }

  named(name: string): Registered {
    const found = this.resources.find((r) => r.name === name);
    if (found === undefined)
      throw new Error(`no resource named ${name}; have ${this.resources.map((r) => r.name).join(", ")}`);
    return found;
  }
}

// How the SDK marks a secret value on the wire (rpc.specialSigKey / specialSecretSig).
const SIG_KEY = "4dabf18193072939515e22adb298388d";
const SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270";

/** Whether a raw input value arrived as a Pulumi secret. */
export function isSecretValue(value: unknown): boolean {
  return typeof value === "object" && value !== null && (value as Record<string, unknown>)[SIG_KEY] === SECRET_SIG;
}

function reveal(value: unknown): unknown {
  if (isSecretValue(value)) return reveal((value as { value: unknown }).value);
  if (Array.isArray(value)) return value.map(reveal);
  if (typeof value === "object" && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, reveal(v)]));
  }
  return value;
}

function outputsOf(args: { type: string; name: string; inputs: Inputs }): Record<string, unknown> {
  const name = args.name;
  switch (args.type) {
    case "random:index/randomPassword:RandomPassword":
      return { result: `pw${hex(name, 30)}` };
    case "random:index/randomId:RandomId":
      return { hex: hex(name, 8) };
    case "tls:index/privateKey:PrivateKey":
      return {
        privateKeyPem: `-----BEGIN PRIVATE KEY-----\n${hex(name)}\n-----END PRIVATE KEY-----\n`,
        privateKeyOpenssh: `-----BEGIN OPENSSH PRIVATE KEY-----\n${hex(name)}\n-----END OPENSSH PRIVATE KEY-----\n`,
        publicKeyOpenssh: `ssh-ed25519 ${hex(name, 40)}\n`,
      };
    case "tls:index/selfSignedCert:SelfSignedCert":
    case "tls:index/locallySignedCert:LocallySignedCert":
      return { certPem: `-----BEGIN CERTIFICATE-----\n${hex(name)}\n-----END CERTIFICATE-----\n` };
    case "tls:index/certRequest:CertRequest":
      return {
        certRequestPem: `-----BEGIN CERTIFICATE REQUEST-----\n${hex(name)}\n-----END CERTIFICATE REQUEST-----\n`,
      };
    case "docker:index/image:Image":
      // Pushed: the repository and the manifest digest; built on the host only: the image id.
      return args.inputs.skipPush === false
        ? { repoDigest: `${String(args.inputs.imageName).replace(/:[^:/]+$/, "")}@sha256:${hex(name)}` }
        : { repoDigest: `sha256:${hex(name)}` };
    case "docker:index/container:Container": {
      // Like the provider: a port published without `external` reports the one Docker picked.
      const ports = args.inputs.ports as { external?: number }[] | undefined;
      return ports === undefined
        ? {}
        : { ports: ports.map((p) => ({ ...p, external: p.external ?? MOCK_BOUND_PORT })) };
    }
    case "docker:index/remoteImage:RemoteImage":
      return { imageId: `sha256:${hex(`${name}:${String(args.inputs.name)}`)}` };
    case "command:remote:Command":
      return { stdout: "28.2.2\n", stderr: "" };
    case "digitalocean:index/reservedIp:ReservedIp":
      return { ipAddress: "203.0.113.10" };
    case "digitalocean:index/droplet:Droplet":
      return { ipv4Address: "198.51.100.5" };
    case "digitalocean:index/sshKey:SshKey":
      return { fingerprint: `fp:${hex(name, 32)}` };
    case "digitalocean:index/containerRegistryDockerCredentials:ContainerRegistryDockerCredentials":
      return {
        dockerCredentials: JSON.stringify({
          auths: { "registry.digitalocean.com": { auth: Buffer.from("docr-user:docr-token").toString("base64") } },
        }),
      };
    case "digitalocean:index/spacesBucket:SpacesBucket":
      return { name: String(args.inputs.name) };
    case "digitalocean:index/spacesKey:SpacesKey":
      return { accessKey: `DO${hex(name, 18).toUpperCase()}`, secretKey: `sk${hex(`${name}:secret`, 40)}` };
    case "aws:s3/bucket:Bucket": {
      const prefix = args.inputs.bucketPrefix;
      const bucket = `${typeof prefix === "string" ? prefix : name}${hex(name, 12)}`;
      return { bucket, arn: `arn:aws:s3:::${bucket}` };
    }
    case "aws:iam/accessKey:AccessKey":
      return { secret: `sk${hex(`${name}:secret`, 40)}` };
    case "aws:ec2/eip:Eip":
      return { publicIp: "203.0.113.20", allocationId: "eipalloc-0123456789abcdef0" };
    case "aws:ecr/repository:Repository":
      return {
        arn: `arn:aws:ecr:us-east-1:123456789012:repository/${String(args.inputs.name)}`,
        registryId: "123456789012",
        repositoryUrl: `123456789012.dkr.ecr.us-east-1.amazonaws.com/${String(args.inputs.name)}`,
      };
    default:
      return {};
  }
}

export interface ProgramRun {
  mocks: RecordingMocks;
  /** The program's stack outputs, resolved. */
  outputs: Record<string, unknown>;
  /** Names of the stack outputs that are Pulumi secrets. */
  secretOutputs: string[];
}

interface RegistrationOptions {
  protect: boolean;
  retainOnDelete: boolean;
  urn: string;
  dependencies: string[];
  replacementTrigger: unknown;
  ignoreChanges: string[];
  provider: string;
}

interface RegisterRequest {
  getType(): string;
  getName(): string;
  getParent(): string;
  getProtect(): boolean;
  getRetainondelete(): boolean | undefined;
  getDependenciesList(): string[];
  getReplacementTrigger(): { toJavaScript(): unknown } | undefined;
  getIgnorechangesList(): string[];
  getProvider(): string;
}
interface MockMonitorInternals {
  registerResource(req: RegisterRequest, callback: (err: unknown, response: unknown) => void): void;
  registerResourceOutputs(
    req: { getUrn(): string; getOutputs(): { toJavaScript(): Record<string, unknown> } | undefined },
    callback: (err: unknown, response: unknown) => void,
  ): void;
  newUrn(parent: string, type: string, name: string): string;
}

/**
 * Passes each registration's `protect` and `retainOnDelete` options, URN, dependencies,
 * replacement trigger, ignored changes and provider to the mocks: the mock monitor receives the
 * whole register request but hands newResource only type, name and inputs. Components'
 * registered outputs are kept too.
 */
export function watchRegistrations(mocks: RecordingMocks): void {
  const monitor = pulumi.runtime.getMonitor() as unknown as MockMonitorInternals;
  const register = monitor.registerResource.bind(monitor);
  monitor.registerResource = (req, callback) => {
    mocks.noteRegistration(req.getType(), req.getName(), {
      protect: req.getProtect(),
      retainOnDelete: req.getRetainondelete() ?? false,
      urn: monitor.newUrn(req.getParent(), req.getType(), req.getName()),
      dependencies: req.getDependenciesList(),
      replacementTrigger: req.getReplacementTrigger()?.toJavaScript(),
      ignoreChanges: req.getIgnorechangesList(),
      provider: req.getProvider(),
    });
    register(req, callback);
  };
  const registerOutputs = monitor.registerResourceOutputs.bind(monitor);
  monitor.registerResourceOutputs = (req, callback) => {
    mocks.noteComponentOutputs(req.getUrn(), req.getOutputs()?.toJavaScript() ?? {});
    registerOutputs(req, callback);
  };
}

const ROOT = path.join(__dirname, "..", "..", "..");
const INDEX = path.join(ROOT, "index.ts");
const APP_DIR = path.join(ROOT, "app");

/**
 * Evaluates index.ts with the given `webstack:` settings (keys without the prefix) under fresh
 * mocks, waits for every registration, and returns what was registered. Throws what the program throws.
 */
export async function runProgram(
  settings: Record<string, string>,
  options: { secretKeys?: string[]; stack?: string; mocks?: RecordingMocks } = {},
): Promise<ProgramRun> {
  return withoutStackTraces(() => evaluate(settings, options));
}

async function evaluate(
  settings: Record<string, string>,
  options: { secretKeys?: string[]; stack?: string; mocks?: RecordingMocks },
): Promise<ProgramRun> {
  const mocks = options.mocks ?? new RecordingMocks();
  await pulumi.runtime.setMocks(mocks, "webstack", options.stack ?? "test", false);
  watchRegistrations(mocks);
  const config = Object.fromEntries(Object.entries(settings).map(([k, v]) => [`webstack:${k}`, v]));
  pulumi.runtime.setAllConfig(
    config,
    (options.secretKeys ?? []).map((k) => `webstack:${k}`),
  );
  delete require.cache[require.resolve(INDEX)];
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const program = require(INDEX) as Record<string, unknown>;
  const outputs: Record<string, unknown> = {};
  const secretOutputs: string[] = [];
  for (const [key, value] of Object.entries(program)) {
    outputs[key] = pulumi.Output.isInstance(value) ? await promiseOf(value) : value;
    if (pulumi.Output.isInstance(value) && (await pulumi.isSecret(value))) secretOutputs.push(key);
  }
  await pulumi.runtime.disconnect();
  return { mocks, outputs, secretOutputs };
}

/** Runs the program as runProgram does and returns what made it fail (see unhandledRejectionsOf). */
export async function programFailures(
  settings: Record<string, string>,
  options: { mocks?: RecordingMocks; stack?: string } = {},
): Promise<{ mocks: RecordingMocks; failures: Error[] }> {
  const mocks = options.mocks ?? new RecordingMocks();
  const failures = await unhandledRejectionsOf(() => runProgram(settings, { mocks, stack: options.stack }), 200);
  return { mocks, failures };
}

/**
 * One evaluation per settings, shared by a test file's tests that only read what it registered:
 * each evaluation of the whole program costs about half a second. What it registered is frozen,
 * so a test that sorts or edits it in place fails instead of changing what the next test sees.
 */
const evaluations = new Map<string, Promise<ProgramRun>>();
export function evaluated(settings: Record<string, string>): Promise<ProgramRun> {
  const key = JSON.stringify(settings);
  let run = evaluations.get(key);
  if (run === undefined) {
    run = runProgram(settings).then((done) => {
      deepFreeze(done.mocks.resources);
      deepFreeze(done.outputs);
      return done;
    });
    evaluations.set(key, run);
  }
  return run;
}
function deepFreeze(value: unknown): void {
  if (typeof value !== "object" || value === null || Object.isFrozen(value)) return;
  Object.freeze(value);
  for (const inner of Object.values(value)) deepFreeze(inner);
}

/** Whether a resource was registered depending on another (`dependsOn`, or an input from it). */
export const dependsOn = (resource: Registered, on: Registered): boolean => resource.dependencies.includes(on.urn);

/** The value of an Output, awaited. */
export function promiseOf<T>(output: pulumi.Output<T>): Promise<T> {
  // The SDK's Output keeps its value's promise (outside its public types): unlike a callback given
  // to apply, it rejects when the value fails, so a failed output fails the test instead of hanging it.
  return (output as unknown as { promise(): Promise<T> }).promise();
}

/**
 * Builds the program from raw settings through buildWebstack, so a test can pass per-child
 * transform hooks and see the arguments and options exactly as the components made them.
 */
export async function runBuild(
  settings: Record<string, string>,
  transform: NonNullable<Parameters<typeof buildWebstack>[2]["transform"]>,
): Promise<{ mocks: RecordingMocks; built: ReturnType<typeof buildWebstack> }> {
  return withoutStackTraces(async () => {
    const mocks = new RecordingMocks();
    await pulumi.runtime.setMocks(mocks, "webstack", "test", false);
    watchRegistrations(mocks);
    const built = buildWebstack(parseConfig(settings), {}, { stack: "test", appDir: APP_DIR, transform });
    await promiseOf(built.stack.url);
    await pulumi.runtime.disconnect();
    return { mocks, built };
  });
}

/**
 * Runs one evaluation of the program with V8's stack traces off. The SDK records a stack trace for
 * every promise it makes (runtime/debuggable.js), and under tsx each trace is mapped through the
 * source maps: that was most of an evaluation's time (about 1 s, 0.13 s without). Errors raised
 * inside keep their messages; WEBSTACK_TEST_STACKS=1 keeps the traces when one is needed to debug.
 */
export async function withoutStackTraces<T>(work: () => Promise<T>): Promise<T> {
  if (process.env.WEBSTACK_TEST_STACKS === "1") return work();
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return await work();
  } finally {
    Error.stackTraceLimit = limit;
  }
}
