// The one way webstack's CI talks to Pulumi: the CLI, with `--non-interactive` on every command.
// A PulumiRunner is what the CI commands take, so tests can hand them a stand-in CLI and check the
// exact commands they issue.
import { spawn } from "node:child_process";

export interface PulumiResult {
  /** Exit code of the CLI. */
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Echo the CLI's output to this process's stderr while it runs (long operations in a CI log). */
  stream?: boolean;
  /** Exit codes that are not failures (default: only 0). */
  okCodes?: number[];
}

export interface PulumiRunner {
  /** Runs `pulumi <args> --non-interactive`; rejects with PulumiError on an exit code not in okCodes. */
  run(args: string[], options?: RunOptions): Promise<PulumiResult>;
}

export class PulumiError extends Error {
  constructor(
    readonly args: string[],
    readonly result: PulumiResult,
  ) {
    const tail = (result.stderr.trim() || result.stdout.trim()).split("\n").slice(-15).join("\n");
    super(`pulumi ${args.join(" ")} exited with ${result.code}${tail ? `:\n${tail}` : ""}`);
    this.name = "PulumiError";
  }
}

/**
 * The Pulumi CLI binary. `PULUMI_BIN` names one explicitly; otherwise the version pinned by the
 * `pulumi` npm package (downloaded once into ~/.pulumi/versions).
 */
export async function resolvePulumiBinary(env: NodeJS.ProcessEnv = process.env): Promise<string> {
  if (env.PULUMI_BIN !== undefined && env.PULUMI_BIN !== "") return env.PULUMI_BIN;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { resolve } = require("pulumi/lib/resolve") as { resolve: () => Promise<string> };
  return resolve();
}

export class PulumiCli implements PulumiRunner {
  /** Every command issued, in order (arguments only: they never carry secret values). */
  readonly issued: string[][] = [];

  constructor(
    private readonly bin: string,
    private readonly options: { cwd: string; env?: NodeJS.ProcessEnv; log?: (line: string) => void },
  ) {}

  run(args: string[], options: RunOptions = {}): Promise<PulumiResult> {
    const full = [...args, "--non-interactive"];
    this.issued.push(full);
    this.options.log?.(`$ pulumi ${full.join(" ")}`);
    return new Promise((resolve, reject) => {
      const child = spawn(this.bin, full, {
        cwd: this.options.cwd,
        env: this.options.env ?? process.env,
        stdio: ["ignore", "pipe", "pipe"],
      });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on("data", (chunk: Buffer) => {
        out.push(chunk);
        if (options.stream === true) process.stderr.write(chunk);
      });
      child.stderr.on("data", (chunk: Buffer) => {
        err.push(chunk);
        if (options.stream === true) process.stderr.write(chunk);
      });
      child.on("error", reject);
      child.on("close", (code, signal) => {
        const result = {
          code: code ?? (signal === null ? 1 : 128),
          stdout: Buffer.concat(out).toString("utf8"),
          stderr: Buffer.concat(err).toString("utf8"),
        };
        if ((options.okCodes ?? [0]).includes(result.code)) resolve(result);
        else reject(new PulumiError(full, result));
      });
    });
  }
}
