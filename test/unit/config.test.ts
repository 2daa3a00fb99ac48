// Config validation: every bad setting is rejected with its exact message, all at once, before
// the program registers a single resource.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { describe, mock, test } from "node:test";
import { parse } from "yaml";
import {
  ConfigError,
  DEFAULT_IMAGES,
  defaultReplicas,
  parseConfig,
  readStackConfig,
  replicaAdvice,
  vcpusOf,
} from "../../components/config";
import { DEFAULT_LIMITS } from "../../components/specs/containers";
import * as pulumi from "@pulumi/pulumi";
import { RecordingMocks, runProgram } from "./support/mocks";

const ADMIN = '["198.51.100.0/24"]';
const DO = { target: "digitalocean", region: "nyc3", adminCidrs: ADMIN };
const AWS = { target: "aws", region: "us-east-1", adminCidrs: ADMIN };

const one = (problem: string) => `Invalid webstack configuration (1 problem):\n  - ${problem}`;

/** A bad config, its whole error message, and the stack it is evaluated for (default "test", an environment's). */
interface Bad {
  settings: Record<string, string>;
  message: string;
  secretKeys?: string[];
  stack?: string;
}

const BAD: Bad[] = [
  ...httpsBad(),
  ...backupsBad(),
  {
    settings: { target: "gcp" },
    message: one('webstack:target must be one of "local", "digitalocean", "aws" (got "gcp")'),
  },
  {
    settings: { target: "Local" },
    message: one('webstack:target must be one of "local", "digitalocean", "aws" (got "Local")'),
  },
  { settings: { replicas: "0" }, message: one('webstack:replicas must be a whole number from 1 to 20 (got "0")') },
  { settings: { replicas: "21" }, message: one('webstack:replicas must be a whole number from 1 to 20 (got "21")') },
  { settings: { replicas: "2.5" }, message: one('webstack:replicas must be a whole number from 1 to 20 (got "2.5")') },
  {
    settings: { replicas: "three" },
    message: one('webstack:replicas must be a whole number from 1 to 20 (got "three")'),
  },
  { settings: { replicas: "-1" }, message: one('webstack:replicas must be a whole number from 1 to 20 (got "-1")') },
  { settings: { replicas: "" }, message: one('webstack:replicas must be a whole number from 1 to 20 (got "")') },
  { settings: { httpPort: "-1" }, message: one('webstack:httpPort must be a whole number from 0 to 65535 (got "-1")') },
  {
    settings: { httpPort: "65536" },
    message: one('webstack:httpPort must be a whole number from 0 to 65535 (got "65536")'),
  },
  {
    settings: { httpPort: "http" },
    message: one('webstack:httpPort must be a whole number from 0 to 65535 (got "http")'),
  },
  {
    settings: { ...DO, httpPort: "0" },
    message: one(
      'webstack:httpPort 0 (a port Docker picks) is for the local target only: the firewall of target "digitalocean" must open a known port, such as 80 (got "0")',
    ),
  },
  {
    settings: { ...AWS, httpPort: "00" },
    message: one(
      'webstack:httpPort 0 (a port Docker picks) is for the local target only: the firewall of target "aws" must open a known port, such as 80 (got "00")',
    ),
  },
  {
    settings: { httpBindAddress: "localhost" },
    message: one('webstack:httpBindAddress must be an IPv4 address such as 127.0.0.1 (got "localhost")'),
  },
  {
    settings: { target: "digitalocean", adminCidrs: ADMIN },
    message: one(
      'webstack:region is required for target "digitalocean": set it to a DigitalOcean region slug such as nyc3',
    ),
  },
  {
    settings: { target: "aws", adminCidrs: ADMIN },
    message: one('webstack:region is required for target "aws": set it to an AWS region such as us-east-1'),
  },
  {
    settings: { ...DO, region: "us-east-1" },
    message: one(
      'webstack:region must be a DigitalOcean region slug such as nyc3 for target "digitalocean" (got "us-east-1")',
    ),
  },
  {
    settings: { ...AWS, region: "nyc3" },
    message: one('webstack:region must be an AWS region such as us-east-1 for target "aws" (got "nyc3")'),
  },
  {
    settings: { ...AWS, size: "s-1vcpu-2gb" },
    message: one('webstack:size must be an EC2 instance type such as t3.small for target "aws" (got "s-1vcpu-2gb")'),
  },
  {
    settings: { ...DO, size: "t3.small" },
    message: one(
      'webstack:size must be a droplet size slug such as s-1vcpu-2gb for target "digitalocean" (got "t3.small")',
    ),
  },
  {
    settings: { target: "aws", region: "us-east-1" },
    message: one(
      'webstack:adminCidrs is required for target "aws": the CIDRs allowed to reach SSH and the Docker API, such as ["203.0.113.7/32"]',
    ),
  },
  {
    settings: { ...AWS, adminCidrs: '["0.0.0.0/33"]' },
    message: one(
      'webstack:adminCidrs must be a non-empty list of CIDRs such as ["203.0.113.7/32"] (got "[\\"0.0.0.0/33\\"]")',
    ),
  },
  {
    settings: { ...AWS, adminCidrs: "10.0.0.0/8" },
    message: one('webstack:adminCidrs must be a non-empty list of CIDRs such as ["203.0.113.7/32"] (got "10.0.0.0/8")'),
  },
  {
    settings: { region: "nyc3" },
    message: one('webstack:region applies only to the digitalocean and aws targets (target is "local")'),
  },
  {
    // A droplet region without Spaces is no reason to ask for a bucket's region on the local target.
    settings: { region: "nyc1" },
    message: one('webstack:region applies only to the digitalocean and aws targets (target is "local")'),
  },
  {
    settings: { ...DO, httpPort: "80.5" },
    message: one('webstack:httpPort must be a whole number from 0 to 65535 (got "80.5")'),
  },
  {
    settings: { ...DO, imageRegistry: "cloud" },
    message: one(
      'webstack:docrRegistry is required when imageRegistry is "cloud" on DigitalOcean: the name of an existing container registry',
    ),
  },
  {
    settings: { ...AWS, imageRegistry: "dockerhub" },
    message: one('webstack:imageRegistry must be one of "host", "cloud" (got "dockerhub")'),
  },
  {
    settings: { ...AWS, availabilityZone: "eu-west-1a" },
    message: one('webstack:availabilityZone must be a zone of region "us-east-1" (got "eu-west-1a")'),
  },
  {
    settings: { replica: "3" },
    message: one(`webstack:replica is not a webstack setting (known settings: ${knownSettings()})`),
  },
  {
    settings: { postgresImage: "Postgres:latest" },
    message: one(
      'webstack:postgresImage must be a Docker image reference such as postgres:17.6-bookworm (got "Postgres:latest")',
    ),
  },
  { settings: { protectData: "yes" }, message: one('webstack:protectData must be true or false (got "yes")') },
  {
    settings: { maxRequestBody: "10 MB" },
    message: one('webstack:maxRequestBody must be an nginx size such as 1m, 512k or 1048576 (got "10 MB")'),
  },
  {
    settings: { release: "feature/login" },
    message: one(
      `webstack:release must be 1-40 letters, digits, '.', '_' or '-', starting with a letter or digit (got "feature/login")`,
    ),
  },
  {
    settings: { ...AWS, adminCidrs: '["198.51.100.0/24","0.0.0.0/0"]' },
    message: one(
      'webstack:adminCidrs must not contain "0.0.0.0/0": a /0 opens SSH and the Docker API to the whole internet; list the addresses you deploy from, such as ["203.0.113.7/32"] (got "[\\"198.51.100.0/24\\",\\"0.0.0.0/0\\"]")',
    ),
  },
  {
    settings: { ...DO, adminCidrs: '["::/0"]' },
    message: one(
      'webstack:adminCidrs must not contain "::/0": a /0 opens SSH and the Docker API to the whole internet; list the addresses you deploy from, such as ["203.0.113.7/32"] (got "[\\"::/0\\"]")',
    ),
  },
  {
    settings: { ...DO, adminCidrs: '["10.0.0.0/00"]' },
    message: one(
      'webstack:adminCidrs must not contain "10.0.0.0/00": a /0 opens SSH and the Docker API to the whole internet; list the addresses you deploy from, such as ["203.0.113.7/32"] (got "[\\"10.0.0.0/00\\"]")',
    ),
  },
  { settings: { adminRoutes: "on" }, message: one('webstack:adminRoutes must be true or false (got "on")') },
  {
    settings: { limitConnPerIp: "-1" },
    message: one('webstack:limitConnPerIp must be a whole number from 0 to 65535 (got "-1")'),
  },
  {
    settings: { limitRatePerIp: "10r/s" },
    message: one('webstack:limitRatePerIp must be a whole number from 0 to 100000 (got "10r/s")'),
  },
  {
    settings: { limitRatePerIp: "20", limitBurst: "1000001" },
    message: one('webstack:limitBurst must be a whole number from 0 to 1000000 (got "1000001")'),
  },
  {
    settings: { limitBurst: "40" },
    message: one(
      'webstack:limitBurst applies only with a rate limit: set webstack:limitRatePerIp above 0, or leave limitBurst unset (got "40")',
    ),
  },
  {
    settings: { limitRatePerIp: "0", limitBurst: "40" },
    message: one(
      'webstack:limitBurst applies only with a rate limit: set webstack:limitRatePerIp above 0, or leave limitBurst unset (got "40")',
    ),
  },
  {
    settings: { postgresPassword: "plain-text-password-123" },
    message: one(
      "webstack:postgresPassword must be stored encrypted: run `pulumi config set --secret postgresPassword` (value not shown)",
    ),
  },
  {
    settings: { redisPassword: "has spaces in it, sadly" },
    secretKeys: ["redisPassword"],
    message: one("webstack:redisPassword must be 16-128 letters, digits, '_' or '-' (value not shown: it is a secret)"),
  },
  {
    settings: { limits: "384" },
    message: one(
      'webstack:limits must be an object such as {"app":{"memoryMb":384,"cpuShares":1024}} with roles postgres, redis, nginx, app, acme, backup (got "384")',
    ),
  },
  {
    settings: { limits: "{app: 384}" },
    message: one(
      'webstack:limits must be an object such as {"app":{"memoryMb":384,"cpuShares":1024}} with roles postgres, redis, nginx, app, acme, backup (got "{app: 384}")',
    ),
  },
  {
    settings: { limits: '{"app":{"memoryMb":63}}' },
    message: one('webstack:limits.app.memoryMb must be a whole number from 64 to 262144 (got "63")'),
  },
  {
    settings: { limits: '{"postgres":{"cpuShares":1.5}}' },
    message: one('webstack:limits.postgres.cpuShares must be a whole number from 2 to 262144 (got "1.5")'),
  },
  {
    settings: { limits: "[]" },
    message: one(
      'webstack:limits must be an object such as {"app":{"memoryMb":384,"cpuShares":1024}} with roles postgres, redis, nginx, app, acme, backup (got "[]")',
    ),
  },
  {
    settings: { limits: '{"app":[256]}' },
    message: one('webstack:limits.app must be an object with memoryMb and/or cpuShares (got "[256]")'),
  },
  {
    settings: { limits: '{"app":{"memoryMb":{"mb":256}}}' },
    message: one('webstack:limits.app.memoryMb must be a whole number from 64 to 262144 (got "{\\"mb\\":256}")'),
  },
  {
    settings: { limits: '{"app":384}' },
    message: one('webstack:limits.app must be an object with memoryMb and/or cpuShares (got "384")'),
  },
  {
    settings: { limits: '{"worker":{"memoryMb":128}}' },
    message: one("webstack:limits.worker is not a role with limits (roles: postgres, redis, nginx, app, acme, backup)"),
  },
  {
    settings: { limits: '{"redis":{"pids":100}}' },
    message: one("webstack:limits.redis.pids is not a limit (limits: memoryMb, cpuShares)"),
  },
  {
    settings: { limits: '{"redis":{"constructor":100}}' },
    message: one("webstack:limits.redis.constructor is not a limit (limits: memoryMb, cpuShares)"),
  },
];

/** Bad HTTPS settings: each alone on an otherwise good DigitalOcean stack with a domain. */
function httpsBad(): { settings: Record<string, string>; message: string }[] {
  const site = { ...DO, domain: "app.example.com", acmeEmail: "ops@example.com" };
  const bad = (settings: Record<string, string>, ...problems: string[]) => ({
    settings: { ...site, ...settings },
    message: `Invalid webstack configuration (${problems.length} problem${problems.length === 1 ? "" : "s"}):\n${problems.map((p) => `  - ${p}`).join("\n")}`,
  });
  const name = "a DNS name of at least two labels (letters, digits and '-'), such as app.example.com";
  return [
    bad(
      { domain: "https://app.example.com" },
      'webstack:domain must be a bare name without a scheme, such as app.example.com (got "https://app.example.com")',
    ),
    bad(
      { domain: "app.example.com/shop" },
      'webstack:domain must be a bare name without a path, such as app.example.com (got "app.example.com/shop")',
    ),
    bad(
      { domain: "app.example.com:8443" },
      'webstack:domain must be a bare name without a port, such as app.example.com (got "app.example.com:8443")',
    ),
    bad({ domain: "203.0.113.7" }, 'webstack:domain must be a DNS name, not an IP address (got "203.0.113.7")'),
    bad({ domain: "2001:db8::1" }, 'webstack:domain must be a DNS name, not an IP address (got "2001:db8::1")'),
    bad(
      { domain: "*.example.com" },
      'webstack:domain must be a name without a wildcard (HTTP-01 validation cannot certify *.) (got "*.example.com")',
    ),
    bad({ domain: "App.example.com" }, 'webstack:domain must be written in lower case (got "App.example.com")'),
    bad({ domain: "localhost" }, `webstack:domain must be ${name} (got "localhost")`),
    bad({ domain: "app..example.com" }, `webstack:domain must be ${name} (got "app..example.com")`),
    bad({ domain: "-app.example.com" }, `webstack:domain must be ${name} (got "-app.example.com")`),
    bad({ domain: "app.example.123" }, `webstack:domain must be ${name} (got "app.example.123")`),
    bad({ acmeEmail: "ops" }, 'webstack:acmeEmail must be an e-mail address such as ops@example.com (got "ops")'),
    bad(
      { acmeEmail: "ops@example" },
      'webstack:acmeEmail must be an e-mail address such as ops@example.com (got "ops@example")',
    ),
    bad(
      { acmeEmail: "o ps@example.com" },
      'webstack:acmeEmail must be an e-mail address such as ops@example.com (got "o ps@example.com")',
    ),
    bad(
      { acmeServer: "http://acme.example.com/directory" },
      'webstack:acmeServer must be an https:// ACME directory URL, or one of "letsencrypt", "letsencrypt-staging" (got "http://acme.example.com/directory")',
    ),
    bad(
      { acmeServer: "staging" },
      'webstack:acmeServer must be an https:// ACME directory URL, or one of "letsencrypt", "letsencrypt-staging" (got "staging")',
    ),
    bad(
      { acmeCaCertificate: "MIIB..." },
      'webstack:acmeCaCertificate must be a PEM certificate (-----BEGIN CERTIFICATE----- …) (got "MIIB...")',
    ),
    bad(
      { dnsZone: "example.org" },
      'webstack:dnsZone "example.org" must contain every name it gets records for; "app.example.com" is not inside it',
    ),
    bad(
      { dnsZone: "ple.com", extraDomains: '["www.example.com"]' },
      'webstack:dnsZone "ple.com" must contain every name it gets records for; "app.example.com", "www.example.com" are not inside it',
    ),
    bad(
      { dnsZone: "https://example.com" },
      'webstack:dnsZone must be a bare name without a scheme, such as app.example.com (got "https://example.com")',
    ),
    bad(
      { extraDomains: '["www.example.com", "http://x.example.com", "10.0.0.1"]' },
      'webstack:extraDomains[1] must be a bare name without a scheme, such as app.example.com (got "http://x.example.com")',
      'webstack:extraDomains[2] must be a DNS name, not an IP address (got "10.0.0.1")',
    ),
    bad(
      { extraDomains: "www.example.com" },
      'webstack:extraDomains must be a list of at most 99 DNS names such as ["www.example.com"] (got "www.example.com")',
    ),
    bad(
      { extraDomains: '["app.example.com"]' },
      'webstack:extraDomains must not repeat webstack:domain "app.example.com" (got "[\\"app.example.com\\"]")',
    ),
    bad(
      { extraDomains: '["www.example.com", "www.example.com"]' },
      'webstack:extraDomains must list each name once (got "[\\"www.example.com\\", \\"www.example.com\\"]")',
    ),
    bad({ hstsSeconds: "-1" }, 'webstack:hstsSeconds must be a whole number from 0 to 63072000 (got "-1")'),
    bad({ acmeRetrySeconds: "0" }, 'webstack:acmeRetrySeconds must be a whole number from 1 to 3600 (got "0")'),
    bad(
      { httpsPort: "80" },
      "webstack:httpsPort must differ from webstack:httpPort (both are 80; httpsPort is 80): set one of them to another port",
    ),
    bad(
      { httpPort: "443" },
      "webstack:httpsPort must differ from webstack:httpPort (both are 443; httpsPort is its default 443): set one of them to another port",
      `webstack:httpPort must be 80 with Let's Encrypt, which validates the domain on port 80 only (got "443")`,
    ),
    bad(
      { httpPort: "8080" },
      `webstack:httpPort must be 80 with Let's Encrypt, which validates the domain on port 80 only (got "8080")`,
    ),
    bad(
      { httpsPort: "2376" },
      'webstack:httpsPort must not be 2376: the firewall keeps SSH (22) and the Docker API (2376) to webstack:adminCidrs (got "2376")',
    ),
    bad(
      { httpPort: "22", acmeServer: "https://ca.internal/dir" },
      'webstack:httpPort must not be 22: the firewall keeps SSH (22) and the Docker API (2376) to webstack:adminCidrs (got "22")',
    ),
    bad(
      { acmeRetrySeconds: "60" },
      `webstack:acmeRetrySeconds must be at least 300 with Let's Encrypt, which allows 5 failed validations per name an hour (got "60")`,
    ),
    bad(
      { acmeImage: "Lego:Latest" },
      'webstack:acmeImage must be a Docker image reference such as goacme/lego:v4.25.2 (got "Lego:Latest")',
    ),
    {
      settings: { ...DO, domain: "app.example.com" },
      message: one(
        "webstack:acmeEmail is required with webstack:domain: the ACME account's contact address, such as ops@example.com",
      ),
    },
    {
      settings: { ...DO, acmeEmail: "ops@example.com", hstsSeconds: "0" },
      message:
        "Invalid webstack configuration (2 problems):\n" +
        "  - webstack:acmeEmail applies only with HTTPS: set webstack:domain too, or leave acmeEmail unset\n" +
        "  - webstack:hstsSeconds applies only with HTTPS: set webstack:domain too, or leave hstsSeconds unset",
    },
    {
      settings: {
        domain: "app.example.com",
        acmeEmail: "ops@example.com",
        acmeServer: "letsencrypt",
        dnsZone: "example.com",
        httpsPort: "8080",
      },
      message:
        "Invalid webstack configuration (4 problems):\n" +
        '  - webstack:dnsZone applies only to the digitalocean and aws targets (target is "local")\n' +
        `  - webstack:acmeEmail applies only to the digitalocean and aws targets: the local target's certificate comes from a CA the stack makes (target is "local")\n` +
        `  - webstack:acmeServer applies only to the digitalocean and aws targets: the local target's certificate comes from a CA the stack makes (target is "local")\n` +
        "  - webstack:httpsPort must differ from webstack:httpPort (both are 8080; httpsPort is 8080): set one of them to another port",
    },
  ];
}

/** Bad backup settings; `stack` pr-7 is a throwaway stack, the only kind that may switch backups off. */
function backupsBad(): Bad[] {
  const offOnlyThrowaway = (got: string) =>
    `webstack:backups may be false only on a throwaway stack (pr-<number>); this stack's data must be restorable, so remove the setting (got "${got}")`;
  const onlyWithBackups = (key: string) =>
    `webstack:${key} applies only with backups on: remove it, or remove webstack:backups false`;
  const spaces = '"nyc3", "sfo2", "sfo3", "ams3", "fra1", "sgp1", "syd1", "blr1", "lon1", "tor1", "atl1"';
  return [
    { settings: { backups: "false" }, message: one(offOnlyThrowaway("false")) },
    { settings: { ...DO, backups: "false" }, message: one(offOnlyThrowaway("false")) },
    // A leading zero is no pull request's number: not a throwaway stack.
    { settings: { ...DO, backups: "false" }, stack: "pr-07", message: one(offOnlyThrowaway("false")) },
    { settings: { ...AWS, backups: "false" }, stack: "prod", message: one(offOnlyThrowaway("false")) },
    { settings: { backups: "no" }, message: one('webstack:backups must be true or false (got "no")') },
    {
      settings: { ...DO, backups: "false", backupRetentionFull: "3" },
      stack: "pr-7",
      message: one(onlyWithBackups("backupRetentionFull")),
    },
    {
      settings: {
        ...DO,
        backups: "false",
        backupFullDays: "7",
        backupDiffHours: "24",
        backupRetentionDiff: "7",
        archiveTimeoutSeconds: "30",
        backupRegion: "ams3",
      },
      stack: "pr-7",
      message:
        "Invalid webstack configuration (5 problems):\n" +
        ["backupFullDays", "backupDiffHours", "backupRetentionDiff", "archiveTimeoutSeconds", "backupRegion"]
          .map((key) => `  - ${onlyWithBackups(key)}`)
          .join("\n"),
    },
    {
      settings: { backups: "false", backupFullDays: "3" },
      message:
        "Invalid webstack configuration (2 problems):\n" +
        `  - ${offOnlyThrowaway("false")}\n` +
        `  - ${onlyWithBackups("backupFullDays")}`,
    },
    {
      settings: { backupFullDays: "1", backupDiffHours: "25" },
      message: one(
        'webstack:backupDiffHours must be at most 24, the hours between full backups (webstack:backupFullDays 1) (got "25")',
      ),
    },
    {
      settings: { backupFullDays: "2", backupDiffHours: "49" },
      message: one(
        'webstack:backupDiffHours must be at most 48, the hours between full backups (webstack:backupFullDays 2) (got "49")',
      ),
    },
    {
      settings: { backupRegion: "ams3" },
      message: one(
        'webstack:backupRegion applies only to the digitalocean target, whose Spaces regions are not all droplet regions (target is "local")',
      ),
    },
    {
      settings: { ...AWS, backupRegion: "ams3" },
      message: one(
        'webstack:backupRegion applies only to the digitalocean target, whose Spaces regions are not all droplet regions (target is "aws")',
      ),
    },
    {
      settings: { ...DO, region: "nyc1" },
      message: one(
        `webstack:backupRegion is required: region "nyc1" has no Spaces for the backups' bucket; set it to one of ${spaces}`,
      ),
    },
    {
      settings: { ...DO, region: "nyc1", backupRegion: "nyc1" },
      message: one(`webstack:backupRegion must be one of ${spaces} (got "nyc1")`),
    },
    {
      settings: { backupFullDays: "36" },
      message: one('webstack:backupFullDays must be a whole number from 1 to 35 (got "36")'),
    },
    {
      settings: { backupDiffHours: "0" },
      message: one('webstack:backupDiffHours must be a whole number from 1 to 168 (got "0")'),
    },
    {
      settings: { backupRetentionFull: "53" },
      message: one('webstack:backupRetentionFull must be a whole number from 1 to 52 (got "53")'),
    },
    {
      settings: { backupRetentionDiff: "101" },
      message: one('webstack:backupRetentionDiff must be a whole number from 1 to 100 (got "101")'),
    },
    {
      settings: { archiveTimeoutSeconds: "5" },
      message: one('webstack:archiveTimeoutSeconds must be a whole number from 10 to 60 (got "5")'),
    },
  ];
}

function knownSettings(): string {
  return [
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
    "postgresPassword",
    "redisPassword",
  ].join(", ");
}

describe("bad configs are rejected before any resource exists", () => {
  for (const { settings, message, secretKeys, stack } of BAD) {
    test(`${JSON.stringify(settings)}${stack === undefined ? "" : ` on stack ${stack}`}`, async () => {
      const mocks = new RecordingMocks();
      await assert.rejects(runProgram(settings, { secretKeys, mocks, stack }), (error: unknown) => {
        assert.ok(error instanceof ConfigError, String(error));
        assert.equal(error.message, message);
        return true;
      });
      // Let anything the program might have started reach the mocks before counting.
      await pulumi.runtime.disconnect();
      assert.equal(mocks.resources.length, 0, "no resource registered");
    });
  }

  test("a secret's value never appears in its error message", () => {
    const secret = "has spaces in it, sadly";
    assert.throws(
      () => parseConfig({ redisPassword: secret }, new Set(["redisPassword"])),
      (error: Error) => !error.message.includes(secret),
    );
  });

  test("every problem is reported at once", () => {
    assert.throws(
      () => parseConfig({ target: "aws", replicas: "0", httpPort: "x", size: "huge" }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.deepEqual(error.problems, [
          'webstack:replicas must be a whole number from 1 to 20 (got "0")',
          'webstack:httpPort must be a whole number from 0 to 65535 (got "x")',
          'webstack:region is required for target "aws": set it to an AWS region such as us-east-1',
          'webstack:size must be an EC2 instance type such as t3.small for target "aws" (got "huge")',
          'webstack:adminCidrs is required for target "aws": the CIDRs allowed to reach SSH and the Docker API, such as ["203.0.113.7/32"]',
        ]);
        assert.match(error.message, /^Invalid webstack configuration \(5 problems\):\n {2}- /);
        return true;
      },
    );
  });
});

describe("defaults and good configs", () => {
  test("an empty config is the local stack with 3 replicas on 127.0.0.1:8080", () => {
    assert.deepEqual(parseConfig({}), {
      target: "local",
      replicas: 3,
      region: undefined,
      size: undefined,
      httpPort: 8080,
      httpBindAddress: "127.0.0.1",
      release: undefined,
      rollbackTo: undefined,
      keepReleases: 3,
      adminCidrs: [],
      imageRegistry: "host",
      docrRegistry: undefined,
      availabilityZone: undefined,
      ...DEFAULT_IMAGES,
      dataVolumeGb: 10,
      protectData: false,
      redisAof: true,
      maxRequestBody: "1m",
      shutdownGraceSeconds: 10,
      adminRoutes: false,
      limitConnPerIp: 0,
      limitRatePerIp: 0,
      limitBurst: undefined,
      limits: DEFAULT_LIMITS,
      appProcesses: 1024,
      https: undefined,
      backups: {
        fullDays: 7,
        diffHours: 24,
        retentionFull: 4,
        retentionDiff: 7,
        archiveTimeoutSeconds: 30,
        bucketRegion: undefined,
      },
    });
  });

  test("HTTPS: the names, production Let's Encrypt and a year of HSTS by default; staging and no HSTS for a throwaway stack; shorthands and a trailing dot accepted", () => {
    const site = { ...DO, domain: "app.example.com.", acmeEmail: "ops@example.com" };
    assert.deepEqual(parseConfig(site).https, {
      domains: ["app.example.com"],
      acme: {
        email: "ops@example.com",
        server: "https://acme-v02.api.letsencrypt.org/directory",
        caCertificate: undefined,
        retrySeconds: 300,
      },
      dnsZone: undefined,
      hstsSeconds: 31536000,
      httpsPort: 443,
    });
    const throwaway = parseConfig(site, new Set(), { throwaway: true }).https;
    assert.deepEqual(
      [throwaway?.acme?.server, throwaway?.hstsSeconds],
      ["https://acme-staging-v02.api.letsencrypt.org/directory", 0],
    );
    // Given values win over a throwaway stack's defaults.
    const given = parseConfig(
      {
        ...site,
        acmeServer: "letsencrypt",
        hstsSeconds: "600",
        extraDomains: '["www.example.com", "example.com"]',
        dnsZone: "example.com",
        httpsPort: "8443",
        acmeRetrySeconds: "600",
      },
      new Set(),
      { throwaway: true },
    ).https;
    assert.deepEqual(given, {
      domains: ["app.example.com", "www.example.com", "example.com"],
      acme: {
        email: "ops@example.com",
        server: "https://acme-v02.api.letsencrypt.org/directory",
        caCertificate: undefined,
        retrySeconds: 600,
      },
      dnsZone: "example.com",
      hstsSeconds: 600,
      httpsPort: 8443,
    });
    // Let's Encrypt's floor for the first retry is allowed itself.
    assert.equal(parseConfig({ ...site, acmeRetrySeconds: "300" }).https?.acme?.retrySeconds, 300);
    assert.equal(
      parseConfig({ ...site, acmeServer: "https://ca.internal:9000/acme/dir" }).https?.acme?.server,
      "https://ca.internal:9000/acme/dir",
    );
  });

  test("HTTPS values at their edges: e-mail addresses, PEM certificates, names, directory URLs", () => {
    const site = { ...DO, domain: "app.example.com", acmeEmail: "ops@example.com" };
    const accepted = (settings: Record<string, string>) => parseConfig({ ...site, ...settings }).https;
    const refused = (settings: Record<string, string>) =>
      assert.throws(() => parseConfig({ ...site, ...settings }), ConfigError, JSON.stringify(settings));
    for (const acmeEmail of ["ops+alerts@mail.example.co.uk", "o.p-s@a.io", "x@1.example"]) {
      assert.equal(accepted({ acmeEmail })?.acme?.email, acmeEmail);
    }
    for (const acmeEmail of [
      "<ops@example.com",
      "ops@example.com>",
      "ops@-example.com",
      "ops@example-.com",
      "@example.com",
    ]) {
      refused({ acmeEmail });
    }
    const body = "MIIBszCCAVmgAwIBAgIUUo2w\nQ0EwHhcNMjYxMTI2MDAwMDAw=";
    for (const pem of [
      `-----BEGIN CERTIFICATE-----\n${body}\n-----END CERTIFICATE-----`,
      `-----BEGIN CERTIFICATE-----\r\n${body.replace("\n", "\r\n")}\r\n-----END CERTIFICATE-----\r\n\r\n`,
    ]) {
      assert.equal(
        accepted({ acmeServer: "https://ca.internal/dir", acmeCaCertificate: pem })?.acme?.caCertificate,
        pem,
      );
    }
    for (const pem of [
      `junk-----BEGIN CERTIFICATE-----\n${body}\n-----END CERTIFICATE-----`,
      `-----BEGIN CERTIFICATE-----\n${body}\n-----END CERTIFICATE-----junk`,
      "-----BEGIN CERTIFICATE-----\nAA#A\n-----END CERTIFICATE-----",
      "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----",
    ]) {
      refused({ acmeServer: "https://ca.internal/dir", acmeCaCertificate: pem });
    }
    // A name up to 253 characters, its last label anything but all digits; a trailing dot dropped.
    const long = [61, 63, 63, 63].map((n, i) => String.fromCharCode(97 + i).repeat(n)).join(".");
    assert.equal(long.length, 253);
    assert.deepEqual(accepted({ domain: long })?.domains, [long]);
    assert.throws(() => parseConfig({ ...site, domain: `a${long}` }), /at least two labels/);
    for (const domain of ["app.example.c1", "app.example.1c"])
      assert.deepEqual(accepted({ domain })?.domains, [domain]);
    assert.deepEqual(accepted({ extraDomains: '["www.example.com."]' })?.domains, [
      "app.example.com",
      "www.example.com",
    ]);
    assert.throws(
      () => parseConfig({ ...site, domain: "app.example.com/go://x" }),
      /must be a bare name without a path/,
      "a scheme only at the start",
    );
    for (const acmeServer of ["https://user@ca.example/dir", "https://:secret@ca.example/dir"]) refused({ acmeServer });
  });

  test("HTTPS on the local target: the stack's own CA (no ACME client), port 8443, no HSTS unless asked", () => {
    assert.deepEqual(parseConfig({ domain: "app.localhost" }).https, {
      domains: ["app.localhost"],
      acme: undefined,
      dnsZone: undefined,
      hstsSeconds: 0,
      httpsPort: 8443,
    });
    assert.equal(parseConfig({ domain: "app.localhost", hstsSeconds: "300" }).https?.hstsSeconds, 300);
  });

  test("limits: each role's given values over the defaults, from numbers or digits; every bad one reported", () => {
    const { limits } = parseConfig({
      limits: '{"app":{"memoryMb":384},"postgres":{"memoryMb":"1024","cpuShares":4096}}',
    });
    assert.deepEqual(limits, {
      ...DEFAULT_LIMITS,
      app: { memoryMb: 384, cpuShares: DEFAULT_LIMITS.app.cpuShares },
      postgres: { memoryMb: 1024, cpuShares: 4096 },
    });
    assert.deepEqual(DEFAULT_LIMITS.app, { memoryMb: 256, cpuShares: 1024 }, "the defaults are not changed in place");
    assert.deepEqual(parseConfig({ limits: "{}" }).limits, DEFAULT_LIMITS);
    assert.deepEqual(parseConfig({ limits: '{"nginx":{"memoryMb":64,"cpuShares":262144}}' }).limits.nginx, {
      memoryMb: 64,
      cpuShares: 262144,
    });
    assert.throws(
      () =>
        parseConfig({ replicas: "0", limits: '{"app":{"memoryMb":262145,"cpuShares":1},"nginx":{"memoryMb":true}}' }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.deepEqual(error.problems, [
          'webstack:replicas must be a whole number from 1 to 20 (got "0")',
          'webstack:limits.app.memoryMb must be a whole number from 64 to 262144 (got "262145")',
          'webstack:limits.app.cpuShares must be a whole number from 2 to 262144 (got "1")',
          'webstack:limits.nginx.memoryMb must be a whole number from 64 to 262144 (got "true")',
        ]);
        return true;
      },
    );
  });

  test("admin routes and per-address limits are off unless set; a burst is kept only with a rate", () => {
    const on = parseConfig({ adminRoutes: "true", limitConnPerIp: "20", limitRatePerIp: "10", limitBurst: "0" });
    assert.deepEqual(
      [on.adminRoutes, on.limitConnPerIp, on.limitRatePerIp, on.limitBurst],
      [true, 20, 10, 0],
      "a configured 0 burst stays 0",
    );
    assert.equal(parseConfig({ limitRatePerIp: "10" }).limitBurst, undefined, "nginx's default burst applies");
  });

  test("a rate limit that is itself invalid is reported once, not again through the burst", () => {
    assert.throws(
      () => parseConfig({ limitRatePerIp: "fast", limitBurst: "40" }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.deepEqual(error.problems, [
          'webstack:limitRatePerIp must be a whole number from 0 to 100000 (got "fast")',
        ]);
        return true;
      },
    );
  });

  test("a cloud host may publish nginx elsewhere than 0.0.0.0:80", () => {
    const config = parseConfig({ ...DO, httpPort: "8443", httpBindAddress: "127.0.0.1" });
    assert.equal(config.httpPort, 8443);
    assert.equal(config.httpBindAddress, "127.0.0.1");
  });

  test("cloud targets get their default sizes, port 80 on every address, and an AWS zone", () => {
    const doConfig = parseConfig(DO);
    assert.equal(doConfig.size, "s-1vcpu-2gb");
    assert.equal(doConfig.httpPort, 80);
    assert.equal(doConfig.httpBindAddress, "0.0.0.0");
    assert.deepEqual(doConfig.adminCidrs, ["198.51.100.0/24"]);
    const awsConfig = parseConfig({ ...AWS, adminCidrs: '["198.51.100.0/24", "2001:db8::/32"]' });
    assert.equal(awsConfig.size, "t3.small");
    assert.equal(awsConfig.availabilityZone, "us-east-1a");
    assert.deepEqual(awsConfig.adminCidrs, ["198.51.100.0/24", "2001:db8::/32"]);
  });

  test("backups: on by default on every target and every stack; the bucket in the DigitalOcean region, or backupRegion; given values kept", () => {
    const defaults = {
      fullDays: 7,
      diffHours: 24,
      retentionFull: 4,
      retentionDiff: 7,
      archiveTimeoutSeconds: 30,
      bucketRegion: undefined,
    };
    assert.deepEqual(parseConfig({}).backups, defaults);
    assert.deepEqual(parseConfig({ backups: "true" }).backups, defaults);
    assert.deepEqual(parseConfig(AWS).backups, defaults, "an S3 bucket is in the stack's own region");
    assert.deepEqual(parseConfig(DO).backups, { ...defaults, bucketRegion: "nyc3" });
    // A throwaway stack keeps them unless it switches them off.
    assert.deepEqual(parseConfig(DO, new Set(), { throwaway: true }).backups, { ...defaults, bucketRegion: "nyc3" });
    // A droplet region without Spaces, with a Spaces region for the bucket.
    assert.deepEqual(parseConfig({ ...DO, region: "nyc1", backupRegion: "nyc3" }).backups?.bucketRegion, "nyc3");
    assert.deepEqual(parseConfig({ ...DO, backupRegion: "fra1" }).backups?.bucketRegion, "fra1");
    assert.deepEqual(
      parseConfig({
        ...DO,
        backupFullDays: "14",
        backupDiffHours: "6",
        backupRetentionFull: "2",
        backupRetentionDiff: "20",
        archiveTimeoutSeconds: "60",
        backupRegion: "ams3",
      }).backups,
      {
        fullDays: 14,
        diffHours: 6,
        retentionFull: 2,
        retentionDiff: 20,
        archiveTimeoutSeconds: 60,
        bucketRegion: "ams3",
      },
    );
    // Differential backups as often as full ones, at the edge.
    assert.equal(parseConfig({ backupFullDays: "1", backupDiffHours: "24" }).backups?.diffHours, 24);
    assert.equal(parseConfig({ backupFullDays: "35", backupDiffHours: "168" }).backups?.diffHours, 168);
  });

  test("backups: false only on a throwaway stack, which then has none (and no bucket region, whatever its region)", () => {
    const throwaway = { throwaway: true };
    assert.equal(parseConfig({ backups: "false" }, new Set(), throwaway).backups, undefined);
    assert.equal(parseConfig({ ...DO, backups: "false" }, new Set(), throwaway).backups, undefined);
    assert.equal(parseConfig({ ...DO, region: "nyc1", backups: "false" }, new Set(), throwaway).backups, undefined);
    assert.equal(parseConfig({ ...AWS, backups: "false" }, new Set(), throwaway).backups, undefined);
    assert.throws(
      () => parseConfig({ ...DO, backups: "false" }),
      (error: unknown) =>
        error instanceof ConfigError &&
        error.problems.length === 1 &&
        error.problems[0].startsWith("webstack:backups may be false only on a throwaway stack (pr-<number>)"),
    );
  });

  test("limits are inclusive and a configured value is kept as given", () => {
    assert.equal(parseConfig({ replicas: "1" }).replicas, 1);
    assert.equal(parseConfig({ replicas: "20" }).replicas, 20);
    assert.equal(parseConfig({ httpPort: "65535" }).httpPort, 65535);
    assert.equal(parseConfig({ httpPort: "0" }).httpPort, 0, "a configured 0 stays 0 on the local target");
    assert.equal(parseConfig({ redisAof: "false" }).redisAof, false);
    assert.equal(parseConfig({ ...AWS, size: "t4g.micro" }).size, "t4g.micro");
    assert.equal(
      parseConfig({ nginxImage: "registry.example.com:5000/team/nginx:1.28@sha256:" + "a".repeat(64) }).nginxImage,
      "registry.example.com:5000/team/nginx:1.28@sha256:" + "a".repeat(64),
    );
  });
});

describe("replicas and the host's vCPUs", () => {
  test("a droplet size or an instance type tells its vCPUs; a name it does not know tells nothing", () => {
    const cases: [target: "digitalocean" | "aws", size: string, vcpus: number | undefined][] = [
      ["digitalocean", "s-1vcpu-1gb", 1],
      ["digitalocean", "s-1vcpu-512mb-10gb", 1],
      ["digitalocean", "s-2vcpu-4gb", 2],
      ["digitalocean", "s-4vcpu-8gb-amd", 4],
      ["digitalocean", "g-16vcpu-64gb", 16],
      ["digitalocean", "c-2", 2],
      ["digitalocean", "c-4-intel", 4],
      ["digitalocean", "c2-16", 16],
      ["digitalocean", "gpu-h100x1-80gb", undefined],
      ["digitalocean", "gpu-c-2", undefined],
      ["digitalocean", "c-2-amd64", undefined],
      ["aws", "t1.micro", 1],
      ["aws", "t2.micro", 1],
      ["aws", "t2.medium", 2],
      ["aws", "t3.nano", 2],
      ["aws", "t3.small", 2],
      ["aws", "t3a.medium", 2],
      ["aws", "t4g.small", 2],
      ["aws", "m6g.medium", 1],
      ["aws", "m5.large", 2],
      ["aws", "c5.xlarge", 4],
      ["aws", "m5.2xlarge", 8],
      ["aws", "c5.24xlarge", 96],
      ["aws", "m5.metal", undefined],
      ["aws", "m5.small", undefined],
      ["aws", "t3", undefined],
      // Names only as close to those as a typo: the family and the size must match whole.
      ["aws", "xt3.small", undefined],
      ["aws", "t3x.small", 2],
      ["aws", "t3-.small", undefined],
      ["aws", "t3.xsmall", undefined],
      ["aws", "t3.smallx", undefined],
      ["aws", "m5.yxlarge", undefined],
      ["aws", "m5.xlargey", undefined],
    ];
    for (const [target, size, vcpus] of cases) assert.equal(vcpusOf(target, size), vcpus, `${target} ${size}`);
  });

  test("unset, a cloud stack runs as many replicas as its VM has vCPUs, at least 2 and at most 3; locally 3", () => {
    assert.deepEqual([undefined, 1, 2, 3, 4, 64].map(defaultReplicas), [3, 2, 2, 3, 3, 3]);
    assert.equal(parseConfig({}).replicas, 3);
    assert.equal(parseConfig(DO).replicas, 2, "s-1vcpu-2gb");
    assert.equal(parseConfig({ ...DO, size: "s-4vcpu-8gb" }).replicas, 3);
    assert.equal(parseConfig({ ...DO, size: "gpu-h100x1-80gb" }).replicas, 3, "vCPUs unknown");
    assert.equal(parseConfig(AWS).replicas, 2, "t3.small");
    assert.equal(parseConfig({ ...AWS, size: "c5.xlarge" }).replicas, 3);
    assert.equal(parseConfig({ ...DO, replicas: "5" }).replicas, 5, "a configured count is kept");
    assert.equal(parseConfig({ ...AWS, replicas: "1" }).replicas, 1);
  });

  test("more replicas than vCPUs, and more than 2, get a warning that names the setting, the size and a count that fits", () => {
    const advice = (settings: Record<string, string>) => replicaAdvice(parseConfig(settings));
    assert.equal(
      advice({ ...DO, replicas: "3" }),
      "webstack:replicas is 3 but size s-1vcpu-2gb has 1 vCPU: replicas past the vCPUs make every visit cost " +
        "more CPU and the counter slower, not faster. Set webstack:replicas to 2, or pick a size with at least 3 vCPUs.",
    );
    assert.equal(
      advice({ ...AWS, size: "c5.xlarge", replicas: "5" }),
      "webstack:replicas is 5 but size c5.xlarge has 4 vCPUs: replicas past the vCPUs make every visit cost " +
        "more CPU and the counter slower, not faster. Set webstack:replicas to 4, or pick a size with at least 5 vCPUs.",
    );
    for (const fits of [
      DO,
      { ...DO, replicas: "2" },
      { ...DO, replicas: "1" },
      { ...AWS, size: "c5.xlarge", replicas: "4" },
      { ...DO, size: "gpu-h100x1-80gb", replicas: "20" },
      { replicas: "20" },
    ]) {
      assert.equal(advice(fits), undefined, JSON.stringify(fits));
    }
  });

  test("the program logs the warning at preview and up, and nothing for a count that fits", async () => {
    const warn = mock.method(pulumi.log, "warn", () => Promise.resolve());
    const replicaWarnings = () =>
      warn.mock.calls.map((call) => String(call.arguments[0])).filter((m) => m.startsWith("webstack:replicas"));
    try {
      await runProgram({ ...AWS, replicas: "3" });
      assert.deepEqual(replicaWarnings(), [replicaAdvice(parseConfig({ ...AWS, replicas: "3" }))]);
      warn.mock.resetCalls();
      await runProgram(AWS);
      assert.deepEqual(replicaWarnings(), []);
    } finally {
      warn.mock.restore();
    }
  });
});

describe("each setting at the edges of what it allows", () => {
  // Every value sits just inside or just outside what a check allows, so a loosened or tightened
  // check fails here; parseConfig is called directly (the table above covers the program's path).
  const problemsOf = (settings: Record<string, string>, secretKeys: string[] = []): string[] => {
    try {
      parseConfig(settings, new Set(secretKeys));
      return [];
    } catch (error) {
      assert.ok(error instanceof ConfigError, String(error));
      return error.problems;
    }
  };
  const accepts = (settings: Record<string, string>, secretKeys: string[] = []) =>
    assert.deepEqual(problemsOf(settings, secretKeys), [], JSON.stringify(settings));
  const refuses = (key: string, settings: Record<string, string>, secretKeys: string[] = []) => {
    const problems = problemsOf(settings, secretKeys);
    assert.ok(problems.length > 0, `${JSON.stringify(settings)} accepted`);
    for (const p of problems) assert.ok(p.startsWith(`webstack:${key} `), `${JSON.stringify(settings)}: ${p}`);
  };
  const table = (key: string, good: string[], bad: string[], base: Record<string, string> = {}) => {
    for (const value of good) accepts({ ...base, [key]: value });
    for (const value of bad) refuses(key, { ...base, [key]: value });
  };

  test("whole numbers: each bound inclusive, digits only (spaces around them allowed)", () => {
    table("replicas", ["1", "20", " 7 "], ["0", "21", "-1", "1e1", "0x10", "", "7a", "1.0"]);
    table("httpPort", ["0", "1", "65535"], ["65536", "-1", "8080.5"]);
    table("shutdownGraceSeconds", ["1", "300"], ["0", "301"]);
    table("keepReleases", ["1", "50"], ["0", "51", "-1", "2.5", ""]);
    table("appProcesses", ["224", "65536"], ["63", "223", "65537", "-1", "2.5", ""]);
    // Enough for two releases' replicas and the migration run: 32 tasks each.
    accepts({ replicas: "20", appProcesses: "1312" });
    assert.deepEqual(problemsOf({ replicas: "20", appProcesses: "1311" }), [
      'webstack:appProcesses must be at least 1312 for 20 replicas (32 tasks for each replica of two releases and the migration run) (got "1311")',
    ]);
    table("limitConnPerIp", ["0", "65535"], ["65536"]);
    table("limitRatePerIp", ["0", "100000"], ["100001"]);
    table("limitBurst", ["0", "1000000"], ["1000001"], { limitRatePerIp: "10" });
    table("dataVolumeGb", ["1", "16384"], ["0", "16385"], DO);
    table("backupFullDays", ["1", "35"], ["0", "36", "-1", "2.5", ""], { backupDiffHours: "1" });
    table("backupDiffHours", ["1", "168"], ["0", "169", "-1", "2.5", ""], { backupFullDays: "35" });
    table("backupRetentionFull", ["1", "52"], ["0", "53", "-1", "2.5", ""]);
    table("backupRetentionDiff", ["1", "100"], ["0", "101", "-1", "2.5", ""]);
    table("archiveTimeoutSeconds", ["10", "60"], ["9", "61", "0", "2.5", ""]);
    // Differential backups no further apart than full ones: fullDays × 24 hours at most.
    accepts({ backupFullDays: "3", backupDiffHours: "72" });
    assert.deepEqual(problemsOf({ backupFullDays: "3", backupDiffHours: "73" }), [
      'webstack:backupDiffHours must be at most 72, the hours between full backups (webstack:backupFullDays 3) (got "73")',
    ]);
    // Without backupFullDays, its default of 7 days bounds it.
    accepts({ backupDiffHours: "168" });
    assert.equal(parseConfig({ replicas: " 7 " }).replicas, 7);
    assert.equal(parseConfig({ ...DO, dataVolumeGb: "16384" }).dataVolumeGb, 16384);
    assert.equal(parseConfig({ shutdownGraceSeconds: "300" }).shutdownGraceSeconds, 300);
    assert.equal(parseConfig({ limitConnPerIp: "65535" }).limitConnPerIp, 65535);
  });

  test("true or false, spelt exactly", () => {
    for (const key of ["protectData", "redisAof", "adminRoutes"]) {
      table(key, ["true", "false"], ["True", "yes", "1", "", " true"]);
      assert.equal(parseConfig({ [key]: "true" })[key as "protectData"], true);
      assert.equal(parseConfig({ [key]: "false" })[key as "protectData"], false);
    }
    // backups: false is refused on this (non-throwaway) stack by its own rule, not as a spelling.
    table("backups", ["true"], ["True", "yes", "1", "", " true", "false"]);
  });

  test("addresses and CIDRs", () => {
    table("httpBindAddress", ["0.0.0.0", "10.1.2.3"], ["::1", "localhost", "1.2.3.256", ""]);
    table(
      "adminCidrs",
      [
        '["203.0.113.7/32"]',
        '["2001:db8::/32"]',
        '["2001:db8::1/128"]',
        '["10.0.0.0/8", "198.51.100.7/32"]',
        '["203.0.113.7/1"]',
      ],
      [
        "[]",
        '"203.0.113.7/32"',
        '["203.0.113.7"]',
        '["203.0.113.7/33"]',
        '["2001:db8::/129"]',
        '["203.0.113.7/32/1"]',
        '["x/32"]',
        '["203.0.113.7/1000"]',
        '["203.0.113.7/1e1"]',
        '["198.51.100.7/32", "x"]',
        '["203.0.113.7/ 3"]',
        '["203.0.113.7/"]',
        "not json",
        "[1]",
        '["0.0.0.0/0"]',
        '["::/0"]',
        '["10.0.0.0/00"]',
      ],
      DO,
    );
    assert.deepEqual(problemsOf({ ...DO, adminCidrs: '["198.51.100.7/32", "0.0.0.0/0", "::/0"]' }), [
      'webstack:adminCidrs must not contain "0.0.0.0/0" or "::/0": a /0 opens SSH and the Docker API to the whole internet; list the addresses you deploy from, such as ["203.0.113.7/32"] (got "[\\"198.51.100.7/32\\", \\"0.0.0.0/0\\", \\"::/0\\"]")',
    ]);
  });

  test("names: releases, registries, zones, regions and sizes", () => {
    table("release", ["a", "A".repeat(40), "v1.2_3-x", "0abc"], ["", "-a", ".a", "_a", "a".repeat(41), "a/b", "a b"]);
    assert.equal(parseConfig({ release: "v1.2_3-x" }).release, "v1.2_3-x");
    table("rollbackTo", ["a", "4f1c2ab9e0d3", "A".repeat(40)], ["", "-a", "a/b", "a b", "a".repeat(41), "r1;true"]);
    assert.equal(parseConfig({ rollbackTo: "4f1c2ab9e0d3" }).rollbackTo, "4f1c2ab9e0d3");
    assert.deepEqual(problemsOf({ rollbackTo: "r1;true" }), [
      `webstack:rollbackTo must be a release id the stack deployed before, such as its git SHA (got "r1;true")`,
    ]);
    table(
      "docrRegistry",
      ["a", "my-registry", `a${"b".repeat(61)}c`],
      ["-a", "a-", "Ab", `a${"b".repeat(62)}c`, "a_b", ""],
      { ...DO, imageRegistry: "cloud" },
    );
    table(
      "availabilityZone",
      ["us-east-1a", "us-east-1f"],
      ["us-east-1", "us-east-1aa", "xus-east-1a", "us-east-1a ", "US-east-1a"],
      AWS,
    );
    assert.deepEqual(problemsOf({ ...AWS, availabilityZone: "xus-east-1a" }), [
      'webstack:availabilityZone must be an AWS availability zone such as us-east-1a (got "xus-east-1a")',
      'webstack:availabilityZone must be a zone of region "us-east-1" (got "xus-east-1a")',
    ]);
    assert.deepEqual(problemsOf({ ...DO, imageRegistry: "cloud", docrRegistry: "-a" }), [
      'webstack:docrRegistry must be a DigitalOcean registry name (got "-a")',
    ]);
    assert.deepEqual(problemsOf({ ...AWS, availabilityZone: "us-west-2a" }), [
      'webstack:availabilityZone must be a zone of region "us-east-1" (got "us-west-2a")',
    ]);
    table("region", ["nyc3", "sfo2", "ams3"], ["NYC3", "nyc", "nyc33", "us-east-1", "xnyc3", "nyc3 "], DO);
    table(
      "region",
      ["us-east-1", "us-gov-west-1", "eu-central-2", "us-iso-east-1", "us-isob-east-1"],
      ["us-east", "useast-1", "us-east-1a", "nyc3", "xus-east-1", "us-east-1 ", "us-gov-west-12"],
      AWS,
    );
    table(
      "size",
      ["s-1vcpu-2gb", "c-2", "gd-2vcpu-8gb"],
      ["s1vcpu", "S-1VCPU", "S-1vcpu-2gb", "s-", "-s", "s-1vcpu-2gb "],
      DO,
    );
    table(
      "size",
      ["t3.small", "m7g.2xlarge", "u-3tb1.56xlarge"],
      ["t3", "t3.", "T3.small", "t3.small.x", ".small"],
      AWS,
    );
  });

  test("image references", () => {
    const digest = `@sha256:${"0123456789abcdef".repeat(4)}`;
    table(
      "postgresImage",
      [
        "postgres",
        "postgres:17",
        "registry.example.com:5000/team/postgres:17.6-bookworm",
        "ghcr.io/acme/postgres:17",
        `postgres${digest}`,
        `postgres:17${digest}`,
        "my_org/img-name.x:Tag_1",
        `postgres:${"a".repeat(128)}`,
      ],
      [
        "Postgres:17",
        "postgres:",
        ":17",
        "postgres:17 ",
        " postgres",
        "postgres@sha256:abc",
        `postgres${digest}0`,
        `postgres:${"a".repeat(129)}`,
        "postgres:.tag",
        "a//b",
        "registry:port/x",
        "postgres_",
      ],
    );
    for (const key of ["redisImage", "nginxImage", "nodeImage"]) table(key, ["x:1"], ["X:1"]);
    assert.deepEqual(problemsOf({ postgresImage: "X", redisImage: "X", nginxImage: "X", nodeImage: "X" }), [
      'webstack:postgresImage must be a Docker image reference such as postgres:17.6-bookworm (got "X")',
      'webstack:redisImage must be a Docker image reference such as redis:8.2.1-bookworm (got "X")',
      'webstack:nginxImage must be a Docker image reference such as nginx:1.28.0-bookworm (got "X")',
      'webstack:nodeImage must be a Docker image reference such as node:22.20.0-bookworm-slim (got "X")',
    ]);
  });

  test("nginx sizes: 1 to 999999 with an optional k or m", () => {
    table("maxRequestBody", ["1", "999999", "512k", "1m"], ["0", "1000000", "1g", "1M", "01m", "1mb", "m", " 1m"]);
    assert.equal(parseConfig({ maxRequestBody: "512k" }).maxRequestBody, "512k");
  });

  test("passwords: secrets of 16 to 128 letters, digits, '_' or '-'", () => {
    for (const key of ["postgresPassword", "redisPassword"]) {
      for (const value of ["a".repeat(16), "A_b-9".repeat(25) + "abc"]) accepts({ [key]: value }, [key]);
      for (const value of ["a".repeat(15), "a".repeat(129), `${"a".repeat(16)}!`, ` ${"a".repeat(16)}`]) {
        refuses(key, { [key]: value }, [key]);
      }
      refuses(key, { [key]: "a".repeat(16) });
    }
  });

  test("settings that apply to other targets, and unknown keys", () => {
    for (const key of [
      "region",
      "size",
      "adminCidrs",
      "imageRegistry",
      "dataVolumeGb",
      "docrRegistry",
      "availabilityZone",
    ]) {
      assert.deepEqual(problemsOf({ [key]: "x" }).slice(-1), [
        `webstack:${key} applies only to the digitalocean and aws targets (target is "local")`,
      ]);
    }
    assert.deepEqual(problemsOf({ ...AWS, docrRegistry: "reg" }), [
      'webstack:docrRegistry applies only to the digitalocean target (target is "aws")',
    ]);
    assert.deepEqual(problemsOf({ ...DO, availabilityZone: "us-east-1a" }), [
      'webstack:availabilityZone applies only to the aws target (target is "digitalocean")',
    ]);
    assert.deepEqual(problemsOf({ backupRegion: "ams3" }), [
      'webstack:backupRegion applies only to the digitalocean target, whose Spaces regions are not all droplet regions (target is "local")',
    ]);
    refuses("backupRegion", { ...AWS, backupRegion: "ams3" });
    table("backupRegion", ["nyc3", "sfo3", "atl1"], ["nyc1", "NYC3", "us-east-1", ""], DO);
    refuses("docrRegistry", { ...DO, imageRegistry: "cloud" });
    accepts({ ...AWS, imageRegistry: "cloud" });
    accepts({ ...DO, imageRegistry: "host" });
    table("httpPort", ["80", "1", "080"], ["0", " 00 "], DO);
    // An unknown target is the one problem: no other target's rules are applied to it.
    assert.deepEqual(problemsOf({ target: "gcp", region: "nyc3", adminCidrs: ADMIN }), [
      'webstack:target must be one of "local", "digitalocean", "aws" (got "gcp")',
    ]);
    refuses("replicaz", { replicaz: "3" });
    accepts({ replicaz: undefined } as unknown as Record<string, string>);
    assert.equal(new ConfigError(["one"]).message, "Invalid webstack configuration (1 problem):\n  - one");
    assert.equal(new ConfigError(["one"]).name, "ConfigError");
    assert.equal(new ConfigError(["a", "b"]).message, "Invalid webstack configuration (2 problems):\n  - a\n  - b");
  });
});

describe("the committed stack files", () => {
  const ROOT = path.join(__dirname, "..", "..");
  const files = readdirSync(ROOT).filter((f) => /^Pulumi\..+\.yaml$/.test(f));

  test("each one's webstack settings pass validation as the program receives them", () => {
    assert.deepEqual(files.sort(), [
      "Pulumi.aws-example.yaml",
      "Pulumi.dev.yaml",
      "Pulumi.do-example.yaml",
      "Pulumi.pr.yaml",
    ]);
    for (const file of files) {
      const { config } = parse(readFileSync(path.join(ROOT, file), "utf8")) as { config: Record<string, unknown> };
      // Pulumi hands a program text as is, and lists and objects as JSON text.
      const raw = Object.fromEntries(
        Object.entries(config)
          .filter(([key]) => key.startsWith("webstack:"))
          .map(([key, value]) => [
            key.slice("webstack:".length),
            typeof value === "string" ? value : JSON.stringify(value),
          ]),
      );
      // The template is what every pr-<n> stack runs: a throwaway stack.
      assert.doesNotThrow(() => parseConfig(raw, new Set(), { throwaway: file === "Pulumi.pr.yaml" }), file);
    }
  });

  test("the throwaway stack's limits fit its 1 GB droplet", () => {
    const { config } = parse(readFileSync(path.join(ROOT, "Pulumi.pr.yaml"), "utf8")) as {
      config: Record<string, unknown>;
    };
    const { limits, replicas, size } = parseConfig({
      target: String(config["webstack:target"]),
      region: String(config["webstack:region"]),
      size: String(config["webstack:size"]),
      replicas: String(config["webstack:replicas"]),
      adminCidrs: JSON.stringify(config["webstack:adminCidrs"]),
      limits: JSON.stringify(config["webstack:limits"]),
    });
    assert.equal(size, "s-1vcpu-1gb");
    const total =
      limits.postgres.memoryMb + limits.redis.memoryMb + limits.nginx.memoryMb + replicas * limits.app.memoryMb;
    assert.ok(total <= 1024 - 192, `${total} MB of limits leave too little of 1024 MB to the system and Docker`);
  });

  // A pr-<n> stack runs what the template asks for: backups off, so no backup container to fit.
  test("the throwaway stack's limits fit its 1 GB droplet with every long-running container it runs, the backup container's too", () => {
    const { config } = parse(readFileSync(path.join(ROOT, "Pulumi.pr.yaml"), "utf8")) as {
      config: Record<string, unknown>;
    };
    // Every webstack setting of the template, as a pr-<n> stack's program receives it.
    const raw = Object.fromEntries(
      Object.entries(config)
        .filter(([key]) => key.startsWith("webstack:"))
        .map(([key, value]) => [
          key.slice("webstack:".length),
          typeof value === "string" ? value : JSON.stringify(value),
        ]),
    );
    const parsed = parseConfig(raw, new Set(), { throwaway: true });
    const { limits, replicas } = parsed;
    const total =
      limits.postgres.memoryMb +
      limits.redis.memoryMb +
      limits.nginx.memoryMb +
      replicas * limits.app.memoryMb +
      (parsed.backups === undefined ? 0 : limits.backup.memoryMb) +
      (parsed.https?.acme === undefined ? 0 : limits.acme.memoryMb);
    assert.ok(total <= 1024 - 192, `${total} MB of limits leave too little of 1024 MB to the system and Docker`);
  });
});

describe("readStackConfig", () => {
  test("reads only webstack: settings, and secret ones as secret Outputs", async () => {
    await pulumi.runtime.setMocks(new RecordingMocks(), "webstack", "test", false);
    try {
      const password = "p".repeat(20);
      pulumi.runtime.setAllConfig(
        {
          "webstack:replicas": "2",
          "webstack:postgresPassword": password,
          "aws:region": "us-east-1",
          // A structured setting reaches the program as JSON text.
          "webstack:limits": '{"app":{"memoryMb":320}}',
        },
        ["webstack:postgresPassword"],
      );
      const { config, secrets } = readStackConfig();
      assert.equal(config.replicas, 2);
      assert.equal(config.limits.app.memoryMb, 320);
      assert.equal(config.target, "local", "aws:region is another package's setting");
      assert.deepEqual(Object.keys(secrets), ["postgresPassword"]);
      const value = secrets.postgresPassword;
      assert.ok(value !== undefined);
      assert.equal(await pulumi.isSecret(value), true);
      assert.equal(await new Promise((resolve) => value.apply(resolve)), password);
    } finally {
      pulumi.runtime.setAllConfig({}, []);
      await pulumi.runtime.disconnect();
    }
  });
});
