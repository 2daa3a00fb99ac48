// What a `pulumi preview` of one stack means for a reviewer: the changes by kind with the
// resources named, what would put data at risk, policy violations, the release that would roll
// out, and the cost before and after. Pure functions over the CLI's JSON; no I/O.
import { CostEstimate, monthlyCost, PriceBook, PricedResource } from "./cost";

export type ChangeKind = "create" | "update" | "replace" | "delete";
export const CHANGE_KINDS: readonly ChangeKind[] = ["create", "update", "replace", "delete"];

export interface ResourceChange {
  kind: ChangeKind;
  urn: string;
  /** Short type, e.g. `docker:Container`. */
  type: string;
  /** The Pulumi logical name. */
  name: string;
  /** Properties that differ (from the diff), or why it is replaced. */
  properties: string[];
}

export interface DataRisk {
  kind: "replace" | "delete";
  name: string;
  /** In plain words: what holds data there. */
  what: string;
}

export interface PolicyViolation {
  policy: string;
  pack: string;
  level: string;
  message: string;
  /** Logical name of the resource, when the violation is about one. */
  resource?: string;
}

export interface StackPreview {
  stack: string;
  /** False when the preview failed (an error diagnostic, a mandatory policy, a CLI failure). */
  ok: boolean;
  /** Error messages, when not ok. */
  errors: string[];
  changes: ResourceChange[];
  counts: Record<ChangeKind, number>;
  risks: DataRisk[];
  violations: PolicyViolation[];
  /** Release id the app replicas created by this update belong to, if any are created. */
  release?: string;
  cost?: { before: CostEstimate; after: CostEstimate };
}

/** `pulumi preview --json` output (only the fields used). */
interface PreviewDigest {
  steps?: PreviewStep[];
  diagnostics?: { urn?: string; message?: string; severity?: string }[];
}

interface PreviewStep {
  op: string;
  urn: string;
  oldState?: { type?: string; inputs?: Record<string, unknown> };
  newState?: { type?: string; inputs?: Record<string, unknown> };
  diffReasons?: string[];
  replaceReasons?: string[];
  detailedDiff?: Record<string, unknown> | null;
}

/** `pulumi stack export` output (only the fields used). */
export interface StateExport {
  deployment?: { resources?: { urn: string; type: string; inputs?: Record<string, unknown> }[] };
}

/** The step ops of `pulumi preview --json` that are a change of each kind. */
const KIND_OF_OP: Record<string, ChangeKind | undefined> = {
  create: "create",
  update: "update",
  replace: "replace",
  "create-replacement": "replace",
  "delete-replaced": "replace",
  delete: "delete",
  import: "create",
  "import-replacement": "replace",
};

export function parseDigest(stdout: string): PreviewDigest | undefined {
  const start = stdout.indexOf("{");
  if (start < 0) return undefined;
  try {
    return JSON.parse(stdout.slice(start)) as PreviewDigest;
  } catch {
    return undefined;
  }
}

/** Policy events from an engine event log (`--event-log`: one JSON event per line). */
export function policyViolations(eventLog: string): PolicyViolation[] {
  const violations: PolicyViolation[] = [];
  for (const line of eventLog.split("\n")) {
    if (!line.includes('"policyEvent"')) continue;
    let event: { policyEvent?: Record<string, unknown> };
    try {
      event = JSON.parse(line) as typeof event;
    } catch {
      continue;
    }
    const p = event.policyEvent;
    if (p === undefined) continue;
    violations.push({
      policy: fieldText(p.policyName, "?"),
      pack: fieldText(p.policyPackName, "?"),
      level: fieldText(p.enforcementLevel, "?"),
      message: stripColor(fieldText(p.message, "")).trim(),
      resource: typeof p.resourceUrn === "string" && p.resourceUrn !== "" ? logicalName(p.resourceUrn) : undefined,
    });
  }
  return violations;
}

/** A field of the CLI's JSON as text: `fallback` when missing, JSON when not a string, never "[object Object]". */
function fieldText(value: unknown, fallback: string): string {
  if (typeof value === "string") return value;
  return value === undefined || value === null ? fallback : JSON.stringify(value);
}

/** `urn:pulumi:stack::project::a$b:c::name` → `name`. */
export function logicalName(urn: string): string {
  return urn.split("::").at(-1) ?? urn;
}

/** `docker:index/container:Container` → `docker:Container`. */
export function shortType(type: string): string {
  const [pkg, , name] = type.split(":");
  return name === undefined ? type : `${pkg}:${name}`;
}

function typeOf(step: PreviewStep): string {
  return step.newState?.type ?? step.oldState?.type ?? step.urn.split("::").at(-2)?.split("$").at(-1) ?? "?";
}

/** What a resource holds, when losing it loses data or service; undefined for the rest. */
export function dataHeldBy(
  type: string,
  name: string,
  inputs: Record<string, unknown> | undefined,
): string | undefined {
  switch (type) {
    case "docker:index/volume:Volume": {
      const dockerName = fieldText(inputs?.name, name);
      if (dockerName.endsWith("postgres-data") || name.endsWith("postgres-data"))
        return "the Postgres data volume (every row of the app's database)";
      if (dockerName.endsWith("redis-data") || name.endsWith("redis-data"))
        return "the Redis data volume (the cache; rebuilt from Postgres)";
      return undefined;
    }
    case "digitalocean:index/volume:Volume":
      return "the block-storage volume holding Postgres data";
    case "aws:ebs/volume:Volume":
      return "the EBS volume holding Postgres data";
    case "digitalocean:index/droplet:Droplet":
      return "the droplet (the whole stack restarts on a new VM)";
    case "aws:ec2/instance:Instance":
      return "the EC2 instance (the whole stack restarts on a new VM)";
    default:
      return undefined;
  }
}

const APP_REPLICA = /^webstack-app-(.+)-[0-9]+$/;

/**
 * Summarises one stack's preview. `stdout` is `pulumi preview --json`'s output, `eventLog` the
 * `--event-log` file, `state` the stack's `pulumi stack export` before the update (for the cost
 * before), `stderr` and `exitCode` what the CLI ended with.
 */
export function summarisePreview(input: {
  stack: string;
  stdout: string;
  stderr?: string;
  exitCode: number;
  eventLog?: string;
  state?: StateExport;
  prices?: PriceBook;
}): StackPreview {
  const digest = parseDigest(input.stdout);
  const violations = policyViolations(input.eventLog ?? "");
  const errors: string[] = [];
  const byUrn = new Map<string, ResourceChange>();
  const risks: DataRisk[] = [];
  let release: string | undefined;

  for (const step of digest?.steps ?? []) {
    const kind = KIND_OF_OP[step.op];
    if (kind === undefined) continue;
    const type = typeOf(step);
    const name = logicalName(step.urn);
    const properties = [
      ...new Set([
        ...(step.replaceReasons ?? []),
        ...(step.diffReasons ?? []),
        ...Object.keys(step.detailedDiff ?? {}),
      ]),
    ];
    const seen = byUrn.get(step.urn);
    // A replacement shows as several steps; the strongest kind wins.
    if (seen === undefined || CHANGE_KINDS.indexOf(kind) > CHANGE_KINDS.indexOf(seen.kind)) {
      byUrn.set(step.urn, {
        kind,
        urn: step.urn,
        type: shortType(type),
        name,
        properties: [...new Set([...(seen?.properties ?? []), ...properties])],
      });
    }
    if (kind === "create" && type === "docker:index/container:Container") release ??= APP_REPLICA.exec(name)?.[1];
  }
  const changes = [...byUrn.values()].filter((c) => c.type !== "pulumi:Stack");
  for (const change of changes) {
    if (change.kind !== "replace" && change.kind !== "delete") continue;
    const step = digest?.steps?.find((s) => s.urn === change.urn);
    const what = dataHeldBy(
      step === undefined ? "" : typeOf(step),
      change.name,
      step?.oldState?.inputs ?? step?.newState?.inputs,
    );
    if (what !== undefined) risks.push({ kind: change.kind, name: change.name, what });
  }

  for (const d of digest?.diagnostics ?? []) {
    if (d.severity === "error") errors.push(stripColor(d.message ?? "").trim());
  }
  const mandatory = violations.filter((v) => v.level === "mandatory");
  if (input.exitCode !== 0 && errors.length === 0) {
    // In --json mode the CLI's own errors (a locked stack, a wrong passphrase, a pack that does not
    // load) go to stderr, not into the digest.
    const said = lastLines(input.stderr ?? "", 10);
    errors.push(
      mandatory.length > 0
        ? `${mandatory.length} mandatory polic${mandatory.length === 1 ? "y" : "ies"} failed`
        : `pulumi preview exited with ${input.exitCode}${said !== "" ? `: ${said}` : digest === undefined ? `: ${lastLines(input.stdout, 10)}` : ""}`,
    );
  }

  const counts = Object.fromEntries(CHANGE_KINDS.map((k) => [k, changes.filter((c) => c.kind === k).length])) as Record<
    ChangeKind,
    number
  >;
  const preview: StackPreview = {
    stack: input.stack,
    ok: input.exitCode === 0 && errors.length === 0,
    errors: errors.filter((e) => e !== ""),
    changes,
    counts,
    risks,
    violations,
    release,
  };
  if (input.prices !== undefined && digest !== undefined) {
    const { before, after } = resourcesBeforeAfter(input.state, digest.steps ?? []);
    preview.cost = { before: monthlyCost(before, input.prices), after: monthlyCost(after, input.prices) };
  }
  return preview;
}

/**
 * The stack's resources now (its exported state) and after the update (the state with the
 * preview's steps applied), each with its inputs.
 */
export function resourcesBeforeAfter(
  state: StateExport | undefined,
  steps: readonly PreviewStep[],
): { before: PricedResource[]; after: PricedResource[] } {
  const before = new Map<string, PricedResource>();
  for (const r of state?.deployment?.resources ?? []) {
    before.set(r.urn, { type: r.type, name: logicalName(r.urn), inputs: r.inputs ?? {} });
  }
  const after = new Map(before);
  for (const step of steps) {
    const kind = KIND_OF_OP[step.op];
    if (kind === "delete" || step.op === "delete-replaced") {
      if (step.op !== "delete-replaced") after.delete(step.urn);
    } else if (step.newState !== undefined && (kind !== undefined || step.op === "same")) {
      after.set(step.urn, { type: typeOf(step), name: logicalName(step.urn), inputs: step.newState.inputs ?? {} });
    }
    // A stack never exported (first preview) still shows its unchanged resources as "same" steps.
    if (step.op === "same" && step.oldState !== undefined && !before.has(step.urn)) {
      before.set(step.urn, { type: typeOf(step), name: logicalName(step.urn), inputs: step.oldState.inputs ?? {} });
    }
  }
  return { before: [...before.values()], after: [...after.values()] };
}

function stripColor(text: string): string {
  return text.replace(/\u001b\[[0-9;]*m|<\{%[a-z]*%\}>/g, "");
}

function lastLines(text: string, n: number): string {
  return stripColor(text).trim().split("\n").slice(-n).join("\n");
}
