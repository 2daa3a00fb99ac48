// The CI lifecycle commands against a stand-in Pulumi CLI: the exact commands, flags and order
// they issue, the stack files they write, and the sweeper's choices.
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, describe, test } from "node:test";
import { parse } from "yaml";
import {
  deployStack,
  destroyPrStack,
  previewStack,
  sweep,
  sweepPlan,
  SweepCandidate,
  upPrStack,
  withRunnerStack,
} from "../../ci/lifecycle";
import { stack, StandIn, standIn } from "./support/stand-in";

const NOW = new Date("2026-11-25T12:00:00Z");
const opened: StandIn[] = [];
const make = (...args: Parameters<typeof standIn>) => {
  const s = standIn(...args);
  opened.push(s);
  return s;
};
after(() => opened.forEach((s) => s.cleanup()));

/** The repository's template with the runners' address a team would put in. */
const withRunnerAddress = (s: StandIn) => {
  const file = path.join(s.projectDir, "Pulumi.pr.yaml");
  fs.writeFileSync(file, fs.readFileSync(file, "utf8").replace("203.0.113.7/32", "100.64.7.0/28"));
  return s;
};

describe("pr-<n> stacks: create or update", () => {
  test("the repository's template as shipped is refused until its adminCidrs name real runner addresses", async () => {
    const s = make({ stacks: {} });
    await assert.rejects(
      upPrStack(s.lifecycle, 42),
      /^Error: Pulumi.pr.yaml: webstack:adminCidrs holds 203.0.113.7\/32, an address reserved for documentation: list the addresses your CI runners deploy from$/,
    );
    assert.deepEqual(s.commands(), []);
  });

  test("a new pull request: stack file from the template, stack created, tags, then up with the policy pack, then its url", async () => {
    const s = withRunnerAddress(make({ stacks: {} }));
    const result = await upPrStack(s.lifecycle, 42, {
      release: "0123456789abcdef",
      ttlHours: 48,
      repository: "acme/shop",
    });
    assert.deepEqual(s.commands(), [
      "stack select --create pr-42",
      "stack tag set webstack:pr 42 --stack pr-42",
      "stack tag set webstack:expires 2026-11-27T12:00:00.000Z --stack pr-42",
      "stack tag set webstack:repo acme/shop --stack pr-42",
      "up --stack pr-42 --yes --skip-preview --policy-pack policy",
      "stack output url --stack pr-42",
    ]);
    assert.deepEqual(result, { stack: "pr-42", url: "http://203.0.113.10", expires: "2026-11-27T12:00:00.000Z" });

    // The stack file existed before the stack was created, and says what the template says plus the release.
    const file = s.invocations()[0].stackFile;
    assert.ok(file !== undefined, "Pulumi.pr-42.yaml was written before `stack select --create`");
    const template = parse(fs.readFileSync(path.join(s.projectDir, "Pulumi.pr.yaml"), "utf8")) as {
      config: Record<string, unknown>;
    };
    assert.deepEqual((parse(file) as { config: Record<string, unknown> }).config, {
      ...template.config,
      "webstack:protectData": "false",
      "webstack:release": "0123456789abcdef",
    });
    assert.deepEqual(s.state().stacks["pr-42"].tags, {
      "webstack:pr": "42",
      "webstack:expires": "2026-11-27T12:00:00.000Z",
      "webstack:repo": "acme/shop",
    });
  });

  test("a later push renews the expiry and updates the same stack; a policy config file is passed when present", async () => {
    const s = withRunnerAddress(
      make(
        { stacks: { "pr-42": stack({ "webstack:pr": "42", "webstack:expires": "2026-11-26T00:00:00.000Z" }) } },
        { files: { "policy/config.json": "{}" } },
      ),
    );
    await upPrStack(s.lifecycle, 42);
    assert.deepEqual(s.commands(), [
      "stack select --create pr-42",
      "stack tag set webstack:pr 42 --stack pr-42",
      "stack tag set webstack:expires 2026-11-28T12:00:00.000Z --stack pr-42",
      "up --stack pr-42 --yes --skip-preview --policy-pack policy --policy-pack-config policy/config.json",
      "stack output url --stack pr-42",
    ]);
  });

  test("a template that protects data, holds an encrypted value or sets the release is refused before any command", async () => {
    const s = make({ stacks: {} });
    fs.writeFileSync(
      path.join(s.projectDir, "Pulumi.pr.yaml"),
      'config:\n  webstack:protectData: "true"\n  webstack:postgresPassword:\n    secure: v1:abc\n  webstack:release: x\n',
    );
    await assert.rejects(upPrStack(s.lifecycle, 7), (error: Error) => {
      assert.equal(
        error.message,
        [
          'Pulumi.pr.yaml: webstack:protectData must be "false" (got "true"): a throwaway stack never protects data',
          "Pulumi.pr.yaml: webstack:postgresPassword is an encrypted value; a template may hold only plain settings (passwords are generated per stack)",
          "Pulumi.pr.yaml must not set webstack:release: CI sets it to the pull request's commit",
        ].join("\n"),
      );
      return true;
    });
    assert.deepEqual(s.commands(), []);
  });

  test("protectData is refused unless it is false itself, not a list that reads as false", async () => {
    const s = make({ stacks: {} });
    fs.writeFileSync(path.join(s.projectDir, "Pulumi.pr.yaml"), "config:\n  webstack:protectData: [false]\n");
    await assert.rejects(
      upPrStack(s.lifecycle, 7),
      /webstack:protectData must be "false" \(got \[false\]\): a throwaway stack never protects data/,
    );
    assert.deepEqual(s.commands(), []);
  });

  test("a bad pull request number or expiry is refused before any command", async () => {
    const s = make({ stacks: {} });
    await assert.rejects(
      upPrStack(s.lifecycle, 0),
      /pull request number must be a whole number from 1 to 999999999 \(got 0\)/,
    );
    await assert.rejects(
      upPrStack(s.lifecycle, 3, { ttlHours: 0 }),
      /ttl must be 1 hour to 90 days in hours \(got 0\)/,
    );
    assert.deepEqual(s.commands(), []);
  });
});

describe("pr-<n> stacks: destroy and remove", () => {
  test("destroys, then removes the stack", async () => {
    const s = make({ stacks: { "pr-9": stack(), staging: stack() } });
    assert.equal(await destroyPrStack(s.lifecycle, "pr-9"), "destroyed");
    assert.deepEqual(s.commands(), [
      "stack ls --json",
      "destroy --stack pr-9 --yes --skip-preview",
      "stack rm pr-9 --yes",
    ]);
    assert.deepEqual(Object.keys(s.state().stacks), ["staging"]);
  });

  test("a stack that is already gone is reported, not an error", async () => {
    const s = make({ stacks: { staging: stack() } });
    assert.equal(await destroyPrStack(s.lifecycle, "pr-9"), "absent");
    assert.deepEqual(s.commands(), ["stack ls --json"]);
  });

  test("a failed destroy leaves the stack in place (no stack rm)", async () => {
    const s = make({ stacks: { "pr-9": stack() }, failing: ["destroy pr-9"] });
    await assert.rejects(
      destroyPrStack(s.lifecycle, "pr-9"),
      /pulumi destroy --stack pr-9 --yes --skip-preview --non-interactive exited with 1/,
    );
    assert.deepEqual(s.commands(), ["stack ls --json", "destroy --stack pr-9 --yes --skip-preview"]);
    assert.ok(s.state().stacks["pr-9"] !== undefined);
  });

  test("never destroys anything that is not pr-<number>", async () => {
    const s = make({ stacks: { production: stack(), "pr-1-old": stack(), "pr-01": stack() } });
    for (const name of ["production", "staging", "pr-1-old", "pr-01", "pr-", "xpr-1", "acme/webstack/production"]) {
      await assert.rejects(
        destroyPrStack(s.lifecycle, name),
        /only throwaway stacks named pr-<number> are destroyed by CI/,
        name,
      );
    }
    assert.deepEqual(s.commands(), []);
  });

  test("on Pulumi Cloud the backend's full name is what the commands name", async () => {
    const s = make({ stacks: { "acme/webstack/pr-9": stack(), "acme/webstack/staging": stack() } });
    assert.equal(await destroyPrStack(s.lifecycle, "pr-9"), "destroyed");
    assert.deepEqual(s.commands(), [
      "stack ls --json",
      "destroy --stack acme/webstack/pr-9 --yes --skip-preview",
      "stack rm acme/webstack/pr-9 --yes",
    ]);
  });
});

describe("the sweeper", () => {
  const at = NOW;
  const candidate = (pr: number, pull: SweepCandidate["pull"], expires?: string): SweepCandidate => ({
    stack: `pr-${pr}`,
    pr,
    pull,
    tags: expires === undefined ? {} : { "webstack:expires": expires },
  });

  test("destroys stacks whose pull request is closed or gone, or whose expiry has passed; keeps the rest", () => {
    assert.deepEqual(
      sweepPlan(
        [
          candidate(1, "closed", "2026-12-01T00:00:00Z"),
          candidate(2, "missing", "2026-12-01T00:00:00Z"),
          candidate(3, "open", "2026-11-25T11:59:59Z"),
          candidate(4, "open", "2026-11-25T12:00:00Z"),
          candidate(5, "open", "2026-11-25T12:00:01Z"),
          candidate(6, "open"),
          candidate(7, "unknown", "not a date"),
          candidate(8, "unknown", "2026-11-20T00:00:00Z"),
          candidate(9, "closed"),
        ],
        at,
      ),
      [
        { stack: "pr-1", destroy: true, reason: "its pull request is closed" },
        { stack: "pr-2", destroy: true, reason: "its pull request does not exist" },
        { stack: "pr-3", destroy: true, reason: "expired at 2026-11-25T11:59:59.000Z" },
        { stack: "pr-4", destroy: true, reason: "expired at 2026-11-25T12:00:00.000Z" },
        { stack: "pr-5", destroy: false, reason: "pull request open, expires 2026-11-25T12:00:01.000Z" },
        {
          stack: "pr-6",
          destroy: false,
          reason: "no readable webstack:expires tag (missing); kept while its pull request is open",
        },
        {
          stack: "pr-7",
          destroy: false,
          reason: 'no readable webstack:expires tag ("not a date"); kept while its pull request is unknown',
        },
        { stack: "pr-8", destroy: true, reason: "expired at 2026-11-20T00:00:00.000Z" },
        { stack: "pr-9", destroy: true, reason: "its pull request is closed" },
      ],
    );
  });

  test("reads every pr-* stack's tags, asks GitHub about each pull request, checks again, destroys what it chose and never touches other stacks", async () => {
    const s = make({
      stacks: {
        production: stack(),
        staging: stack(),
        "pr-10": stack({ "webstack:expires": "2026-12-01T00:00:00Z" }),
        "pr-11": stack({ "webstack:expires": "2026-11-24T00:00:00Z" }),
        "pr-12": stack({ "webstack:expires": "2026-12-01T00:00:00Z" }),
        "pr-13": stack({}),
      },
    });
    const asked: number[] = [];
    const states: Record<number, "open" | "closed"> = { 10: "closed", 11: "open", 12: "open", 13: "open" };
    const plan = await sweep(s.lifecycle, (pr) => {
      asked.push(pr);
      return Promise.resolve(states[pr]);
    });
    assert.deepEqual(asked, [10, 11, 12, 13, 10, 11]);
    assert.deepEqual(
      plan.map((d) => [d.stack, d.destroy]),
      [
        ["pr-10", true],
        ["pr-11", true],
        ["pr-12", false],
        ["pr-13", false],
      ],
    );
    assert.deepEqual(s.commands(), [
      "stack ls --json",
      "stack tag ls --stack pr-10 --json",
      "stack tag ls --stack pr-11 --json",
      "stack tag ls --stack pr-12 --json",
      "stack tag ls --stack pr-13 --json",
      "stack tag ls --stack pr-10 --json",
      "stack ls --json",
      "destroy --stack pr-10 --yes --skip-preview",
      "stack rm pr-10 --yes",
      "stack tag ls --stack pr-11 --json",
      "stack ls --json",
      "destroy --stack pr-11 --yes --skip-preview",
      "stack rm pr-11 --yes",
    ]);
    assert.deepEqual(Object.keys(s.state().stacks).sort(), ["pr-12", "pr-13", "production", "staging"]);
  });

  test("a stack renewed by a push while the sweep ran is kept", async () => {
    const s = make({ stacks: { "pr-5": stack({ "webstack:expires": "2026-11-24T00:00:00Z" }) } });
    let calls = 0;
    const plan = await sweep(s.lifecycle, () => {
      // After the first look at its tags, a push renews the stack; the look just before the destroy sees it.
      if (++calls === 1) {
        const state = s.state();
        state.stacks["pr-5"].tags["webstack:expires"] = "2026-11-28T12:00:00.000Z";
        fs.writeFileSync(s.env.STAND_IN_PULUMI_STATE ?? "", JSON.stringify(state));
      }
      return Promise.resolve("open");
    });
    assert.deepEqual(plan, [
      { stack: "pr-5", destroy: false, reason: "pull request open, expires 2026-11-28T12:00:00.000Z" },
    ]);
    assert.ok(!s.commands().some((c) => c.startsWith("destroy")));
    assert.match(s.lines.join("\n"), /pr-5: kept after all/);
  });

  test("a stack busy with another update is left for the next sweep; an unreadable pull request leaves the decision to the expiry", async () => {
    const s = make({
      stacks: {
        "pr-1": stack({ "webstack:expires": "2026-01-01T00:00:00Z" }),
        "pr-2": stack({ "webstack:expires": "2026-01-01T00:00:00Z" }),
      },
      failing: ["destroy pr-1"],
      failMessage:
        "the stack is currently locked by 1 lock(s). Either wait for the other process(es) to end or delete the lock file",
    });
    const plan = await sweep(s.lifecycle, () => Promise.reject(new Error("GitHub GET pull request answered 502")));
    assert.deepEqual(plan, [
      { stack: "pr-1", destroy: false, reason: "busy with another update; left for the next sweep" },
      { stack: "pr-2", destroy: true, reason: "expired at 2026-01-01T00:00:00.000Z" },
    ]);
    assert.deepEqual(Object.keys(s.state().stacks), ["pr-1"]);
  });

  test("on a backend several repositories share, only this repository's stacks are judged", () => {
    const mine = { ...candidate(1, "closed"), tags: { "webstack:repo": "acme/shop" } };
    const theirs = { ...candidate(2, "missing"), tags: { "webstack:repo": "acme/blog" } };
    const untagged = candidate(3, "closed");
    assert.deepEqual(sweepPlan([mine, theirs, untagged], at, "acme/shop"), [
      { stack: "pr-1", destroy: true, reason: "its pull request is closed" },
      { stack: "pr-2", destroy: false, reason: "made by acme/blog, not acme/shop; left to its own sweeper" },
      {
        stack: "pr-3",
        destroy: false,
        reason: "made by no recorded repository, not acme/shop; left to its own sweeper",
      },
    ]);
  });

  test("a failure on one stack does not stop the others, and the sweep fails at the end", async () => {
    const s = make({
      stacks: {
        "pr-1": stack({ "webstack:expires": "2026-01-01T00:00:00Z" }),
        "pr-2": stack({ "webstack:expires": "2026-01-01T00:00:00Z" }),
      },
      failing: ["destroy pr-1"],
    });
    await assert.rejects(
      sweep(s.lifecycle, undefined),
      /sweep: 1 stack\(s\) could not be destroyed:\npr-1: pulumi destroy/,
    );
    assert.deepEqual(Object.keys(s.state().stacks), ["pr-1"]);
  });

  test("a dry run only reports", async () => {
    const s = make({ stacks: { "pr-1": stack({ "webstack:expires": "2026-01-01T00:00:00Z" }) } });
    const plan = await sweep(s.lifecycle, undefined, { dryRun: true });
    assert.deepEqual(plan, [{ stack: "pr-1", destroy: true, reason: "expired at 2026-01-01T00:00:00.000Z" }]);
    assert.deepEqual(s.commands(), ["stack ls --json", "stack tag ls --stack pr-1 --json"]);
    assert.match(s.lines.join("\n"), /pr-1: would destroy — expired/);
  });
});

describe("environment stacks", () => {
  test("deploy: select the existing stack, set the release, up with the policy pack, read the url", async () => {
    const s = make({ stacks: { staging: stack() }, urls: { staging: "http://198.51.100.7" } });
    assert.equal(await deployStack(s.lifecycle, "staging", { release: "abc123" }), "http://198.51.100.7");
    assert.deepEqual(s.commands(), [
      "stack ls --json",
      "stack select staging",
      "config rm webstack:rollbackTo --stack staging",
      "config set webstack:release abc123 --stack staging",
      "up --stack staging --yes --skip-preview --policy-pack policy",
      "stack output url --stack staging",
    ]);
  });

  test("deploy with rollbackTo: the kept release is set instead of a release, and the checkout is not deployed", async () => {
    const s = make({ stacks: { production: stack() }, urls: { production: "http://198.51.100.8" } });
    assert.equal(await deployStack(s.lifecycle, "production", { rollbackTo: "4f1c2ab9e0d3" }), "http://198.51.100.8");
    assert.deepEqual(s.commands(), [
      "stack ls --json",
      "stack select production",
      "config set webstack:rollbackTo 4f1c2ab9e0d3 --stack production",
      "up --stack production --yes --skip-preview --policy-pack policy",
      "stack output url --stack production",
    ]);
    await assert.rejects(
      deployStack(s.lifecycle, "production", { rollbackTo: "r1", release: "r2" }),
      /either rolls back to a kept release or deploys a release of the checkout, not both/,
    );
  });

  test("deploy never creates an environment: a stack missing from the backend is an error", async () => {
    const s = make({ stacks: { "pr-3": stack() } });
    await assert.rejects(
      deployStack(s.lifecycle, "production"),
      /stack production does not exist in this state backend: create it once with `npm run pulumi -- stack init production`/,
    );
    assert.deepEqual(s.commands(), ["stack ls --json"]);
  });

  test("deploy refuses a throwaway stack name", async () => {
    const s = make({ stacks: {} });
    await assert.rejects(deployStack(s.lifecycle, "pr-3"), /pr-3 is a throwaway stack/);
    assert.deepEqual(s.commands(), []);
  });

  test("preview: exports the state, previews with JSON, the event log, the policy pack and the release, and keeps the raw output", async () => {
    const s = make({ stacks: { staging: stack() } });
    const out = path.join(s.projectDir, "out");
    const preview = await previewStack(s.lifecycle, "staging", { release: "abc123", outDir: out });
    assert.deepEqual(s.commands(), [
      "stack export --stack staging",
      `preview --stack staging --json --event-log ${path.join(out, "staging.events.jsonl")} --policy-pack policy --config webstack:release=abc123`,
    ]);
    assert.equal(preview.ok, true);
    assert.ok(fs.existsSync(path.join(out, "staging.preview.json")));
  });

  test("drift check: the deployed release, then refresh first and expect no changes", async () => {
    const s = make({ stacks: { production: { ...stack(), outputs: { url: "http://x", release: "0123456789ab" } } } });
    await previewStack(s.lifecycle, "production", { drift: true });
    const commands = s.commands().map((c) => c.replace(/--event-log \S+/, "--event-log LOG"));
    assert.deepEqual(commands, [
      "stack export --stack production",
      "stack output release --stack production",
      "preview --stack production --json --event-log LOG --policy-pack policy --refresh --expect-no-changes --config webstack:release=0123456789ab",
    ]);
  });

  test("a stack that does not exist yet previews as a failure that says so", async () => {
    const s = make({ stacks: {} });
    const preview = await previewStack(s.lifecycle, "production");
    assert.equal(preview.ok, false);
    assert.match(
      preview.errors[0],
      /^stack production could not be read \(does it exist yet\? the first deploy creates it\): error: no stack named 'production' found/,
    );
  });
});

describe("the stack on the CI runner", () => {
  test("deploys a local stack on a port Docker picks, checks it, destroys and removes it", async () => {
    const s = make({ stacks: {}, urls: { "ci-77": "http://127.0.0.1:49153" } });
    const seen = await withRunnerStack(s.lifecycle, "ci-77", (url) => Promise.resolve(url));
    assert.equal(seen, "http://127.0.0.1:49153");
    assert.deepEqual(s.commands(), [
      "stack select --create ci-77",
      "up --stack ci-77 --yes --skip-preview --policy-pack policy",
      "stack output url --stack ci-77",
      "destroy --stack ci-77 --yes --skip-preview",
      "stack rm ci-77 --yes",
    ]);
    assert.deepEqual((parse(s.invocations()[0].stackFile ?? "") as { config: unknown }).config, {
      "webstack:target": "local",
      "webstack:replicas": "2",
      "webstack:httpPort": "0",
    });
  });

  test("a failed check still destroys the stack, and the check's error is the one reported", async () => {
    const s = make({ stacks: {} });
    await assert.rejects(
      withRunnerStack(s.lifecycle, "ci-78", () => Promise.reject(new Error("smoke test failed"))),
      /smoke test failed/,
    );
    assert.deepEqual(s.commands().slice(-2), ["destroy --stack ci-78 --yes --skip-preview", "stack rm ci-78 --yes"]);
  });
});
