// The stack lifecycle CI runs, as functions over a PulumiRunner: previews of the environment
// stacks, deploys, throwaway `pr-<n>` stacks (create-or-update, destroy-and-remove, sweep), drift
// checks, and the ephemeral stack on the CI runner's own engine. Every command goes through the
// Pulumi CLI; the program itself is never copied or called another way.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { PriceBook } from "./cost";
import { PullState } from "./github";
import { StateExport, StackPreview, summarisePreview } from "./preview";
import { PulumiRunner } from "./pulumi";
import { prNumberOf, prStackFile, prStackName, PR_STACK, readPrTemplate, shortStackName } from "./stacks";

export interface Lifecycle {
  pulumi: PulumiRunner;
  /** The Pulumi project directory (where Pulumi.yaml and the stack files are). */
  projectDir: string;
  log: (line: string) => void;
  now?: () => Date;
}

/** Stack tags every `pr-<n>` stack carries. */
export const TAG_PR = "webstack:pr";
export const TAG_EXPIRES = "webstack:expires";
/** The repository whose pull request made the stack: a sweeper only judges its own. */
export const TAG_REPO = "webstack:repo";
/** How long a throwaway stack lives after its last push unless told otherwise. */
export const DEFAULT_TTL_HOURS = 72;

/** Every exit code: for commands whose failure is reported, not thrown. */
const ANY_EXIT = Array.from({ length: 256 }, (_, i) => i);

/** The policy pack flags every preview and update carries. */
export function policyFlags(projectDir: string): string[] {
  const flags = ["--policy-pack", "policy"];
  if (fs.existsSync(path.join(projectDir, "policy", "config.json")))
    flags.push("--policy-pack-config", "policy/config.json");
  return flags;
}

const now = (ctx: Lifecycle) => (ctx.now ?? (() => new Date()))();

// ---- previews and drift ------------------------------------------------------------------------

export interface PreviewOptions {
  /** Release id the preview assumes (the commit that would be deployed). */
  release?: string;
  prices?: PriceBook;
  /** Refresh first and expect no changes: a drift check. */
  drift?: boolean;
  /** Where the raw JSON and event log of each preview are written (an artifact of the CI run). */
  outDir?: string;
}

/** Previews one stack with the policy pack and summarises it; a failed preview is a result, not a throw. */
export async function previewStack(ctx: Lifecycle, stack: string, options: PreviewOptions = {}): Promise<StackPreview> {
  // Absolute: the CLI runs in the project directory, this process maybe elsewhere.
  const outDir = path.resolve(options.outDir ?? fs.mkdtempSync(path.join(os.tmpdir(), "webstack-preview-")));
  fs.mkdirSync(outDir, { recursive: true });
  const eventLog = path.join(outDir, `${stack}.events.jsonl`);
  fs.rmSync(eventLog, { force: true });

  const exported = await ctx.pulumi.run(["stack", "export", "--stack", stack], { okCodes: ANY_EXIT });
  let state: StateExport | undefined;
  if (exported.code === 0) {
    try {
      state = JSON.parse(exported.stdout) as StateExport;
    } catch {
      state = undefined;
    }
  }
  let release = options.release;
  if (options.drift === true && release === undefined) {
    // The release CI deployed lives in the stack's outputs, not in the committed stack file: without
    // it the program would name the replicas after their content hash and see drift in every one.
    const deployed = await ctx.pulumi.run(["stack", "output", "release", "--stack", stack], { okCodes: ANY_EXIT });
    if (deployed.code === 0 && deployed.stdout.trim() !== "") release = deployed.stdout.trim();
  }
  const args = ["preview", "--stack", stack, "--json", "--event-log", eventLog, ...policyFlags(ctx.projectDir)];
  if (options.drift === true) args.push("--refresh", "--expect-no-changes");
  if (release !== undefined) args.push("--config", `webstack:release=${release}`);
  const result = await ctx.pulumi.run(args, { okCodes: ANY_EXIT });
  fs.writeFileSync(path.join(outDir, `${stack}.preview.json`), result.stdout);
  const preview = summarisePreview({
    stack,
    stdout: result.stdout,
    stderr: result.stderr,
    exitCode: exported.code === 0 ? result.code : exported.code,
    eventLog: fs.existsSync(eventLog) ? fs.readFileSync(eventLog, "utf8") : "",
    state,
    prices: options.prices,
  });
  if (exported.code !== 0) {
    preview.ok = false;
    preview.errors.unshift(
      `stack ${stack} could not be read (does it exist yet? the first deploy creates it): ${lastLine(exported.stderr)}`,
    );
  }
  ctx.log(`${stack}: ${preview.ok ? "ok" : "FAILED"}; ${describeCounts(preview)}`);
  for (const c of preview.changes)
    ctx.log(`  ${c.kind} ${c.type} ${c.name}${c.properties.length ? ` (${c.properties.join(", ")})` : ""}`);
  for (const v of preview.violations)
    ctx.log(`  policy ${v.policy} (${v.level})${v.resource ? ` on ${v.resource}` : ""}: ${v.message}`);
  for (const e of preview.errors) ctx.log(`  error: ${e}`);
  return preview;
}

export function describeCounts(p: StackPreview): string {
  return `${p.counts.create} to create, ${p.counts.update} to update, ${p.counts.replace} to replace, ${p.counts.delete} to delete`;
}

/** A drift report for one stack: what a refresh found changed outside Pulumi. */
export function driftReport(p: StackPreview): string {
  if (p.ok && p.changes.length === 0) return `${p.stack}: no drift`;
  const lines = [
    `${p.stack}: ${p.changes.length > 0 ? `DRIFT — ${describeCounts(p)} to match the program again` : "drift check failed"}`,
  ];
  for (const c of p.changes)
    lines.push(`  ${c.kind} ${c.type} ${c.name}${c.properties.length ? `: ${c.properties.join(", ")} changed` : ""}`);
  for (const e of p.errors) if (!/no changes|expected no changes/i.test(e)) lines.push(`  error: ${e}`);
  return lines.join("\n");
}

// ---- deploys -----------------------------------------------------------------------------------

/**
 * `pulumi up` of an environment stack with the policy pack; returns the stack's url output. With
 * `rollbackTo`, the release named runs again from its image on the host and nothing is built;
 * otherwise the checkout is deployed, and a rollback setting left in the stack file is removed so
 * that it cannot hold a merge back.
 */
export async function deployStack(
  ctx: Lifecycle,
  stack: string,
  options: { release?: string; rollbackTo?: string } = {},
): Promise<string> {
  if (options.release !== undefined && options.rollbackTo !== undefined)
    throw new Error("a deploy either rolls back to a kept release or deploys a release of the checkout, not both");
  if (PR_STACK.test(shortStackName(stack)))
    throw new Error(`${stack} is a throwaway stack: deploy it with ci:pr-stack, not as an environment`);
  // Never created here: a wrong backend URL or organisation must fail, not deploy a second, empty environment.
  if (!(await listStacks(ctx)).some((s) => s.name === stack || s.short === stack)) {
    throw new Error(
      `stack ${stack} does not exist in this state backend: create it once with \`npm run pulumi -- stack init ${stack}\` (README, "CI"), or check PULUMI_BACKEND_URL`,
    );
  }
  await ctx.pulumi.run(["stack", "select", stack]);
  if (options.rollbackTo !== undefined) {
    await ctx.pulumi.run(["config", "set", "webstack:rollbackTo", options.rollbackTo, "--stack", stack]);
  } else {
    // Absent is fine: there is nothing to remove.
    await ctx.pulumi.run(["config", "rm", "webstack:rollbackTo", "--stack", stack], { okCodes: ANY_EXIT });
    if (options.release !== undefined)
      await ctx.pulumi.run(["config", "set", "webstack:release", options.release, "--stack", stack]);
  }
  await ctx.pulumi.run(["up", "--stack", stack, "--yes", "--skip-preview", ...policyFlags(ctx.projectDir)], {
    stream: true,
  });
  return stackUrl(ctx, stack);
}

/** One output of a stack, as text. */
export async function stackOutput(ctx: Lifecycle, stack: string, name: string): Promise<string> {
  const { stdout } = await ctx.pulumi.run(["stack", "output", name, "--stack", stack]);
  return stdout.trim();
}

export async function stackUrl(ctx: Lifecycle, stack: string): Promise<string> {
  const url = await stackOutput(ctx, stack, "url");
  if (!/^https?:\/\//.test(url)) throw new Error(`stack ${stack} has no url output (got ${JSON.stringify(url)})`);
  return url;
}

// ---- throwaway pr-<n> stacks -------------------------------------------------------------------

/**
 * Creates or updates `pr-<n>` from the template: its stack file, its tags (the pull request and an
 * expiry `ttlHours` from now, renewed on every push), then `pulumi up`. Returns its url.
 */
export async function upPrStack(
  ctx: Lifecycle,
  pr: number,
  options: { release?: string; ttlHours?: number; repository?: string } = {},
): Promise<{ stack: string; url: string; expires: string }> {
  const stack = prStackName(pr);
  const ttl = options.ttlHours ?? DEFAULT_TTL_HOURS;
  if (!Number.isFinite(ttl) || ttl <= 0 || ttl > 24 * 90)
    throw new Error(`ttl must be 1 hour to 90 days in hours (got ${ttl})`);
  const file = prStackFile(readPrTemplate(ctx.projectDir), { release: options.release });
  fs.writeFileSync(path.join(ctx.projectDir, `Pulumi.${stack}.yaml`), file);

  const expires = new Date(now(ctx).getTime() + ttl * 3600_000).toISOString();
  await ctx.pulumi.run(["stack", "select", "--create", stack]);
  await ctx.pulumi.run(["stack", "tag", "set", TAG_PR, String(pr), "--stack", stack]);
  await ctx.pulumi.run(["stack", "tag", "set", TAG_EXPIRES, expires, "--stack", stack]);
  if (options.repository !== undefined)
    await ctx.pulumi.run(["stack", "tag", "set", TAG_REPO, options.repository, "--stack", stack]);
  await ctx.pulumi.run(["up", "--stack", stack, "--yes", "--skip-preview", ...policyFlags(ctx.projectDir)], {
    stream: true,
  });
  return { stack, url: await stackUrl(ctx, stack), expires };
}

/** The project's stacks: the name as the backend gives it (`org/project/stack` on Pulumi Cloud) and the short one. */
export async function listStacks(ctx: Lifecycle): Promise<{ name: string; short: string }[]> {
  const { stdout } = await ctx.pulumi.run(["stack", "ls", "--json"]);
  const stacks = JSON.parse(stdout) as { name: string }[];
  return stacks.map((s) => ({ name: s.name, short: shortStackName(s.name) }));
}

/**
 * Destroys `pr-<n>` and removes it. Idempotent: a stack that is already gone is reported, not an
 * error. Refuses any name that is not a throwaway stack.
 */
export async function destroyPrStack(ctx: Lifecycle, stack: string): Promise<"destroyed" | "absent"> {
  if (!PR_STACK.test(shortStackName(stack))) {
    throw new Error(
      `refusing to destroy ${JSON.stringify(stack)}: only throwaway stacks named pr-<number> are destroyed by CI`,
    );
  }
  const found = (await listStacks(ctx)).find((s) => s.name === stack || (s.short === stack && !stack.includes("/")));
  if (found === undefined) {
    ctx.log(`${stack}: no such stack; nothing to destroy`);
    return "absent";
  }
  await ctx.pulumi.run(["destroy", "--stack", found.name, "--yes", "--skip-preview"], { stream: true });
  await ctx.pulumi.run(["stack", "rm", found.name, "--yes"]);
  ctx.log(`${found.name}: destroyed and removed`);
  return "destroyed";
}

export interface SweepCandidate {
  /** As the backend names it (`org/project/pr-3` on Pulumi Cloud). */
  stack: string;
  pr: number;
  tags: Record<string, string>;
  pull: PullState | "unknown";
}

export interface SweepDecision {
  stack: string;
  destroy: boolean;
  reason: string;
}

/**
 * Which throwaway stacks to destroy: those whose pull request is closed or gone, and those whose
 * expiry has passed (an open pull request gets a fresh stack on its next push). A stack whose
 * expiry tag is missing or unreadable is kept while its pull request is open, and reported. With
 * `repository` given, a stack another repository made (its `webstack:repo` tag) is never judged.
 */
export function sweepPlan(candidates: readonly SweepCandidate[], at: Date, repository?: string): SweepDecision[] {
  return candidates.map(({ stack, tags, pull }) => {
    const owner = tags[TAG_REPO];
    if (repository !== undefined && owner !== repository) {
      return {
        stack,
        destroy: false,
        reason: `made by ${owner === undefined ? "no recorded repository" : owner}, not ${repository}; left to its own sweeper`,
      };
    }
    if (pull === "closed") return { stack, destroy: true, reason: "its pull request is closed" };
    if (pull === "missing") return { stack, destroy: true, reason: "its pull request does not exist" };
    const expires = tags[TAG_EXPIRES];
    const time = expires === undefined ? NaN : Date.parse(expires);
    if (Number.isNaN(time)) {
      return {
        stack,
        destroy: false,
        reason: `no readable ${TAG_EXPIRES} tag (${expires === undefined ? "missing" : JSON.stringify(expires)}); kept while its pull request is ${pull}`,
      };
    }
    if (time <= at.getTime()) return { stack, destroy: true, reason: `expired at ${new Date(time).toISOString()}` };
    return { stack, destroy: false, reason: `pull request ${pull}, expires ${new Date(time).toISOString()}` };
  });
}

/** A stack's tags, its pull request's state, as the sweeper sees them now. */
async function sweepCandidate(
  ctx: Lifecycle,
  stack: string,
  pr: number,
  pullState: ((pr: number) => Promise<PullState>) | undefined,
): Promise<SweepCandidate> {
  const { stdout } = await ctx.pulumi.run(["stack", "tag", "ls", "--stack", stack, "--json"]);
  const tags = JSON.parse(stdout || "{}") as Record<string, string>;
  let pull: SweepCandidate["pull"] = "unknown";
  if (pullState !== undefined) {
    try {
      pull = await pullState(pr);
    } catch (error) {
      // One unreadable pull request must not stop the sweep; its expiry tag still decides.
      ctx.log(`pull request #${pr}: state unknown (${(error as Error).message})`);
    }
  }
  return { stack, pr, tags, pull };
}

/**
 * Finds every `pr-<n>` stack, decides with `sweepPlan`, and destroys what it chose. Each choice
 * is checked again just before its destroy (a push may have renewed the stack meanwhile), and a
 * stack busy with another update is skipped for the next sweep. Failures are thrown together at
 * the end, after every stack was tried. `dryRun` only reports.
 */
export async function sweep(
  ctx: Lifecycle,
  pullState: ((pr: number) => Promise<PullState>) | undefined,
  options: { dryRun?: boolean; repository?: string } = {},
): Promise<SweepDecision[]> {
  const candidates: SweepCandidate[] = [];
  for (const { name, short } of await listStacks(ctx)) {
    const pr = prNumberOf(short);
    if (pr !== undefined) candidates.push(await sweepCandidate(ctx, name, pr, pullState));
  }
  const plan = sweepPlan(candidates, now(ctx), options.repository);
  const failures: string[] = [];
  for (const [i, d] of plan.entries()) {
    ctx.log(`${d.stack}: ${d.destroy ? (options.dryRun ? "would destroy" : "destroying") : "keeping"} — ${d.reason}`);
    if (!d.destroy || options.dryRun === true) continue;
    try {
      const [again] = sweepPlan(
        [await sweepCandidate(ctx, d.stack, candidates[i].pr, pullState)],
        now(ctx),
        options.repository,
      );
      if (!again.destroy) {
        ctx.log(`${d.stack}: kept after all — ${again.reason}`);
        plan[i] = again;
        continue;
      }
      await destroyPrStack(ctx, d.stack);
    } catch (error) {
      const message = (error as Error).message;
      if (/currently locked|update is in progress|conflict/i.test(message)) {
        ctx.log(`${d.stack}: busy with another update; left for the next sweep`);
        plan[i] = { stack: d.stack, destroy: false, reason: "busy with another update; left for the next sweep" };
      } else {
        failures.push(`${d.stack}: ${message}`);
      }
    }
  }
  if (failures.length > 0)
    throw new Error(`sweep: ${failures.length} stack(s) could not be destroyed:\n${failures.join("\n")}`);
  return plan;
}

// ---- the ephemeral stack on the CI runner ------------------------------------------------------

/** The stack file of a stack on the runner's own Docker engine: local target, a port Docker picks. */
export function runnerStackFile(replicas = 2): string {
  return [
    "# Made by `npm run ci:runner-stack`; a stack on this machine's Docker engine, destroyed after its checks.",
    "config:",
    "  webstack:target: local",
    `  webstack:replicas: "${replicas}"`,
    '  webstack:httpPort: "0"',
    "",
  ].join("\n");
}

/**
 * Deploys a stack to the runner's engine, runs `check` against its url, and always destroys and
 * removes it, whatever happened before.
 */
export async function withRunnerStack<T>(
  ctx: Lifecycle,
  stack: string,
  check: (url: string) => Promise<T>,
): Promise<T> {
  if (!/^ci-[A-Za-z0-9-]+$/.test(stack))
    throw new Error(`runner stacks are named ci-<id> (got ${JSON.stringify(stack)})`);
  fs.writeFileSync(path.join(ctx.projectDir, `Pulumi.${stack}.yaml`), runnerStackFile());
  let failed = false;
  try {
    await ctx.pulumi.run(["stack", "select", "--create", stack]);
    await ctx.pulumi.run(["up", "--stack", stack, "--yes", "--skip-preview", ...policyFlags(ctx.projectDir)], {
      stream: true,
    });
    return await check(await stackUrl(ctx, stack));
  } catch (error) {
    failed = true;
    throw error;
  } finally {
    try {
      await ctx.pulumi.run(["destroy", "--stack", stack, "--yes", "--skip-preview"], { stream: true });
      await ctx.pulumi.run(["stack", "rm", stack, "--yes"]);
    } catch (cleanup) {
      // The first failure is the one worth reading; a failed clean-up after it is only logged.
      if (!failed) throw cleanup;
      ctx.log(`${stack}: clean-up failed too: ${(cleanup as Error).message}`);
    }
  }
}

function lastLine(text: string): string {
  return text.trim().split("\n").at(-1) ?? "";
}
