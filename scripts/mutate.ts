// Mutation testing (StrykerJS) of the program, the proxy config and the sample app, area by area,
// each against the fast tests that cover it. Prints the score of every file and the surviving mutants.
//   npm run mutate                    every area but "stack" and "hosts"
//   npm run mutate -- proxy app       the areas named
//   npm run mutate -- all             every area, "stack" and "hosts" included (hours on two cores)
//   npm run mutate -- config --only components/config.ts:150-215
//                                     only the mutants of those lines (a quick check of new tests;
//                                     its report is <area>-only.*, the area's own is left alone)
// Reports: reports/mutation/<area>.html and .json. Runs are incremental: a second run only tests
// the mutants whose code or tests changed (reports/mutation/<area>-incremental.json; --force: all).
import * as fs from "node:fs";
import * as path from "node:path";

interface Area {
  /** Files mutated (globs, from the repository root). */
  mutate: string[];
  /** The test files that run against each mutant (the tap runner runs those that cover it). */
  tests: string[];
  /** Type-checks the mutants: a narrow tsconfig keeps each check to the mutated code. */
  tsconfig: string;
  /** The score the area is held to, in percent. */
  goal: number;
  timeoutMs: number;
  /** Left out of the default run. */
  slow?: string;
}

// The rest of components/ runs against the whole program under mocks for every target, several
// seconds per mutant: split in two areas so each fits a sitting and keeps its own incremental report.
const PROGRAM = {
  tsconfig: "scripts/mutate/tsconfig.program.json",
  goal: 85,
  timeoutMs: 120_000,
  slow: "each mutant runs the whole program under mocks for every target (about an hour for the area on two cores)",
};
/** Tests both program areas run after their own. */
const PROGRAM_TESTS = ["test/unit/security.test.ts", "test/unit/policy.test.ts"];

const AREAS: Record<string, Area> = {
  proxy: {
    mutate: ["nginx/render.ts"],
    tests: ["test/nginx/render.test.ts"],
    tsconfig: "scripts/mutate/tsconfig.proxy.json",
    goal: 85,
    timeoutMs: 20_000,
  },
  config: {
    mutate: ["components/config.ts"],
    tests: ["test/unit/config.test.ts"],
    tsconfig: "scripts/mutate/tsconfig.config.json",
    goal: 85,
    timeoutMs: 20_000,
  },
  specs: {
    mutate: ["components/specs/**/*.ts"],
    tests: ["test/unit/specs.test.ts", "test/unit/backup-specs.test.ts", "test/nginx/render.test.ts"],
    tsconfig: "scripts/mutate/tsconfig.specs.json",
    goal: 85,
    timeoutMs: 20_000,
  },
  stack: {
    ...PROGRAM,
    mutate: ["components/*.ts", "!components/config.ts"],
    tests: ["test/unit/web-stack.test.ts", "test/unit/program.test.ts", "test/unit/releases.test.ts", ...PROGRAM_TESTS],
  },
  hosts: {
    ...PROGRAM,
    mutate: ["components/hosts/**/*.ts"],
    tests: ["test/unit/hosts.test.ts", "test/unit/specs.test.ts", "test/unit/program.test.ts", ...PROGRAM_TESTS],
  },
  app: {
    // server.ts and migrate.ts run only as built entry points in a child process
    // (app/test/process.test.ts), where Stryker can't switch mutants on: tested, not measurable.
    mutate: ["app/src/**/*.ts", "!app/src/server.ts", "!app/src/migrate.ts"],
    tests: ["app/test/*.test.ts"],
    tsconfig: "scripts/mutate/tsconfig.app.json",
    goal: 80,
    timeoutMs: 60_000,
  },
};

interface MutantResult {
  fileName: string;
  mutatorName: string;
  replacement?: string;
  status: string;
  location: { start: { line: number; column: number } };
}

const root = path.join(__dirname, "..");
const reportDir = path.join(root, "reports", "mutation");

const DETECTED = new Set(["Killed", "Timeout"]);
const UNDETECTED = new Set(["Survived", "NoCoverage"]);

/** Stryker's mutation score: detected / (detected + undetected); compile and runtime errors don't count. */
function score(results: { status: string }[]): { detected: number; undetected: number; percent: number } {
  const detected = results.filter((r) => DETECTED.has(r.status)).length;
  const undetected = results.filter((r) => UNDETECTED.has(r.status)).length;
  const total = detected + undetected;
  return { detected, undetected, percent: total === 0 ? 100 : (100 * detected) / total };
}

/** What this script uses of @stryker-mutator/core (an ES module, which this CommonJS project's types can't follow). */
interface StrykerModule {
  Stryker: new (options: Record<string, unknown>) => { runMutationTest(): Promise<MutantResult[]> };
}

async function runArea(name: string, area: Area, force: boolean, only: string[]): Promise<MutantResult[]> {
  const report = only.length > 0 ? `${name}-only` : name;
  const moduleName = "@stryker-mutator/core";
  const { Stryker } = (await import(moduleName)) as StrykerModule;
  const stryker = new Stryker({
    testRunner: "tap",
    tap: { testFiles: area.tests, nodeArgs: ["--import", "tsx"] },
    mutate: only.length > 0 ? only : area.mutate,
    checkers: ["typescript"],
    tsconfigFile: area.tsconfig,
    coverageAnalysis: "perTest",
    concurrency: 2,
    timeoutMS: area.timeoutMs,
    reporters: ["html", "json", "progress"],
    htmlReporter: { fileName: path.join(reportDir, `${report}.html`) },
    jsonReporter: { fileName: path.join(reportDir, `${report}.json`) },
    tempDirName: ".stryker-tmp",
    incremental: only.length === 0,
    incrementalFile: path.join(reportDir, `${name}-incremental.json`),
    force,
    thresholds: { high: 90, low: area.goal, break: null },
    ignorePatterns: ["reports", ".stryker-tmp", ".pulumi-state", ".cache"],
  });
  return stryker.runMutationTest();
}

function printArea(name: string, area: Area, all: MutantResult[]): boolean {
  // An incremental report can carry results of files the area has since left out.
  const excluded = new Set(area.mutate.filter((p) => p.startsWith("!")).map((p) => path.join(root, p.slice(1))));
  const results = all.filter((r) => !excluded.has(path.resolve(root, r.fileName)));
  const files = [...new Set(results.map((r) => r.fileName))].sort();
  const total = score(results);
  process.stdout.write(`\n${name}: ${total.percent.toFixed(1)} % (goal ${area.goal} %)\n`);
  for (const file of files) {
    const s = score(results.filter((r) => r.fileName === file));
    const rel = path.relative(root, file);
    process.stdout.write(
      `  ${s.percent.toFixed(1).padStart(5)} %  ${s.detected}/${s.detected + s.undetected}  ${rel}\n`,
    );
  }
  const survivors = results.filter((r) => UNDETECTED.has(r.status));
  for (const r of survivors) {
    const where = `${path.relative(root, r.fileName)}:${r.location.start.line}:${r.location.start.column}`;
    const replacement = (r.replacement ?? "").replace(/\s+/g, " ").slice(0, 80);
    process.stdout.write(`    ${r.status} ${where} ${r.mutatorName}: ${replacement}\n`);
  }
  return total.percent >= area.goal;
}

async function main(argv: string[]): Promise<number> {
  const force = argv.includes("--force");
  const only: string[] = [];
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i += 1) {
    if (argv[i] === "--only" && i + 1 < argv.length) only.push(argv[(i += 1)]);
    else rest.push(argv[i]);
  }
  const named = rest.filter((a) => !a.startsWith("--"));
  if (only.length > 0 && named.length !== 1) {
    process.stderr.write("mutate: --only takes exactly one area, the one whose tests cover those lines\n");
    return 2;
  }
  const unknown = named.filter((a) => a !== "all" && !(a in AREAS));
  if (unknown.length > 0) {
    process.stderr.write(
      `mutate: unknown area ${unknown.join(", ")}; the areas: ${Object.keys(AREAS).join(", ")}, all\n`,
    );
    return 2;
  }
  const chosen =
    named.length === 0
      ? Object.keys(AREAS).filter((a) => AREAS[a].slow === undefined)
      : named.includes("all")
        ? Object.keys(AREAS)
        : named;
  fs.mkdirSync(reportDir, { recursive: true });
  const outcome: Record<string, boolean> = {};
  for (const name of chosen) {
    process.stdout.write(`\n== ${name}: ${AREAS[name].mutate.join(" ")}\n`);
    const results = await runArea(name, AREAS[name], force, only);
    outcome[name] = printArea(name, AREAS[name], results);
  }
  const skipped = Object.keys(AREAS).filter((a) => !chosen.includes(a));
  for (const name of skipped) process.stdout.write(`\n(${name} not run: ${AREAS[name].slow ?? "not asked for"})\n`);
  process.stdout.write("\n");
  for (const [name, met] of Object.entries(outcome)) {
    process.stdout.write(`${met ? "meets" : "BELOW"} goal: ${name}\n`);
  }
  return 0;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error: unknown) => {
      process.stderr.write(`mutate: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      process.exit(1);
    },
  );
}
