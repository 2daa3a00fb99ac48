// Several stacks on one engine, as throwaway and test stacks share a CI runner or a laptop: two
// small local stacks of the unchanged program, both with `httpPort: 0`, run side by side on one
// Docker engine; then one is destroyed, as `pulumi destroy` would, while the other serves a load.
import Docker from "dockerode";
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Engine, ensureStandinImages, PortBindings, startEngine } from "./support/engine";
import { startLoad, visit } from "./support/load";
import { EngineRealiser, StackDestroySummary } from "./support/realiser";
import { deploy, outputValue, sleep, STANDIN_SETTINGS, stopLoad, visitCount } from "./support/scenario";

interface Side {
  stack: string;
  /** Every Docker object of the stack is named this or `<prefix>-…`. */
  prefix: string;
  replicas: number;
  realiser: EngineRealiser;
  /** The program's `url` output. */
  url: string;
  /** The program's `release` output. */
  release: string;
  /** How long its `pulumi up` took here. */
  deploySeconds: number;
  /** The port in `url`. */
  port: number;
}

/** Docker objects by name: containers, networks, volumes, and image tags. */
interface Named {
  containers: string[];
  networks: string[];
  volumes: string[];
  images: string[];
}

/**
 * Every object on the engine whose name says it belongs to a stack, whatever its labels: what a
 * person sweeping a shared engine by name would find.
 */
async function namedFor(docker: Docker, prefix: string): Promise<Named> {
  const ours = (name: string) => name === prefix || name.startsWith(`${prefix}-`);
  const [containers, networks, volumes, images] = await Promise.all([
    docker.listContainers({ all: true }),
    docker.listNetworks(),
    docker.listVolumes(),
    docker.listImages({ all: true }),
  ]);
  return {
    containers: containers
      .flatMap((c) => c.Names.map((n) => n.replace(/^\//, "")))
      .filter(ours)
      .sort(),
    networks: networks
      .map((n) => n.Name)
      .filter(ours)
      .sort(),
    volumes: (volumes.Volumes ?? [])
      .map((v) => v.Name)
      .filter(ours)
      .sort(),
    images: images
      .flatMap((i) => i.RepoTags ?? [])
      .filter((tag) => ours(tag.slice(0, tag.lastIndexOf(":"))))
      .sort(),
  };
}

/** The same objects found by the `webstack.stack` label the program puts on them (images carry none). */
async function labelledFor(docker: Docker, stack: string): Promise<Omit<Named, "images">> {
  const filters = { label: [`webstack.stack=${stack}`] };
  const [containers, networks, volumes] = await Promise.all([
    docker.listContainers({ all: true, filters }),
    docker.listNetworks({ filters }),
    docker.listVolumes({ filters }),
  ]);
  return {
    containers: containers.flatMap((c) => c.Names.map((n) => n.replace(/^\//, ""))).sort(),
    networks: networks.map((n) => n.Name).sort(),
    volumes: (volumes.Volumes ?? []).map((v) => v.Name).sort(),
  };
}

/** Identity and life of each named object, to tell "untouched" from "recreated" or "restarted". */
async function snapshot(docker: Docker, named: Named): Promise<Record<string, string>> {
  type Entry = [string, string];
  const entries = await Promise.all([
    ...named.containers.map(async (n): Promise<Entry> => {
      const info = await docker.getContainer(n).inspect();
      return [
        `container ${n}`,
        `${info.Id} started ${info.State.StartedAt} restarts ${info.RestartCount} ${info.State.Status}`,
      ];
    }),
    ...named.networks.map(async (n): Promise<Entry> => [`network ${n}`, (await docker.getNetwork(n).inspect()).Id]),
    ...named.volumes.map(async (n): Promise<Entry> => {
      // The Engine API has CreatedAt; dockerode's types do not.
      const info: Docker.VolumeInspectInfo & { CreatedAt?: string } = await docker.getVolume(n).inspect();
      return [`volume ${n}`, `created ${info.CreatedAt}`];
    }),
    ...named.images.map(async (n): Promise<Entry> => [`image ${n}`, (await docker.getImage(n).inspect()).Id]),
  ]);
  return Object.fromEntries(entries);
}

describe("two stacks side by side on one engine", { timeout: 15 * 60_000 }, () => {
  let engine: Engine | undefined;
  const sides: Side[] = [];
  const [a, b] = [
    { stack: "side-a", replicas: 2 },
    { stack: "side-b", replicas: 1 },
  ];
  const docker = () => {
    assert.ok(engine !== undefined);
    return engine.docker;
  };
  const side = (stack: string) => {
    const found = sides.find((s) => s.stack === stack);
    assert.ok(found !== undefined, `${stack} deployed`);
    return found;
  };
  /** The names the program gives a stack's objects. */
  const expectedNames = (s: Side): Named => {
    // The Postgres image's check is named after the image (see postgresCheckSpec).
    const check = s.realiser
      .ofType("docker:index/container:Container")
      .map((r) => String(r.outputs.name))
      .filter((name) => name.startsWith(`${s.prefix}-postgres-check-`));
    assert.equal(check.length, 1, `${s.stack}'s Postgres check`);
    return {
      containers: [
        ...Array.from({ length: s.replicas }, (_, i) => `${s.prefix}-app-${s.release}-${i + 1}`),
        `${s.prefix}-migrate-${s.release}`,
        `${s.prefix}-files-app`,
        `${s.prefix}-files-nginx`,
        `${s.prefix}-nginx`,
        `${s.prefix}-postgres`,
        ...check,
        `${s.prefix}-backup`,
        `${s.prefix}-redis`,
      ].sort(),
      networks: [s.prefix, `${s.prefix}-back`],
      volumes: [
        `${s.prefix}-backups`,
        `${s.prefix}-files-app`,
        `${s.prefix}-files-nginx`,
        `${s.prefix}-postgres-data`,
        `${s.prefix}-postgres-socket`,
        `${s.prefix}-redis-data`,
      ],
      // The app's image and the stack's Postgres image (pgBackRest over the pinned one).
      images: s.realiser
        .ofType("docker:index/image:Image")
        .map((r) => String(r.outputs.imageName))
        .sort(),
    };
  };
  const boundPort = async (s: Side) => {
    const info = await docker().getContainer(`${s.prefix}-nginx`).inspect();
    return info.NetworkSettings.Ports["80/tcp"]?.map((p) => ({ HostIp: p.HostIp, HostPort: p.HostPort }));
  };

  before(async () => {
    engine = await startEngine();
    await ensureStandinImages(engine);
    for (const { stack, replicas } of [a, b]) {
      const realiser = new EngineRealiser({ docker: engine.docker, stack });
      // What a crashed earlier run left.
      await realiser.destroy({ images: true });
      // One evaluation at a time: the runtime's mocks and config are global.
      const started = Date.now();
      const program = await deploy(realiser, {
        target: "local",
        replicas: String(replicas),
        httpPort: "0",
        ...STANDIN_SETTINGS,
      });
      const url = await outputValue(program.url, `${stack}'s url`);
      const port = Number(/^http:\/\/127\.0\.0\.1:(\d+)$/.exec(url)?.[1]);
      const deploySeconds = (Date.now() - started) / 1000;
      sides.push({
        stack,
        prefix: `webstack-${stack}`,
        replicas,
        realiser,
        url,
        release: program.release,
        port,
        deploySeconds,
      });
    }
  });

  after(async () => {
    try {
      // Also sweeps what a destroy leaves, such as the destroyed stack's app image.
      for (const s of sides) await s.realiser.destroy({ images: true });
    } finally {
      await engine?.stop();
    }
  });

  test("each stack's containers, network, volumes and images are named webstack-<stack>-…, and none is the other's", async (t) => {
    t.diagnostic(
      sides
        .map(
          (s) =>
            `${s.stack} (${s.replicas} replica${s.replicas === 1 ? "" : "s"}) deployed in ${s.deploySeconds.toFixed(1)} s`,
        )
        .join("; "),
    );
    const named = await Promise.all(sides.map((s) => namedFor(docker(), s.prefix)));
    for (const [i, s] of sides.entries()) {
      assert.deepEqual(named[i], expectedNames(s), `${s.stack}'s objects on the engine`);
      assert.match(named[i].images[0], new RegExp(`^${s.prefix}-app:[0-9a-f]{12}$`));
      assert.deepEqual(await labelledFor(docker(), s.stack), {
        containers: named[i].containers,
        networks: named[i].networks,
        volumes: named[i].volumes,
      });
    }
    const [ofA, ofB] = named.map((n) => new Set(Object.values(n).flat()));
    assert.deepEqual(
      [...ofA].filter((name) => ofB.has(name)),
      [],
    );
  });

  test("url reports the port Docker picked for each stack's nginx, and each stack answers there from its own replicas", async () => {
    assert.notEqual(side(a.stack).port, side(b.stack).port);
    for (const s of sides) {
      assert.match(s.url, /^http:\/\/127\.0\.0\.1:\d+$/, `${s.stack}'s url`);
      const info = await docker().getContainer(`${s.prefix}-nginx`).inspect();
      // Asked for no host port: Docker chose it.
      assert.deepEqual((info.HostConfig.PortBindings as PortBindings | undefined)?.["80/tcp"], [
        { HostIp: "127.0.0.1", HostPort: "" },
      ]);
      assert.deepEqual(
        await boundPort(s),
        [{ HostIp: "127.0.0.1", HostPort: String(s.port) }],
        `${s.stack}'s url names the bound port`,
      );
      const replicas = expectedNames(s).containers.filter((n) => n.includes("-app-"));
      const servedBy = new Set<string>();
      for (let i = 0; i < 10; i++) {
        const { status, body, servedBy: replica } = await visit(s.port);
        assert.equal(status, 200, body);
        servedBy.add(String(replica));
      }
      assert.deepEqual([...servedBy].sort(), replicas);
    }
  });

  test("a visit to one stack counts on that stack only", async () => {
    const [first, second] = sides;
    const start = await Promise.all(sides.map((s) => visitCount(s.port)));
    const visits = async (s: Side, n: number) => {
      const counts: number[] = [];
      for (let i = 0; i < n; i++) {
        const { status, body } = await visit(s.port);
        assert.equal(status, 200, body);
        counts.push((JSON.parse(body) as { count: number }).count);
      }
      return counts;
    };
    assert.deepEqual(
      await visits(first, 5),
      [1, 2, 3, 4, 5].map((i) => start[0] + i),
    );
    assert.deepEqual(await Promise.all(sides.map((s) => visitCount(s.port))), [start[0] + 5, start[1]]);
    assert.deepEqual(
      await visits(second, 3),
      [1, 2, 3].map((i) => start[1] + i),
    );
    assert.deepEqual(await Promise.all(sides.map((s) => visitCount(s.port))), [start[0] + 5, start[1] + 3]);
  });

  test("destroying B while A serves a load fails none of A's requests, removes B's containers, network and volumes, and leaves A untouched", async (t) => {
    const [kept, destroyed] = [side(a.stack), side(b.stack)];
    const keptNames = await namedFor(docker(), kept.prefix);
    const keptBefore = await snapshot(docker(), keptNames);
    const countBefore = await visitCount(kept.port);
    const load = startLoad(kept.port, { concurrency: 8, maxSeconds: 180 });
    let summary: StackDestroySummary;
    let destroySeconds: number;
    try {
      await sleep(2000);
      const started = Date.now();
      summary = await destroyed.realiser.destroyStack();
      destroySeconds = (Date.now() - started) / 1000;
      // Whatever the engine does after the removals (iptables, DNS) happens under load too.
      await sleep(2000);
    } finally {
      await load.stop();
    }
    t.diagnostic(`destroying ${destroyed.stack} took ${destroySeconds.toFixed(1)} s: ${summary.deleted.join(", ")}`);
    const result = await stopLoad(t, load, {
      docker: docker(),
      port: kept.port,
      nginx: `${kept.prefix}-nginx`,
      countBefore,
    });
    assert.deepEqual(
      [...result.servedBy.keys()].sort(),
      expectedNames(kept).containers.filter((n) => n.includes("-app-")),
    );

    const expected = expectedNames(destroyed);
    assert.deepEqual(
      {
        containers: [...summary.removed.containers].sort(),
        networks: [...summary.removed.networks].sort(),
        volumes: [...summary.removed.volumes].sort(),
      },
      { containers: expected.containers, networks: expected.networks, volumes: expected.volumes },
    );
    // Its app image goes too: the stack's RemoteImage owns the tag it built.
    assert.deepEqual(await namedFor(docker(), destroyed.prefix), {
      containers: [],
      networks: [],
      volumes: [],
      images: [],
    });
    assert.deepEqual(await destroyed.realiser.leftovers(), { containers: 0, networks: 0, volumes: 0 });

    assert.deepEqual(await namedFor(docker(), kept.prefix), keptNames);
    assert.deepEqual(await snapshot(docker(), keptNames), keptBefore);
  });
});
