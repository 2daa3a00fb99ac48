import { readFileSync } from "node:fs";
import { join } from "node:path";
import { APP_ALIAS, APP_PORT, NGINX_ACME_WEBROOT, NGINX_CERTS_DIR } from "../components/specs/containers";

/** Everything environment-specific in the proxy's config. */
export interface NginxVars {
  /** Port nginx listens on. @example 80 */
  listenPort: number;
  /** IPv4 address to listen on; `null` listens on every address. @example "127.0.0.1" */
  listenAddress: string | null;
  /**
   * App replicas as "host:port". A DNS name may stand for several replicas: nginx uses every
   * address it resolves to, and the container's watcher reloads nginx when they change.
   * @example ["app:3000"]
   */
  upstreams: string[];
  /** DNS resolver for lookups nginx makes at run time, or `null`. @example "127.0.0.11" */
  resolver: string | null;
  /** Largest request body accepted (nginx size: digits with optional k/m/g); larger → 413. @example "1m" */
  clientMaxBodySize: string;
  /** User the worker processes run as, or `null` to keep nginx's built-in default. @example "nginx" */
  user: string | null;
  /** Absolute path of the pid file. @example "/var/run/nginx.pid" */
  pidPath: string;
  /** Absolute directory for nginx's temporary files (body and proxy buffers). @example "/var/cache/nginx" */
  tempDir: string;
  /** Absolute path of the mime.types file to include. @example "/etc/nginx/mime.types" */
  mimeTypesPath: string;
  /**
   * Where the JSON access log goes. "/dev/stdout" works when stdout is a pipe (as in a
   * container); it cannot be opened when stdout is a socket, so tests use a file.
   * @example "/dev/stdout"
   */
  accessLogPath: string;
  /**
   * Write access-log lines in batches of up to 4 KB, at least once a second: one write per batch
   * instead of one per request (through Docker's log pipe, a quarter more requests per second).
   * A batch is no larger than PIPE_BUF, so batches of several workers never interleave inside a
   * line. Off for tests that read a request's line as soon as it is answered.
   * @default true
   */
  accessLogBuffered: boolean;
  /** Worker processes: a count, or "auto" for one per core. @default "auto" */
  workerProcesses: number | "auto";
  /** Connections per worker (clients plus upstreams). @default 1024 */
  workerConnections: number;
  /**
   * Whether admin routes (`/reset`, and anything under `/reset/` or `/admin`) reach the app.
   * When false nginx answers them 404 itself, whatever the app would have said.
   * @default false
   */
  adminRoutes: boolean;
  /**
   * Requests one client address may have in progress at once; more are answered 429. 0 turns
   * the limit off. Only connections with a request being processed count.
   * @default 0
   */
  limitConnPerIp: number;
  /** Requests per second one client address may make on average; more are answered 429. 0 turns it off. @default 0 */
  limitRatePerIp: number;
  /**
   * Requests above `limitRatePerIp` one address may make at once before being limited (served
   * without delay). Only with `limitRatePerIp` above 0.
   * @default 0
   */
  limitBurst: number;
  /**
   * HTTPS, or null for HTTP only. The HTTPS listener and certificate are a separate file the
   * container's start script puts in place once the certificate exists (and takes out if nginx
   * rejects it at start), so nginx serves HTTP before the first certificate arrives.
   * @default null
   */
  tls: TlsVars | null;
}

/** nginx's HTTPS: a certificate kept up to date by an ACME client beside it. */
export interface TlsVars {
  /** Port nginx listens on for HTTPS. @example 443 */
  listenPort: number;
  /** Port clients reach HTTPS on, for the redirect from HTTP (443 is left out of the URL). @example 443 */
  publicPort: number;
  /** One PEM file holding the private key and the certificate chain; written whole by the ACME client. */
  bundlePath: string;
  /** Directory whose `*.conf` the server includes: the start script puts the HTTPS part there. */
  activeDir: string;
  /** Directory served at `/.well-known/acme-challenge/` over HTTP (the ACME client's webroot); null for none. */
  challengeRoot: string | null;
  /** Strict-Transport-Security max-age in seconds; 0 sends none. */
  hstsSeconds: number;
  /**
   * The names the certificate is for. The redirect from HTTP goes to the request's name when it is
   * one of these and to the first otherwise: a Host header is the client's to choose.
   * @example ["app.example.com", "www.example.com"]
   */
  names: string[];
  /**
   * How HTTP/2 is turned on: the `http2` listen parameter (nginx < 1.25.1) or the `http2`
   * directive (1.25.1 and later, where the parameter is deprecated).
   */
  http2: "listen" | "directive";
}

/** The few choices the Docker stack makes; everything else is fixed by the image and network. */
export interface DockerNginxOptions {
  /** @default "1m" */
  clientMaxBodySize?: string;
  /** @default "auto" */
  workerProcesses?: number | "auto";
  /** @default 1024 */
  workerConnections?: number;
  /**
   * Let `/reset` (and `/admin…`) through to the app, which still requires its admin token.
   * @default false
   */
  adminRoutes?: boolean;
  /** Requests in progress per client address; 0 = off (many users may share one address behind NAT). @default 0 */
  limitConnPerIp?: number;
  /** Requests per second per client address; 0 = off. @default 0 */
  limitRatePerIp?: number;
  /** Requests above the rate allowed at once; only with `limitRatePerIp`. @default 2 × limitRatePerIp */
  limitBurst?: number;
  /** HTTPS with an ACME client's certificate, or none. @default undefined (HTTP only) */
  tls?: DockerTlsOptions;
}

/** The HTTPS choices of the Docker stack; the paths are fixed by its volumes. */
export interface DockerTlsOptions {
  /** The host port HTTPS is published on. @default 443 */
  publicPort?: number;
  /** @default 31536000 */
  hstsSeconds?: number;
  /** The names the certificate is for (see TlsVars.names). */
  names: string[];
  /** The nginx image's version, from its tag: decides how HTTP/2 is turned on. @example "1.28.0" */
  nginxVersion?: string;
  /**
   * Where the certificate comes from: an ACME client beside nginx (its volumes, and the challenge
   * path) or a file written with nginx's own files (NGINX_CERT_FILE).
   * @default "acme"
   */
  source?: "acme" | "file";
}

/** The file the ACME client writes: private key and certificate chain in one, replaced whole. */
export const CERT_BUNDLE = "bundle.pem";
/** Where a certificate given as a value lies: with nginx's own files. */
export const NGINX_CERT_FILE = "/etc/nginx/webstack/certs/bundle.pem";

/** Where the nginx container's files go, and the command that starts it. */
export const NGINX_CONF_PATH = "/etc/nginx/nginx.conf";
export const NGINX_SCRIPT_DIR = "/etc/nginx/webstack";
export const NGINX_COMMAND: string[] = ["/bin/sh", `${NGINX_SCRIPT_DIR}/start.sh`];

/** Vars for the official nginx image on the stack's Docker network (app replicas under the alias `app`). */
export function dockerNginxVars(options: DockerNginxOptions = {}): NginxVars {
  const limitRatePerIp = options.limitRatePerIp ?? 0;
  return {
    listenPort: 80,
    listenAddress: null,
    // Every app replica carries this network alias; Docker's DNS answers with all of them.
    upstreams: [`${APP_ALIAS}:${APP_PORT}`],
    resolver: "127.0.0.11",
    clientMaxBodySize: options.clientMaxBodySize ?? "1m",
    user: "nginx",
    pidPath: "/var/run/nginx.pid",
    tempDir: "/var/cache/nginx",
    mimeTypesPath: "/etc/nginx/mime.types",
    accessLogPath: "/dev/stdout",
    accessLogBuffered: true,
    workerProcesses: options.workerProcesses ?? "auto",
    workerConnections: options.workerConnections ?? 1024,
    adminRoutes: options.adminRoutes ?? false,
    limitConnPerIp: options.limitConnPerIp ?? 0,
    limitRatePerIp,
    // A bad rate is reported by validation; it must not also produce a confusing burst.
    limitBurst: options.limitBurst ?? (isCount(limitRatePerIp, MAX_RATE) ? 2 * limitRatePerIp : 0),
    tls:
      options.tls === undefined
        ? null
        : {
            listenPort: 443,
            publicPort: options.tls.publicPort ?? 443,
            bundlePath: options.tls.source === "file" ? NGINX_CERT_FILE : `${NGINX_CERTS_DIR}/${CERT_BUNDLE}`,
            activeDir: "/var/cache/nginx/webstack-tls",
            challengeRoot: options.tls.source === "file" ? null : NGINX_ACME_WEBROOT,
            hstsSeconds: options.tls.hstsSeconds ?? 31536000,
            names: options.tls.names,
            http2: http2Style(options.tls.nginxVersion),
          },
  };
}

/** The http2 style for an nginx version ("1.22.1", "1.28"); an unknown version is taken as current. */
export function http2Style(version: string | undefined): TlsVars["http2"] {
  const match = /^(\d+)\.(\d+)(?:\.(\d+))?/.exec(version ?? "");
  if (match === null) return "directive";
  const [major, minor, patch] = [Number(match[1]), Number(match[2]), Number(match[3] ?? 0)];
  const atLeast = major !== 1 ? major > 1 : minor !== 25 ? minor > 25 : patch >= 1;
  return atLeast ? "directive" : "listen";
}

export class NginxConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join("\n"));
    this.name = "NginxConfigError";
  }
}

const TEMPLATE = readFileSync(join(__dirname, "nginx.conf.template"), "utf8");
const START_SCRIPT = readFileSync(join(__dirname, "start.sh"), "utf8");

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const HOSTNAME =
  /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const SIZE = /^[1-9]\d{0,9}[kKmMgG]?$/;
const USER = /^[a-z_][a-z0-9_-]{0,31}$/;
// Characters that would end or escape an nginx directive argument.
const SAFE_PATH = /^\/[A-Za-z0-9._/-]*$/;

function show(value: unknown): string {
  return JSON.stringify(value) ?? String(value);
}

/** Upper bounds of the limits: far above any sane setting, low enough to catch a typo'd extra digit. */
const MAX_CONNECTIONS = 65535;
const MAX_RATE = 100_000;
const MAX_BURST = 1_000_000;

/** A whole number from 0 to `max`. */
function isCount(value: unknown, max: number): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= max;
}

function isPort(value: unknown): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= 1 && value <= 65535;
}

function parsePort(text: string): number | null {
  if (!/^\d{1,5}$/.test(text)) return null;
  const port = Number(text);
  return isPort(port) ? port : null;
}

/** Splits "host:port" into its parts, or returns null when it is not that shape. */
export function parseUpstream(value: string): { host: string; port: number } | null {
  const colon = value.lastIndexOf(":");
  if (colon <= 0) return null;
  const host = value.slice(0, colon);
  const port = parsePort(value.slice(colon + 1));
  if (port === null || !(IPV4.test(host) || HOSTNAME.test(host))) return null;
  return { host, port };
}

/** Upstream hosts that are DNS names (not IP literals): the names the watcher polls. */
export function upstreamNames(vars: Pick<NginxVars, "upstreams">): string[] {
  const names = vars.upstreams
    .map((upstream) => parseUpstream(upstream)?.host)
    .filter((host): host is string => host !== undefined && !IPV4.test(host));
  return [...new Set(names)];
}

/** Every problem with `vars`, each naming the setting, its value and what is allowed. */
export function validateNginxVars(vars: NginxVars): string[] {
  const problems: string[] = [];
  const bad = (field: string, value: unknown, allowed: string) =>
    problems.push(`nginx setting ${field} is ${show(value)}; allowed: ${allowed}`);

  if (!isPort(vars.listenPort)) bad("listenPort", vars.listenPort, "an integer from 1 to 65535");
  if (vars.listenAddress !== null && !(typeof vars.listenAddress === "string" && IPV4.test(vars.listenAddress))) {
    bad("listenAddress", vars.listenAddress, "an IPv4 address, or null for every address");
  }
  if (!Array.isArray(vars.upstreams) || vars.upstreams.length === 0) {
    bad("upstreams", vars.upstreams, 'a non-empty list of "host:port" strings');
  } else {
    vars.upstreams.forEach((upstream, index) => {
      if (typeof upstream !== "string" || parseUpstream(upstream) === null) {
        bad(`upstreams[${index}]`, upstream, '"host:port" with a DNS name or IPv4 address and a port from 1 to 65535');
      }
    });
    if (new Set(vars.upstreams).size !== vars.upstreams.length) {
      bad("upstreams", vars.upstreams, "each upstream at most once");
    }
  }
  if (vars.resolver !== null && !(typeof vars.resolver === "string" && IPV4.test(vars.resolver))) {
    bad("resolver", vars.resolver, "an IPv4 address, or null for none");
  }
  if (typeof vars.clientMaxBodySize !== "string" || !SIZE.test(vars.clientMaxBodySize)) {
    bad(
      "clientMaxBodySize",
      vars.clientMaxBodySize,
      'a positive size in bytes with an optional k, m or g suffix, e.g. "512k" or "1m"',
    );
  }
  if (vars.user !== null && !(typeof vars.user === "string" && USER.test(vars.user))) {
    bad("user", vars.user, "a user name (lower-case letters, digits, _ and -), or null");
  }
  for (const field of ["pidPath", "tempDir", "mimeTypesPath", "accessLogPath"] as const) {
    const value = vars[field];
    if (typeof value !== "string" || !SAFE_PATH.test(value) || value.length < 2) {
      bad(field, value, "an absolute path of letters, digits, '.', '_', '-' and '/'");
    }
  }
  const workers = vars.workerProcesses;
  if (
    workers !== "auto" &&
    !(typeof workers === "number" && Number.isInteger(workers) && workers >= 1 && workers <= 256)
  ) {
    bad("workerProcesses", workers, '"auto" or an integer from 1 to 256');
  }
  const connections = vars.workerConnections;
  if (
    !(typeof connections === "number" && Number.isInteger(connections) && connections >= 64 && connections <= 65535)
  ) {
    bad("workerConnections", connections, "an integer from 64 to 65535");
  }
  if (typeof vars.adminRoutes !== "boolean") bad("adminRoutes", vars.adminRoutes, "true or false");
  if (typeof vars.accessLogBuffered !== "boolean") bad("accessLogBuffered", vars.accessLogBuffered, "true or false");
  if (!isCount(vars.limitConnPerIp, MAX_CONNECTIONS)) {
    bad("limitConnPerIp", vars.limitConnPerIp, `an integer from 0 (off) to ${MAX_CONNECTIONS}`);
  }
  if (!isCount(vars.limitRatePerIp, MAX_RATE)) {
    bad("limitRatePerIp", vars.limitRatePerIp, `an integer from 0 (off) to ${MAX_RATE} requests per second`);
  }
  if (!isCount(vars.limitBurst, MAX_BURST)) {
    bad("limitBurst", vars.limitBurst, `an integer from 0 to ${MAX_BURST}`);
  } else if (vars.limitBurst > 0 && vars.limitRatePerIp === 0) {
    bad("limitBurst", vars.limitBurst, "0 while limitRatePerIp is 0 (a burst only applies to a rate limit)");
  }
  if (vars.tls !== null) problems.push(...tlsProblems(vars.tls, vars.listenPort));
  return problems;
}

function tlsProblems(tls: TlsVars, httpPort: number): string[] {
  const problems: string[] = [];
  const bad = (field: string, value: unknown, allowed: string) =>
    problems.push(`nginx setting tls.${field} is ${show(value)}; allowed: ${allowed}`);
  if (!isPort(tls.listenPort)) bad("listenPort", tls.listenPort, "an integer from 1 to 65535");
  else if (tls.listenPort === httpPort) bad("listenPort", tls.listenPort, `a port other than listenPort ${httpPort}`);
  if (!isPort(tls.publicPort)) bad("publicPort", tls.publicPort, "an integer from 1 to 65535");
  for (const field of ["bundlePath", "activeDir", "challengeRoot"] as const) {
    const value = tls[field];
    if (field === "challengeRoot" && value === null) continue;
    if (typeof value !== "string" || !SAFE_PATH.test(value) || value.length < 2) {
      bad(field, value, "an absolute path of letters, digits, '.', '_', '-' and '/'");
    }
  }
  if (!isCount(tls.hstsSeconds, 63072000)) bad("hstsSeconds", tls.hstsSeconds, "an integer from 0 (off) to 63072000");
  if (
    !Array.isArray(tls.names) ||
    tls.names.length === 0 ||
    !tls.names.every((name) => typeof name === "string" && (HOSTNAME.test(name) || IPV4.test(name)))
  ) {
    bad("names", tls.names, "a non-empty list of DNS names or IPv4 addresses");
  }
  if (tls.http2 !== "listen" && tls.http2 !== "directive") bad("http2", tls.http2, '"listen" or "directive"');
  return problems;
}

/**
 * Replaces every `{{NAME}}` in `template`. Fails when the template names a placeholder that has
 * no value, or when a value has no placeholder (a renamed placeholder must not go unnoticed).
 */
export function fillTemplate(template: string, values: Record<string, string>): string {
  const used = new Set<string>();
  const missing = new Set<string>();
  const filled = template.replace(/\{\{([A-Za-z0-9_]*)\}\}/g, (_match, name: string) => {
    if (!Object.prototype.hasOwnProperty.call(values, name)) {
      missing.add(name);
      return "";
    }
    used.add(name);
    return values[name];
  });
  const problems = [...missing].map((name) => `template placeholder {{${name}}} has no value`);
  for (const name of Object.keys(values)) {
    if (!used.has(name)) problems.push(`value ${name} has no {{${name}}} placeholder in the template`);
  }
  const leftover = filled.search(/\{\{|\}\}/);
  if (problems.length === 0 && leftover >= 0) {
    problems.push(
      `template has a malformed placeholder near ${show(filled.slice(Math.max(0, leftover - 20), leftover + 20))}`,
    );
  }
  if (problems.length > 0) throw new NginxConfigError(problems);
  return filled;
}

/** The complete nginx.conf for `vars`; throws NginxConfigError listing every invalid setting. */
export function renderNginxConfig(vars: NginxVars): string {
  const problems = validateNginxVars(vars);
  if (problems.length > 0) throw new NginxConfigError(problems);
  const listen = vars.listenAddress === null ? String(vars.listenPort) : `${vars.listenAddress}:${vars.listenPort}`;
  return fillTemplate(TEMPLATE, {
    USER_DIRECTIVE:
      vars.user === null ? "# no user directive: workers keep nginx's built-in user" : `user ${vars.user};`,
    WORKER_PROCESSES: String(vars.workerProcesses),
    PID_PATH: vars.pidPath,
    WORKER_CONNECTIONS: String(vars.workerConnections),
    // A proxied request holds two of a worker's connections: the client's and the app's.
    UPSTREAM_KEEPALIVE: String(Math.floor(vars.workerConnections / 2)),
    MIME_TYPES_PATH: vars.mimeTypesPath,
    ACCESS_LOG: `${vars.accessLogPath} webstack_json${vars.accessLogBuffered ? " buffer=4k flush=1s" : ""}`,
    RESOLVER_DIRECTIVE:
      vars.resolver === null
        ? "    # no resolver: upstream names are resolved by the system resolver at (re)load"
        : `    resolver ${vars.resolver} valid=5s ipv6=off;`,
    TEMP_DIR: vars.tempDir,
    CLIENT_MAX_BODY_SIZE: vars.clientMaxBodySize,
    // max_fails=0: a replica that refused is not set aside. Refusals are cheap to retry, while
    // setting replicas aside could leave none: in a release the new replicas refuse until their
    // database is ready and the old ones refuse while they drain, moments apart.
    UPSTREAM_SERVERS: vars.upstreams.map((upstream) => `        server ${upstream} max_fails=0;`).join("\n"),
    LISTEN: listen,
    ...limitDirectives(vars),
    ...tlsDirectives(vars.tls),
    ADMIN_ROUTES: vars.adminRoutes
      ? "        # adminRoutes: /reset and /admin reach the app, which requires its admin token."
      : [
          "        # Admin routes stop at the edge. Locations match the normalised path (%-decoded, dot",
          "        # segments and repeated slashes resolved), so encoded spellings are caught too.",
          "        location ~* ^/(reset|admin)(/|$) {",
          "            default_type application/json;",
          `            return 404 '{"error":"not found"}\\n';`,
          "        }",
        ].join("\n"),
  });
}

/**
 * HTTPS in the main config: the TLS settings, the include of the HTTPS part, the challenge
 * location and the redirect. The redirect applies only once the HTTPS part is in place (it sets
 * $webstack_tls), so a stack without its certificate yet keeps serving HTTP.
 */
function tlsDirectives(tls: TlsVars | null): { TLS_HTTP: string; TLS_SERVER: string; TLS_REDIRECT: string } {
  if (tls === null) {
    return {
      TLS_HTTP: "    # no HTTPS",
      TLS_SERVER: "        # no HTTPS",
      TLS_REDIRECT: "            # no HTTPS, no redirect",
    };
  }
  const port = tls.publicPort === 443 ? "" : `:${tls.publicPort}`;
  return {
    TLS_HTTP: [
      "    # TLS 1.2 and 1.3 only; for 1.2, forward-secret AEAD suites only (1.3 has nothing else).",
      "    ssl_protocols TLSv1.2 TLSv1.3;",
      `    ssl_ciphers ${TLS12_CIPHERS.join(":")};`,
      "    ssl_prefer_server_ciphers off;",
      "    # Resumption from a cache all workers share (about 4,000 sessions per MB), for a day; no",
      "    # session tickets, whose key would never rotate while nginx runs.",
      "    ssl_session_cache shared:webstack_tls:10m;",
      "    ssl_session_timeout 1d;",
      "    ssl_session_tickets off;",
      "    # The redirect names the stack's own names only; any other Host goes to the first.",
      "    map $host $webstack_https_host {",
      `        default ${tls.names[0]};`,
      ...tls.names.map((name) => `        ${name} ${name};`),
      "    }",
      '    map "$scheme:$webstack_tls" $webstack_redirect {',
      '        "http:1" 1;',
      "        default 0;",
      "    }",
      ...(tls.hstsSeconds > 0
        ? [
            "    map $scheme $webstack_hsts {",
            `        https "max-age=${tls.hstsSeconds}";`,
            '        default "";',
            "    }",
          ]
        : []),
    ].join("\n"),
    TLS_SERVER: [
      "",
      "        # The HTTPS listener and certificate: put in place by the start script once the",
      "        # certificate exists, which sets $webstack_tls to 1.",
      "        set $webstack_tls 0;",
      `        include ${tls.activeDir}/*.conf;`,
      ...(tls.hstsSeconds > 0
        ? ["        add_header Strict-Transport-Security $webstack_hsts always;"]
        : ["        # hstsSeconds is 0: no Strict-Transport-Security"]),
      ...(tls.challengeRoot === null
        ? []
        : [
            "",
            "        # ACME HTTP-01 challenges, over plain HTTP, from the ACME client's webroot.",
            "        location ^~ /.well-known/acme-challenge/ {",
            `            root ${tls.challengeRoot};`,
            "            default_type text/plain;",
            "        }",
          ]),
    ].join("\n"),
    TLS_REDIRECT: [
      "            # Once HTTPS is up, plain HTTP is sent there (308 keeps the method and body).",
      "            if ($webstack_redirect) {",
      `                return 308 https://$webstack_https_host${port}$request_uri;`,
      "            }",
    ].join("\n"),
  };
}

/** TLS 1.2 suites of Mozilla's intermediate profile without DHE (which needs a dhparam file). */
const TLS12_CIPHERS = [
  "ECDHE-ECDSA-AES128-GCM-SHA256",
  "ECDHE-RSA-AES128-GCM-SHA256",
  "ECDHE-ECDSA-AES256-GCM-SHA384",
  "ECDHE-RSA-AES256-GCM-SHA384",
  "ECDHE-ECDSA-CHACHA20-POLY1305",
  "ECDHE-RSA-CHACHA20-POLY1305",
];

/** The HTTPS part of the server, for the start script to put in `activeDir`. */
export function renderTlsServer(tls: TlsVars, listenAddress: string | null): string {
  const listen = `${listenAddress === null ? "" : `${listenAddress}:`}${tls.listenPort}`;
  return [
    "# Generated by nginx/render.ts: the HTTPS part of the server, included once the certificate exists.",
    tls.http2 === "listen" ? `listen ${listen} ssl http2 backlog=4096;` : `listen ${listen} ssl backlog=4096;`,
    ...(tls.http2 === "directive" ? ["http2 on;"] : []),
    // The start script's copy of the bundle, which it replaces only with one nginx accepts.
    `ssl_certificate ${tls.activeDir}/bundle.pem;`,
    `ssl_certificate_key ${tls.activeDir}/bundle.pem;`,
    "set $webstack_tls 1;",
    "",
  ].join("\n");
}

/** The per-address limits: zones at the http level, the limits themselves in the server. */
function limitDirectives(vars: NginxVars): { LIMIT_ZONES: string; LIMITS: string } {
  const zones: string[] = [];
  const limits: string[] = [];
  // Each zone of 10 MB holds the state of about 160,000 client addresses at once.
  if (vars.limitConnPerIp > 0) {
    zones.push("    limit_conn_zone $binary_remote_addr zone=webstack_conn_per_ip:10m;");
    limits.push(`        limit_conn webstack_conn_per_ip ${vars.limitConnPerIp};`);
  }
  if (vars.limitRatePerIp > 0) {
    zones.push(`    limit_req_zone $binary_remote_addr zone=webstack_req_per_ip:10m rate=${vars.limitRatePerIp}r/s;`);
    // nodelay: requests within the burst are served at once rather than queued, so a limited
    // client gets a quick 429 instead of holding a connection in a queue.
    limits.push(`        limit_req zone=webstack_req_per_ip burst=${vars.limitBurst} nodelay;`);
  }
  if (limits.length === 0) {
    return {
      LIMIT_ZONES: "    # no per-address limits (limitConnPerIp and limitRatePerIp are 0)",
      LIMITS: "        # no per-address limits",
    };
  }
  return {
    LIMIT_ZONES: zones.join("\n"),
    LIMITS: [
      ...limits,
      // 429 for both: the client's own excess, not a server fault. A 503 would look like the
      // app's "Postgres is down" to monitoring and invite retries.
      "        limit_conn_status 429;",
      "        limit_req_status 429;",
      // Each refusal is already a 429 line in the access log; the error log stays for errors.
      "        limit_conn_log_level notice;",
      "        limit_req_log_level notice;",
    ].join("\n"),
  };
}

export interface ContainerFile {
  path: string;
  content: string;
  executable: boolean;
}

/** Every file the nginx container needs; the container runs NGINX_COMMAND. */
export function nginxContainerFiles(vars: NginxVars): ContainerFile[] {
  const names = upstreamNames(vars);
  const tls: ContainerFile[] =
    vars.tls === null
      ? []
      : [
          {
            path: `${NGINX_SCRIPT_DIR}/tls.conf`,
            content: renderTlsServer(vars.tls, vars.listenAddress),
            executable: false,
          },
          {
            path: `${NGINX_SCRIPT_DIR}/tls.env`,
            content: `tls_bundle='${vars.tls.bundlePath}'\ntls_active='${vars.tls.activeDir}'\n`,
            executable: false,
          },
        ];
  return [
    { path: NGINX_CONF_PATH, content: renderNginxConfig(vars), executable: false },
    { path: `${NGINX_SCRIPT_DIR}/start.sh`, content: START_SCRIPT, executable: true },
    {
      path: `${NGINX_SCRIPT_DIR}/upstream-names`,
      content: names.map((name) => `${name}\n`).join(""),
      executable: false,
    },
    ...tls,
  ];
}
