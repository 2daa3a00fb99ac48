// Waiting in the real-engine tests: a pause, and polling until something holds.
import { inspect } from "node:util";

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// An Error as its name and message; anything else thrown as Node prints it, not as "[object Object]".
export const errorText = (error: unknown): string => (error instanceof Error ? String(error) : inspect(error));

/** Polls `check` until it returns a value (not undefined) or `seconds` pass. */
export async function eventually<T>(what: string, seconds: number, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + seconds * 1000;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline)
      throw new Error(`${what}: not within ${seconds} s${last ? ` (${errorText(last)})` : ""}`);
    await sleep(500);
  }
}
