// Test infrastructure for the real-engine tier: a Docker engine to realise the program on, and the
// stand-in base images that replace official images (no image registry is reachable here). Both
// are thin wrappers around scripts/engine/*.sh, so a person can run the same steps by hand.
import Docker from "dockerode";
import { execFile } from "node:child_process";
import * as path from "node:path";
import { promisify } from "node:util";
import { exec } from "../../../ops/backups";

const run = promisify(execFile);
const scriptsDir = path.resolve(__dirname, "../../../scripts/engine");

/** Tags of the stand-in images, by the official image they replace. */
export const STANDIN_IMAGES = {
  postgres: "webstack-standin/postgres:15",
  postgres17: "webstack-standin/postgres:17",
  redis: "webstack-standin/redis:7",
  nginx: "webstack-standin/nginx:1.22",
  node: "webstack-standin/node:20",
  lego: "webstack-standin/lego:4.9",
  pebble: "webstack-standin/pebble:2.4",
  s3: "webstack-standin/s3:3.7",
} as const;

export type StandinName = keyof typeof STANDIN_IMAGES;

// Engine API answers that dockerode types as any, declared as far as the tests read them.

/** `GET /containers/{id}/top`: one row of `ps` columns per process. */
export interface ContainerTop {
  Titles: string[];
  Processes: string[][];
}

/** `POST /containers/{id}/wait`. */
export interface ContainerWait {
  StatusCode: number;
  Error?: { Message: string } | null;
}

/** A container's `HostConfig.PortBindings`, by `<port>/<protocol>`. */
export type PortBindings = Record<string, { HostIp: string; HostPort: string }[]>;

export interface Engine {
  /** `unix:///run/webstack-test-docker.sock` unless overridden by WEBSTACK_TEST_DOCKER_SOCKET. */
  dockerHost: string;
  /** An Engine API client on that socket. */
  docker: Docker;
  /** True when this call started the daemon; only then does `stop()` end it. */
  startedHere: boolean;
  /** Stops the daemon if this call started it (unless WEBSTACK_TEST_KEEP_ENGINE=1), restores DOCKER_HOST. */
  stop(): Promise<void>;
}

/**
 * Makes sure a private Docker engine answers (installing docker.io and starting dockerd when
 * needed) and points DOCKER_HOST at it for the rest of the process, so `docker` commands a test
 * runs reach the same engine.
 */
export async function startEngine(): Promise<Engine> {
  // Installing docker.io on a fresh machine takes a while; the daemon itself answers in seconds.
  const { stdout } = await run("sh", [path.join(scriptsDir, "ensure-docker.sh"), "start"], {
    timeout: 15 * 60_000,
    maxBuffer: 1 << 20,
  });
  const fields = new Map(
    stdout
      .trim()
      .split("\n")
      .map((line) => line.split("=", 2) as [string, string]),
  );
  const dockerHost = fields.get("DOCKER_HOST");
  if (dockerHost === undefined || !dockerHost.startsWith("unix://")) {
    throw new Error(`ensure-docker.sh start printed no unix DOCKER_HOST: ${JSON.stringify(stdout)}`);
  }
  const startedHere = fields.get("STARTED") === "1";
  const previousDockerHost = process.env.DOCKER_HOST;
  process.env.DOCKER_HOST = dockerHost;
  const docker = new Docker({ socketPath: dockerHost.slice("unix://".length) });
  return {
    dockerHost,
    docker,
    startedHere,
    async stop() {
      if (previousDockerHost === undefined) delete process.env.DOCKER_HOST;
      else process.env.DOCKER_HOST = previousDockerHost;
      if (!startedHere || process.env.WEBSTACK_TEST_KEEP_ENGINE === "1") return;
      await run("sh", [path.join(scriptsDir, "ensure-docker.sh"), "stop"], { timeout: 2 * 60_000 });
    },
  };
}

/**
 * Builds the stand-in images that are missing or out of date (a cold build of all four takes
 * about a minute here; a warm run about a second). Returns the tags by official image name.
 */
export async function ensureStandinImages(
  engine: Pick<Engine, "dockerHost">,
  names: StandinName[] = ["postgres", "redis", "nginx", "node"],
): Promise<typeof STANDIN_IMAGES> {
  await run("sh", [path.join(scriptsDir, "build-standin-images.sh"), ...names], {
    env: { ...process.env, DOCKER_HOST: engine.dockerHost },
    timeout: 30 * 60_000,
    maxBuffer: 1 << 22,
  });
  return STANDIN_IMAGES;
}

/** Runs a command in a container through the Engine API; returns its exit code and output. */
export function execIn(container: Docker.Container, cmd: string[]): Promise<{ exitCode: number; output: string }> {
  return exec(container, cmd);
}

/**
 * Builds `tag` as `base` plus a label: another image of the same software, as a new upstream
 * release of a pinned image is to the stack (a changed image id).
 */
export async function derivedImage(engine: Pick<Engine, "dockerHost">, base: string, tag: string): Promise<string> {
  const dockerfile = `FROM ${base}\nLABEL webstack.test.derived-from="${base}"\n`;
  await new Promise<void>((resolve, reject) => {
    const child = execFile(
      "docker",
      ["build", "--quiet", "--tag", tag, "-"],
      { env: { ...process.env, DOCKER_HOST: engine.dockerHost }, timeout: 5 * 60_000 },
      (error, _stdout, stderr) =>
        error === null ? resolve() : reject(new Error(`docker build of ${tag} failed: ${error.message} ${stderr}`)),
    );
    child.stdin?.end(dockerfile);
  });
  return tag;
}
