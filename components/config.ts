// The stack configuration: one schema, parsed and validated before any resource exists.
//
// Every problem is reported at once, each message naming the key, the value given and what is
// allowed, so a wrong stack file costs one `pulumi preview`, not five.
import * as pulumi from "@pulumi/pulumi";
import * as runtimeConfig from "@pulumi/pulumi/runtime/config";
import * as net from "node:net";
import { z } from "zod";
import { DOCKER_TLS_PORT } from "./specs/cloud-init";
import { isThrowawayStack } from "./specs/stacks";
import { DEFAULT_APP_PROCESSES, DEFAULT_LIMITS, LIMITED_ROLES, LimitedRole, ResourceLimits } from "./specs/containers";

export const NAMESPACE = "webstack";

export type Target = "local" | "digitalocean" | "aws";
export const TARGETS: readonly Target[] = ["local", "digitalocean", "aws"];

/** Where the app image lives between build and run on a cloud host. */
export type ImageRegistry = "host" | "cloud";

/** Official images the stack pins. Tags are exact releases, so an upstream re-tag is the only drift. */
export const DEFAULT_IMAGES = {
  postgresImage: "postgres:17.6-bookworm",
  redisImage: "redis:8.2.1-bookworm",
  nginxImage: "nginx:1.28.0-bookworm",
  nodeImage: "node:22.20.0-bookworm-slim",
  // The last lego 4 release: its CLI is the one acme/acme.sh speaks.
  acmeImage: "goacme/lego:v4.25.2",
} as const;

export const DEFAULT_SIZES: Record<Exclude<Target, "local">, string> = {
  digitalocean: "s-1vcpu-2gb",
  aws: "t3.small",
};

/**
 * The vCPUs of a droplet size slug or an EC2 instance type, when its name tells them (s-2vcpu-4gb,
 * c-4; t3.small, m5.2xlarge); undefined for a name it does not know.
 */
export function vcpusOf(target: Exclude<Target, "local">, size: string): number | undefined {
  if (target === "digitalocean") {
    const match = /-(\d+)vcpu-/.exec(size) ?? /^c2?-(\d+)(?:-intel)?$/.exec(size);
    return match === null ? undefined : Number(match[1]);
  }
  const [family, kind = ""] = size.split(".");
  const burstable = /^t\d[a-z]*$/.test(family);
  if (/^(nano|micro|small)$/.test(kind)) return burstable ? (family === "t1" || family === "t2" ? 1 : 2) : undefined;
  // A medium burstable type has 2; a medium Graviton type (m6g.medium, a1.medium) has one.
  if (kind === "medium") return burstable ? 2 : 1;
  if (kind === "large") return 2;
  const xlarge = /^(\d*)xlarge$/.exec(kind);
  return xlarge === null ? undefined : 4 * Number(xlarge[1] || 1);
}

/**
 * Replicas past a host's vCPUs add no speed: each visit then costs more CPU (smaller batches per
 * replica, processes waiting for a core), and on two cores three replicas counted visits at about
 * 0.6 times the rate of one or two (README, "How many replicas"). Two are always fine: one left
 * serving while the other restarts.
 */
export const MIN_SPARE_REPLICAS = 2;

/** Replicas for a cloud host when webstack:replicas is unset: its vCPUs, at least 2 and at most 3. */
export function defaultReplicas(vcpus: number | undefined): number {
  return vcpus === undefined ? 3 : Math.min(3, Math.max(MIN_SPARE_REPLICAS, vcpus));
}

/** A warning for more replicas than a cloud host has vCPUs (and more than 2), or undefined. */
export function replicaAdvice(config: Pick<WebstackConfig, "target" | "replicas" | "size">): string | undefined {
  if (config.target === "local" || config.size === undefined) return undefined;
  const vcpus = vcpusOf(config.target, config.size);
  if (vcpus === undefined) return undefined;
  const fit = Math.max(MIN_SPARE_REPLICAS, vcpus);
  if (config.replicas <= fit) return undefined;
  return (
    `${NAMESPACE}:replicas is ${config.replicas} but size ${config.size} has ${vcpus} vCPU${vcpus === 1 ? "" : "s"}: ` +
    `replicas past the vCPUs make every visit cost more CPU and the counter slower, not faster. ` +
    `Set ${NAMESPACE}:replicas to ${fit}, or pick a size with at least ${config.replicas} vCPUs.`
  );
}

/** The validated, defaulted configuration every component is built from. */
export interface WebstackConfig {
  target: Target;
  replicas: number;
  /** Set for cloud targets only. */
  region?: string;
  /** Droplet size slug or EC2 instance type; set for cloud targets only. */
  size?: string;
  /**
   * Host port nginx is published on: 8080 by default locally, 80 on cloud hosts. 0 (local target
   * only) lets Docker pick a free port, so several stacks share one engine; `url` reports it.
   */
  httpPort: number;
  /** Host address nginx is published on: 127.0.0.1 by default locally, 0.0.0.0 on cloud hosts. */
  httpBindAddress: string;
  /** Release id given by CI (usually the git SHA); undefined means "derive from the app's content". */
  release?: string;
  /**
   * A release whose image is still on the host, deployed instead of building the checkout: the
   * rollback step. It names the release, and nothing is built.
   */
  rollbackTo?: string;
  /** How many releases' images the host keeps (the live one included), so a rollback needs no build. */
  keepReleases: number;
  /** CIDRs allowed to reach SSH and the TLS-protected Docker API of a cloud host. */
  adminCidrs: string[];
  imageRegistry: ImageRegistry;
  /** Name of an existing DigitalOcean Container Registry, for `imageRegistry: cloud` on DigitalOcean. */
  docrRegistry?: string;
  /** AWS availability zone for the instance and its data volume (both must share it). */
  availabilityZone?: string;
  postgresImage: string;
  redisImage: string;
  nginxImage: string;
  nodeImage: string;
  /** The ACME client's image (lego), run only with HTTPS. */
  acmeImage: string;
  /** Size of the cloud block-storage volume holding Postgres data. */
  dataVolumeGb: number;
  /** Protect data-bearing resources (volumes) from `pulumi destroy`. */
  protectData: boolean;
  /** Keep Redis's append-only file on a volume so the cache survives a restart warm. */
  redisAof: boolean;
  /** nginx's request body limit, as nginx writes sizes (`1m`, `512k`). */
  maxRequestBody: string;
  /** Seconds an app replica gets to finish in-flight requests when it is stopped. */
  shutdownGraceSeconds: number;
  /** Let `/reset` through nginx to the app (which still requires the admin token). */
  adminRoutes: boolean;
  /** Requests one client address may have in progress at once; 0 is off. */
  limitConnPerIp: number;
  /** Requests per second one client address may make; 0 is off. */
  limitRatePerIp: number;
  /** Requests above the rate one address may make at once; undefined leaves nginx's default (twice the rate). */
  limitBurst?: number;
  /** Memory and CPU weight per role (the app's per replica): what is set over DEFAULT_LIMITS. */
  limits: Record<LimitedRole, ResourceLimits>;
  /**
   * The most tasks (processes and threads) the app's user may have on the host: every replica, a
   * release's second set of them and the migration run together (the kernel counts per user).
   */
  appProcesses: number;
  /**
   * HTTPS, set when `domain` is: with certificates from an ACME CA on cloud targets, from a CA the
   * stack makes on the local target.
   */
  https?: HttpsConfig;
  /** Continuous backups of Postgres (pgBackRest); undefined only on a throwaway stack that switched them off. */
  backups?: BackupConfig;
}

/**
 * Base backups on a schedule and every WAL segment archived as it fills (or after
 * `archiveTimeoutSeconds`), so the database can be restored to any moment since the oldest kept
 * full backup. On a cloud target they go to a bucket the stack makes; locally, to a volume.
 */
export interface BackupConfig {
  /** Days between full backups. @default 7 */
  fullDays: number;
  /** Hours between backups of any kind (differential ones between the full ones). @default 24 */
  diffHours: number;
  /** Full backups kept; WAL is kept back to the oldest of them. @default 4 (restores reach 21 to 28 days back) */
  retentionFull: number;
  /** Differential backups kept. @default 7 */
  retentionDiff: number;
  /** Postgres switches to a new WAL segment, and so archives, at least this often while it writes. @default 30 */
  archiveTimeoutSeconds: number;
  /** The DigitalOcean Spaces region of the bucket. @default the stack's region (digitalocean only) */
  bucketRegion?: string;
}

/** DigitalOcean regions with Spaces (object storage). */
export const SPACES_REGIONS = ["nyc3", "sfo2", "sfo3", "ams3", "fra1", "sgp1", "syd1", "blr1", "lon1", "tor1", "atl1"];

/** Let's Encrypt's directories: production, and staging for stacks that come and go. */
export const ACME_SERVERS = {
  letsencrypt: "https://acme-v02.api.letsencrypt.org/directory",
  "letsencrypt-staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
} as const;

/** What a stack with a `domain` serves over HTTPS, and where its certificate comes from. */
export interface HttpsConfig {
  /** The site's name first, then any extra names the certificate covers. @example ["app.example.com"] */
  domains: string[];
  /** The ACME CA that certifies a cloud stack; undefined on the local target (the stack's own CA). */
  acme?: AcmeConfig;
  /** A DNS zone of the cloud's DNS in which A records for every domain point at the host's address. */
  dnsZone?: string;
  /**
   * Strict-Transport-Security max-age in seconds; 0 sends none.
   * @default 31536000 (a year) on cloud targets; 0 for a throwaway stack and on the local target
   */
  hstsSeconds: number;
  /** Host port nginx's HTTPS is published on. @default 443; 8443 on the local target */
  httpsPort: number;
}

export interface AcmeConfig {
  /** The ACME account's contact address. */
  email: string;
  /** The ACME directory URL. @default ACME_SERVERS.letsencrypt; its staging directory for a throwaway stack */
  server: string;
  /** PEM of the CA that signs a private ACME server's own HTTPS certificate (step-ca, Pebble), if any. */
  caCertificate?: string;
  /** First wait after a failed order; each next one doubles, up to twelve times this. @default 300 */
  retrySeconds: number;
}

/** Tasks one app replica may need: a Node process has about a dozen threads (measured in the engine tests). */
export const TASKS_PER_REPLICA = 32;

/** A raw setting: what `pulumi config` holds, as text (lists as JSON text). */
export type RawConfig = Readonly<Record<string, string | undefined>>;

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(
      `Invalid webstack configuration (${problems.length} problem${problems.length === 1 ? "" : "s"}):\n` +
        problems.map((p) => `  - ${p}`).join("\n"),
    );
    this.name = "ConfigError";
  }
}

const KEYS = [
  "target",
  "replicas",
  "region",
  "size",
  "httpPort",
  "httpBindAddress",
  "release",
  "rollbackTo",
  "keepReleases",
  "adminCidrs",
  "imageRegistry",
  "docrRegistry",
  "availabilityZone",
  "postgresImage",
  "redisImage",
  "nginxImage",
  "nodeImage",
  "acmeImage",
  "dataVolumeGb",
  "protectData",
  "redisAof",
  "maxRequestBody",
  "shutdownGraceSeconds",
  "adminRoutes",
  "limitConnPerIp",
  "limitRatePerIp",
  "limitBurst",
  "limits",
  "appProcesses",
  "domain",
  "extraDomains",
  "acmeEmail",
  "acmeServer",
  "acmeCaCertificate",
  "dnsZone",
  "hstsSeconds",
  "acmeRetrySeconds",
  "httpsPort",
  "backups",
  "backupFullDays",
  "backupDiffHours",
  "backupRetentionFull",
  "backupRetentionDiff",
  "archiveTimeoutSeconds",
  "backupRegion",
] as const;
type Key = (typeof KEYS)[number];

const show = (value: string): string => JSON.stringify(value);

/** Each check returns the parsed value or a message; messages all start with the key's full name. */
type Check<T> = (key: string, value: string) => T | { problem: string };
const problem = (key: string, value: string, allowed: string) => ({
  problem: `${NAMESPACE}:${key} must be ${allowed} (got ${show(value)})`,
});

function wholeNumber(min: number, max: number): Check<number> {
  return (key, value) => {
    const n = /^\s*[0-9]+\s*$/.test(value) ? Number(value) : NaN;
    return Number.isSafeInteger(n) && n >= min && n <= max
      ? n
      : problem(key, value, `a whole number from ${min} to ${max}`);
  };
}

function oneOf<T extends string>(allowed: readonly T[]): Check<T> {
  return (key, value) =>
    (allowed as readonly string[]).includes(value)
      ? (value as T)
      : problem(key, value, `one of ${allowed.map((a) => show(a)).join(", ")}`);
}

function boolean(): Check<boolean> {
  return (key, value) => (value === "true" ? true : value === "false" ? false : problem(key, value, `true or false`));
}

function matching(pattern: RegExp, allowed: string): Check<string> {
  return (key, value) => (pattern.test(value) ? value : problem(key, value, allowed));
}

const DO_REGION = /^[a-z]{3}[0-9]$/;
const AWS_REGION = /^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]$/;
const DO_SIZE = /^[a-z0-9]+(-[a-z0-9]+)+$/;
const AWS_INSTANCE_TYPE = /^[a-z][a-z0-9-]*\.[a-z0-9]+$/;
// A Docker image reference: [registry[:port]/]path[:tag][@sha256:digest], lower-case path.
const IMAGE_REF =
  /^([a-zA-Z0-9.-]+(:[0-9]+)?\/)?[a-z0-9]+([._-][a-z0-9]+)*(\/[a-z0-9]+([._-][a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$/;
const RELEASE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$/;
const NGINX_SIZE = /^[1-9][0-9]{0,5}[km]?$/;

function ipv4(key: string, value: string) {
  return net.isIPv4(value) ? value : problem(key, value, "an IPv4 address such as 127.0.0.1");
}

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
// Deliberately plain: something@name.tld, no spaces or quotes; the CA checks the rest.
const EMAIL =
  /^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$/;
const PEM_CERTIFICATE = /^-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE-----\s*$/;

/** Why `value` is not a DNS name a public CA can certify by HTTP-01, or undefined when it is one. */
export function domainProblem(value: string): string | undefined {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) return "a bare name without a scheme, such as app.example.com";
  if (/[/?#]/.test(value)) return "a bare name without a path, such as app.example.com";
  if (value.includes(":")) {
    return net.isIPv6(value) ? "a DNS name, not an IP address" : "a bare name without a port, such as app.example.com";
  }
  if (net.isIPv4(value)) return "a DNS name, not an IP address";
  if (value.startsWith("*.")) return "a name without a wildcard (HTTP-01 validation cannot certify *.)";
  if (value !== value.toLowerCase()) return "written in lower case";
  const labels = value.replace(/\.$/, "").split(".");
  if (
    value.length > 253 ||
    labels.length < 2 ||
    !labels.every((l) => LABEL.test(l)) ||
    /^[0-9]+$/.test(labels.at(-1)!)
  ) {
    return "a DNS name of at least two labels (letters, digits and '-'), such as app.example.com";
  }
  return undefined;
}

function domainName(key: string, value: string) {
  const wrong = domainProblem(value);
  return wrong === undefined ? value.replace(/\.$/, "") : problem(key, value, wrong);
}

function domainList(key: string, value: string): string[] | { problem: string } | { problems: string[] } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    parsed = undefined;
  }
  const list = z.array(z.string()).max(99).safeParse(parsed);
  if (!list.success) return problem(key, value, `a list of at most 99 DNS names such as ["www.example.com"]`);
  const problems = list.data.flatMap((name, index) => {
    const wrong = domainProblem(name);
    return wrong === undefined ? [] : [problem(`${key}[${index}]`, name, wrong).problem];
  });
  return problems.length > 0 ? { problems } : list.data.map((name) => name.replace(/\.$/, ""));
}

function acmeServer(key: string, value: string) {
  if (Object.hasOwn(ACME_SERVERS, value)) return ACME_SERVERS[value as keyof typeof ACME_SERVERS];
  let url: URL | undefined;
  try {
    url = new URL(value);
  } catch {
    url = undefined;
  }
  return url?.protocol === "https:" && url.username === "" && url.password === ""
    ? value
    : problem(
        key,
        value,
        `an https:// ACME directory URL, or one of ${Object.keys(ACME_SERVERS).map(show).join(", ")}`,
      );
}

function cidr(text: string): boolean {
  const [address, bits, ...rest] = text.split("/");
  if (rest.length > 0 || bits === undefined || !/^[0-9]{1,3}$/.test(bits)) return false;
  const family = net.isIP(address);
  return family !== 0 && Number(bits) <= (family === 4 ? 32 : 128);
}

function cidrList(key: string, value: string): string[] | { problem: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    parsed = undefined;
  }
  const list = z.array(z.string()).min(1).safeParse(parsed);
  if (!list.success || !list.data.every(cidr)) {
    return problem(key, value, `a non-empty list of CIDRs such as ["203.0.113.7/32"]`);
  }
  const everyone = list.data.filter((c) => Number(c.split("/")[1]) === 0);
  if (everyone.length > 0) {
    return {
      problem:
        `${NAMESPACE}:${key} must not contain ${everyone.map(show).join(" or ")}: a /0 opens SSH and the Docker API ` +
        `to the whole internet; list the addresses you deploy from, such as ["203.0.113.7/32"] (got ${show(value)})`,
    };
  }
  return list.data;
}

/** What each limit may be: Docker's smallest useful memory for these servers, and its CPU weight range. */
const LIMIT_BOUNDS: Record<keyof ResourceLimits, { min: number; max: number }> = {
  memoryMb: { min: 64, max: 262144 },
  cpuShares: { min: 2, max: 262144 },
};

/**
 * `limits`: an object by role, each with any of memoryMb and cpuShares, as `pulumi config set
 * --path limits.app.memoryMb 384` stores it. Every bad entry is reported, by its full path.
 */
function limitsSetting(
  key: string,
  value: string,
): Record<LimitedRole, ResourceLimits> | { problem: string } | { problems: string[] } {
  const example = `an object such as {"app":{"memoryMb":384,"cpuShares":1024}} with roles ${LIMITED_ROLES.join(", ")}`;
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    return problem(key, value, example);
  }
  const object = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
  if (!object(parsed)) return problem(key, value, example);
  const problems: string[] = [];
  const limits = structuredClone(DEFAULT_LIMITS);
  for (const [role, given] of Object.entries(parsed)) {
    if (!(LIMITED_ROLES as readonly string[]).includes(role)) {
      problems.push(`${NAMESPACE}:${key}.${role} is not a role with limits (roles: ${LIMITED_ROLES.join(", ")})`);
      continue;
    }
    if (!object(given)) {
      problems.push(
        problem(`${key}.${role}`, JSON.stringify(given), `an object with memoryMb and/or cpuShares`).problem,
      );
      continue;
    }
    for (const [field, amount] of Object.entries(given)) {
      // Own keys only: "constructor" or "__proto__" is no limit either.
      if (!Object.hasOwn(LIMIT_BOUNDS, field)) {
        problems.push(`${NAMESPACE}:${key}.${role}.${field} is not a limit (limits: memoryMb, cpuShares)`);
        continue;
      }
      const bounds = LIMIT_BOUNDS[field as keyof ResourceLimits];
      // `--path` stores integers as numbers (JSON shows them as digits); a hand-written stack file may quote them.
      const text = typeof amount === "string" ? amount : JSON.stringify(amount);
      const checked = wholeNumber(bounds.min, bounds.max)(`${key}.${role}.${field}`, text);
      if (isProblem(checked)) problems.push(checked.problem);
      else limits[role as LimitedRole][field as keyof ResourceLimits] = checked;
    }
  }
  return problems.length > 0 ? { problems } : limits;
}

function isProblem(value: unknown): value is { problem: string } {
  return typeof value === "object" && value !== null && !Array.isArray(value) && "problem" in value;
}

/** A setting of several parts reports each bad part. */
function hasProblems(value: unknown): value is { problems: string[] } {
  return typeof value === "object" && value !== null && !Array.isArray(value) && "problems" in value;
}

const CHECKS: { [K in Key]: Check<unknown> } = {
  target: oneOf(TARGETS),
  replicas: wholeNumber(1, 20),
  region: (_key, value) => value,
  size: (_key, value) => value,
  httpPort: wholeNumber(0, 65535),
  httpBindAddress: ipv4,
  release: matching(RELEASE, "1-40 letters, digits, '.', '_' or '-', starting with a letter or digit"),
  rollbackTo: matching(RELEASE, "a release id the stack deployed before, such as its git SHA"),
  keepReleases: wholeNumber(1, 50),
  adminCidrs: cidrList,
  imageRegistry: oneOf<ImageRegistry>(["host", "cloud"]),
  docrRegistry: matching(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, "a DigitalOcean registry name"),
  availabilityZone: matching(/^[a-z]{2}(-gov)?-[a-z]+-[0-9][a-z]$/, "an AWS availability zone such as us-east-1a"),
  postgresImage: matching(IMAGE_REF, "a Docker image reference such as postgres:17.6-bookworm"),
  redisImage: matching(IMAGE_REF, "a Docker image reference such as redis:8.2.1-bookworm"),
  nginxImage: matching(IMAGE_REF, "a Docker image reference such as nginx:1.28.0-bookworm"),
  nodeImage: matching(IMAGE_REF, "a Docker image reference such as node:22.20.0-bookworm-slim"),
  acmeImage: matching(IMAGE_REF, "a Docker image reference such as goacme/lego:v4.25.2"),
  dataVolumeGb: wholeNumber(1, 16384),
  protectData: boolean(),
  redisAof: boolean(),
  maxRequestBody: matching(NGINX_SIZE, "an nginx size such as 1m, 512k or 1048576"),
  shutdownGraceSeconds: wholeNumber(1, 300),
  adminRoutes: boolean(),
  limitConnPerIp: wholeNumber(0, 65535),
  limitRatePerIp: wholeNumber(0, 100000),
  limitBurst: wholeNumber(0, 1000000),
  limits: limitsSetting,
  appProcesses: wholeNumber(64, 65536),
  domain: domainName,
  extraDomains: domainList,
  acmeEmail: matching(EMAIL, "an e-mail address such as ops@example.com"),
  acmeServer: acmeServer,
  acmeCaCertificate: matching(PEM_CERTIFICATE, "a PEM certificate (-----BEGIN CERTIFICATE----- …)"),
  dnsZone: domainName,
  hstsSeconds: wholeNumber(0, 63072000),
  acmeRetrySeconds: wholeNumber(1, 3600),
  httpsPort: wholeNumber(1, 65535),
  backups: boolean(),
  backupFullDays: wholeNumber(1, 35),
  backupDiffHours: wholeNumber(1, 168),
  backupRetentionFull: wholeNumber(1, 52),
  backupRetentionDiff: wholeNumber(1, 100),
  archiveTimeoutSeconds: wholeNumber(10, 60),
  backupRegion: oneOf(SPACES_REGIONS),
};

/** Settings of the backups, which mean nothing with `backups: false`. */
const BACKUP_KEYS: readonly Key[] = [
  "backupFullDays",
  "backupDiffHours",
  "backupRetentionFull",
  "backupRetentionDiff",
  "archiveTimeoutSeconds",
  "backupRegion",
];

/** Settings of the ACME client: cloud targets only. */
const ACME_KEYS: readonly Key[] = ["acmeEmail", "acmeServer", "acmeCaCertificate", "acmeRetrySeconds"];

/** Settings that only mean something when `domain` is set. */
const HTTPS_KEYS: readonly Key[] = ["extraDomains", ...ACME_KEYS, "dnsZone", "hstsSeconds", "httpsPort"];

const CLOUD_ONLY: readonly Key[] = ["region", "size", "adminCidrs", "imageRegistry", "dataVolumeGb"];

/** Settings that must be Pulumi secrets (`pulumi config set --secret`); their values are never echoed. */
export const SECRET_KEYS = ["postgresPassword", "redisPassword"] as const;
export type SecretKey = (typeof SECRET_KEYS)[number];

function secretProblems(raw: RawConfig, secretKeys: ReadonlySet<string>): string[] {
  const problems: string[] = [];
  for (const key of SECRET_KEYS) {
    const value = raw[key];
    if (value === undefined) continue;
    if (!secretKeys.has(key)) {
      problems.push(
        `${NAMESPACE}:${key} must be stored encrypted: run \`pulumi config set --secret ${key}\` (value not shown)`,
      );
    } else if (!/^[A-Za-z0-9_-]{16,128}$/.test(value)) {
      problems.push(`${NAMESPACE}:${key} must be 16-128 letters, digits, '_' or '-' (value not shown: it is a secret)`);
    }
  }
  return problems;
}

/**
 * Parses raw stack settings (keys without the `webstack:` prefix) into a full configuration.
 * Throws a ConfigError listing every problem; never returns a partly valid configuration.
 */
export function parseConfig(
  raw: RawConfig,
  secretKeys: ReadonlySet<string> = new Set(),
  kind: { throwaway: boolean } = { throwaway: false },
): WebstackConfig {
  const problems: string[] = secretProblems(raw, secretKeys);
  const values: Partial<Record<Key, unknown>> = {};
  const known: readonly string[] = [...KEYS, ...SECRET_KEYS];

  for (const key of Object.keys(raw)) {
    if (raw[key] !== undefined && !known.includes(key)) {
      problems.push(`${NAMESPACE}:${key} is not a webstack setting (known settings: ${known.join(", ")})`);
    }
  }
  for (const key of KEYS) {
    const value = raw[key];
    if (value === undefined) continue;
    const parsed = CHECKS[key](key, value);
    if (isProblem(parsed)) problems.push(parsed.problem);
    else if (hasProblems(parsed)) problems.push(...parsed.problems);
    else values[key] = parsed;
  }

  const target = (values.target as Target | undefined) ?? (raw.target === undefined ? "local" : undefined);
  if (target === "local") {
    for (const key of CLOUD_ONLY.concat(["docrRegistry", "availabilityZone", "dnsZone"])) {
      if (raw[key] !== undefined) {
        problems.push(`${NAMESPACE}:${key} applies only to the digitalocean and aws targets (target is "local")`);
      }
    }
  } else if (target !== undefined) {
    problems.push(...cloudProblems(target, raw));
  }

  // A rate that is itself invalid is reported once, above; only a rate that is off makes a burst meaningless.
  if (
    raw.limitBurst !== undefined &&
    values.limitBurst !== undefined &&
    (raw.limitRatePerIp === undefined || values.limitRatePerIp === 0)
  ) {
    problems.push(
      `${NAMESPACE}:limitBurst applies only with a rate limit: set webstack:limitRatePerIp above 0, or leave limitBurst unset (got ${show(raw.limitBurst)})`,
    );
  }

  // A cloud host's size, given or the target's default.
  const vm =
    target === undefined || target === "local" ? undefined : { target, size: raw.size ?? DEFAULT_SIZES[target] };
  const replicas =
    (values.replicas as number | undefined) ?? (vm === undefined ? 3 : defaultReplicas(vcpusOf(vm.target, vm.size)));
  // During a release two sets of replicas run, and the migration run beside them.
  const processes = values.appProcesses as number | undefined;
  if (processes !== undefined && processes < TASKS_PER_REPLICA * (2 * replicas + 1)) {
    problems.push(
      `${NAMESPACE}:appProcesses must be at least ${TASKS_PER_REPLICA * (2 * replicas + 1)} for ${replicas} replicas ` +
        `(${TASKS_PER_REPLICA} tasks for each replica of two releases and the migration run) (got ${show(String(processes))})`,
    );
  }

  problems.push(...httpsProblems(target, raw, values));
  problems.push(...backupProblems(target, raw, values, kind.throwaway));

  if (problems.length > 0 || target === undefined) throw new ConfigError(problems);

  const cloud = target !== "local";
  return {
    target,
    replicas,
    region: raw.region,
    size: vm?.size,
    httpPort: (values.httpPort as number | undefined) ?? (cloud ? 80 : 8080),
    httpBindAddress: (values.httpBindAddress as string | undefined) ?? (cloud ? "0.0.0.0" : "127.0.0.1"),
    release: values.release as string | undefined,
    rollbackTo: values.rollbackTo as string | undefined,
    keepReleases: (values.keepReleases as number | undefined) ?? 3,
    adminCidrs: (values.adminCidrs as string[] | undefined) ?? [],
    imageRegistry: (values.imageRegistry as ImageRegistry | undefined) ?? "host",
    docrRegistry: values.docrRegistry as string | undefined,
    availabilityZone:
      target === "aws" ? ((values.availabilityZone as string | undefined) ?? `${raw.region}a`) : undefined,
    postgresImage: (values.postgresImage as string | undefined) ?? DEFAULT_IMAGES.postgresImage,
    redisImage: (values.redisImage as string | undefined) ?? DEFAULT_IMAGES.redisImage,
    nginxImage: (values.nginxImage as string | undefined) ?? DEFAULT_IMAGES.nginxImage,
    nodeImage: (values.nodeImage as string | undefined) ?? DEFAULT_IMAGES.nodeImage,
    acmeImage: (values.acmeImage as string | undefined) ?? DEFAULT_IMAGES.acmeImage,
    dataVolumeGb: (values.dataVolumeGb as number | undefined) ?? 10,
    protectData: (values.protectData as boolean | undefined) ?? false,
    redisAof: (values.redisAof as boolean | undefined) ?? true,
    maxRequestBody: (values.maxRequestBody as string | undefined) ?? "1m",
    shutdownGraceSeconds: (values.shutdownGraceSeconds as number | undefined) ?? 10,
    adminRoutes: (values.adminRoutes as boolean | undefined) ?? false,
    limitConnPerIp: (values.limitConnPerIp as number | undefined) ?? 0,
    limitRatePerIp: (values.limitRatePerIp as number | undefined) ?? 0,
    limitBurst: values.limitBurst as number | undefined,
    limits: (values.limits as Record<LimitedRole, ResourceLimits> | undefined) ?? structuredClone(DEFAULT_LIMITS),
    appProcesses: (values.appProcesses as number | undefined) ?? DEFAULT_APP_PROCESSES,
    https: values.domain === undefined ? undefined : httpsConfig(values, cloud, kind.throwaway),
    backups:
      values.backups === false
        ? undefined
        : {
            fullDays: (values.backupFullDays as number | undefined) ?? 7,
            diffHours: (values.backupDiffHours as number | undefined) ?? 24,
            retentionFull: (values.backupRetentionFull as number | undefined) ?? 4,
            retentionDiff: (values.backupRetentionDiff as number | undefined) ?? 7,
            archiveTimeoutSeconds: (values.archiveTimeoutSeconds as number | undefined) ?? 30,
            bucketRegion:
              target === "digitalocean" ? ((values.backupRegion as string | undefined) ?? raw.region) : undefined,
          },
  };
}

/** The backup settings together: who may switch backups off, what needs them on, and the bucket's region. */
function backupProblems(
  target: Target | undefined,
  raw: RawConfig,
  values: Partial<Record<Key, unknown>>,
  throwaway: boolean,
): string[] {
  const problems: string[] = [];
  if (values.backups === false) {
    // Only a stack that comes and goes with a pull request may run without a way back.
    if (!throwaway) {
      problems.push(
        `${NAMESPACE}:backups may be false only on a throwaway stack (pr-<number>); this stack's data must be restorable, so remove the setting (got ${show(raw.backups!)})`,
      );
    }
    for (const key of BACKUP_KEYS) {
      if (raw[key] !== undefined) {
        problems.push(`${NAMESPACE}:${key} applies only with backups on: remove it, or remove webstack:backups false`);
      }
    }
    return problems;
  }
  const fullDays = (values.backupFullDays as number | undefined) ?? 7;
  const diffHours = values.backupDiffHours as number | undefined;
  if (diffHours !== undefined && diffHours > fullDays * 24) {
    problems.push(
      `${NAMESPACE}:backupDiffHours must be at most ${fullDays * 24}, the hours between full backups (webstack:backupFullDays ${fullDays}) (got ${show(raw.backupDiffHours!)})`,
    );
  }
  if (raw.backupRegion !== undefined && target !== undefined && target !== "digitalocean") {
    problems.push(
      `${NAMESPACE}:backupRegion applies only to the digitalocean target, whose Spaces regions are not all droplet regions (target is ${show(target)})`,
    );
  }
  if (
    target === "digitalocean" &&
    raw.backupRegion === undefined &&
    raw.region !== undefined &&
    DO_REGION.test(raw.region) &&
    !SPACES_REGIONS.includes(raw.region)
  ) {
    problems.push(
      `${NAMESPACE}:backupRegion is required: region ${show(raw.region)} has no Spaces for the backups' bucket; set it to one of ${SPACES_REGIONS.map(show).join(", ")}`,
    );
  }
  return problems;
}

function httpsConfig(values: Partial<Record<Key, unknown>>, cloud: boolean, throwaway: boolean): HttpsConfig {
  return {
    domains: [values.domain as string, ...((values.extraDomains as string[] | undefined) ?? [])],
    acme: cloud
      ? {
          email: values.acmeEmail as string,
          // A stack that lives for a pull request must not spend production's rate limits, nor
          // leave browsers remembering HTTPS for a name that will soon serve something else.
          server:
            (values.acmeServer as string | undefined) ??
            (throwaway ? ACME_SERVERS["letsencrypt-staging"] : ACME_SERVERS.letsencrypt),
          caCertificate: values.acmeCaCertificate as string | undefined,
          retrySeconds: (values.acmeRetrySeconds as number | undefined) ?? 300,
        }
      : undefined,
    dnsZone: values.dnsZone as string | undefined,
    // A developer's browser must not be pinned to HTTPS for a name other stacks may serve plainly.
    hstsSeconds: (values.hstsSeconds as number | undefined) ?? (throwaway || !cloud ? 0 : 31536000),
    httpsPort: (values.httpsPort as number | undefined) ?? (cloud ? 443 : 8443),
  };
}

/** The HTTPS settings together: what needs `domain`, what `domain` needs, and the zone. */
function httpsProblems(target: Target | undefined, raw: RawConfig, values: Partial<Record<Key, unknown>>): string[] {
  const problems: string[] = [];
  if (raw.domain === undefined) {
    for (const key of HTTPS_KEYS) {
      if (raw[key] !== undefined) {
        problems.push(`${NAMESPACE}:${key} applies only with HTTPS: set webstack:domain too, or leave ${key} unset`);
      }
    }
    return problems;
  }
  if (target === "local") {
    // dnsZone on the local target is already reported with the cloud-only settings.
    for (const key of ACME_KEYS) {
      if (raw[key] !== undefined) {
        problems.push(
          `${NAMESPACE}:${key} applies only to the digitalocean and aws targets: the local target's certificate comes from a CA the stack makes (target is "local")`,
        );
      }
    }
  } else if (raw.acmeEmail === undefined) {
    problems.push(
      `${NAMESPACE}:acmeEmail is required with webstack:domain: the ACME account's contact address, such as ops@example.com`,
    );
  }
  const domain = values.domain as string | undefined;
  const extra = (values.extraDomains as string[] | undefined) ?? [];
  if (domain !== undefined && extra.includes(domain)) {
    problems.push(
      `${NAMESPACE}:extraDomains must not repeat webstack:domain ${show(domain)} (got ${show(raw.extraDomains!)})`,
    );
  }
  if (new Set(extra).size !== extra.length) {
    problems.push(`${NAMESPACE}:extraDomains must list each name once (got ${show(raw.extraDomains!)})`);
  }
  const zone = values.dnsZone as string | undefined;
  if (zone !== undefined) {
    const outside = [domain, ...extra].filter(
      (name): name is string => name !== undefined && name !== zone && !name.endsWith(`.${zone}`),
    );
    if (outside.length > 0) {
      problems.push(
        `${NAMESPACE}:dnsZone ${show(zone)} must contain every name it gets records for; ${outside.map(show).join(", ")} ${outside.length === 1 ? "is" : "are"} not inside it`,
      );
    }
  }
  const local = target === "local";
  const httpPort = (values.httpPort as number | undefined) ?? (local ? 8080 : 80);
  const httpsPort = (values.httpsPort as number | undefined) ?? (local ? 8443 : 443);
  if (httpsPort === httpPort) {
    const which = raw.httpsPort === undefined ? `its default ${httpsPort}` : String(httpsPort);
    problems.push(
      `${NAMESPACE}:httpsPort must differ from webstack:httpPort (both are ${httpsPort}; httpsPort is ${which}): set one of them to another port`,
    );
  }
  if (!local && raw.httpsPort !== undefined && ADMIN_PORTS.includes(httpsPort)) {
    problems.push(
      `${NAMESPACE}:httpsPort must not be ${httpsPort}: the firewall keeps SSH (22) and the Docker API (${DOCKER_TLS_PORT}) to webstack:adminCidrs (got ${show(raw.httpsPort)})`,
    );
  }
  // Let's Encrypt validates HTTP-01 on port 80 only, and limits failed validations per hour.
  const server = (values.acmeServer as string | undefined) ?? ACME_SERVERS.letsencrypt;
  if (!local && (Object.values(ACME_SERVERS) as string[]).includes(server)) {
    if (httpPort !== 80) {
      problems.push(
        `${NAMESPACE}:httpPort must be 80 with Let's Encrypt, which validates the domain on port 80 only (got ${show(String(httpPort))})`,
      );
    }
    const retry = values.acmeRetrySeconds as number | undefined;
    if (retry !== undefined && retry < LETSENCRYPT_MIN_RETRY) {
      problems.push(
        `${NAMESPACE}:acmeRetrySeconds must be at least ${LETSENCRYPT_MIN_RETRY} with Let's Encrypt, which allows 5 failed validations per name an hour (got ${show(raw.acmeRetrySeconds!)})`,
      );
    }
  }
  return problems;
}

/** Ports only the admin CIDRs may reach on a cloud host. */
const ADMIN_PORTS = [22, DOCKER_TLS_PORT];
/** The shortest first retry that keeps doubling retries within Let's Encrypt's failed-validation limit. */
const LETSENCRYPT_MIN_RETRY = 300;

function cloudProblems(target: Exclude<Target, "local">, raw: RawConfig): string[] {
  const problems: string[] = [];
  const { region, size } = raw;
  const regionExample =
    target === "digitalocean" ? "a DigitalOcean region slug such as nyc3" : "an AWS region such as us-east-1";
  if (region === undefined) {
    problems.push(`${NAMESPACE}:region is required for target ${show(target)}: set it to ${regionExample}`);
  } else if (!(target === "digitalocean" ? DO_REGION : AWS_REGION).test(region)) {
    problems.push(`${NAMESPACE}:region must be ${regionExample} for target ${show(target)} (got ${show(region)})`);
  }
  if (size !== undefined && !(target === "digitalocean" ? DO_SIZE : AWS_INSTANCE_TYPE).test(size)) {
    const allowed =
      target === "digitalocean" ? "a droplet size slug such as s-1vcpu-2gb" : "an EC2 instance type such as t3.small";
    problems.push(`${NAMESPACE}:size must be ${allowed} for target ${show(target)} (got ${show(size)})`);
  }
  if (raw.httpPort !== undefined && ADMIN_PORTS.includes(Number(raw.httpPort))) {
    problems.push(
      `${NAMESPACE}:httpPort must not be ${Number(raw.httpPort)}: the firewall keeps SSH (22) and the Docker API (${DOCKER_TLS_PORT}) to webstack:adminCidrs (got ${show(raw.httpPort)})`,
    );
  }
  if (raw.httpPort !== undefined && /^\s*0+\s*$/.test(raw.httpPort)) {
    problems.push(
      `${NAMESPACE}:httpPort 0 (a port Docker picks) is for the local target only: the firewall of target ${show(target)} must open a known port, such as 80 (got ${show(raw.httpPort)})`,
    );
  }
  if (raw.adminCidrs === undefined) {
    problems.push(
      `${NAMESPACE}:adminCidrs is required for target ${show(target)}: the CIDRs allowed to reach SSH and the Docker API, such as ["203.0.113.7/32"]`,
    );
  }
  if (target === "digitalocean" && raw.imageRegistry === "cloud" && raw.docrRegistry === undefined) {
    problems.push(
      `${NAMESPACE}:docrRegistry is required when imageRegistry is "cloud" on DigitalOcean: the name of an existing container registry`,
    );
  }
  if (target !== "digitalocean" && raw.docrRegistry !== undefined) {
    problems.push(`${NAMESPACE}:docrRegistry applies only to the digitalocean target (target is ${show(target)})`);
  }
  if (target !== "aws" && raw.availabilityZone !== undefined) {
    problems.push(`${NAMESPACE}:availabilityZone applies only to the aws target (target is ${show(target)})`);
  }
  if (
    target === "aws" &&
    region !== undefined &&
    raw.availabilityZone !== undefined &&
    !raw.availabilityZone.startsWith(region)
  ) {
    problems.push(
      `${NAMESPACE}:availabilityZone must be a zone of region ${show(region)} (got ${show(raw.availabilityZone)})`,
    );
  }
  return problems;
}

// The SDK knows which settings were stored encrypted but marks that check internal; it is the
// only way to refuse a password someone set without --secret.
const isConfigSecret = (runtimeConfig as unknown as { isConfigSecret: (key: string) => boolean }).isConfigSecret;

/**
 * Reads every `webstack:` setting of the current stack and parses it. Secret settings come back
 * as secret Outputs only.
 */
export function readStackConfig(): {
  config: WebstackConfig;
  secrets: Partial<Record<SecretKey, pulumi.Output<string>>>;
} {
  const prefix = `${NAMESPACE}:`;
  const raw: Record<string, string> = {};
  const secretKeys = new Set<string>();
  for (const [fullKey, value] of Object.entries(pulumi.runtime.allConfig())) {
    if (!fullKey.startsWith(prefix)) continue;
    const key = fullKey.slice(prefix.length);
    raw[key] = value;
    if (isConfigSecret(fullKey)) secretKeys.add(key);
  }
  const config = parseConfig(raw, secretKeys, { throwaway: isThrowawayStack(pulumi.getStack()) });
  const stackConfig = new pulumi.Config(NAMESPACE);
  const secrets: Partial<Record<SecretKey, pulumi.Output<string>>> = {};
  for (const key of SECRET_KEYS) {
    const value = stackConfig.getSecret(key);
    if (value !== undefined) secrets[key] = value;
  }
  return { config, secrets };
}
