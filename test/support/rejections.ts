// An error thrown in an \`apply\` whose result a resource waits on rejects that registration, which
// the Pulumi language host reports as the program's unhandled exception. Tests that expect such a
// failure collect those rejections instead of failing on them.

/**
 * Runs \`work\` and returns its own error (if any) and every promise rejection left unhandled while
 * it ran or within \`settleMs\` after (rejections are reported once the microtasks that dropped them
 * have run). The process's own unhandled-rejection listeners are put back afterwards.
 */
export async function unhandledRejectionsOf(work: () => Promise<unknown>, settleMs: number): Promise<Error[]> {
  const failures: Error[] = [];
  const collect = (reason: unknown) => failures.push(reason instanceof Error ? reason : new Error(String(reason)));
  const listeners = process.listeners("unhandledRejection");
  process.removeAllListeners("unhandledRejection");
  process.on("unhandledRejection", collect);
  try {
    await work().catch(collect);
    await new Promise((resolve) => setTimeout(resolve, settleMs));
  } finally {
    process.removeListener("unhandledRejection", collect);
    for (const listener of listeners) process.on("unhandledRejection", listener);
  }
  return failures;
}
