// Which stacks CI deals with: environment stacks are declared by their stack files; throwaway
// stacks are `pr-<number>`, made from the `Pulumi.pr.yaml` template and never anything else.
import * as fs from "node:fs";
import * as path from "node:path";
import { parseDocument } from "yaml";
import { PR_STACK, shortStackName } from "../components/specs/stacks";

export { PR_STACK, shortStackName };

/** The template every `pr-<n>` stack file is made from. */
export const PR_TEMPLATE = "Pulumi.pr.yaml";

export function prStackName(pr: number): string {
  if (!Number.isSafeInteger(pr) || pr < 1 || pr > 999_999_999) {
    throw new Error(`pull request number must be a whole number from 1 to 999999999 (got ${JSON.stringify(pr)})`);
  }
  return `pr-${pr}`;
}

/** The pull request number of a throwaway stack, or undefined for any other stack. */
export function prNumberOf(stack: string): number | undefined {
  const match = PR_STACK.exec(shortStackName(stack));
  return match === null ? undefined : Number(match[1]);
}

/**
 * Environment stacks: every `Pulumi.<stack>.yaml` in the project except the local `dev` stack,
 * the `pr` template, throwaway `pr-<n>` stacks, `ci-<id>` runner stacks and `*-example` files.
 */
export function environmentStacks(projectDir: string): string[] {
  return fs
    .readdirSync(projectDir)
    .map((file) => /^Pulumi\.(.+)\.ya?ml$/.exec(file)?.[1])
    .filter((stack): stack is string => stack !== undefined)
    .filter(
      (stack) =>
        stack !== "dev" &&
        stack !== "pr" &&
        !stack.startsWith("pr-") &&
        !stack.startsWith("ci-") &&
        !stack.endsWith("-example"),
    )
    .sort();
}

/** Picks stacks from a comma-separated list, refusing names that are not environment stacks. */
export function selectStacks(requested: string | undefined, declared: string[]): string[] {
  if (requested === undefined || requested.trim() === "") return declared;
  const wanted = requested
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  const unknown = wanted.filter((s) => !declared.includes(s));
  if (unknown.length > 0) {
    throw new Error(
      `--stacks names ${unknown.map((s) => JSON.stringify(s)).join(", ")}, which ${unknown.length === 1 ? "is" : "are"} not an environment stack ` +
        `(declared by their Pulumi.<stack>.yaml files: ${declared.join(", ") || "none"})`,
    );
  }
  return wanted;
}

/**
 * The stack file of `pr-<n>`, made from the template. The template may hold no encrypted values
 * (they belong to one stack's key) and may not protect data: a throwaway stack is destroyed.
 */
export function prStackFile(template: string, options: { release?: string; templateName?: string } = {}): string {
  const templateName = options.templateName ?? PR_TEMPLATE;
  const doc = parseDocument(template);
  if (doc.errors.length > 0) throw new Error(`${templateName} is not valid YAML: ${doc.errors[0].message}`);
  const problems: string[] = [];
  for (const key of ["encryptionsalt", "secretsprovider", "encryptedkey"]) {
    if (doc.has(key)) problems.push(`${templateName} must not set ${key}: each pr-<n> stack gets its own`);
  }
  const config = doc.get("config");
  const entries = (config as { items?: { key: unknown; value: unknown }[] } | undefined)?.items ?? [];
  for (const item of entries) {
    const key = String((item.key as { value?: unknown })?.value ?? item.key);
    const value = item.value as { toJSON?: () => unknown } | undefined;
    const plain = value?.toJSON?.() ?? value;
    if (typeof plain === "object" && plain !== null && "secure" in plain) {
      problems.push(
        `${templateName}: ${key} is an encrypted value; a template may hold only plain settings (passwords are generated per stack)`,
      );
    }
    if (key === "webstack:protectData" && plain !== false && plain !== "false") {
      problems.push(
        `${templateName}: webstack:protectData must be "false" (got ${JSON.stringify(plain)}): a throwaway stack never protects data`,
      );
    }
    if (key === "webstack:adminCidrs" && Array.isArray(plain)) {
      const examples = plain.map(String).filter(isDocumentationRange);
      if (examples.length > 0) {
        problems.push(
          `${templateName}: webstack:adminCidrs holds ${examples.join(", ")}, an address reserved for documentation: list the addresses your CI runners deploy from`,
        );
      }
    }
    if (key === "webstack:release") {
      problems.push(`${templateName} must not set webstack:release: CI sets it to the pull request's commit`);
    }
  }
  if (problems.length > 0) throw new Error(problems.join("\n"));
  if (!doc.has("config")) doc.set("config", doc.createNode({}));
  doc.setIn(["config", "webstack:protectData"], "false");
  if (options.release !== undefined) doc.setIn(["config", "webstack:release"], options.release);
  return `# Made by \`npm run ci:pr-stack\` from ${templateName}; not committed.\n${doc.toString()}`;
}

/** Whether a CIDR lies in a range reserved for documentation (RFC 5737, RFC 3849): an example left unedited. */
export function isDocumentationRange(cidr: string): boolean {
  return /^(192\.0\.2|198\.51\.100|203\.0\.113)\.[0-9]{1,3}\/(2[4-9]|3[0-2])$/.test(cidr) || /^2001:db8:/i.test(cidr);
}

export function readPrTemplate(projectDir: string): string {
  const file = path.join(projectDir, PR_TEMPLATE);
  if (!fs.existsSync(file)) {
    throw new Error(`${PR_TEMPLATE} is missing: throwaway pr-<n> stacks are made from it (see README, "CI")`);
  }
  return fs.readFileSync(file, "utf8");
}
