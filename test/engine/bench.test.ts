// npm run bench:stack as a user runs it, briefly: it must realise the dev stack on the engine, load
// its eight rows without an error, print its ratios and leave nothing of the stack behind. Its
// figures are the benchmark's business, not this test's.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { runBench } from "../support/bench-run";
import { startEngine } from "./support/engine";

const ROWS = ["counter", "healthz"].flatMap((path) =>
  ["published port", "nginx's address", "one replica", "3 replicas at once"].map((way) => `${path}  ${way}`),
);

describe("npm run bench:stack", () => {
  it("measures the dev stack's eight rows without an error, prints its ratios and tears the stack down", async () => {
    const engine = await startEngine();
    const bench = await runBench(
      "stack.ts",
      {
        BENCH_ROUNDS: "1",
        BENCH_DURATION: "1",
        BENCH_WARMUP: "0",
        BENCH_CONNECTIONS: "6",
        BENCH_THREADS: "1",
        BENCH_MANY_SECONDS: "0",
        BENCH_IDLE: "0",
      },
      15 * 60_000,
    );
    assert.equal(bench.code, 0, `the bench failed:\n${bench.stderr}`);
    assert.doesNotMatch(bench.stderr, /cleanup failed/);
    assert.deepEqual([...bench.rows.keys()], ROWS);
    for (const [label, row] of bench.rows) {
      assert.ok(row.requests > 0, `${label}: no request was answered`);
      assert.equal(row.errors, 0, `${label}: ${row.errors} errors`);
    }
    assert.equal(bench.stdout.match(/^\s+[\d.]+\s+(meets|BELOW) [<>]= [\d.]+\s+\S/gm)?.length, 4, bench.stdout);
    // Where each row's CPU went: the replicas, Postgres, nginx, Redis, the backup container, all
    // containers, the machine; every row's replicas spent some.
    const cpu = [...bench.stdout.matchAll(/^ {2}(\S.*?)((?:\s+\d+){7})$/gm)].map((m) => ({
      label: m[1],
      us: m[2].trim().split(/\s+/).map(Number),
    }));
    assert.deepEqual(
      cpu.map((c) => c.label),
      ROWS,
      bench.stdout,
    );
    for (const { label, us } of cpu) {
      assert.ok(us[0] > 0, `${label}: the replicas spent no CPU`);
      // Each figure is rounded on its own: the sum may be one under the parts.
      assert.ok(
        us[5] + 1 >= us[0] + us[1],
        `${label}: the containers together spent less than the replicas and Postgres`,
      );
    }

    const named = { filters: { name: ["webstack-bench-"] } };
    assert.deepEqual(await engine.docker.listContainers({ all: true, ...named }), []);
    assert.deepEqual((await engine.docker.listVolumes(named)).Volumes ?? [], []);
    assert.deepEqual(await engine.docker.listNetworks(named), []);
  });
});
