// The one pull-request comment that shows every environment stack's preview. The summary (data at
// risk, the table, errors and policy violations) always fits; per-resource details fill what is
// left of GitHub's comment limit, and what does not fit is left to the run's full log.
import { CostEstimate, formatMoney } from "./cost";
import { ChangeKind, ResourceChange, StackPreview } from "./preview";

/** First line of webstack's preview comment; how the comment is found again on the next push. */
export const PREVIEW_MARKER = "<!-- webstack:preview -->";
/** GitHub refuses comment bodies longer than this many characters. */
export const GITHUB_COMMENT_LIMIT = 65_536;

export interface CommentContext {
  /** The commit previewed. */
  sha?: string;
  /** Where the full preview log is (the CI run). */
  logUrl?: string;
  /** When the previews ran. */
  time?: Date;
  /** Whether the previews ran without secrets (a pull request from a fork). */
  notice?: string;
}

const SYMBOL: Record<ChangeKind, string> = { create: "+", update: "~", replace: "+-", delete: "-" };
const VERB: Record<ChangeKind, string> = { create: "create", update: "update", replace: "replace", delete: "delete" };

export function renderPreviewComment(
  previews: readonly StackPreview[],
  context: CommentContext = {},
  limit = GITHUB_COMMENT_LIMIT,
): string {
  const fullLog = context.logUrl === undefined ? "the CI run's log" : `the [full log](${context.logUrl})`;
  // Errors and violations are listed in full when they fit in half the comment, else fewer and shorter.
  let head = "";
  for (const caps of SUMMARY_CAPS) {
    const summary = [PREVIEW_MARKER, ...header(previews, context), ...risks(previews), ...table(previews), ""];
    for (const p of previews) summary.push(...stackSummary(p, caps, fullLog));
    head = summary.join("\n");
    if (head.length <= limit / 2) break;
  }

  const closing = `\n---\n<sub>Full preview: ${fullLog}.</sub>\n`;
  const budget = limit - head.length - closing.length - 200;
  const details = shareRoom(
    previews.filter((p) => p.changes.length > 0 || p.cost !== undefined),
    budget,
    (p, room) => stackDetails(p, room, fullLog),
  );
  const body = `${head}\n${details.join("\n")}${closing}`;
  return body.length <= limit ? body : cutAt(body, limit - 200, `… cut at GitHub's comment limit; see ${fullLog}.`);
}

/** How many errors and violations each stack lists, and how long each may be: tried in order. */
const SUMMARY_CAPS: readonly { listed: number; message: number }[] = [
  { listed: 15, message: 600 },
  { listed: 5, message: 200 },
  { listed: 1, message: 120 },
  { listed: 0, message: 0 },
];

/**
 * `text` cut to at most `max` characters at a line end, with any code fence or details block it
 * leaves open closed again, and a note. Only thousands of stacks get here.
 */
export function cutAt(text: string, max: number, note: string): string {
  const lines = text.slice(0, Math.max(0, max - note.length - 40)).split("\n");
  lines.pop();
  const fences = lines.filter((l) => l.startsWith("```")).length;
  const open =
    lines.filter((l) => l.includes("<details>")).length - lines.filter((l) => l.includes("</details>")).length;
  return [
    ...lines,
    ...(fences % 2 === 1 ? ["```"] : []),
    ...Array.from({ length: Math.max(0, open) }, () => "</details>"),
    "",
    note,
    "",
  ].join("\n");
}

/**
 * Renders each stack's details within `budget` characters in all: stacks that need little get it
 * whole, and the room left is shared evenly among the large ones.
 */
function shareRoom(
  previews: readonly StackPreview[],
  budget: number,
  render: (p: StackPreview, room: number) => string,
): string[] {
  const whole = previews.map((p) => render(p, Number.MAX_SAFE_INTEGER));
  const room = new Array<number>(previews.length).fill(0);
  let left = Math.max(0, budget);
  const bySize = previews.map((_, i) => i).sort((a, b) => whole[a].length - whole[b].length);
  bySize.forEach((i, k) => {
    room[i] = Math.min(whole[i].length, Math.floor(left / (bySize.length - k)));
    left -= room[i];
  });
  return previews.map((p, i) => (whole[i].length <= room[i] ? whole[i] : render(p, room[i])));
}

/** The comment when the previews could not run at all (no backend, the CLI missing, …). */
export function renderPreviewFailure(message: string, context: CommentContext = {}): string {
  const fullLog = context.logUrl === undefined ? "the CI run's log" : `the [full log](${context.logUrl})`;
  return [
    PREVIEW_MARKER,
    "### webstack preview: failed before any stack was previewed",
    ...facts(context),
    "",
    `> [!WARNING]\n> ${clip(message, 2000)}`,
    "",
    `See ${fullLog}.`,
    "",
  ].join("\n");
}

/** Commit · full log · time, when known. */
function facts(context: CommentContext): string[] {
  const parts = [
    context.sha === undefined ? undefined : `commit \`${context.sha.slice(0, 12)}\``,
    context.logUrl === undefined ? undefined : `[full log](${context.logUrl})`,
    context.time === undefined ? undefined : `updated ${context.time.toISOString().replace("T", " ").slice(0, 16)} UTC`,
  ].filter((f) => f !== undefined);
  return parts.length === 0 ? [] : [parts.join(" · ")];
}

function header(previews: readonly StackPreview[], context: CommentContext): string[] {
  const failed = previews.filter((p) => !p.ok).length;
  const title =
    previews.length === 0
      ? "### webstack preview: no environment stacks"
      : `### webstack preview: ${previews.length} stack${previews.length === 1 ? "" : "s"}${failed > 0 ? `, ${failed} failed` : ""}`;
  const lines = [title, ...facts(context)];
  if (context.notice !== undefined) lines.push("", `> [!NOTE]\n> ${context.notice}`);
  if (previews.length === 0)
    lines.push("", "No `Pulumi.<stack>.yaml` environment stack files were found, so nothing was previewed.");
  return lines;
}

function risks(previews: readonly StackPreview[]): string[] {
  const all = previews.flatMap((p) => p.risks.map((r) => ({ stack: p.stack, ...r })));
  if (all.length === 0) return [];
  return [
    "",
    "> [!CAUTION]",
    "> **This change would replace or delete data.**",
    ...all.map((r) => `> - \`${r.stack}\`: would **${r.kind}** \`${r.name}\`, ${r.what}.`),
  ];
}

function costCell(cost: StackPreview["cost"]): string {
  if (cost === undefined) return "n/a";
  const text = (c: CostEstimate) => `${formatMoney(c.monthly)}${c.unknown.length > 0 ? "+?" : ""}`;
  const delta = cost.after.monthly - cost.before.monthly;
  const change = Math.abs(delta) < 0.005 ? "" : ` (${delta > 0 ? "+" : "-"}${formatMoney(Math.abs(delta))})`;
  return `${text(cost.before)} → ${text(cost.after)}${change}`;
}

function table(previews: readonly StackPreview[]): string[] {
  if (previews.length === 0) return [];
  const rows = previews.map((p) => {
    const mandatory = p.violations.filter((v) => v.level === "mandatory").length;
    const policy =
      p.violations.length === 0 ? "none" : `${p.violations.length}${mandatory > 0 ? ` (${mandatory} mandatory)` : ""}`;
    return `| \`${p.stack}\` | ${p.ok ? "ok" : "**failed**"} | ${p.counts.create} | ${p.counts.update} | ${p.counts.replace} | ${p.counts.delete} | ${policy} | ${p.release === undefined ? "unchanged" : `\`${p.release}\``} | ${costCell(p.cost)} |`;
  });
  return [
    "",
    "| stack | preview | create | update | replace | delete | policy violations | release rolled out | est. monthly cost |",
    "| --- | --- | ---: | ---: | ---: | ---: | --- | --- | --- |",
    ...rows,
  ];
}

function clip(text: string, max: number): string {
  const oneLine = text.replace(/\s+/g, " ").trim();
  return oneLine.length <= max ? oneLine : `${oneLine.slice(0, max - 1)}…`;
}

/** Errors and policy violations: part of the summary, so they always show (as many as fit). */
function stackSummary(p: StackPreview, caps: { listed: number; message: number }, fullLog: string): string[] {
  const lines: string[] = [];
  if (p.errors.length === 0 && p.violations.length === 0) return lines;
  lines.push(`#### \`${p.stack}\``);
  for (const e of p.errors.slice(0, caps.listed)) lines.push(`- **error**: ${clip(e, caps.message)}`);
  if (p.errors.length > caps.listed)
    lines.push(
      `- ${p.errors.length - caps.listed} ${caps.listed > 0 ? "more " : ""}error${p.errors.length - caps.listed === 1 ? "" : "s"}: see ${fullLog}`,
    );
  for (const v of p.violations.slice(0, caps.listed)) {
    lines.push(
      `- **policy \`${v.policy}\`** (${v.level})${v.resource === undefined ? "" : ` on \`${v.resource}\``}: ${clip(v.message, caps.message)}`,
    );
  }
  if (p.violations.length > caps.listed) {
    const n = p.violations.length - caps.listed;
    lines.push(`- ${n} ${caps.listed > 0 ? "more " : ""}policy violation${n === 1 ? "" : "s"}: see ${fullLog}`);
  }
  lines.push("");
  return lines;
}

function changeLine(c: ResourceChange): string {
  const props = c.properties.length === 0 ? "" : ` (${clip(c.properties.join(", "), 200)})`;
  return `${SYMBOL[c.kind]} ${VERB[c.kind]} ${c.type} ${c.name}${props}`;
}

/** A stack's resource changes and cost lines, cut to `budget` characters. */
function stackDetails(p: StackPreview, budget: number, fullLog: string): string {
  const order: ChangeKind[] = ["delete", "replace", "update", "create"];
  const changes = [...p.changes].sort(
    (a, b) => order.indexOf(a.kind) - order.indexOf(b.kind) || a.name.localeCompare(b.name),
  );
  const open = `<details><summary><code>${p.stack}</code>: ${changes.length} change${changes.length === 1 ? "" : "s"}</summary>\n\n\`\`\`diff\n`;
  const tail = `\`\`\`\n`;
  const end = `${costLines(p.cost)}</details>\n`;
  const more = (n: number) => `… ${n} more change${n === 1 ? "" : "s"}: see ${fullLog}\n`;
  let room = budget - open.length - tail.length - end.length - more(changes.length).length;
  if (room <= 0) return `<code>${p.stack}</code>: ${changes.length} changes, listed in ${fullLog}.\n`;
  const lines: string[] = [];
  for (const c of changes) {
    const line = `${changeLine(c)}\n`;
    if (line.length > room) break;
    lines.push(line);
    room -= line.length;
  }
  const rest = changes.length - lines.length;
  return `${open}${lines.join("")}${tail}${rest > 0 ? more(rest) : ""}${end}`;
}

function costLines(cost: StackPreview["cost"]): string {
  if (cost === undefined) return "";
  const unknown = [...new Set([...cost.before.unknown, ...cost.after.unknown])];
  const lines = cost.after.lines.map((l) => `${l.name}: ${formatMoney(l.monthly)} (${l.basis})`);
  const text = [
    `\nEstimated monthly cost after this change: ${formatMoney(cost.after.monthly)}${lines.length > 0 ? ` — ${lines.join("; ")}` : ""}.`,
    unknown.length > 0 ? ` No price known for ${unknown.join(", ")}.` : "",
  ].join("");
  return `${text}\n\n`;
}
