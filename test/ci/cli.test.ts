// The commands the workflows run (`npm run ci:…` → ci/cli.ts), end to end: the stand-in Pulumi CLI,
// a stand-in GitHub API and a stand-in of the deployed app, all on loopback.
import { spawn } from "node:child_process";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as http from "node:http";
import { AddressInfo } from "node:net";
import * as path from "node:path";
import { after, before, describe, test } from "node:test";
import { PREVIEW_MARKER } from "../../ci/comment";
import { pulumiEnvironment } from "../../ci/cli";
import { percentile } from "../../ci/smoke";
import { digest, policyEventLine } from "./support/previews";
import { ROOT, stack, StandIn, standIn } from "./support/stand-in";

/** A stand-in for GitHub's comments API and for the deployed app (GET /, /count, health checks). */
class Loopback {
  comments: { id: number; body: string; user: { type: string; login: string } }[] = [];
  count = 0;
  url = "";
  private server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const send = (status: number, body: unknown, headers: Record<string, string> = {}) => {
        res.writeHead(status, { "Content-Type": "application/json", ...headers });
        res.end(JSON.stringify(body));
      };
      const url = new URL(req.url ?? "/", this.url);
      if (url.pathname === "/repos/acme/shop/issues/5/comments" && req.method === "GET")
        return send(200, this.comments);
      if (url.pathname === "/repos/acme/shop/issues/5/comments" && req.method === "POST") {
        const comment = {
          id: this.comments.length + 1,
          body: (JSON.parse(Buffer.concat(chunks).toString()) as { body: string }).body,
          user: { type: "Bot", login: "github-actions[bot]" },
        };
        this.comments.push(comment);
        return send(201, comment);
      }
      const patch = /^\/repos\/acme\/shop\/issues\/comments\/(\d+)$/.exec(url.pathname);
      if (patch !== null && req.method === "PATCH") {
        const comment = this.comments.find((c) => c.id === Number(patch[1]));
        if (comment === undefined) return send(404, { message: "Not Found" });
        comment.body = (JSON.parse(Buffer.concat(chunks).toString()) as { body: string }).body;
        return send(200, comment);
      }
      if (url.pathname === "/nginx-health" || url.pathname === "/healthz") return send(200, { status: "ok" });
      if (url.pathname === "/count") return send(200, { count: this.count });
      if (url.pathname === "/")
        return send(200, { count: ++this.count, replica: "stand-in" }, { "X-Served-By": "stand-in" });
      send(404, { message: "Not Found" });
    });
  });
  async start() {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }
  stop() {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(resolve));
  }
}

const loop = new Loopback();
const opened: StandIn[] = [];
before(() => loop.start());
after(async () => {
  await loop.stop();
  opened.forEach((s) => s.cleanup());
});

/** Runs `tsx ci/cli.ts <args>` like `npm run ci:<command>` does, with a scrubbed environment. */
function cli(
  s: StandIn,
  args: string[],
  extra: NodeJS.ProcessEnv = {},
): Promise<{ code: number; stderr: string; summary: string }> {
  const summaryFile = path.join(s.projectDir, "..", `summary-${Date.now()}.md`);
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    PULUMI_BIN: s.env.PULUMI_BIN,
    STAND_IN_PULUMI_STATE: s.env.STAND_IN_PULUMI_STATE,
    STAND_IN_PULUMI_LOG: s.env.STAND_IN_PULUMI_LOG,
    WEBSTACK_PROJECT_DIR: s.projectDir,
    GITHUB_STEP_SUMMARY: summaryFile,
    ...extra,
  };
  return new Promise((resolve, reject) => {
    const child = spawn(path.join(ROOT, "node_modules", ".bin", "tsx"), [path.join(ROOT, "ci", "cli.ts"), ...args], {
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    child.on("error", reject);
    child.on("close", (code) =>
      resolve({
        code: code ?? 1,
        stderr,
        summary: fs.existsSync(summaryFile) ? fs.readFileSync(summaryFile, "utf8") : "",
      }),
    );
  });
}

const githubEnv = () => ({
  GITHUB_TOKEN: "t0ken",
  GITHUB_REPOSITORY: "acme/shop",
  GITHUB_API_URL: loop.url,
  GITHUB_SERVER_URL: "https://github.com",
  GITHUB_RUN_ID: "77",
});
const STACK_FILE = "config:\n  webstack:target: local\n";

describe("npm run ci:preview", () => {
  test("previews every environment stack, posts one comment, and fails when a stack's preview fails", async () => {
    const s = standIn(
      {
        stacks: { staging: stack(), production: stack() },
        previews: {
          staging: { stdout: digest([]), code: 0 },
          production: {
            stdout: digest([], [{ message: "preview failed", severity: "error" }]),
            code: 1,
            events: [policyEventLine("allowed-vm-sizes", "size s-8vcpu-16gb is not allowed", "mandatory")],
          },
        },
      },
      {
        files: {
          "Pulumi.staging.yaml": STACK_FILE,
          "Pulumi.production.yaml": STACK_FILE,
          "Pulumi.dev.yaml": STACK_FILE,
          "Pulumi.do-example.yaml": STACK_FILE,
        },
      },
    );
    opened.push(s);
    loop.comments = [];
    const result = await cli(s, ["preview", "--pr", "5", "--release", "abc123"], {
      ...githubEnv(),
      PULUMI_BACKEND_URL: "s3://state",
      PULUMI_CONFIG_PASSPHRASE: "correct horse",
    });
    assert.equal(result.code, 1, result.stderr);
    assert.deepEqual(
      s.commands().map((c) => c.replace(/--event-log \S+/, "--event-log LOG")),
      [
        "stack export --stack production",
        "preview --stack production --json --event-log LOG --policy-pack policy --config webstack:release=abc123",
        "stack export --stack staging",
        "preview --stack staging --json --event-log LOG --policy-pack policy --config webstack:release=abc123",
      ],
    );
    assert.equal(loop.comments.length, 1);
    const body = loop.comments[0].body;
    assert.ok(body.startsWith(`${PREVIEW_MARKER}\n### webstack preview: 2 stacks, 1 failed`));
    assert.match(body, /\[full log\]\(https:\/\/github.com\/acme\/shop\/actions\/runs\/77\)/);
    assert.match(body, /- \*\*policy `allowed-vm-sizes`\*\* \(mandatory\): size s-8vcpu-16gb is not allowed/);
    assert.equal(result.summary.trim(), body.trim(), "the job summary shows the same comment");

    // The next push updates that comment rather than adding one.
    const again = await cli(s, ["preview", "--pr", "5"], {
      ...githubEnv(),
      PULUMI_BACKEND_URL: "s3://state",
      PULUMI_CONFIG_PASSPHRASE: "correct horse",
    });
    assert.equal(again.code, 1);
    assert.match(again.stderr, /updated comment 1 on #5/);
    assert.equal(loop.comments.length, 1);
  });

  test("a pull request from a fork runs no Pulumi command and says why", async () => {
    const s = standIn({ stacks: { staging: stack() } }, { files: { "Pulumi.staging.yaml": STACK_FILE } });
    opened.push(s);
    const event = path.join(s.projectDir, "..", "event.json");
    fs.writeFileSync(
      event,
      JSON.stringify({
        pull_request: { head: { repo: { full_name: "mallory/shop" } }, base: { repo: { full_name: "acme/shop" } } },
      }),
    );
    const result = await cli(s, ["preview"], { GITHUB_EVENT_PATH: event });
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(s.commands(), []);
    assert.match(result.summary, /preview skipped: this pull request comes from a fork/);
  });

  test("without a shared state backend it refuses, naming what to set, and the comment says the preview failed", async () => {
    const s = standIn({ stacks: {} });
    opened.push(s);
    loop.comments = [
      {
        id: 1,
        body: `${PREVIEW_MARKER}\n### webstack preview: 1 stack`,
        user: { type: "Bot", login: "github-actions[bot]" },
      },
    ];
    const result = await cli(s, ["preview", "--pr", "5"], githubEnv());
    assert.equal(result.code, 1);
    assert.match(
      result.stderr,
      /set PULUMI_BACKEND_URL \(e\.g\. s3:\/\/my-state-bucket\) or PULUMI_ACCESS_TOKEN \(Pulumi Cloud\)/,
    );
    assert.deepEqual(s.commands(), []);
    assert.equal(loop.comments.length, 1);
    assert.match(
      loop.comments[0].body,
      /^<!-- webstack:preview -->\n### webstack preview: failed before any stack was previewed\n/,
    );
    assert.match(loop.comments[0].body, /> set PULUMI_BACKEND_URL/);
  });

  test("a self-managed backend with an empty passphrase (a secret never set) is refused", async () => {
    const s = standIn({ stacks: {} });
    opened.push(s);
    const result = await cli(s, ["sweep"], { PULUMI_BACKEND_URL: "s3://state", PULUMI_CONFIG_PASSPHRASE: "" });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /set PULUMI_CONFIG_PASSPHRASE \(a repository or environment secret\)/);
    assert.deepEqual(s.commands(), []);
  });

  test("--stacks names only environment stacks", async () => {
    const s = standIn({ stacks: {} }, { files: { "Pulumi.staging.yaml": STACK_FILE } });
    opened.push(s);
    const result = await cli(s, ["preview", "--stacks", "staging,pr-3"], {
      PULUMI_BACKEND_URL: "s3://state",
      PULUMI_CONFIG_PASSPHRASE: "correct horse",
    });
    assert.equal(result.code, 1);
    assert.match(
      result.stderr,
      /--stacks names "pr-3", which is not an environment stack \(declared by their Pulumi.<stack>.yaml files: staging\)/,
    );
  });
});

test("percentile: nearest rank over the served requests' milliseconds", () => {
  assert.equal(percentile([], 99), 0);
  assert.equal(percentile([5], 50), 5);
  const ms = Array.from({ length: 100 }, (_, i) => 100 - i);
  assert.equal(percentile(ms, 50), 50);
  assert.equal(percentile(ms, 99), 99);
  assert.equal(percentile(ms, 100), 100);
  assert.deepEqual(ms.slice(0, 2), [100, 99], "the input is left as it was");
});

describe("npm run ci:deploy", () => {
  test("--rollback-to runs a kept release again: the stack's rollbackTo is set, no release, and the summary says so", async () => {
    const s = standIn({ stacks: { staging: stack() }, urls: { staging: loop.url } });
    opened.push(s);
    fs.writeFileSync(path.join(s.projectDir, "Pulumi.staging.yaml"), STACK_FILE);
    const result = await cli(s, ["deploy", "--stack", "staging", "--rollback-to", "4f1c2ab9e0d3"], {
      PULUMI_BACKEND_URL: "s3://state",
      PULUMI_CONFIG_PASSPHRASE: "correct horse",
    });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(s.state().stacks.staging.config["webstack:rollbackTo"], "4f1c2ab9e0d3");
    assert.equal(s.state().stacks.staging.config["webstack:release"], undefined);
    assert.match(result.summary, /^Rolled `staging` back to release `4f1c2ab9e0d3`: http:\/\/127\.0\.0\.1:\d+/m);

    const both = await cli(s, ["deploy", "--stack", "staging", "--rollback-to", "r1", "--release", "r2"], {
      PULUMI_BACKEND_URL: "s3://state",
    });
    assert.notEqual(both.code, 0);
    assert.match(both.stderr, /--rollback-to runs a kept release again; it takes no --release/);
    const bad = await cli(s, ["deploy", "--stack", "staging", "--rollback-to", "r1;true"], {
      PULUMI_BACKEND_URL: "s3://state",
    });
    assert.match(bad.stderr, /--rollback-to must be 1-40 letters, digits/);
  });
});

describe("npm run ci:pr-stack and ci:runner-stack", () => {
  test("up: deploys pr-5, smoke-tests its url, and posts the url to the pull request", async () => {
    const s = standIn({ stacks: {}, urls: { "pr-5": loop.url } });
    opened.push(s);
    const template = path.join(s.projectDir, "Pulumi.pr.yaml");
    fs.writeFileSync(template, fs.readFileSync(template, "utf8").replace("203.0.113.7/32", "100.64.7.0/28"));
    loop.comments = [];
    const result = await cli(s, ["pr-stack", "up", "--pr", "5", "--release", "abc123"], {
      ...githubEnv(),
      PULUMI_BACKEND_URL: "s3://state",
      PULUMI_CONFIG_PASSPHRASE: "correct horse",
    });
    assert.equal(result.code, 0, result.stderr);
    assert.match(
      result.stderr,
      /smoke test passed on http:\/\/127\.0\.0\.1:\d+: the visit counter moved from \d+ to \d+/,
    );
    assert.equal(loop.comments.length, 1);
    assert.match(
      loop.comments[0].body,
      /^<!-- webstack:pr-stack -->\n### webstack: throwaway stack `pr-5`\nhttp:\/\/127\.0\.0\.1:\d+\n/,
    );
  });

  test("runner-stack: a private state backend and passphrase for this run, smoke and load checks, then destroyed", async () => {
    const s = standIn({ stacks: {}, urls: { "ci-88": loop.url } });
    opened.push(s);
    const result = await cli(s, ["runner-stack", "--load-seconds", "1"], { GITHUB_RUN_ID: "88" });
    assert.equal(result.code, 0, result.stderr);
    assert.match(
      result.stderr,
      /load on http:\/\/127\.0\.0\.1:\d+: \d+ requests served, 0 failed, 1 replicas answered; p50 \d+\.\d ms, p99 \d+\.\d ms/,
    );
    const invocations = s.invocations();
    assert.deepEqual(s.commands(), [
      "stack select --create ci-88",
      "up --stack ci-88 --yes --skip-preview --policy-pack policy",
      "stack output url --stack ci-88",
      "destroy --stack ci-88 --yes --skip-preview",
      "stack rm ci-88 --yes",
    ]);
    for (const i of invocations) {
      assert.match(i.env.backend ?? "", /^file:\/\/.*webstack-runner-state-/);
      assert.equal(i.env.passphraseSet, true);
    }
  });
});

describe("the Pulumi CLI's environment", () => {
  test("GitHub's token is not handed to the Pulumi CLI", () => {
    assert.deepEqual(pulumiEnvironment({ GITHUB_TOKEN: "t", PULUMI_BACKEND_URL: "s3://x" }), {
      PULUMI_BACKEND_URL: "s3://x",
    });
  });

  test("Spaces keys become the S3 credentials of the state backend, unless AWS credentials are set", () => {
    assert.deepEqual(pulumiEnvironment({ SPACES_ACCESS_KEY_ID: "k", SPACES_SECRET_ACCESS_KEY: "s" }), {
      SPACES_ACCESS_KEY_ID: "k",
      SPACES_SECRET_ACCESS_KEY: "s",
      AWS_ACCESS_KEY_ID: "k",
      AWS_SECRET_ACCESS_KEY: "s",
    });
    assert.deepEqual(
      pulumiEnvironment({ SPACES_ACCESS_KEY_ID: "k", SPACES_SECRET_ACCESS_KEY: "s", AWS_ACCESS_KEY_ID: "role" })
        .AWS_ACCESS_KEY_ID,
      "role",
    );
    assert.deepEqual(pulumiEnvironment({ SPACES_ACCESS_KEY_ID: "", SPACES_SECRET_ACCESS_KEY: "" }), {
      SPACES_ACCESS_KEY_ID: "",
      SPACES_SECRET_ACCESS_KEY: "",
    });
  });
});
