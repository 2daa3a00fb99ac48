import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import {
  NGINX_COMMAND,
  NginxConfigError,
  type NginxVars,
  type TlsVars,
  dockerNginxVars,
  fillTemplate,
  http2Style,
  nginxContainerFiles,
  renderNginxConfig,
  renderTlsServer,
  upstreamNames,
  validateNginxVars,
} from "../../nginx/render";

const loopbackVars: NginxVars = {
  listenPort: 18080,
  listenAddress: "127.0.0.1",
  upstreams: ["127.0.0.1:3001", "127.0.0.1:3002"],
  resolver: null,
  clientMaxBodySize: "64k",
  user: null,
  pidPath: "/tmp/x/nginx.pid",
  tempDir: "/tmp/x/tmp",
  mimeTypesPath: "/etc/nginx/mime.types",
  accessLogPath: "/tmp/x/access.log",
  accessLogBuffered: false,
  workerProcesses: 1,
  workerConnections: 512,
  adminRoutes: false,
  limitConnPerIp: 0,
  limitRatePerIp: 0,
  limitBurst: 0,
  tls: null,
};

function lines(config: string): string[] {
  return config.split("\n").map((line) => line.trim());
}

function renderError(vars: NginxVars): string[] {
  try {
    renderNginxConfig(vars);
  } catch (error) {
    assert.ok(error instanceof NginxConfigError, `expected NginxConfigError, got ${String(error)}`);
    return error.problems;
  }
  assert.fail("renderNginxConfig accepted invalid vars");
}

describe("renderNginxConfig for the Docker stack", () => {
  const config = renderNginxConfig(dockerNginxVars());
  const configLines = lines(config);

  it("fills every placeholder", () => {
    assert.doesNotMatch(config, /\{\{|\}\}/);
  });

  it("proxies to the app alias through a keepalive upstream", () => {
    for (const expected of [
      "server app:3000 max_fails=0;",
      // Half the worker's connection limit (1024 by default).
      "keepalive 512;",
      "proxy_pass http://webstack_app;",
      "proxy_http_version 1.1;",
      'proxy_set_header Connection "";',
      "resolver 127.0.0.11 valid=5s ipv6=off;",
    ]) {
      assert.ok(configLines.includes(expected), `missing line: ${expected}`);
    }
  });

  it("retries only safe failures, bounded, with a short connect timeout", () => {
    assert.deepEqual(
      configLines.filter((line) => line.startsWith("proxy_next_upstream ")),
      ["proxy_next_upstream error timeout;"],
    );
    assert.ok(configLines.includes("proxy_next_upstream_tries 0;"));
    assert.ok(configLines.includes("proxy_next_upstream_timeout 10s;"));
    assert.ok(configLines.includes("zone webstack_app 64k;"));
    assert.ok(configLines.includes("proxy_connect_timeout 1s;"));
  });

  it("uses the image's user, paths and port", () => {
    assert.equal(configLines[2], "user nginx;");
    for (const expected of [
      "pid /var/run/nginx.pid;",
      "include /etc/nginx/mime.types;",
      "client_body_temp_path /var/cache/nginx/client_body;",
      "proxy_temp_path /var/cache/nginx/proxy;",
      "listen 80 default_server backlog=4096;",
      "worker_processes auto;",
      "worker_connections 1024;",
      "client_max_body_size 1m;",
      "error_log stderr warn;",
      // Batches of at most PIPE_BUF: lines of two workers never interleave on Docker's pipe.
      "access_log /dev/stdout webstack_json buffer=4k flush=1s;",
      "server_tokens off;",
      "location = /nginx-health {",
      "add_header X-Request-Id $webstack_request_id always;",
      "add_header X-Content-Type-Options nosniff always;",
      "add_header X-Frame-Options DENY always;",
      "add_header Referrer-Policy strict-origin-when-cross-origin always;",
      "proxy_set_header X-Forwarded-For $remote_addr;",
      "proxy_set_header X-Forwarded-Proto $scheme;",
      "proxy_set_header X-Request-Id $webstack_request_id;",
      "proxy_set_header Host $host;",
      "gzip on;",
    ]) {
      assert.ok(configLines.includes(expected), `missing line: ${expected}`);
    }
  });

  it("takes the stack's body limit and worker settings", () => {
    const custom = lines(
      renderNginxConfig(dockerNginxVars({ clientMaxBodySize: "10m", workerProcesses: 2, workerConnections: 4096 })),
    );
    assert.ok(custom.includes("client_max_body_size 10m;"));
    assert.ok(custom.includes("worker_processes 2;"));
    assert.ok(custom.includes("worker_connections 4096;"));
    assert.ok(custom.includes("keepalive 2048;"), "the upstream pool follows the connection limit");
    const smallest = lines(renderNginxConfig(dockerNginxVars({ workerConnections: 65 })));
    assert.ok(smallest.includes("keepalive 32;"), "half of an odd limit, rounded down");
  });
});

describe("the edge's defences", () => {
  const configLines = lines(renderNginxConfig(dockerNginxVars()));
  const BLOCK_ADMIN = "location ~* ^/(reset|admin)(/|$) {";

  it("keeps admin routes and per-address limits off unless asked", () => {
    const vars = dockerNginxVars();
    assert.deepEqual(
      {
        adminRoutes: vars.adminRoutes,
        limitConnPerIp: vars.limitConnPerIp,
        limitRatePerIp: vars.limitRatePerIp,
        limitBurst: vars.limitBurst,
      },
      { adminRoutes: false, limitConnPerIp: 0, limitRatePerIp: 0, limitBurst: 0 },
    );
    assert.ok(configLines.includes(BLOCK_ADMIN));
    assert.deepEqual(
      configLines.filter((line) => line.startsWith("limit_")),
      [],
    );
  });

  it("answers admin routes and /readyz at the edge, and hides X-Served-By", () => {
    const blocked = configLines.indexOf(BLOCK_ADMIN);
    assert.deepEqual(configLines.slice(blocked, blocked + 4), [
      BLOCK_ADMIN,
      "default_type application/json;",
      `return 404 '{"error":"not found"}\\n';`,
      "}",
    ]);
    const readyz = configLines.indexOf("location = /readyz {");
    assert.deepEqual(configLines.slice(readyz, readyz + 4), [
      "location = /readyz {",
      "default_type application/json;",
      `return 404 '{"error":"not found"}\\n';`,
      "}",
    ]);
    assert.ok(configLines.includes("proxy_hide_header X-Served-By;"));
    assert.ok(configLines.includes("location = /nginx-health {"));
  });

  it("lets admin routes through when adminRoutes is true", () => {
    const open = lines(renderNginxConfig(dockerNginxVars({ adminRoutes: true })));
    assert.ok(!open.includes(BLOCK_ADMIN));
    assert.ok(!open.some((line) => line.includes("reset|admin")));
    assert.ok(open.includes("location = /readyz {"), "/readyz stays hidden");
  });

  it("times out slow or idle clients in seconds", () => {
    for (const expected of [
      "client_header_timeout 10s;",
      "client_body_timeout 10s;",
      "send_timeout 10s;",
      "keepalive_timeout 10s;",
      "reset_timedout_connection on;",
    ]) {
      assert.ok(configLines.includes(expected), `missing line: ${expected}`);
    }
    assert.ok(!configLines.includes("keepalive_timeout 65s;"));
  });

  it("renders both limits, the burst defaulting to twice the rate, answered 429", () => {
    const limited = lines(renderNginxConfig(dockerNginxVars({ limitConnPerIp: 20, limitRatePerIp: 15 })));
    assert.deepEqual(
      limited.filter((line) => line.startsWith("limit_")),
      [
        "limit_conn_zone $binary_remote_addr zone=webstack_conn_per_ip:10m;",
        "limit_req_zone $binary_remote_addr zone=webstack_req_per_ip:10m rate=15r/s;",
        "limit_conn webstack_conn_per_ip 20;",
        "limit_req zone=webstack_req_per_ip burst=30 nodelay;",
        "limit_conn_status 429;",
        "limit_req_status 429;",
        "limit_conn_log_level notice;",
        "limit_req_log_level notice;",
      ],
    );
    // The zones belong to the http block, the limits to the server, before any location.
    assert.ok(
      limited.indexOf("limit_req_zone $binary_remote_addr zone=webstack_req_per_ip:10m rate=15r/s;") <
        limited.indexOf("server {"),
    );
    const limit = limited.indexOf("limit_conn webstack_conn_per_ip 20;");
    assert.ok(limit > limited.indexOf("server {") && limit < limited.indexOf("location = /nginx-health {"));
  });

  it("renders each limit alone, and an explicit burst (0 included)", () => {
    const connOnly = lines(renderNginxConfig(dockerNginxVars({ limitConnPerIp: 5 })));
    assert.deepEqual(
      connOnly.filter((line) => line.startsWith("limit_req")),
      ["limit_req_status 429;", "limit_req_log_level notice;"],
    );
    assert.ok(connOnly.includes("limit_conn webstack_conn_per_ip 5;"));
    const rateOnly = lines(renderNginxConfig(dockerNginxVars({ limitRatePerIp: 10, limitBurst: 0 })));
    assert.ok(!rateOnly.some((line) => line.startsWith("limit_conn ") || line.startsWith("limit_conn_zone")));
    assert.ok(rateOnly.includes("limit_req zone=webstack_req_per_ip burst=0 nodelay;"));
    const bursty = lines(renderNginxConfig(dockerNginxVars({ limitRatePerIp: 10, limitBurst: 100 })));
    assert.ok(bursty.includes("limit_req zone=webstack_req_per_ip burst=100 nodelay;"));
  });

  it("refuses bad limits and admin switch with exact messages", () => {
    assert.deepEqual(renderError({ ...loopbackVars, limitConnPerIp: -1, limitRatePerIp: 2.5, limitBurst: 1_000_001 }), [
      "nginx setting limitConnPerIp is -1; allowed: an integer from 0 (off) to 65535",
      "nginx setting limitRatePerIp is 2.5; allowed: an integer from 0 (off) to 100000 requests per second",
      "nginx setting limitBurst is 1000001; allowed: an integer from 0 to 1000000",
    ]);
    assert.deepEqual(renderError({ ...loopbackVars, limitConnPerIp: 70000, limitRatePerIp: 100_001 }), [
      "nginx setting limitConnPerIp is 70000; allowed: an integer from 0 (off) to 65535",
      "nginx setting limitRatePerIp is 100001; allowed: an integer from 0 (off) to 100000 requests per second",
    ]);
    assert.deepEqual(renderError({ ...loopbackVars, limitBurst: 40 }), [
      "nginx setting limitBurst is 40; allowed: 0 while limitRatePerIp is 0 (a burst only applies to a rate limit)",
    ]);
    // Values from untyped config must not slip through as strings.
    const untyped = {
      ...loopbackVars,
      adminRoutes: "yes",
      accessLogBuffered: 1,
      limitConnPerIp: "20",
    } as unknown as NginxVars;
    assert.deepEqual(renderError(untyped), [
      'nginx setting adminRoutes is "yes"; allowed: true or false',
      "nginx setting accessLogBuffered is 1; allowed: true or false",
      'nginx setting limitConnPerIp is "20"; allowed: an integer from 0 (off) to 65535',
    ]);
  });

  it("reports a bad rate once, not again as a derived burst", () => {
    assert.deepEqual(renderError(dockerNginxVars({ limitRatePerIp: -5 })), [
      "nginx setting limitRatePerIp is -5; allowed: an integer from 0 (off) to 100000 requests per second",
    ]);
  });
});

describe("renderNginxConfig for loopback tests", () => {
  const configLines = lines(renderNginxConfig(loopbackVars));

  it("has no user directive, no resolver, and listens on the given address", () => {
    assert.ok(!configLines.some((line) => line.startsWith("user ")));
    assert.ok(!configLines.some((line) => line.startsWith("resolver ")));
    assert.ok(configLines.includes("listen 127.0.0.1:18080 default_server backlog=4096;"));
    assert.ok(configLines.includes("server 127.0.0.1:3001 max_fails=0;"));
    assert.ok(configLines.includes("server 127.0.0.1:3002 max_fails=0;"));
    assert.ok(configLines.includes("client_max_body_size 64k;"));
    assert.ok(configLines.includes("access_log /tmp/x/access.log webstack_json;"));
  });
});

describe("validation", () => {
  it("accepts the Docker and loopback vars", () => {
    assert.deepEqual(validateNginxVars(dockerNginxVars()), []);
    assert.deepEqual(validateNginxVars(loopbackVars), []);
  });

  it("names the setting, the value and what is allowed", () => {
    assert.deepEqual(renderError({ ...loopbackVars, listenPort: 70000 }), [
      "nginx setting listenPort is 70000; allowed: an integer from 1 to 65535",
    ]);
    assert.deepEqual(renderError({ ...loopbackVars, upstreams: ["app"] }), [
      'nginx setting upstreams[0] is "app"; allowed: "host:port" with a DNS name or IPv4 address and a port from 1 to 65535',
    ]);
    assert.deepEqual(renderError({ ...loopbackVars, upstreams: [] }), [
      'nginx setting upstreams is []; allowed: a non-empty list of "host:port" strings',
    ]);
    assert.deepEqual(renderError({ ...loopbackVars, clientMaxBodySize: "1mb" }), [
      'nginx setting clientMaxBodySize is "1mb"; allowed: a positive size in bytes with an optional k, m or g suffix, e.g. "512k" or "1m"',
    ]);
    assert.deepEqual(renderError({ ...loopbackVars, tempDir: "/tmp/a b" }), [
      `nginx setting tempDir is "/tmp/a b"; allowed: an absolute path of letters, digits, '.', '_', '-' and '/'`,
    ]);
    assert.deepEqual(renderError({ ...loopbackVars, workerProcesses: 0 }), [
      'nginx setting workerProcesses is 0; allowed: "auto" or an integer from 1 to 256',
    ]);
  });

  it("an NginxConfigError's message is every problem, a line each", () => {
    const error = new NginxConfigError(["first", "second"]);
    assert.equal(error.message, "first\nsecond");
    assert.equal(error.name, "NginxConfigError");
  });

  it("reports every problem at once", () => {
    const problems = renderError({
      ...loopbackVars,
      listenPort: 0,
      listenAddress: "localhost",
      upstreams: ["app:3000", "app:99999", "app:3000"],
      resolver: "dns.example",
      clientMaxBodySize: "0",
      user: "Bad User",
      pidPath: "nginx.pid",
      workerConnections: 10,
    });
    assert.deepEqual(problems, [
      "nginx setting listenPort is 0; allowed: an integer from 1 to 65535",
      'nginx setting listenAddress is "localhost"; allowed: an IPv4 address, or null for every address',
      'nginx setting upstreams[1] is "app:99999"; allowed: "host:port" with a DNS name or IPv4 address and a port from 1 to 65535',
      'nginx setting upstreams is ["app:3000","app:99999","app:3000"]; allowed: each upstream at most once',
      'nginx setting resolver is "dns.example"; allowed: an IPv4 address, or null for none',
      'nginx setting clientMaxBodySize is "0"; allowed: a positive size in bytes with an optional k, m or g suffix, e.g. "512k" or "1m"',
      'nginx setting user is "Bad User"; allowed: a user name (lower-case letters, digits, _ and -), or null',
      `nginx setting pidPath is "nginx.pid"; allowed: an absolute path of letters, digits, '.', '_', '-' and '/'`,
      "nginx setting workerConnections is 10; allowed: an integer from 64 to 65535",
    ]);
  });

  it("rejects an injected directive", () => {
    assert.deepEqual(renderError({ ...loopbackVars, upstreams: ["app:3000; include /etc/passwd"] }), [
      'nginx setting upstreams[0] is "app:3000; include /etc/passwd"; allowed: "host:port" with a DNS name or IPv4 address and a port from 1 to 65535',
    ]);
  });
});

describe("validation at the edges of what is allowed", () => {
  // Each value sits just inside or just outside a bound, so a loosened or tightened check fails here.
  const accepts = (vars: Partial<NginxVars>) => assert.deepEqual(validateNginxVars({ ...loopbackVars, ...vars }), []);
  const refuses = (field: string, vars: Partial<NginxVars>) => {
    const problems = validateNginxVars({ ...loopbackVars, ...vars });
    assert.equal(problems.length, 1, `${JSON.stringify(vars)}: ${problems.join("; ")}`);
    assert.match(problems[0], new RegExp(`^nginx setting ${field.replace(/[[\]]/g, "\\$&")} is `));
  };
  // The SDK and YAML can hand over any JSON value; one that only stringifies to a valid one is refused.
  const wrapped = <T>(value: T) => [value] as unknown as T;

  it("IPv4 addresses: every octet from 0 to 255, nothing around them", () => {
    for (const address of [
      "255.255.255.255",
      "249.249.249.249",
      "199.199.199.199",
      "9.9.9.9",
      "0.0.0.0",
      "10.20.30.40",
    ]) {
      accepts({ listenAddress: address, resolver: address, upstreams: [`${address}:80`] });
    }
    for (const address of [
      "256.1.1.1",
      "1.1.1.256",
      "260.1.1.1",
      "1.2.3",
      "1.2.3.4.5",
      "x1.2.3.4",
      "1.2.3.4x",
      "01.2.3.4",
    ]) {
      refuses("listenAddress", { listenAddress: address });
      refuses("resolver", { resolver: address });
    }
    refuses("listenAddress", { listenAddress: wrapped("127.0.0.1") });
    refuses("resolver", { resolver: wrapped("127.0.0.1") });
  });

  it("upstream host names: DNS labels of 1 to 63 characters, 253 in all", () => {
    const label63 = "a".repeat(63);
    const name253 = [label63, label63, label63, "b".repeat(61)].join(".");
    assert.equal(name253.length, 253);
    for (const host of ["a", "app", "app-1", "a.b", "cache.internal", label63, name253, "web-stack.example"]) {
      accepts({ upstreams: [`${host}:3000`] });
    }
    for (const host of ["-app", "app-", "a_b", "bad host", "a..b", ".app", "app.", "a".repeat(64), `${name253}c`, ""]) {
      refuses("upstreams[0]", { upstreams: [`${host}:3000`] });
    }
  });

  it("upstream ports: 1 to 65535, digits only, after the last colon", () => {
    for (const port of ["1", "65535", "3000"]) accepts({ upstreams: [`app:${port}`] });
    for (const port of ["0", "65536", "123456", "1e3", "0x50", " 80", "80 ", "+80", "-1", ""]) {
      refuses("upstreams[0]", { upstreams: [`app:${port}`] });
    }
    // No colon at all: the whole value is not read as a port.
    refuses("upstreams[0]", { upstreams: ["3000"] });
    refuses("upstreams[0]", { upstreams: [":3000"] });
    refuses("upstreams[0]", { upstreams: [3000 as unknown as string] });
  });

  it("sizes, user names and paths", () => {
    for (const size of ["1", "1024", "512k", "1K", "8m", "1M", "2g", "3G", "9999999999"])
      accepts({ clientMaxBodySize: size });
    for (const size of ["0", "01m", "x1m", "1m ", "1mb", "1t", "99999999999", "-1"]) {
      refuses("clientMaxBodySize", { clientMaxBodySize: size });
    }
    refuses("clientMaxBodySize", { clientMaxBodySize: wrapped("1m") });
    for (const user of ["www-data", "nginx", "_svc", "a".repeat(32)]) accepts({ user });
    for (const user of ["www-data!", "Nginx", "1user", "a".repeat(33), ""]) refuses("user", { user });
    refuses("user", { user: wrapped("nginx") });
    accepts({ tempDir: "/a" });
    for (const tempDir of ["/", "relative/path", "a/b", "/tmp/a;b", "/tmp/$x", ""]) refuses("tempDir", { tempDir });
    refuses("tempDir", { tempDir: wrapped("/tmp") });
  });

  it("worker and port counts at their bounds", () => {
    for (const listenPort of [1, 65535]) accepts({ listenPort });
    for (const listenPort of [0, 65536, 80.5]) refuses("listenPort", { listenPort });
    for (const workerProcesses of [1, 256, "auto"] as const) accepts({ workerProcesses });
    for (const workerProcesses of [0, 257, 1.5, "8", "Auto"]) {
      refuses("workerProcesses", { workerProcesses: workerProcesses as NginxVars["workerProcesses"] });
    }
    for (const workerConnections of [64, 65535]) accepts({ workerConnections });
    for (const workerConnections of [63, 65536, 100.5]) refuses("workerConnections", { workerConnections });
    refuses("workerConnections", { workerConnections: "1024" as unknown as number });
  });

  it("limits from 0 (off) to their maximum", () => {
    accepts({ limitConnPerIp: 65535, limitRatePerIp: 100_000, limitBurst: 1_000_000 });
    accepts({ limitConnPerIp: 0, limitRatePerIp: 1, limitBurst: 0 });
    refuses("limitConnPerIp", { limitConnPerIp: 65536 });
    refuses("limitConnPerIp", { limitConnPerIp: -1 });
    refuses("limitConnPerIp", { limitConnPerIp: 1.5 });
    refuses("limitRatePerIp", { limitRatePerIp: 100_001 });
    refuses("limitBurst", { limitRatePerIp: 10, limitBurst: 1_000_001 });
    refuses("limitBurst", { limitRatePerIp: 0, limitBurst: 1 });
  });
});

describe("the per-address limits as rendered", () => {
  const limitLines = (vars: Partial<NginxVars>) =>
    lines(renderNginxConfig({ ...loopbackVars, ...vars })).filter((line) => /^limit_|^# no per-address/.test(line));

  it("renders exactly the zones and limits asked for", () => {
    assert.deepEqual(limitLines({ limitConnPerIp: 20, limitRatePerIp: 0 }), [
      "limit_conn_zone $binary_remote_addr zone=webstack_conn_per_ip:10m;",
      "limit_conn webstack_conn_per_ip 20;",
      "limit_conn_status 429;",
      "limit_req_status 429;",
      "limit_conn_log_level notice;",
      "limit_req_log_level notice;",
    ]);
    assert.deepEqual(limitLines({ limitConnPerIp: 0, limitRatePerIp: 50, limitBurst: 100 }), [
      "limit_req_zone $binary_remote_addr zone=webstack_req_per_ip:10m rate=50r/s;",
      "limit_req zone=webstack_req_per_ip burst=100 nodelay;",
      "limit_conn_status 429;",
      "limit_req_status 429;",
      "limit_conn_log_level notice;",
      "limit_req_log_level notice;",
    ]);
    // Nothing else changes: the lines added to the config are the limits and nothing more.
    const off = lines(renderNginxConfig(loopbackVars));
    const on = lines(renderNginxConfig({ ...loopbackVars, limitConnPerIp: 20, limitRatePerIp: 50, limitBurst: 100 }));
    assert.deepEqual(
      on.filter((line) => !off.includes(line)),
      [
        "limit_conn_zone $binary_remote_addr zone=webstack_conn_per_ip:10m;",
        "limit_req_zone $binary_remote_addr zone=webstack_req_per_ip:10m rate=50r/s;",
        "limit_conn webstack_conn_per_ip 20;",
        "limit_req zone=webstack_req_per_ip burst=100 nodelay;",
        "limit_conn_status 429;",
        "limit_req_status 429;",
        "limit_conn_log_level notice;",
        "limit_req_log_level notice;",
      ],
    );
    assert.deepEqual(limitLines({}), [
      "# no per-address limits (limitConnPerIp and limitRatePerIp are 0)",
      "# no per-address limits",
    ]);
  });
});

describe("fillTemplate", () => {
  it("fills placeholders and leaves nginx variables alone", () => {
    assert.equal(fillTemplate("listen {{PORT}}; set $x {{PORT}};", { PORT: "80" }), "listen 80; set $x 80;");
  });

  it("fails on a placeholder without a value", () => {
    assert.throws(() => fillTemplate("a {{A}} b {{B}}", { A: "1" }), {
      name: "NginxConfigError",
      message: "template placeholder {{B}} has no value",
    });
  });

  it("fails on a value without a placeholder", () => {
    assert.throws(() => fillTemplate("a {{A}}", { A: "1", STALE: "2" }), {
      name: "NginxConfigError",
      message: "value STALE has no {{STALE}} placeholder in the template",
    });
  });

  it("reports a malformed placeholder only when every placeholder has its value", () => {
    assert.throws(() => fillTemplate("a {{A}} {{ B }}", {}), {
      name: "NginxConfigError",
      message: "template placeholder {{A}} has no value",
    });
  });

  it("shows at most 20 characters either side of a malformed placeholder, even at the start", () => {
    assert.throws(() => fillTemplate("{{oops", {}), { message: 'template has a malformed placeholder near "{{oops"' });
    const long = `${"x".repeat(30)}}}${"y".repeat(30)}`;
    assert.throws(() => fillTemplate(long, {}), {
      message: `template has a malformed placeholder near "${"x".repeat(20)}}}${"y".repeat(18)}"`,
    });
  });

  it("fails on a malformed placeholder", () => {
    assert.throws(() => fillTemplate("listen {{ PORT }};", {}), {
      name: "NginxConfigError",
      message: 'template has a malformed placeholder near "listen {{ PORT }};"',
    });
  });
});

describe("nginxContainerFiles", () => {
  it("ships the config, the start script and the names to watch", () => {
    const files = nginxContainerFiles(dockerNginxVars());
    assert.deepEqual(
      files.map(({ path, executable }) => ({ path, executable })),
      [
        { path: "/etc/nginx/nginx.conf", executable: false },
        { path: "/etc/nginx/webstack/start.sh", executable: true },
        { path: "/etc/nginx/webstack/upstream-names", executable: false },
      ],
    );
    assert.equal(files[0].content, renderNginxConfig(dockerNginxVars()));
    assert.equal(files[1].content, readFileSync(join(__dirname, "../../nginx/start.sh"), "utf8"));
    assert.equal(files[2].content, "app\n");
    assert.deepEqual(NGINX_COMMAND, ["/bin/sh", "/etc/nginx/webstack/start.sh"]);
  });

  it("watches no names when every upstream is an IP address", () => {
    assert.deepEqual(upstreamNames(loopbackVars), []);
    assert.equal(nginxContainerFiles(loopbackVars)[2].content, "");
    assert.deepEqual(upstreamNames({ upstreams: ["app:3000", "app:3001", "10.0.0.2:80", "cache.internal:80"] }), [
      "app",
      "cache.internal",
    ]);
    const vars = { ...loopbackVars, upstreams: ["app:3000", "10.0.0.2:80", "cache.internal:80"] };
    assert.equal(nginxContainerFiles(vars)[2].content, "app\ncache.internal\n");
  });
});

describe("HTTPS as rendered", () => {
  const tlsVars = (tls: Partial<TlsVars> = {}): NginxVars => ({
    ...loopbackVars,
    tls: {
      listenPort: 18443,
      publicPort: 443,
      bundlePath: "/tmp/x/certs/bundle.pem",
      activeDir: "/tmp/x/tmp/webstack-tls",
      challengeRoot: "/tmp/x/acme",
      hstsSeconds: 600,
      names: ["app.example.com", "www.example.com"],
      http2: "directive",
      ...tls,
    },
  });

  it("the Docker stack's defaults: a cloud host's ACME bundle and webroot, or a bundle of nginx's own files", () => {
    const acme = dockerNginxVars({ tls: { names: ["app.example.com"], nginxVersion: "1.28.0" } }).tls;
    assert.deepEqual(acme, {
      listenPort: 443,
      publicPort: 443,
      bundlePath: "/etc/webstack-certs/bundle.pem",
      activeDir: "/var/cache/nginx/webstack-tls",
      challengeRoot: "/var/www/acme",
      hstsSeconds: 31536000,
      names: ["app.example.com"],
      http2: "directive",
    });
    const own = dockerNginxVars({
      tls: { names: ["app.localhost"], source: "file", publicPort: 8443, hstsSeconds: 0, nginxVersion: "1.22.1" },
    }).tls;
    assert.deepEqual(
      [own?.bundlePath, own?.challengeRoot, own?.publicPort, own?.hstsSeconds, own?.http2],
      ["/etc/nginx/webstack/certs/bundle.pem", null, 8443, 0, "listen"],
    );
    assert.equal(dockerNginxVars().tls, null);
  });

  it("HTTP/2 by the listen parameter before nginx 1.25.1, by the directive from then on", () => {
    const cases: [string | undefined, string][] = [
      ["1.22.1", "listen"],
      ["1.25", "listen"],
      ["1.25.0", "listen"],
      ["1.25.1", "directive"],
      ["1.26", "directive"],
      ["1.28.0", "directive"],
      ["0.9.9", "listen"],
      ["2.0", "directive"],
      [undefined, "directive"],
      ["latest", "directive"],
      // Only a tag that starts with the version is read as one.
      ["v1.22.1", "directive"],
    ];
    for (const [version, style] of cases) assert.equal(http2Style(version), style, String(version));
  });

  it("the TLS settings, the redirect to the stack's own names, HSTS over HTTPS only, the challenge location", () => {
    const config = lines(renderNginxConfig(tlsVars()));
    for (const line of [
      "ssl_protocols TLSv1.2 TLSv1.3;",
      "ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305;",
      "ssl_prefer_server_ciphers off;",
      "ssl_session_cache shared:webstack_tls:10m;",
      "ssl_session_timeout 1d;",
      "ssl_session_tickets off;",
      "default app.example.com;",
      "app.example.com app.example.com;",
      "www.example.com www.example.com;",
      '"http:1" 1;',
      'https "max-age=600";',
      "set $webstack_tls 0;",
      "include /tmp/x/tmp/webstack-tls/*.conf;",
      "add_header Strict-Transport-Security $webstack_hsts always;",
      "location ^~ /.well-known/acme-challenge/ {",
      "root /tmp/x/acme;",
      "return 308 https://$webstack_https_host$request_uri;",
    ]) {
      assert.ok(config.includes(line), line);
    }
    // The redirect is inside `location /` only: health and the challenge stay on plain HTTP.
    const text = renderNginxConfig(tlsVars());
    assert.equal(text.match(/return 308/g)?.length, 1);
    assert.ok(text.indexOf("return 308") > text.indexOf("location / {"));
  });

  it("a port other than 443 in the redirect; no HSTS at 0; no challenge location without a webroot; nothing of it without tls", () => {
    const text = renderNginxConfig(tlsVars({ publicPort: 8443, hstsSeconds: 0, challengeRoot: null }));
    assert.match(text, /return 308 https:\/\/\$webstack_https_host:8443\$request_uri;/);
    assert.doesNotMatch(text, /add_header Strict-Transport-Security|\$webstack_hsts/);
    assert.doesNotMatch(text, /acme-challenge/);
    const plain = renderNginxConfig(loopbackVars);
    assert.doesNotMatch(plain, /ssl_|webstack_tls|return 308|acme-challenge/);
  });

  it("the HTTPS part the start script puts in place, and the files that carry it", () => {
    assert.equal(
      renderTlsServer(tlsVars().tls!, "127.0.0.1"),
      [
        "# Generated by nginx/render.ts: the HTTPS part of the server, included once the certificate exists.",
        "listen 127.0.0.1:18443 ssl backlog=4096;",
        "http2 on;",
        "ssl_certificate /tmp/x/tmp/webstack-tls/bundle.pem;",
        "ssl_certificate_key /tmp/x/tmp/webstack-tls/bundle.pem;",
        "set $webstack_tls 1;",
        "",
      ].join("\n"),
    );
    assert.match(renderTlsServer(tlsVars({ http2: "listen" }).tls!, null), /^listen 18443 ssl http2 backlog=4096;$/m);
    assert.doesNotMatch(renderTlsServer(tlsVars({ http2: "listen" }).tls!, null), /http2 on/);
    const files = nginxContainerFiles({ ...tlsVars(), listenAddress: null });
    const byPath = Object.fromEntries(files.map((f) => [f.path, f]));
    assert.equal(byPath["/etc/nginx/webstack/tls.conf"].content, renderTlsServer(tlsVars().tls!, null));
    assert.equal(
      byPath["/etc/nginx/webstack/tls.env"].content,
      "tls_bundle='/tmp/x/certs/bundle.pem'\ntls_active='/tmp/x/tmp/webstack-tls'\n",
    );
    assert.deepEqual(
      nginxContainerFiles(loopbackVars).map((f) => f.path),
      ["/etc/nginx/nginx.conf", "/etc/nginx/webstack/start.sh", "/etc/nginx/webstack/upstream-names"],
    );
  });

  it("refuses bad HTTPS settings, each named with its value", () => {
    const problems = validateNginxVars(
      tlsVars({
        listenPort: 18080,
        publicPort: 0,
        bundlePath: "relative/bundle.pem",
        activeDir: "/tmp/x;evil",
        challengeRoot: "",
        hstsSeconds: 63072001,
        names: [],
        http2: "both" as TlsVars["http2"],
      }),
    );
    assert.deepEqual(problems, [
      "nginx setting tls.listenPort is 18080; allowed: a port other than listenPort 18080",
      "nginx setting tls.publicPort is 0; allowed: an integer from 1 to 65535",
      "nginx setting tls.bundlePath is \"relative/bundle.pem\"; allowed: an absolute path of letters, digits, '.', '_', '-' and '/'",
      "nginx setting tls.activeDir is \"/tmp/x;evil\"; allowed: an absolute path of letters, digits, '.', '_', '-' and '/'",
      "nginx setting tls.challengeRoot is \"\"; allowed: an absolute path of letters, digits, '.', '_', '-' and '/'",
      "nginx setting tls.hstsSeconds is 63072001; allowed: an integer from 0 (off) to 63072000",
      "nginx setting tls.names is []; allowed: a non-empty list of DNS names or IPv4 addresses",
      'nginx setting tls.http2 is "both"; allowed: "listen" or "directive"',
    ]);
    assert.deepEqual(validateNginxVars(tlsVars({ listenPort: 0, names: ["ok.example", "bad name"] })), [
      "nginx setting tls.listenPort is 0; allowed: an integer from 1 to 65535",
      'nginx setting tls.names is ["ok.example","bad name"]; allowed: a non-empty list of DNS names or IPv4 addresses',
    ]);
    assert.deepEqual(
      validateNginxVars(tlsVars({ hstsSeconds: 63072000, names: ["127.0.0.1"], challengeRoot: null })),
      [],
    );
  });
});
