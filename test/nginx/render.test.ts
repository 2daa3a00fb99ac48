import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import {
  NGINX_COMMAND,
  NginxConfigError,
  type NginxVars,
  dockerNginxVars,
  fillTemplate,
  nginxContainerFiles,
  renderNginxConfig,
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
  workerProcesses: 1,
  workerConnections: 512,
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
      "keepalive 32;",
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
      "listen 80 default_server;",
      "worker_processes auto;",
      "worker_connections 1024;",
      "client_max_body_size 1m;",
      "error_log stderr warn;",
      "access_log /dev/stdout webstack_json;",
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
    const custom = lines(renderNginxConfig(dockerNginxVars({ clientMaxBodySize: "10m", workerProcesses: 2, workerConnections: 4096 })));
    assert.ok(custom.includes("client_max_body_size 10m;"));
    assert.ok(custom.includes("worker_processes 2;"));
    assert.ok(custom.includes("worker_connections 4096;"));
  });
});

describe("renderNginxConfig for loopback tests", () => {
  const configLines = lines(renderNginxConfig(loopbackVars));

  it("has no user directive, no resolver, and listens on the given address", () => {
    assert.ok(!configLines.some((line) => line.startsWith("user ")));
    assert.ok(!configLines.some((line) => line.startsWith("resolver ")));
    assert.ok(configLines.includes("listen 127.0.0.1:18080 default_server;"));
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
    assert.deepEqual(upstreamNames({ upstreams: ["app:3000", "app:3001", "10.0.0.2:80", "cache.internal:80"] }), ["app", "cache.internal"]);
  });
});
