// `npm run ci:<command>`: what webstack's GitHub workflows run. Each command reads only its flags
// and the environment GitHub Actions provides; the workflows stay a list of these calls.
//
//   preview      [--stacks a,b] [--pr N] [--release SHA] [--out DIR]
//   deploy       --stack S [--release SHA | --rollback-to RELEASE] [--load-seconds N]
//   smoke        --url URL | --stack S [--load-seconds N]
//   pr-stack     up --pr N [--release SHA] [--ttl-hours H]  |  destroy --pr N
//   sweep        [--dry-run]
//   drift        [--stacks a,b]
//   runner-stack [--load-seconds N]
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { fetchDropletPrices, PRICE_TABLE, PriceBook } from "./cost";
import { PREVIEW_MARKER, renderPreviewComment, renderPreviewFailure } from "./comment";
import { GitHub } from "./github";
import {
  deployStack,
  destroyPrStack,
  driftReport,
  Lifecycle,
  previewStack,
  stackUrl,
  sweep,
  upPrStack,
  withRunnerStack,
} from "./lifecycle";
import { PulumiCli, resolvePulumiBinary } from "./pulumi";
import { smokeTest, loadCheck } from "./smoke";
import { environmentStacks, prStackName, selectStacks } from "./stacks";

/** The Pulumi project: this repository, or WEBSTACK_PROJECT_DIR. */
const PROJECT_DIR = process.env.WEBSTACK_PROJECT_DIR ?? path.join(__dirname, "..");
const env = process.env;
const log = (line: string) => process.stderr.write(`${line}\n`);

/** Marker of the comment that carries a pull request's throwaway stack URL. */
export const PR_STACK_MARKER = "<!-- webstack:pr-stack -->";

function fail(message: string): never {
  throw new Error(message);
}

function wholeNumber(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  if (!/^[0-9]+$/.test(value)) fail(`${flag} must be a whole number (got ${JSON.stringify(value)})`);
  return Number(value);
}

function release(value: string | undefined, flag = "--release"): string | undefined {
  if (value === undefined || value === "") return undefined;
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$/.test(value))
    fail(`${flag} must be 1-40 letters, digits, '.', '_' or '-' (got ${JSON.stringify(value)})`);
  return value;
}

/** A shared state backend: CI must never fall back to the runner's throwaway ~/.pulumi. */
export function backendProblem(given: NodeJS.ProcessEnv): string | undefined {
  if (!given.PULUMI_BACKEND_URL && !given.PULUMI_ACCESS_TOKEN) {
    return "set PULUMI_BACKEND_URL (e.g. s3://my-state-bucket) or PULUMI_ACCESS_TOKEN (Pulumi Cloud): CI stacks need a shared state backend";
  }
  // GitHub turns a secret that was never set into "", which the CLI would take as a real, empty
  // passphrase: new stacks encrypted with nothing, existing ones failing to decrypt.
  if (
    given.PULUMI_BACKEND_URL &&
    !given.PULUMI_ACCESS_TOKEN &&
    !given.PULUMI_CONFIG_PASSPHRASE &&
    !given.PULUMI_CONFIG_PASSPHRASE_FILE
  ) {
    return "set PULUMI_CONFIG_PASSPHRASE (a repository or environment secret): the self-managed backend encrypts each stack's secrets with it, and an empty one protects nothing";
  }
  return undefined;
}

function requireBackend(): void {
  const problem = backendProblem(env);
  if (problem !== undefined) fail(problem);
}

/**
 * The Pulumi CLI's environment. A state bucket on DigitalOcean Spaces is reached with S3
 * credentials: SPACES_ACCESS_KEY_ID/SPACES_SECRET_ACCESS_KEY become AWS_ACCESS_KEY_ID/
 * AWS_SECRET_ACCESS_KEY, unless AWS credentials are already set (AWS role assumption wins).
 * GitHub's token stays with this process.
 */
export function pulumiEnvironment(given: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const result = { ...given };
  // The program and its providers have no use for the token that writes pull-request comments.
  delete result.GITHUB_TOKEN;
  if (given.SPACES_ACCESS_KEY_ID && given.SPACES_SECRET_ACCESS_KEY && !given.AWS_ACCESS_KEY_ID) {
    result.AWS_ACCESS_KEY_ID = given.SPACES_ACCESS_KEY_ID;
    result.AWS_SECRET_ACCESS_KEY = given.SPACES_SECRET_ACCESS_KEY;
  }
  return result;
}

async function lifecycle(extraEnv: NodeJS.ProcessEnv = {}): Promise<Lifecycle> {
  const bin = await resolvePulumiBinary();
  return {
    pulumi: new PulumiCli(bin, { cwd: PROJECT_DIR, env: pulumiEnvironment({ ...env, ...extraEnv }), log }),
    projectDir: PROJECT_DIR,
    log,
  };
}

function github(): GitHub | undefined {
  if (!env.GITHUB_TOKEN || !env.GITHUB_REPOSITORY) return undefined;
  return new GitHub({ repository: env.GITHUB_REPOSITORY, token: env.GITHUB_TOKEN, apiUrl: env.GITHUB_API_URL });
}

function runUrl(): string | undefined {
  if (!env.GITHUB_SERVER_URL || !env.GITHUB_REPOSITORY || !env.GITHUB_RUN_ID) return undefined;
  return `${env.GITHUB_SERVER_URL}/${env.GITHUB_REPOSITORY}/actions/runs/${env.GITHUB_RUN_ID}`;
}

function summary(markdown: string): void {
  if (env.GITHUB_STEP_SUMMARY) fs.appendFileSync(env.GITHUB_STEP_SUMMARY, `${markdown}\n`);
  else process.stdout.write(`${markdown}\n`);
}

/** Whether this run is for a pull request from a fork (GitHub gives it no secrets). */
export function isForkPullRequest(eventPath: string | undefined): boolean {
  if (!eventPath || !fs.existsSync(eventPath)) return false;
  const event = JSON.parse(fs.readFileSync(eventPath, "utf8")) as {
    pull_request?: { head?: { repo?: { full_name?: string } | null }; base?: { repo?: { full_name?: string } } };
  };
  const pr = event.pull_request;
  return pr !== undefined && pr.head?.repo?.full_name !== pr.base?.repo?.full_name;
}

async function priceBook(): Promise<PriceBook> {
  let dropletMonthly = new Map<string, number>();
  if (env.DIGITALOCEAN_TOKEN) {
    try {
      dropletMonthly = await fetchDropletPrices(env.DIGITALOCEAN_TOKEN);
    } catch (error) {
      log(`DigitalOcean sizes unavailable, droplet prices left out: ${(error as Error).message}`);
    }
  }
  return { table: PRICE_TABLE, dropletMonthly };
}

async function checkUrl(url: string, loadSeconds: number | undefined): Promise<void> {
  await smokeTest(url, { waitSeconds: 120, log });
  if (loadSeconds !== undefined && loadSeconds > 0) await loadCheck(url, { seconds: loadSeconds, concurrency: 8, log });
}

const commands: Record<string, (argv: string[]) => Promise<number>> = {
  async preview(argv) {
    const { values } = parseArgs({
      args: argv,
      options: {
        stacks: { type: "string" },
        pr: { type: "string" },
        release: { type: "string" },
        out: { type: "string" },
      },
    });
    const pr = wholeNumber(values.pr, "--pr");
    if (isForkPullRequest(env.GITHUB_EVENT_PATH)) {
      summary(
        "webstack preview skipped: this pull request comes from a fork, and its code never runs with the repository's secrets. A maintainer can push the branch to this repository to preview it.",
      );
      return 0;
    }
    const gh = github();
    const post = async (body: string) => {
      summary(body);
      if (pr === undefined || gh === undefined) return;
      const { id, created } = await gh.upsertComment(pr, PREVIEW_MARKER, body);
      log(`${created ? "posted" : "updated"} comment ${id} on #${pr}`);
    };
    const context = { sha: values.release, logUrl: runUrl(), time: new Date() };
    try {
      requireBackend();
      const stacks = selectStacks(values.stacks, environmentStacks(PROJECT_DIR));
      const ctx = await lifecycle();
      const prices = await priceBook();
      const previews = [];
      for (const stack of stacks) {
        previews.push(await previewStack(ctx, stack, { release: release(values.release), prices, outDir: values.out }));
      }
      await post(renderPreviewComment(previews, context));
      return previews.every((p) => p.ok) ? 0 : 1;
    } catch (error) {
      // The comment must never go on showing an earlier, passing preview.
      await post(renderPreviewFailure((error as Error).message, context)).catch((posting: Error) =>
        log(`could not post the failure to the pull request either: ${posting.message}`),
      );
      throw error;
    }
  },

  async deploy(argv) {
    const { values } = parseArgs({
      args: argv,
      options: {
        stack: { type: "string" },
        release: { type: "string" },
        "rollback-to": { type: "string" },
        "load-seconds": { type: "string" },
      },
    });
    const stack = values.stack ?? fail("--stack is required");
    const rollbackTo = release(values["rollback-to"], "--rollback-to");
    if (rollbackTo !== undefined && values.release !== undefined)
      fail("--rollback-to runs a kept release again; it takes no --release");
    const given = release(values.release);
    selectStacks(stack, environmentStacks(PROJECT_DIR));
    requireBackend();
    const url = await deployStack(await lifecycle(), stack, { release: given, rollbackTo });
    await checkUrl(url, wholeNumber(values["load-seconds"], "--load-seconds"));
    if (rollbackTo !== undefined) summary(`Rolled \`${stack}\` back to release \`${rollbackTo}\`: ${url}`);
    else summary(`Deployed \`${stack}\`${values.release ? ` at release \`${values.release}\`` : ""}: ${url}`);
    return 0;
  },

  async smoke(argv) {
    const { values } = parseArgs({
      args: argv,
      options: { url: { type: "string" }, stack: { type: "string" }, "load-seconds": { type: "string" } },
    });
    const url =
      values.url ??
      (values.stack !== undefined
        ? await stackUrl(await lifecycle(), values.stack)
        : fail("--url or --stack is required"));
    await checkUrl(url, wholeNumber(values["load-seconds"], "--load-seconds"));
    return 0;
  },

  async "pr-stack"(argv) {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { pr: { type: "string" }, release: { type: "string" }, "ttl-hours": { type: "string" } },
    });
    const pr = wholeNumber(values.pr, "--pr") ?? fail("--pr is required");
    requireBackend();
    const ctx = await lifecycle();
    if (positionals[0] === "up") {
      const ttlHours = wholeNumber(values["ttl-hours"] ?? env.WEBSTACK_PR_TTL_HOURS, "--ttl-hours");
      const { stack, url, expires } = await upPrStack(ctx, pr, {
        release: release(values.release),
        ttlHours,
        repository: env.GITHUB_REPOSITORY,
      });
      await checkUrl(url, undefined);
      const body = `${PR_STACK_MARKER}\n### webstack: throwaway stack \`${stack}\`\n${url}\n\nUpdated on every push; destroyed when this pull request closes, or at ${expires} if it goes quiet.\n`;
      await github()?.upsertComment(pr, PR_STACK_MARKER, body);
      summary(body);
      return 0;
    }
    if (positionals[0] === "destroy") {
      const result = await destroyPrStack(ctx, prStackName(pr));
      summary(`\`${prStackName(pr)}\`: ${result === "destroyed" ? "destroyed and removed" : "already gone"}`);
      return 0;
    }
    return fail(`pr-stack needs "up" or "destroy" (got ${JSON.stringify(positionals[0] ?? "")})`);
  },

  async sweep(argv) {
    const { values } = parseArgs({ args: argv, options: { "dry-run": { type: "boolean" } } });
    requireBackend();
    const gh = github();
    if (gh === undefined)
      log("no GITHUB_TOKEN/GITHUB_REPOSITORY: pull request states unknown, only expiry tags decide");
    const plan = await sweep(await lifecycle(), gh === undefined ? undefined : (pr) => gh.pullState(pr), {
      dryRun: values["dry-run"],
      repository: env.GITHUB_REPOSITORY,
    });
    summary(
      [
        "| stack | action | why |",
        "| --- | --- | --- |",
        ...plan.map((d) => `| \`${d.stack}\` | ${d.destroy ? "destroy" : "keep"} | ${d.reason} |`),
      ].join("\n"),
    );
    return 0;
  },

  async drift(argv) {
    const { values } = parseArgs({ args: argv, options: { stacks: { type: "string" }, out: { type: "string" } } });
    requireBackend();
    const ctx = await lifecycle();
    const reports = [];
    let drifted = false;
    for (const stack of selectStacks(values.stacks, environmentStacks(PROJECT_DIR))) {
      const p = await previewStack(ctx, stack, { drift: true, outDir: values.out });
      drifted ||= !p.ok || p.changes.length > 0;
      reports.push(driftReport(p));
    }
    summary(["```", ...reports, "```"].join("\n"));
    return drifted ? 1 : 0;
  },

  async "runner-stack"(argv) {
    const { values } = parseArgs({ args: argv, options: { "load-seconds": { type: "string" } } });
    const loadSeconds = wholeNumber(values["load-seconds"], "--load-seconds") ?? 20;
    // State and passphrase of a stack that lives only for this run.
    const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), "webstack-runner-state-"));
    const extra: NodeJS.ProcessEnv = {
      PULUMI_BACKEND_URL: `file://${stateDir}`,
      PULUMI_CONFIG_PASSPHRASE: randomBytes(24).toString("base64url"),
    };
    const stack = `ci-${env.GITHUB_RUN_ID ?? Date.now()}`;
    await withRunnerStack(await lifecycle(extra), stack, (url) => checkUrl(url, loadSeconds));
    summary(
      `Deployed \`${stack}\` on the runner's Docker engine, passed the smoke test and ${loadSeconds} s of load, and destroyed it.`,
    );
    return 0;
  },
};

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  const command = name === undefined ? undefined : commands[name];
  if (command === undefined) {
    log(`usage: tsx ci/cli.ts <${Object.keys(commands).join("|")}> [flags]  (got ${JSON.stringify(name ?? "")})`);
    return 2;
  }
  return command(rest);
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error: Error) => {
      log(`webstack ci: ${error.message}`);
      process.exit(1);
    },
  );
}
