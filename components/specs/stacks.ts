// Kinds of stacks, by name. One definition serves the CI commands (which destroy only throwaway
// stacks) and the policy pack (which holds them to cheap sizes and unprotected data).

/** A throwaway stack of one pull request: `pr-<number>`, no leading zero. */
export const PR_STACK = /^pr-([1-9][0-9]{0,8})$/;

/** The stack name without an organisation/project prefix (`acme/webstack/pr-3` → `pr-3`). */
export function shortStackName(name: string): string {
  return name.split("/").at(-1) ?? name;
}

/** Whether a stack is a throwaway `pr-<number>` stack (an organisation/project prefix is ignored). */
export function isThrowawayStack(name: string): boolean {
  return PR_STACK.test(shortStackName(name));
}
