// The webstack CrossGuard policies. This module only defines them: policy/index.ts serves them
// (constructing a PolicyPack starts the policy server), and the tests import them from here.
//
// Each check is a pure function from a resource's properties to violation messages; the policy
// objects below only route resources to those functions. Resource types are matched by their
// type tokens, so the pack never loads the provider SDKs.
import * as policySdk from "@pulumi/policy";
import {
  PolicyConfigSchema,
  PolicyResource,
  ReportViolation,
  ResourceValidationArgs,
  ResourceValidationPolicy,
  Secret,
  StackValidationPolicy,
} from "@pulumi/policy";
import * as pulumi from "@pulumi/pulumi";
import { isThrowawayStack } from "../components/specs/stacks";
import * as path from "node:path";

/** Resource properties as a policy receives them. */
export type Props = Record<string, unknown>;

export const TYPES = {
  container: "docker:index/container:Container",
  remoteImage: "docker:index/remoteImage:RemoteImage",
  image: "docker:index/image:Image",
  dockerVolume: "docker:index/volume:Volume",
  droplet: "digitalocean:index/droplet:Droplet",
  doFirewall: "digitalocean:index/firewall:Firewall",
  doVolume: "digitalocean:index/volume:Volume",
  ec2Instance: "aws:ec2/instance:Instance",
  securityGroup: "aws:ec2/securityGroup:SecurityGroup",
  securityGroupRule: "aws:ec2/securityGroupRule:SecurityGroupRule",
  securityGroupIngressRule: "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
  ebsVolume: "aws:ebs/volume:Volume",
} as const;

/** The Docker label every webstack container and volume carries, naming what it is. */
export const ROLE_LABEL = "webstack.role";

// @pulumi/policy exports these at runtime but strips their types as internal. They are the only
// public way to recognise a value that is unknown during preview.
const { unknownCheckingProxy, UnknownValueError } = policySdk as unknown as {
  unknownCheckingProxy: <T>(value: T) => T;
  UnknownValueError: new (...args: never[]) => Error;
};

/** Whether a raw property value is the engine's placeholder for a value known only after the update. */
export function isUnknown(value: unknown): boolean {
  try {
    void unknownCheckingProxy({ value }).value;
    return false;
  } catch (e) {
    if (e instanceof UnknownValueError) return true;
    throw e;
  }
}

const list = (value: unknown): unknown[] => (Array.isArray(value) ? value : []);
const record = (value: unknown): Props =>
  typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Props) : {};
const text = (value: unknown): string | undefined => (typeof value === "string" ? value : undefined);
const show = (value: unknown): string => JSON.stringify(value);
// Scalars read as themselves; anything else as JSON, which says more than "[object Object]".
const scalar = (value: unknown): string =>
  typeof value === "object" && value !== null ? JSON.stringify(value) : String(value);

/** The value of a Docker label in the provider's `[{ label, value }]` form. */
export function labelValue(labels: unknown, name: string): string | undefined {
  for (const entry of list(labels)) {
    const { label, value } = record(entry);
    if (label === name) return text(value);
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// only-nginx-publishes-ports

/** A container other than nginx must publish no port: nginx is the stack's only way in. */
export function publishedPortProblems(resource: string, props: Props): string[] {
  const ports = list(props.ports);
  if (ports.length === 0) return [];
  const role = labelValue(props.labels, ROLE_LABEL);
  if (role === "nginx") return [];
  const published = ports.map((p) => {
    const { internal, external, ip } = record(p);
    return `${scalar(ip ?? "0.0.0.0")}:${scalar(external ?? "(any)")}->${scalar(internal)}`;
  });
  return [
    `container "${resource}" publishes ports ${published.join(", ")} but its ${ROLE_LABEL} label is ` +
      `${role === undefined ? "missing" : show(role)}: only the nginx container (${ROLE_LABEL} "nginx") may publish ports`,
  ];
}

// ---------------------------------------------------------------------------------------------
// no-privileged-containers

const DOCKER_SOCKETS = ["/var/run/docker.sock", "/run/docker.sock"];

/** Whether mounting this host path gives the container the Docker socket (the path or a directory above it). */
export function exposesDockerSocket(hostPath: string): boolean {
  const normalized = path.posix.normalize(hostPath).replace(/\/+$/, "") || "/";
  return DOCKER_SOCKETS.some(
    (socket) => socket === normalized || socket.startsWith(`${normalized === "/" ? "" : normalized}/`),
  );
}

/** Each way a container could take over its host: privileged mode, the host's namespaces, the Docker socket. */
export function privilegeProblems(resource: string, props: Props): string[] {
  const problems: string[] = [];
  const where = `container "${resource}"`;
  if (props.privileged === true) {
    problems.push(
      `${where} sets privileged to true: containers must not be privileged (leave privileged unset or false)`,
    );
  }
  for (const key of ["networkMode", "pidMode", "ipcMode"] as const) {
    if (props[key] === "host") {
      problems.push(
        `${where} sets ${key} to "host": containers must not share the host's namespaces (any ${key} but "host")`,
      );
    }
  }
  list(props.volumes).forEach((v, i) => {
    const hostPath = text(record(v).hostPath);
    if (hostPath !== undefined && exposesDockerSocket(hostPath)) {
      problems.push(
        `${where} mounts the Docker socket: volumes[${i}].hostPath is ${show(hostPath)}: no host path may be or contain ${DOCKER_SOCKETS.join(" or ")}`,
      );
    }
  });
  list(props.mounts).forEach((m, i) => {
    const { type, source } = record(m);
    const hostPath = text(source);
    if (type === "bind" && hostPath !== undefined && exposesDockerSocket(hostPath)) {
      problems.push(
        `${where} mounts the Docker socket: mounts[${i}].source is ${show(hostPath)}: no host path may be or contain ${DOCKER_SOCKETS.join(" or ")}`,
      );
    }
  });
  return problems;
}

// ---------------------------------------------------------------------------------------------
// memory-limits

/**
 * A container that runs for good (not a one-off run the provider waits for) has a memory limit and
 * no swap past it, so one runaway process is stopped in its container instead of exhausting the host.
 */
export function memoryLimitProblems(resource: string, props: Props): string[] {
  const oneOff = props.attach === true || props.mustRun === false;
  const { memory, memorySwap } = props;
  if (oneOff || isUnknown(memory) || isUnknown(memorySwap)) return [];
  const where = `container "${resource}"`;
  if (typeof memory !== "number" || memory <= 0) {
    return [
      `${where} has no memory limit (memory is ${show(memory ?? "unset")}): a long-running container must set memory in MB (webstack:limits)`,
    ];
  }
  if (memorySwap !== memory) {
    return [
      `${where} may swap past its memory limit (memorySwap is ${show(memorySwap ?? "unset")}): set memorySwap equal to memory (${memory})`,
    ];
  }
  return [];
}

// ---------------------------------------------------------------------------------------------
// pinned-images

const IMAGE_ID = /^sha256:[a-f0-9]{64}$/;
const DIGEST = /@sha256:[a-f0-9]{64}$/;

/** A tag that is a content hash, as the stack tags the app image it builds (`webstack-dev-app:<revision>`). */
const CONTENT_HASH_TAG = /^[a-f0-9]{12,64}$/;

/**
 * Whether an image reference names one image for good: a digest (`…@sha256:…`), an image id the
 * stack produced (`sha256:…`), a content-hash tag, or a tag that names a version — one that
 * contains a digit and is not `latest` (`1.28.0-bookworm`, `22`, `v2`; not `latest`, `bookworm`,
 * `alpine` or no tag).
 */
export function isPinnedImage(reference: string): boolean {
  if (IMAGE_ID.test(reference) || DIGEST.test(reference)) return true;
  const lastPart = reference.slice(reference.lastIndexOf("/") + 1).split("@")[0];
  const colon = lastPart.indexOf(":");
  if (colon < 0) return false;
  const tag = lastPart.slice(colon + 1);
  return CONTENT_HASH_TAG.test(tag) || (tag.toLowerCase() !== "latest" && /[0-9]/.test(tag));
}

const PIN_HINT =
  "use a tag that names a version (contains a digit, not latest) such as nginx:1.28.0-bookworm, or a digest (@sha256:…)";

/** What the stack's builds take their base image from, as the violations name them. */
const BASE_IMAGES: Record<string, string> = {
  NODE_IMAGE: " (the app's base image)",
  POSTGRES_IMAGE: " (Postgres's base image)",
};

/** Every image reference the stack pulls, runs or builds from. */
export function imagePinProblems(type: string, resource: string, props: Props): string[] {
  const check = (what: string, setting: string, reference: unknown): string[] => {
    const ref = text(reference);
    if (ref === undefined || isPinnedImage(ref)) return [];
    return [`${what} "${resource}" ${setting} is ${show(ref)}, which is not pinned: ${PIN_HINT}`];
  };
  switch (type) {
    case TYPES.remoteImage:
      return check("remote image", "name", props.name);
    case TYPES.container:
      return check("container", "image", props.image);
    case TYPES.image: {
      // Every base image a build is given: the app's (NODE_IMAGE) and Postgres's (POSTGRES_IMAGE).
      const args = record(record(props.build).args);
      return Object.keys(args)
        .filter((name) => name.endsWith("_IMAGE"))
        .sort()
        .flatMap((name) => check("image", `build.args.${name}${BASE_IMAGES[name] ?? ""}`, args[name]));
    }
    default:
      return [];
  }
}

// ---------------------------------------------------------------------------------------------
// secret-environment

/** Variable names that carry secrets by convention. `*_AUTH` catches REDISCLI_AUTH, Redis's password. */
const SECRET_NAME = /PASSWORD|PASSWD|TOKEN|SECRET|_KEY$|_AUTH$/i;
/** A URL with a password in it: `scheme://user:password@host`, the user possibly empty. */
const CREDENTIAL_URL = /^[a-z][a-z0-9+.-]*:\/\/[^/?#@\s]*:[^/?#@\s]*@/i;

/** One container environment entry (`NAME=value`); `entry` is undefined while it is unknown. */
export interface EnvEntry {
  entry: string | undefined;
  secret: boolean;
}

/**
 * Whether a variable must be a Pulumi secret: its name looks secret or its value holds credentials.
 * `NAME_FILE=/path` (the official images' convention, and webstack's) names where a secret is,
 * which is no secret.
 */
export function needsSecret(entry: string): boolean {
  const eq = entry.indexOf("=");
  const name = eq < 0 ? entry : entry.slice(0, eq);
  const value = eq < 0 ? "" : entry.slice(eq + 1);
  if (/_FILE$/i.test(name) && /^\/[^\s:@]*$/.test(value)) return false;
  return SECRET_NAME.test(name) || CREDENTIAL_URL.test(value);
}

const SECRET_RULE =
  "variables named *PASSWORD*, *PASSWD*, *TOKEN*, *SECRET*, *_KEY or *_AUTH, and any holding a URL with a password, must be Pulumi secrets (pulumi.secret() or `pulumi config set --secret`)";

export function secretEnvironmentProblems(resource: string, envs: readonly EnvEntry[]): string[] {
  return envs
    .filter((e) => !e.secret)
    .map((e) => e.entry)
    .filter((entry): entry is string => entry !== undefined && needsSecret(entry))
    .map((entry) => `container "${resource}" has ${entry.split("=")[0]} in plaintext envs: ${SECRET_RULE}`);
}

/**
 * A container's environment as the remediation pass receives it. @pulumi/policy hands
 * `remediateResource` its properties with secrets kept as `Secret` objects behind a proxy that
 * unwraps them on read; the property descriptors still hold them. (`validateResource` gets
 * secrets already unwrapped, indistinguishable from plaintext.)
 */
export function environmentOf(props: Props): EnvEntry[] {
  const raw: unknown = Object.getOwnPropertyDescriptor(props, "envs")?.value;
  const wholeListSecret = raw instanceof Secret;
  const entries: unknown = wholeListSecret ? raw.value : raw;
  if (!Array.isArray(entries)) return [];
  return entries.map((item: unknown) => {
    const value: unknown = item instanceof Secret ? item.value : item;
    return {
      entry: typeof value === "string" && !isUnknown(value) ? value : undefined,
      secret: wholeListSecret || item instanceof Secret,
    };
  });
}

/** Names of variables that look secret, from what `validateResource` can see (names, not secrecy). */
export function secretLookingNames(props: Props): string[] {
  return list(props.envs)
    .map(text)
    .filter((e): e is string => e !== undefined && needsSecret(e))
    .map((e) => e.split("=")[0]);
}

// ---------------------------------------------------------------------------------------------
// admin-ports-not-public

const ADMIN_PORTS = [
  { port: 22, what: "SSH" },
  { port: 2376, what: "the Docker API" },
] as const;

/** Whether a CIDR admits every address of its family (0.0.0.0/0, ::/0). */
export function isAnywhere(cidr: string): boolean {
  return /\/0+$/.test(cidr.trim());
}

/** A DigitalOcean port range: "22", "8000-9000", or all ports ("all", "0", unset). */
export function doPortRange(range: unknown): [number, number] | undefined {
  const value = range === undefined || range === null ? "all" : scalar(range).trim();
  if (value === "all" || value === "0" || value === "") return [1, 65535];
  const match = /^([0-9]+)(?:-([0-9]+))?$/.exec(value);
  if (match === null) return undefined;
  return [Number(match[1]), Number(match[2] ?? match[1])];
}

/** An AWS rule's ports: protocol "-1" (or "all") is every port of every protocol. */
export function awsPortRange(protocol: unknown, fromPort: unknown, toPort: unknown): [number, number] | undefined {
  const p = scalar(protocol ?? "").toLowerCase();
  if (p === "-1" || p === "all") return [0, 65535];
  if (p !== "tcp" && p !== "6") return undefined;
  return [Number(fromPort ?? 0), Number(toPort ?? fromPort ?? 0)];
}

function exposure(where: string, range: [number, number] | undefined, rangeText: string, sources: unknown[]): string[] {
  if (range === undefined) return [];
  const open = sources.map(text).filter((s): s is string => s !== undefined && isAnywhere(s));
  if (open.length === 0) return [];
  return ADMIN_PORTS.filter(({ port }) => range[0] <= port && port <= range[1]).map(
    ({ port, what }) =>
      `${where} opens port ${port} (${what}) with ${rangeText} to ${open.join(" and ")}: ` +
      `SSH (22) and the Docker API (2376) may be opened only to specific admin CIDRs (webstack:adminCidrs), never to 0.0.0.0/0 or ::/0`,
  );
}

/** Firewall rules of both clouds, and AWS's standalone rule resources, that open an admin port to the world. */
export function adminExposureProblems(type: string, resource: string, props: Props): string[] {
  switch (type) {
    case TYPES.doFirewall:
      return list(props.inboundRules).flatMap((r, i) => {
        const rule = record(r);
        if (scalar(rule.protocol ?? "").toLowerCase() !== "tcp") return [];
        const range = doPortRange(rule.portRange);
        return exposure(
          `firewall "${resource}" inboundRules[${i}]`,
          range,
          `portRange ${show(rule.portRange ?? "all")}`,
          list(rule.sourceAddresses),
        );
      });
    case TYPES.securityGroup:
      return list(props.ingress).flatMap((r, i) => {
        const rule = record(r);
        const range = awsPortRange(rule.protocol, rule.fromPort, rule.toPort);
        return exposure(
          `security group "${resource}" ingress[${i}]`,
          range,
          `protocol ${show(rule.protocol)} ports ${scalar(rule.fromPort)}-${scalar(rule.toPort)}`,
          [...list(rule.cidrBlocks), ...list(rule.ipv6CidrBlocks)],
        );
      });
    case TYPES.securityGroupRule: {
      if (props.type !== "ingress") return [];
      const range = awsPortRange(props.protocol, props.fromPort, props.toPort);
      return exposure(
        `security group rule "${resource}"`,
        range,
        `protocol ${show(props.protocol)} ports ${scalar(props.fromPort)}-${scalar(props.toPort)}`,
        [...list(props.cidrBlocks), ...list(props.ipv6CidrBlocks)],
      );
    }
    case TYPES.securityGroupIngressRule: {
      const range = awsPortRange(props.ipProtocol, props.fromPort, props.toPort);
      return exposure(
        `security group ingress rule "${resource}"`,
        range,
        `ipProtocol ${show(props.ipProtocol)} ports ${scalar(props.fromPort ?? "all")}-${scalar(props.toPort ?? "all")}`,
        [props.cidrIpv4, props.cidrIpv6],
      );
    }
    default:
      return [];
  }
}

// ---------------------------------------------------------------------------------------------
// data-protection

/** `pr-<number>`: the stack CI creates for one pull request and destroys when it closes. */
export { isThrowawayStack };

/** What data-protection needs to know of each resource. */
export interface StackResource {
  type: string;
  name: string;
  urn: string;
  props: Props;
  protect: boolean;
}

const VMS: readonly string[] = [TYPES.droplet, TYPES.ec2Instance];
const CLOUD_VOLUMES: readonly string[] = [TYPES.doVolume, TYPES.ebsVolume];

/**
 * The Docker volume that holds Postgres's data. Its labels depend on the VM's id, unknown in the
 * first preview of a cloud stack; its name (`webstack-<stack>-postgres-data`) is known then.
 */
export function isPostgresVolume(resource: StackResource): boolean {
  if (resource.type !== TYPES.dockerVolume) return false;
  const labels: unknown = Object.getOwnPropertyDescriptor(resource.props, "labels")?.value;
  if (!isUnknown(labels) && labels !== undefined) return labelValue(labels, ROLE_LABEL) === "postgres-data";
  const name: unknown = Object.getOwnPropertyDescriptor(resource.props, "name")?.value;
  return typeof name === "string" && !isUnknown(name) && name.endsWith("-postgres-data");
}

/** Each violation with the URN it concerns. */
export interface StackProblem {
  message: string;
  urn?: string;
}

export function dataProtectionProblems(stack: string, resources: readonly StackResource[]): StackProblem[] {
  if (stack === "") {
    return [
      {
        message:
          "the stack's name is unknown (the Pulumi CLI sets PULUMI_NODEJS_STACK for policy packs): data-protection cannot tell a throwaway stack from an environment",
      },
    ];
  }
  if (isThrowawayStack(stack)) {
    return resources
      .filter((r) => r.protect)
      .map((r) => ({
        urn: r.urn,
        message:
          `stack "${stack}" is a throwaway stack but ${r.type} "${r.name}" is protected: resources of pr-<number> stacks ` +
          `must not be protected, so \`pulumi destroy\` removes them (set webstack:protectData to false)`,
      }));
  }
  if (!resources.some((r) => VMS.includes(r.type))) return [];
  return resources
    .filter((r) => (CLOUD_VOLUMES.includes(r.type) || isPostgresVolume(r)) && !r.protect)
    .map((r) => ({
      urn: r.urn,
      message:
        `stack "${stack}" runs on a cloud host but ${r.type} "${r.name}" (Postgres data) is not protected: ` +
        `every stack other than pr-<number> must protect its data volumes (set webstack:protectData to true)`,
    }));
}

// ---------------------------------------------------------------------------------------------
// allowed-vm-sizes

export interface SizeLists {
  digitalocean: string[];
  aws: string[];
}

export interface VmSizeConfig {
  /** Sizes every environment stack may use. */
  sizes: SizeLists;
  /** The cheaper sizes a pr-<number> stack may use. */
  throwawaySizes: SizeLists;
}

export const DEFAULT_VM_SIZES: VmSizeConfig = {
  sizes: {
    digitalocean: ["s-1vcpu-1gb", "s-1vcpu-2gb", "s-2vcpu-2gb", "s-2vcpu-4gb"],
    aws: ["t3.micro", "t3.small", "t3.medium", "t4g.small"],
  },
  throwawaySizes: {
    digitalocean: ["s-1vcpu-1gb", "s-1vcpu-2gb"],
    aws: ["t3.micro", "t3.small", "t4g.small"],
  },
};

export function vmSizeProblems(
  type: string,
  resource: string,
  props: Props,
  stack: string,
  config: VmSizeConfig,
): string[] {
  const vm =
    type === TYPES.droplet
      ? { cloud: "digitalocean" as const, what: "droplet", setting: "size", value: props.size }
      : type === TYPES.ec2Instance
        ? { cloud: "aws" as const, what: "EC2 instance", setting: "instanceType", value: props.instanceType }
        : undefined;
  if (vm === undefined) return [];
  if (stack === "") {
    return [
      `${vm.what} "${resource}": the stack's name is unknown (the Pulumi CLI sets PULUMI_NODEJS_STACK for policy packs), so allowed-vm-sizes cannot pick its allow-list`,
    ];
  }
  const throwaway = isThrowawayStack(stack);
  const key = throwaway ? "throwawaySizes" : "sizes";
  const allowed = config[key][vm.cloud];
  const value = text(vm.value);
  if (value !== undefined && allowed.includes(value)) return [];
  return [
    `${vm.what} "${resource}" has ${vm.setting} ${show(vm.value)}: ${throwaway ? "throwaway " : ""}stack "${stack}" may use only ` +
      `${allowed.join(", ")} (policy config allowed-vm-sizes.${key}.${vm.cloud})`,
  ];
}

// ---------------------------------------------------------------------------------------------
// The policies

/** Where a policy learns the stack's name. The CLI passes it to the pack as PULUMI_NODEJS_STACK, which getStack reads. */
export type StackName = () => string;

const report = (reportViolation: ReportViolation, problems: string[]) => problems.forEach((p) => reportViolation(p));

export const onlyNginxPublishesPorts: ResourceValidationPolicy = {
  name: "only-nginx-publishes-ports",
  description:
    "Only the nginx container may publish ports on the host; every other container is reached through nginx or the private network.",
  enforcementLevel: "mandatory",
  validateResource: (args, reportViolation) => {
    if (args.type === TYPES.container) report(reportViolation, publishedPortProblems(args.name, args.props));
  },
};

export const noPrivilegedContainers: ResourceValidationPolicy = {
  name: "no-privileged-containers",
  description:
    "No container may run privileged, share the host's network, PID or IPC namespace, or mount the Docker socket.",
  enforcementLevel: "mandatory",
  validateResource: (args, reportViolation) => {
    if (args.type === TYPES.container) report(reportViolation, privilegeProblems(args.name, args.props));
  },
};

export const memoryLimits: ResourceValidationPolicy = {
  name: "memory-limits",
  description:
    "Every long-running container has a memory limit and no swap past it, so one runaway process cannot exhaust the host.",
  enforcementLevel: "mandatory",
  validateResource: (args, reportViolation) => {
    if (args.type === TYPES.container) report(reportViolation, memoryLimitProblems(args.name, args.props));
  },
};

export const pinnedImages: ResourceValidationPolicy = {
  name: "pinned-images",
  description:
    "Every image the stack pulls, runs or builds from is pinned to a version tag or a digest, so a deploy never picks up an image nobody chose.",
  enforcementLevel: "mandatory",
  validateResource: (args, reportViolation) =>
    report(reportViolation, imagePinProblems(args.type, args.name, args.props)),
};

/**
 * Only the remediation pass can see which values are secrets (see `environmentOf`), and the
 * engine runs it right before the validation pass for the same resource, in the same pack
 * process. The remediation records what it found; the validation reports it.
 */
export function secretEnvironment(): ResourceValidationPolicy {
  const found = new Map<string, string[]>();
  return {
    name: "secret-environment",
    description:
      "Container environment variables that hold passwords, tokens, keys or credential URLs must be Pulumi secrets, so they are encrypted in the state and hidden in previews.",
    // "remediate" is the only level at which @pulumi/policy shows a policy which values are
    // secret; violations are still reported as mandatory, and the resource is left unchanged.
    enforcementLevel: "remediate",
    remediateResource: (args) => {
      if (args.type === TYPES.container)
        found.set(args.urn, secretEnvironmentProblems(args.name, environmentOf(args.props)));
      return undefined;
    },
    validateResource: (args, reportViolation) => {
      if (args.type !== TYPES.container) return;
      const problems = found.get(args.urn);
      found.delete(args.urn);
      if (problems !== undefined) {
        report(reportViolation, problems);
        return;
      }
      // The remediation pass did not run: the policy's level was changed from "remediate".
      const names = secretLookingNames(args.props);
      if (names.length > 0) {
        reportViolation(
          `container "${args.name}" has ${names.join(", ")} in envs, and secret-environment cannot tell whether they are secrets: ` +
            `@pulumi/policy shows secrets only at enforcement level "remediate", so set secret-environment back to "remediate" in the policy config`,
        );
      }
    },
  };
}

export const adminPortsNotPublic: ResourceValidationPolicy = {
  name: "admin-ports-not-public",
  description:
    "SSH (22) and the Docker API (2376) are never opened to the whole internet (0.0.0.0/0 or ::/0) by a DigitalOcean firewall or an AWS security group.",
  enforcementLevel: "mandatory",
  validateResource: (args, reportViolation) =>
    report(reportViolation, adminExposureProblems(args.type, args.name, args.props)),
};

export function dataProtection(stackName: StackName = pulumi.getStack): StackValidationPolicy {
  return {
    name: "data-protection",
    description:
      "Stacks named pr-<number> are throwaway and protect nothing; every other stack on a cloud host protects its Postgres data volumes.",
    enforcementLevel: "mandatory",
    validateStack: (args, reportViolation) => {
      const resources = args.resources.map((r: PolicyResource) => ({
        type: r.type,
        name: r.name,
        urn: r.urn,
        props: r.props,
        protect: r.opts.protect,
      }));
      for (const problem of dataProtectionProblems(stackName(), resources))
        reportViolation(problem.message, problem.urn);
    },
  };
}

const sizeList = { type: "array", items: { type: "string" }, minItems: 1 } as const;
const sizeLists = (defaults: SizeLists) => ({
  type: "object" as const,
  properties: { digitalocean: sizeList, aws: sizeList },
  required: ["digitalocean", "aws"],
  additionalProperties: false,
  default: defaults,
});

export const VM_SIZE_SCHEMA: PolicyConfigSchema = {
  properties: {
    sizes: {
      ...sizeLists(DEFAULT_VM_SIZES.sizes),
      description: "Droplet sizes and EC2 instance types any stack may use.",
    },
    throwawaySizes: {
      ...sizeLists(DEFAULT_VM_SIZES.throwawaySizes),
      description: "The cheaper droplet sizes and EC2 instance types a pr-<number> stack may use instead.",
    },
  },
};

/** The policy's config: the CLI fills in the schema's defaults; a pack run without config gets them here. */
export function vmSizeConfig(args: Pick<ResourceValidationArgs, "getConfig">): VmSizeConfig {
  return { ...DEFAULT_VM_SIZES, ...args.getConfig<Partial<VmSizeConfig>>() };
}

export function allowedVmSizes(stackName: StackName = pulumi.getStack): ResourceValidationPolicy {
  return {
    name: "allowed-vm-sizes",
    description:
      "Droplet sizes and EC2 instance types come from an allow-list, and pr-<number> stacks from a cheaper one, so no stack runs up an unplanned bill.",
    enforcementLevel: "mandatory",
    configSchema: VM_SIZE_SCHEMA,
    validateResource: (args, reportViolation) => {
      if (args.type !== TYPES.droplet && args.type !== TYPES.ec2Instance) return;
      report(reportViolation, vmSizeProblems(args.type, args.name, args.props, stackName(), vmSizeConfig(args)));
    },
  };
}

/** Every webstack policy, in the order the pack serves them. */
export function webstackPolicies(
  options: { stackName?: StackName } = {},
): (ResourceValidationPolicy | StackValidationPolicy)[] {
  const stackName = options.stackName ?? pulumi.getStack;
  return [
    onlyNginxPublishesPorts,
    noPrivilegedContainers,
    memoryLimits,
    pinnedImages,
    secretEnvironment(),
    adminPortsNotPublic,
    dataProtection(stackName),
    allowedVmSizes(stackName),
  ];
}
