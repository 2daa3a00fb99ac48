// Preview summaries and the pull-request comment, from previews of the real program's resources.
import assert from "node:assert/strict";
import { before, describe, test } from "node:test";
import { cutAt, GITHUB_COMMENT_LIMIT, PREVIEW_MARKER, renderPreviewComment } from "../../ci/comment";
import { monthlyCost, PRICE_TABLE, PriceBook } from "../../ci/cost";
import { summarisePreview } from "../../ci/preview";
import { Registered, runProgram } from "../unit/support/mocks";
import {
  createSteps,
  deleteStep,
  digest,
  exportOf,
  policyEventLine,
  replaceSteps,
  updateStep,
  urnOf,
} from "./support/previews";

const ADMIN = '["198.51.100.0/24"]';
const DO = { target: "digitalocean", region: "nyc3", adminCidrs: ADMIN };
const AWS = { target: "aws", region: "us-east-1", adminCidrs: ADMIN };
const PRICES: PriceBook = {
  table: PRICE_TABLE,
  dropletMonthly: new Map([
    ["s-1vcpu-1gb", 6],
    ["s-1vcpu-2gb", 12],
    ["s-2vcpu-4gb", 24],
  ]),
};

let doR1: Registered[];
let doR2: Registered[];
let doBig: Registered[];
let awsR1: Registered[];
const custom = (rs: Registered[]) => rs.filter((r) => !r.type.startsWith("webstack:"));
const byName = (rs: Registered[], name: string) => rs.find((r) => r.name === name) ?? assert.fail(`no ${name}`);

before(async () => {
  doR1 = custom((await runProgram({ ...DO, release: "r1" })).mocks.resources);
  doR2 = custom((await runProgram({ ...DO, release: "r2", maxRequestBody: "2m" })).mocks.resources);
  doBig = custom((await runProgram({ ...DO, release: "r1", size: "s-2vcpu-4gb", dataVolumeGb: "20" })).mocks.resources);
  awsR1 = custom((await runProgram({ ...AWS, release: "r1" })).mocks.resources);
});

describe("cost", () => {
  test("a DigitalOcean stack: droplet from the sizes data, volume per GiB, an assigned reserved IP is free", () => {
    const cost = monthlyCost(doR1, PRICES);
    assert.deepEqual(cost, {
      monthly: 13,
      lines: [
        { name: "host-data", monthly: 1, basis: "10 GiB volume" },
        { name: "host-ip", monthly: 0, basis: "assigned reserved IP" },
        { name: "host-droplet", monthly: 12, basis: "droplet s-1vcpu-2gb" },
      ].sort((a, b) => doR1.findIndex((r) => r.name === a.name) - doR1.findIndex((r) => r.name === b.name)),
      unknown: [],
    });
  });

  test("an AWS stack: instance hours, root and data gp3 volumes, the public IPv4 address", () => {
    const cost = monthlyCost(awsR1, PRICES);
    const lines = Object.fromEntries(cost.lines.map((l) => [l.name, [l.monthly, l.basis]]));
    assert.deepEqual(lines, {
      "host-instance": [15.18, "t3.small instance"],
      "host-instance root volume": [1.6, "20 GB gp3"],
      "host-data": [0.8, "10 GB gp3"],
      "host-ip": [3.65, "public IPv4 address"],
    });
    assert.equal(cost.monthly, 21.23);
  });

  test("a size without a known price is named, not guessed", () => {
    const cost = monthlyCost(doR1, { ...PRICES, dropletMonthly: new Map() });
    assert.deepEqual(cost.unknown, ["host-droplet (droplet s-1vcpu-2gb)"]);
    assert.equal(cost.monthly, 1);
  });

  test("the local target costs nothing", async () => {
    const local = custom((await runProgram({})).mocks.resources);
    assert.deepEqual(monthlyCost(local, PRICES), { monthly: 0, lines: [], unknown: [] });
  });
});

describe("preview summaries", () => {
  test("a first deploy: everything created, the release named, cost $0 → the stack's price", () => {
    const p = summarisePreview({
      stack: "staging",
      stdout: digest(createSteps("staging", doR1)),
      exitCode: 0,
      prices: PRICES,
    });
    assert.equal(p.ok, true);
    assert.equal(p.counts.create, doR1.length);
    assert.deepEqual([p.counts.update, p.counts.replace, p.counts.delete], [0, 0, 0]);
    assert.equal(p.release, "r1");
    assert.deepEqual(p.risks, []);
    assert.equal(p.cost?.before.monthly, 0);
    assert.equal(p.cost?.after.monthly, 13);
  });

  test("a new release and an nginx setting: replicas created and deleted, nginx replaced, nothing at risk", () => {
    const nginx1 = byName(doR1, "webstack-nginx");
    const nginx2 = byName(doR2, "webstack-nginx");
    const oldApps = doR1.filter((r) => r.name.startsWith("webstack-app-"));
    const newApps = doR2.filter((r) => r.name.startsWith("webstack-app-"));
    const steps = [
      ...newApps.map((r) => ({
        op: "create",
        urn: urnOf("staging", r),
        newState: { urn: urnOf("staging", r), type: r.type, inputs: r.inputs },
        detailedDiff: null,
      })),
      ...replaceSteps("staging", nginx1, nginx2, ["labels", "uploads"], { showReplacementSteps: true }),
      ...oldApps.map((r) => deleteStep("staging", r)),
    ];
    const p = summarisePreview({
      stack: "staging",
      stdout: digest(steps),
      exitCode: 0,
      state: exportOf("staging", doR1),
      prices: PRICES,
    });
    // One create and one delete per replica: the default count on the 1-vCPU default size.
    assert.equal(newApps.length, 2);
    assert.deepEqual(p.counts, { create: newApps.length, update: 0, replace: 1, delete: oldApps.length });
    assert.equal(p.release, "r2");
    assert.deepEqual(
      p.changes.find((c) => c.kind === "replace"),
      {
        kind: "replace",
        urn: urnOf("staging", nginx2),
        type: "docker:Container",
        name: "webstack-nginx",
        properties: ["labels", "uploads"],
      },
    );
    assert.deepEqual(p.risks, []);
    assert.equal(p.cost?.before.monthly, 13);
    assert.equal(p.cost?.after.monthly, 13);
  });

  test("a bigger droplet and volume: the update is priced before → after", () => {
    const steps = [
      updateStep("production", byName(doR1, "host-droplet"), byName(doBig, "host-droplet"), ["size"]),
      updateStep("production", byName(doR1, "host-data"), byName(doBig, "host-data"), ["size"]),
    ];
    const p = summarisePreview({
      stack: "production",
      stdout: digest(steps),
      exitCode: 0,
      state: exportOf("production", doR1),
      prices: PRICES,
    });
    assert.deepEqual(p.counts, { create: 0, update: 2, replace: 0, delete: 0 });
    assert.equal(p.release, undefined);
    assert.equal(p.cost?.before.monthly, 13);
    assert.equal(p.cost?.after.monthly, 26);
  });

  test("deleting the Postgres volume and the block volume, replacing the droplet: each flagged in plain words", () => {
    const steps = [
      deleteStep("production", byName(doR1, "webstack-postgres-data")),
      deleteStep("production", byName(doR1, "host-data")),
      ...replaceSteps("production", byName(doR1, "host-droplet"), byName(doBig, "host-droplet"), ["userData"]),
      deleteStep("production", byName(doR1, "webstack-redis-data")),
    ];
    const p = summarisePreview({
      stack: "production",
      stdout: digest(steps),
      exitCode: 0,
      state: exportOf("production", doR1),
      prices: PRICES,
    });
    assert.deepEqual(p.risks, [
      {
        kind: "delete",
        name: "webstack-postgres-data",
        what: "the Postgres data volume (every row of the app's database)",
      },
      { kind: "delete", name: "host-data", what: "the block-storage volume holding Postgres data" },
      { kind: "replace", name: "host-droplet", what: "the droplet (the whole stack restarts on a new VM)" },
      { kind: "delete", name: "webstack-redis-data", what: "the Redis data volume (the cache; rebuilt from Postgres)" },
    ]);
    assert.equal(p.cost?.after.monthly, 24, "the deleted volume no longer costs anything; the new droplet does");
  });

  test("policy violations from the event log; a mandatory one fails the preview", () => {
    const firewall = byName(doR1, "host-firewall");
    const events = [
      policyEventLine(
        "admin-ports-not-public",
        "host-firewall opens port 22 to 0.0.0.0/0",
        "mandatory",
        urnOf("staging", firewall),
        7,
      ),
      policyEventLine(
        "allowed-vm-sizes",
        "droplet size s-8vcpu-16gb is not allowed",
        "advisory",
        urnOf("staging", byName(doR1, "host-droplet")),
        8,
      ),
      '{"sequence":9,"timestamp":1,"diagnosticEvent":{"message":"x","severity":"info"}}',
    ].join("\n");
    const p = summarisePreview({
      stack: "staging",
      stdout: digest(createSteps("staging", doR1), [{ message: "error: preview failed", severity: "error" }]),
      exitCode: 1,
      eventLog: events,
    });
    assert.equal(p.ok, false);
    assert.deepEqual(p.violations, [
      {
        policy: "admin-ports-not-public",
        pack: "webstack",
        level: "mandatory",
        message: "host-firewall opens port 22 to 0.0.0.0/0",
        resource: "host-firewall",
      },
      {
        policy: "allowed-vm-sizes",
        pack: "webstack",
        level: "advisory",
        message: "droplet size s-8vcpu-16gb is not allowed",
        resource: "host-droplet",
      },
    ]);
    assert.deepEqual(p.errors, ["error: preview failed"]);
  });

  test("a CLI that fails before printing JSON is a failed preview with its last words", () => {
    const p = summarisePreview({
      stack: "staging",
      stdout: "",
      stderr: "error: Invalid webstack configuration (1 problem):\n  - webstack:replicas must be …",
      exitCode: 1,
    });
    assert.equal(p.ok, false);
    assert.deepEqual(p.changes, []);
    assert.match(p.errors[0], /^pulumi preview exited with 1: error: Invalid webstack configuration/);
  });
});

describe("the pull-request comment", () => {
  const summary = (
    stack: string,
    steps: ReturnType<typeof createSteps>,
    extra: Partial<Parameters<typeof summarisePreview>[0]> = {},
  ) =>
    summarisePreview({
      stack,
      stdout: digest(steps),
      exitCode: 0,
      state: exportOf(stack, doR1),
      prices: PRICES,
      ...extra,
    });

  test("several stacks: marker first, data risks at the top, one table row per stack, violations and errors listed", () => {
    const staging = summary("staging", [
      ...replaceSteps("staging", byName(doR1, "webstack-nginx"), byName(doR2, "webstack-nginx"), ["labels"]),
      updateStep("staging", byName(doR1, "host-droplet"), byName(doBig, "host-droplet"), ["size"]),
    ]);
    const production = summary("production", [deleteStep("production", byName(doR1, "webstack-postgres-data"))], {
      exitCode: 1,
      eventLog: policyEventLine(
        "data-protection",
        "webstack-postgres-data must be protected on production",
        "mandatory",
      ),
    });
    const body = renderPreviewComment([staging, production], {
      sha: "0123456789abcdef0123",
      logUrl: "https://github.com/acme/shop/actions/runs/99",
      time: new Date("2026-11-25T12:34:56Z"),
    });
    const lines = body.split("\n");
    assert.equal(lines[0], PREVIEW_MARKER);
    assert.equal(lines[1], "### webstack preview: 2 stacks, 1 failed");
    assert.equal(
      lines[2],
      "commit `0123456789ab` · [full log](https://github.com/acme/shop/actions/runs/99) · updated 2026-11-25 12:34 UTC",
    );
    const caution = lines.indexOf("> [!CAUTION]");
    const table = lines.findIndex((l) => l.startsWith("| stack |"));
    assert.ok(caution > 0 && caution < table, "data at risk comes before the table");
    assert.equal(
      lines[caution + 2],
      "> - `production`: would **delete** `webstack-postgres-data`, the Postgres data volume (every row of the app's database).",
    );
    assert.equal(lines[table + 2], "| `staging` | ok | 0 | 1 | 1 | 0 | none | unchanged | $13.00 → $25.00 (+$12.00) |");
    assert.equal(
      lines[table + 3],
      "| `production` | **failed** | 0 | 0 | 0 | 1 | 1 (1 mandatory) | unchanged | $13.00 → $13.00 |",
    );
    assert.ok(
      lines.includes(
        "- **policy `data-protection`** (mandatory): webstack-postgres-data must be protected on production",
      ),
    );
    assert.match(
      body,
      /<details><summary><code>staging<\/code>: 2 changes<\/summary>\n\n```diff\n\+- replace docker:Container webstack-nginx \(labels\)\n~ update digitalocean:Droplet host-droplet \(size\)\n```/,
    );
    assert.ok(body.length < GITHUB_COMMENT_LIMIT);
  });

  test("a huge diff is trimmed to GitHub's limit; the summary survives and the rest is pointed to the full log", () => {
    const app = byName(doR1, "webstack-app-r1-1");
    const many = Array.from({ length: 20_000 }, (_, i) => ({ ...app, name: `webstack-app-r${i}-${i}` }));
    const huge = summary("staging", createSteps("staging", many));
    const small = summary("production", [
      updateStep("production", byName(doR1, "host-droplet"), byName(doBig, "host-droplet"), ["size"]),
    ]);
    const body = renderPreviewComment([huge, small], { logUrl: "https://github.com/acme/shop/actions/runs/100" });
    assert.ok(body.length <= GITHUB_COMMENT_LIMIT, `${body.length} characters`);
    assert.ok(body.startsWith(PREVIEW_MARKER));
    assert.match(body, /\| `staging` \| ok \| 20000 \| 0 \| 0 \| 0 \| none \| `r0` \|/);
    assert.match(body, /\| `production` \| ok \| 0 \| 1 \| 0 \| 0 \|/);
    const more =
      /… ([0-9]+) more changes: see the \[full log\]\(https:\/\/github.com\/acme\/shop\/actions\/runs\/100\)/.exec(
        body,
      );
    assert.ok(more !== null, "says how many changes were left out and where they are");
    const listed = body.split("\n").filter((l) => l.startsWith("+ create docker:Container webstack-app-")).length;
    assert.equal(listed + Number(more[1]), 20_000, "every change is either listed or counted as left out");
    assert.ok(listed > 100, `${listed} listed: the space left is used`);
    assert.match(body, /Full preview: the \[full log\]/);
    assert.match(
      body,
      /<code>production<\/code>: 1 change<\/summary>\n\n```diff\n~ update digitalocean:Droplet host-droplet \(size\)\n```/,
      "a small stack is listed whole next to a huge one",
    );
  });

  test("many failing stacks with many long violations: every stack's row and heading survive, within the limit", () => {
    const long = "x".repeat(600);
    const failing = ["a", "b", "c", "d", "e", "f", "g", "h"].map((stack) =>
      summary(stack, [updateStep(stack, byName(doR1, "host-droplet"), byName(doBig, "host-droplet"), ["size"])], {
        exitCode: 1,
        eventLog: Array.from({ length: 40 }, (_, i) =>
          policyEventLine("allowed-vm-sizes", `${stack} ${i} ${long}`, "mandatory", undefined, i),
        ).join("\n"),
      }),
    );
    const body = renderPreviewComment(failing, { logUrl: "https://github.com/acme/shop/actions/runs/101" });
    assert.ok(body.length <= GITHUB_COMMENT_LIMIT, `${body.length} characters`);
    for (const stack of ["a", "b", "c", "d", "e", "f", "g", "h"]) {
      assert.match(body, new RegExp(`\\| \`${stack}\` \\| \\*\\*failed\\*\\* \\|`), `${stack}'s row`);
      assert.ok(body.includes(`#### \`${stack}\``), `${stack}'s heading`);
      assert.match(
        body,
        new RegExp(`- \\*\\*policy \`allowed-vm-sizes\`\\*\\* \\(mandatory\\): ${stack} 0 x+`),
        `${stack}'s first violation`,
      );
      assert.match(body, /- 3[0-9] more policy violations: see the \[full log\]/);
    }
    assert.equal(body.split("\n").filter((l) => l.startsWith("```")).length % 2, 0, "code fences balanced");
  });

  test("a cut at the limit ends at a line, closes what it leaves open, and says so", () => {
    const text = [
      "<details><summary>s</summary>",
      "",
      "```diff",
      ...Array.from({ length: 100 }, (_, i) => `+ line ${i}`),
      "```",
      "</details>",
    ].join("\n");
    const cut = cutAt(text, 300, "… cut; see the log.");
    assert.ok(cut.length <= 300, `${cut.length}`);
    const lines = cut.split("\n");
    assert.deepEqual(lines.slice(-5), ["```", "</details>", "", "… cut; see the log.", ""]);
    assert.ok(
      lines.slice(3, -5).every((l) => /^\+ line [0-9]+$/.test(l)),
      "no half line",
    );
  });

  test("no environment stacks says so", () => {
    const body = renderPreviewComment([], {});
    assert.match(body, /^<!-- webstack:preview -->\n### webstack preview: no environment stacks\n/);
    assert.match(body, /No `Pulumi.<stack>.yaml` environment stack files were found/);
  });
});
