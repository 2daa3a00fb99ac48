// HTTPS on a cloud scenario's stack, with Pebble (Let's Encrypt's test CA) as the CA: the stack is
// deployed with a domain while Pebble is down, so it serves HTTP and its ACME client reports the
// failure; then Pebble starts, validates the domain by real HTTP-01 through the stack's nginx,
// and the certificate arrives without a redeploy; a forced renewal under HTTPS load; and a new
// nginx keeps the certificate without a new order.
import type Docker from "dockerode";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import * as http from "node:http";
import * as https from "node:https";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { promisify } from "node:util";
import { after, describe, test } from "node:test";
import { ensureStandinImages, execIn, STANDIN_IMAGES } from "./engine";
import { eventually, sleep } from "./wait";
import { PEBBLE_ACME_PORT, PEBBLE_MINICA_PATH, Pebble, startPebble } from "./acme";

/** The site's name; Pebble resolves it to nginx's address on the stack's front network. */
const DOMAIN = "app.webstack.test";

/**
 * The scenario's HTTPS settings: Pebble's directory (reached by its alias on the stack's ACME
 * network), the root its own HTTPS certificate is signed with (read from the image, since it is
 * made when the image is built), and a first retry of 2 s, so retries top out at 24 s.
 */
export async function httpsSettings(
  engine: { dockerHost: string },
  httpsPort: number,
): Promise<Record<string, string>> {
  await ensureStandinImages(engine, ["lego", "pebble"]);
  const { stdout } = await promisify(execFile)(
    "docker",
    ["run", "--rm", "--network", "none", "--entrypoint", "cat", STANDIN_IMAGES.pebble, PEBBLE_MINICA_PATH],
    { env: { ...process.env, DOCKER_HOST: engine.dockerHost } },
  );
  return {
    domain: DOMAIN,
    acmeEmail: "ops@webstack.test",
    acmeServer: `https://pebble:${PEBBLE_ACME_PORT}/dir`,
    acmeCaCertificate: stdout,
    acmeRetrySeconds: "2",
    acmeImage: STANDIN_IMAGES.lego,
    httpsPort: String(httpsPort),
  };
}

interface HttpsAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  protocol: string | null;
  serial: string;
}

/** One GET over HTTPS on a new connection to the published port, trusting only `ca`, for DOMAIN. */
function httpsGet(port: number, ca: string, path = "/", domain = DOMAIN): Promise<HttpsAnswer> {
  return new Promise((resolve, reject) => {
    const request = https.get(
      {
        host: "127.0.0.1",
        port,
        path,
        ca,
        servername: domain,
        headers: { host: domain },
        agent: false,
        timeout: 10_000,
      },
      (response) => {
        const socket = response.socket as TLSSocket;
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("end", () =>
          resolve({
            status: response.statusCode ?? 0,
            headers: response.headers,
            body: Buffer.concat(chunks).toString("utf8"),
            protocol: socket.getProtocol(),
            serial: socket.getPeerCertificate().serialNumber,
          }),
        );
        response.on("error", reject);
      },
    );
    request.on("timeout", () => request.destroy(new Error("HTTPS request timed out")));
    request.on("error", reject);
  });
}

/** One plain HTTP GET to the published port, with the site's Host. */
function httpGet(
  port: number,
  path: string,
  domain = DOMAIN,
): Promise<{ status: number; location?: string; body: string }> {
  return new Promise((resolve, reject) => {
    const request = http.get(
      { host: "127.0.0.1", port, path, headers: { host: domain }, agent: false, timeout: 10_000 },
      (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("end", () =>
          resolve({
            status: response.statusCode ?? 0,
            location: response.headers.location,
            body: Buffer.concat(chunks).toString("utf8"),
          }),
        );
      },
    );
    request.on("timeout", () => request.destroy(new Error("HTTP request timed out")));
    request.on("error", reject);
  });
}

/** The protocol ALPN settles on when the client offers h2 first. */
function alpn(port: number, ca: string, domain = DOMAIN): Promise<string | false> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: "127.0.0.1", port, servername: domain, ca, ALPNProtocols: ["h2", "http/1.1"] });
    socket.once("secureConnect", () => {
      const chosen = socket.alpnProtocol ?? false;
      socket.end();
      resolve(chosen);
    });
    socket.once("error", reject);
  });
}

/** `clients` loops of HTTPS GETs, each on a new connection (a full handshake), until stopped. */
function httpsLoad(port: number, ca: string, clients: number) {
  let stopping = false;
  const result = { ok: 0, failures: [] as string[], serials: new Set<string>() };
  const loops = Promise.all(
    Array.from({ length: clients }, async () => {
      while (!stopping) {
        try {
          const answer = await httpsGet(port, ca);
          if (answer.status === 200) {
            result.ok += 1;
            result.serials.add(answer.serial);
          } else result.failures.push(`HTTP ${answer.status}`);
        } catch (error) {
          result.failures.push((error as Error).message);
        }
      }
    }),
  );
  return {
    async stop() {
      stopping = true;
      await loops;
      return result;
    },
  };
}

export interface HttpsScenario {
  docker(): Docker;
  prefix: string;
  stack: string;
  port(): number;
  httpsPort(): number;
  update(changes: Record<string, string | undefined>): Promise<unknown>;
  readCount(): Promise<number>;
}

/**
 * The local target asked for HTTPS late in its scenario (so the tests before it keep plain HTTP):
 * nginx serves the certificate of the stack's own CA, which the `caCertificate` output lets a
 * client trust, and HTTP redirects.
 */
export function localHttpsTest(
  s: HttpsScenario & { caCertificate(): Promise<string | undefined>; httpsUrl(): string | undefined },
): void {
  test("HTTPS on the local target: a certificate from the stack's own CA, trusted through its output; TLS 1.3, h2; HTTP redirects; no ACME client", async () => {
    const domain = "app.localhost";
    await s.update({ domain, httpsPort: String(s.httpsPort()) });
    assert.equal(s.httpsUrl(), `https://${domain}:${s.httpsPort()}`);
    const ca = (await s.caCertificate()) ?? "";
    assert.ok(ca.startsWith("-----BEGIN CERTIFICATE-----"), "the CA is an output");
    const secure = await eventually("HTTPS with the stack's certificate", 60, async () => {
      const answer = await httpsGet(s.httpsPort(), ca, "/", domain);
      return answer.status === 200 ? answer : undefined;
    });
    assert.equal(secure.protocol, "TLSv1.3");
    assert.equal(secure.headers["strict-transport-security"], undefined, "no HSTS on the local target by default");
    assert.equal(await alpn(s.httpsPort(), ca, domain), "h2");
    const redirected = await eventually("HTTP to redirect", 30, async () => {
      const answer = await httpGet(s.port(), "/count", domain);
      return answer.status === 308 ? answer : undefined;
    });
    assert.equal(redirected.location, `https://${domain}:${s.httpsPort()}/count`);
    const names = (await s.docker().listContainers({ all: true })).map((c) => c.Names[0]);
    assert.ok(!names.includes(`/${s.prefix}-acme`), "no ACME client on the local target");
  });
}

export function describeHttps(s: HttpsScenario): void {
  const { prefix } = s;
  const inspect = (name: string) => s.docker().getContainer(name).inspect();
  let pebble: Pebble | undefined;
  let root = "";

  describe("HTTPS with certificates from Pebble", () => {
    after(async () => {
      // Before the stack's teardown: Pebble holds on to the stack's networks.
      await pebble?.remove();
    });

    test("with the CA down, the stack serves HTTP and its ACME client reports why, backing off", async (t) => {
      const plain = await httpGet(s.port(), "/");
      assert.equal(plain.status, 200, "HTTP serves the app, no redirect without a certificate");
      await assert.rejects(httpsGet(s.httpsPort(), "unused"), /ECONNREFUSED|ECONNRESET|socket hang up/);
      const health = await eventually("the ACME client to be unhealthy", 90, async () => {
        const state = (await inspect(`${prefix}-acme`)).State.Health;
        return state?.Status === "unhealthy" ? state : undefined;
      });
      const said = health.Log?.at(-1)?.Output ?? "";
      t.diagnostic(`acme health: ${said.trim()}`);
      assert.match(said, /^failing .*pebble.*retrying in \d+s/s);
      const logs = (await s.docker().getContainer(`${prefix}-acme`).logs({ stdout: true, stderr: true })).toString();
      const delays = [...logs.matchAll(/failed at \S+; retrying in (\d+)s/g)].map((m) => Number(m[1]));
      assert.deepEqual(delays.slice(0, 4), [2, 4, 8, 16], "retries back off");
      assert.ok(
        delays.every((d) => d <= 24),
        `retries capped at 12 × 2 s: ${delays.join(", ")}`,
      );
    });

    test("when the CA comes back, the certificate arrives by real HTTP-01 without a redeploy: TLS 1.3, h2, HSTS; HTTP redirects but for the challenge path", async (t) => {
      const nginx = await inspect(`${prefix}-nginx`);
      const nginxIp = nginx.NetworkSettings.Networks[prefix].IPAddress;
      pebble = await startPebble(s.docker(), {
        name: `${prefix}-pebble`,
        networks: [`${prefix}-acme`, prefix],
        hosts: { [DOMAIN]: nginxIp },
      });
      root = await pebble.issuerRootPem();
      const started = Date.now();
      const secure = await eventually("HTTPS with Pebble's certificate", 90, async () => {
        const answer = await httpsGet(s.httpsPort(), root);
        return answer.status === 200 ? answer : undefined;
      });
      t.diagnostic(`certificate served ${((Date.now() - started) / 1000).toFixed(1)} s after Pebble started`);
      assert.equal(secure.protocol, "TLSv1.3");
      assert.equal(await alpn(s.httpsPort(), root), "h2");
      assert.equal(secure.headers["strict-transport-security"], "max-age=31536000");
      assert.ok((JSON.parse(secure.body) as { count: number }).count > 0, "the app answers over HTTPS");
      assert.equal(await pebble.orders(), 1, "one order");

      // A new connection may still meet an old worker until it has closed its listener.
      const redirected = await eventually("HTTP to redirect", 30, async () => {
        const answer = await httpGet(s.port(), "/count?x=1");
        return answer.status === 308 ? answer : undefined;
      });
      assert.deepEqual([redirected.status, redirected.location], [308, `https://${DOMAIN}:${s.httpsPort()}/count?x=1`]);
      // The challenge path stays on plain HTTP: a file in the ACME client's webroot, served by nginx.
      const acme = s.docker().getContainer(`${prefix}-acme`);
      const put = await execIn(acme, ["sh", "-c", "echo probe > /webroot/.well-known/acme-challenge/probe"]);
      assert.equal(put.exitCode, 0, put.output);
      const challenge = await httpGet(s.port(), "/.well-known/acme-challenge/probe");
      assert.deepEqual([challenge.status, challenge.body], [200, "probe\n"]);
      await eventually("the ACME client to be healthy", 60, async () =>
        (await inspect(`${prefix}-acme`)).State.Health?.Status === "healthy" ? true : undefined,
      );
      // The private key stays on the host: not in the client's environment, command or log.
      const info = await inspect(`${prefix}-acme`);
      const logs = (await acme.logs({ stdout: true, stderr: true })).toString();
      for (const text of [JSON.stringify(info.Config), logs]) assert.doesNotMatch(text, /PRIVATE KEY/);
    });

    test("a forced renewal under sustained HTTPS load: no failed request, and the new certificate is served", async (t) => {
      const before = await httpsGet(s.httpsPort(), root);
      const load = httpsLoad(s.httpsPort(), root, 8);
      await sleep(2000);
      await s.docker().getContainer(`${prefix}-acme`).kill({ signal: "SIGUSR1" });
      const renewed = await eventually("the renewed certificate", 60, async () => {
        const answer = await httpsGet(s.httpsPort(), root);
        return answer.serial !== before.serial ? answer : undefined;
      });
      await sleep(2000);
      const result = await load.stop();
      t.diagnostic(`renewal under load: ${result.ok} requests served, ${result.failures.length} failed`);
      assert.deepEqual(result.failures, []);
      assert.ok(result.ok > 50, `only ${result.ok} requests`);
      assert.ok(result.serials.has(before.serial) && result.serials.has(renewed.serial), "both served under load");
      assert.equal(await pebble!.orders(), 2, "the renewal is the one new order");
    });

    test("a new nginx keeps the certificate: same serial, no new order at the CA", async () => {
      const before = await httpsGet(s.httpsPort(), root);
      const orders = await pebble!.orders();
      const nginx = await inspect(`${prefix}-nginx`);
      // The scenario moved nginx to a derived image; going back replaces the container.
      await s.update({ nginxImage: STANDIN_IMAGES.nginx });
      const replaced = await inspect(`${prefix}-nginx`);
      assert.notEqual(replaced.Id, nginx.Id, "nginx was replaced");
      const after = await eventually("HTTPS from the new nginx", 60, async () => {
        const answer = await httpsGet(s.httpsPort(), root);
        return answer.status === 200 ? answer : undefined;
      });
      assert.equal(after.serial, before.serial);
      assert.equal(await pebble!.orders(), orders);
    });
  });
}
