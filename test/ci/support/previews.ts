// Preview output shaped like the Pulumi CLI's (`pulumi preview --json`: PreviewDigest with
// PreviewStep entries, unchanged resources left out as without --show-sames; `--event-log`: one
// engine event per line), built from the resources the real program registers under mocks, so
// names, types and inputs are the program's own.
import { Registered } from "../../unit/support/mocks";

export interface Step {
  op: string;
  urn: string;
  oldState?: { urn: string; type: string; inputs: Record<string, unknown> };
  newState?: { urn: string; type: string; inputs: Record<string, unknown> };
  replaceReasons?: string[];
  diffReasons?: string[];
  detailedDiff: Record<string, { kind: string; inputDiff: boolean }> | null;
}

export function urnOf(stack: string, r: Pick<Registered, "type" | "name">): string {
  return `urn:pulumi:${stack}::webstack::${r.type}::${r.name}`;
}

function state(stack: string, r: Pick<Registered, "type" | "name" | "inputs">) {
  return { urn: urnOf(stack, r), type: r.type, inputs: r.inputs };
}

/** Steps of a first deploy: every custom resource created. */
export function createSteps(stack: string, resources: readonly Registered[]): Step[] {
  return resources
    .filter((r) => !r.type.startsWith("webstack:"))
    .map((r) => ({ op: "create", urn: urnOf(stack, r), newState: state(stack, r), detailedDiff: null }));
}

export function updateStep(stack: string, before: Registered, after: Registered, changed: string[]): Step {
  return {
    op: "update",
    urn: urnOf(stack, after),
    oldState: state(stack, before),
    newState: state(stack, after),
    diffReasons: changed,
    detailedDiff: Object.fromEntries(changed.map((k) => [k, { kind: "update", inputDiff: true }])),
  };
}

/**
 * A replacement as the CLI lists it: one `replace` step, or with `--show-replacement-steps` the
 * `create-replacement`, `replace`, `delete-replaced` triple.
 */
export function replaceSteps(
  stack: string,
  before: Registered,
  after: Registered,
  reasons: string[],
  options: { showReplacementSteps?: boolean } = {},
): Step[] {
  const diff = Object.fromEntries(reasons.map((k) => [k, { kind: "update-replace", inputDiff: true }]));
  const ops =
    options.showReplacementSteps === true ? ["create-replacement", "replace", "delete-replaced"] : ["replace"];
  return ops.map((op) => ({
    op,
    urn: urnOf(stack, after),
    oldState: state(stack, before),
    newState: state(stack, after),
    replaceReasons: reasons,
    detailedDiff: diff,
  }));
}

export function deleteStep(stack: string, r: Registered): Step {
  return { op: "delete", urn: urnOf(stack, r), oldState: state(stack, r), detailedDiff: null };
}

export function digest(steps: Step[], diagnostics: { urn?: string; message: string; severity: string }[] = []): string {
  const changeSummary: Record<string, number> = {};
  for (const s of steps) changeSummary[s.op] = (changeSummary[s.op] ?? 0) + 1;
  return JSON.stringify(
    { config: { "webstack:target": "digitalocean" }, steps, diagnostics, duration: 1234000000, changeSummary },
    null,
    2,
  );
}

/** The stack's state export: what `pulumi stack export` prints for these resources. */
export function exportOf(stack: string, resources: readonly Registered[]) {
  return {
    version: 3,
    deployment: {
      resources: resources.map((r) => ({ urn: urnOf(stack, r), custom: true, type: r.type, inputs: r.inputs })),
    },
  };
}

/** One `--event-log` line carrying a policy violation. */
export function policyEventLine(
  policy: string,
  message: string,
  level: "mandatory" | "advisory" | "warning",
  urn?: string,
  sequence = 1,
): string {
  return JSON.stringify({
    sequence,
    timestamp: 1764072000,
    policyEvent: {
      resourceUrn: urn,
      message,
      color: "never",
      policyName: policy,
      policyPackName: "webstack",
      policyPackVersion: "0.0.1",
      policyPackVersionTag: "0.0.1",
      enforcementLevel: level,
    },
  });
}
