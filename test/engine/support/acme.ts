// An ACME CA for the real-engine tier: Let's Encrypt's test server pebble (the stand-in image
// webstack-standin/pebble:2.4, see scripts/engine/standins/pebble) in a container on the test
// engine, which validates HTTP-01 on port 80 of whatever address the domain resolves to there.
// Pebble resolves through the container's /etc/hosts, so the domain -> address map is given as the
// container's extra hosts; a container's extra hosts cannot change, so new ones mean a new
// container (`start(hosts)`). The test process talks to pebble by the container's address on the
// first network, trusting the image's minica root (its HTTPS cert is for "pebble" and "localhost").
import Docker from "dockerode";
import * as https from "node:https";
import { execIn, STANDIN_IMAGES } from "./engine";

/** Pebble's ports in the stand-in's config: ACME (HTTPS) and the management API (HTTPS). */
export const PEBBLE_ACME_PORT = 14000;
export const PEBBLE_MANAGEMENT_PORT = 15000;
/** Where the stand-in keeps the root that signed pebble's own HTTPS certificate. */
export const PEBBLE_MINICA_PATH = "/test/certs/pebble.minica.pem";

/** The name pebble's HTTPS certificate is valid for (besides localhost and 127.0.0.1). */
const CERT_NAME = "pebble";

export interface PebbleOptions {
  /** Container name. A container of that name left from an earlier run is removed first. */
  name: string;
  /** Networks to join, by name; the first is the one the test process reaches pebble on. */
  networks: string[];
  /**
   * Network alias clients use; the directory URL is https://<alias>:14000/dir. Only "pebble"
   * (or "localhost") matches pebble's HTTPS certificate.
   * @default "pebble"
   */
  alias?: string;
  /** Domain -> IPv4 address that pebble's validation resolves the domain to. */
  hosts: Record<string, string>;
  /** Labels for the container, e.g. the test stack's, so a sweep finds it. */
  labels?: Record<string, string>;
  /** @default STANDIN_IMAGES.pebble */
  image?: string;
  /** How long start waits for the ACME directory to answer. @default 30 */
  readySeconds?: number;
}

export interface Pebble {
  /** The container name. */
  name: string;
  /** The ACME directory as clients on the networks reach it, e.g. https://pebble:14000/dir. */
  directoryUrl: string;
  /** The container's current address on the first network. */
  address(): Promise<string>;
  /** The root that lets an ACME client trust pebble's own HTTPS endpoint (pebble.minica.pem). */
  httpsCaPem(): Promise<string>;
  /** Pebble's current issuing root (management API /roots/0); a new one on every start. */
  issuerRootPem(): Promise<string>;
  /** Orders pebble has received since it last started ("Added order" log lines). */
  orders(): Promise<number>;
  /** Stops the container (pebble forgets accounts, orders and its roots). */
  stop(): Promise<void>;
  /**
   * Starts it again and waits until the directory answers. With `hosts` different from the
   * current ones the container is created anew with them (same name, networks and alias).
   */
  start(hosts?: Record<string, string>): Promise<void>;
  /** Removes the container; no error when it is gone already. */
  remove(): Promise<void>;
}

type EngineError = Error & { statusCode?: number };

/** Runs `action`, treating the listed engine answers (304 "already so", 404 "gone") as done. */
async function tolerating(statuses: number[], action: () => Promise<unknown>): Promise<void> {
  try {
    await action();
  } catch (error) {
    const status = (error as EngineError).statusCode;
    if (status === undefined || !statuses.includes(status)) throw error;
  }
}

const sameHosts = (a: Record<string, string>, b: Record<string, string>): boolean =>
  JSON.stringify(Object.entries(a).sort()) === JSON.stringify(Object.entries(b).sort());

/** GET over HTTPS to an address, checking the certificate against `ca` for the name `servername`. */
function httpsGet(
  address: string,
  port: number,
  urlPath: string,
  ca: string,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const request = https.get(
      { host: address, port, path: urlPath, ca, servername: CERT_NAME, timeout: 5000, agent: false },
      (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("end", () =>
          resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }),
        );
        response.on("error", reject);
      },
    );
    request.on("timeout", () => request.destroy(new Error(`GET https://${address}:${port}${urlPath}: timed out`)));
    request.on("error", reject);
  });
}

/** The text of a container's log (both streams, in order), without the multiplexing headers. */
async function logText(container: Docker.Container): Promise<string> {
  const raw = await container.logs({ stdout: true, stderr: true, follow: false });
  const parts: Buffer[] = [];
  for (let offset = 0; offset + 8 <= raw.length; offset += 8 + raw.readUInt32BE(offset + 4)) {
    parts.push(raw.subarray(offset + 8, offset + 8 + raw.readUInt32BE(offset + 4)));
  }
  return Buffer.concat(parts).toString("utf8");
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Creates and starts a pebble container; resolves once its ACME directory answers. */
export async function startPebble(docker: Docker, opts: PebbleOptions): Promise<Pebble> {
  if (opts.networks.length === 0) throw new Error(`pebble ${opts.name}: no network to join`);
  const alias = opts.alias ?? "pebble";
  const image = opts.image ?? STANDIN_IMAGES.pebble;
  const readySeconds = opts.readySeconds ?? 30;
  const [firstNetwork, ...otherNetworks] = opts.networks;
  let hosts = { ...opts.hosts };
  let container = docker.getContainer(opts.name);
  let caPem: string | undefined;

  const create = async (): Promise<void> => {
    await tolerating([404], () => docker.getContainer(opts.name).remove({ force: true, v: true }));
    container = await docker.createContainer({
      name: opts.name,
      Image: image,
      Labels: opts.labels ?? {},
      HostConfig: {
        NetworkMode: firstNetwork,
        ExtraHosts: Object.entries(hosts).map(([domain, ip]) => `${domain}:${ip}`),
      },
      NetworkingConfig: { EndpointsConfig: { [firstNetwork]: { Aliases: [alias] } } },
    });
    for (const network of otherNetworks) {
      await docker.getNetwork(network).connect({ Container: container.id, EndpointConfig: { Aliases: [alias] } });
    }
  };

  const address = async (): Promise<string> => {
    const info = await container.inspect();
    const ip = info.NetworkSettings.Networks[firstNetwork]?.IPAddress;
    if (!ip)
      throw new Error(`pebble ${opts.name}: no address on network ${firstNetwork} (running: ${info.State.Running})`);
    return ip;
  };

  const httpsCaPem = async (): Promise<string> => {
    if (caPem === undefined) {
      const { exitCode, output } = await execIn(container, ["cat", PEBBLE_MINICA_PATH]);
      if (exitCode !== 0 || !output.includes("BEGIN CERTIFICATE")) {
        throw new Error(`pebble ${opts.name}: cannot read ${PEBBLE_MINICA_PATH} (exit ${exitCode}): ${output}`);
      }
      caPem = output;
    }
    return caPem;
  };

  // Ready: the directory answers on the ACME port and the root on the management port.
  const waitReady = async (): Promise<void> => {
    const deadline = Date.now() + readySeconds * 1000;
    let last: unknown;
    for (;;) {
      try {
        const info = await container.inspect();
        if (!info.State.Running) {
          throw new Error(`exited with ${info.State.ExitCode}: ${(await logText(container)).slice(-2000)}`);
        }
        const ca = await httpsCaPem();
        const ip = await address();
        const dir = await httpsGet(ip, PEBBLE_ACME_PORT, "/dir", ca);
        const root = await httpsGet(ip, PEBBLE_MANAGEMENT_PORT, "/roots/0", ca);
        if (dir.status === 200 && dir.body.includes("newOrder") && root.status === 200) return;
        last = new Error(`/dir answered ${dir.status}, /roots/0 ${root.status}`);
      } catch (error) {
        last = error;
        if (/exited with/.test(String(error))) break;
      }
      if (Date.now() > deadline) break;
      await sleep(250);
    }
    throw new Error(`pebble ${opts.name}: not ready within ${readySeconds} s (${String(last)})`);
  };

  const start = async (newHosts?: Record<string, string>): Promise<void> => {
    if (newHosts !== undefined && !sameHosts(newHosts, hosts)) {
      hosts = { ...newHosts };
      await create();
    }
    await tolerating([304], () => container.start());
    await waitReady();
  };

  await create();
  await start();

  return {
    name: opts.name,
    directoryUrl: `https://${alias}:${PEBBLE_ACME_PORT}/dir`,
    address,
    httpsCaPem,
    async issuerRootPem() {
      const { status, body } = await httpsGet(await address(), PEBBLE_MANAGEMENT_PORT, "/roots/0", await httpsCaPem());
      if (status !== 200 || !body.includes("BEGIN CERTIFICATE")) {
        throw new Error(`pebble ${opts.name}: /roots/0 answered ${status}: ${body.slice(0, 200)}`);
      }
      return body;
    },
    async orders() {
      // The log spans every start of the container; count from the last one.
      const text = await logText(container);
      const since = text.lastIndexOf("Starting Pebble ACME server");
      return (text.slice(Math.max(since, 0)).match(/Added order "[^"]*" to the db/g) ?? []).length;
    },
    async stop() {
      await tolerating([304], () => container.stop({ t: 5 }));
    },
    start,
    async remove() {
      await tolerating([404], () => container.remove({ force: true, v: true }));
    },
  };
}
