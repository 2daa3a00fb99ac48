// npm run bench as a user runs it, briefly: it must start everything, measure its four rows without
// an error and print its ratios. Its figures are the benchmark's business, not this test's.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { runBench } from "../support/bench-run";

describe("npm run bench", () => {
  it("measures its four rows without an error and prints the ratios", async () => {
    const bench = await runBench(
      "proxy.ts",
      { BENCH_DURATION: "1", BENCH_WARMUP: "0", BENCH_CONNECTIONS: "4", BENCH_THREADS: "1" },
      5 * 60_000,
    );
    assert.equal(bench.code, 0, `the bench failed:\n${bench.stderr}`);
    assert.deepEqual(
      [...bench.rows.keys()],
      ["a  direct -> 1 replica", "b  nginx -> 1 replica", "c  nginx -> 3 replicas", "d  nginx -> 3, HTTPS"],
    );
    for (const [label, row] of bench.rows) {
      assert.ok(row.requests > 0, `${label}: no request was answered`);
      assert.equal(row.errors, 0, `${label}: ${row.errors} errors`);
    }
    assert.match(bench.stdout, /^d\/c \(HTTPS\)\s+[\d.]+\s+[\d.]+$/m);
  });
});
