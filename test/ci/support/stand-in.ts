// A stand-in Pulumi CLI in a scratch project directory, for tests of the CI commands.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Lifecycle } from "../../../ci/lifecycle";
import { PulumiCli } from "../../../ci/pulumi";
import type { Invocation, StandInState } from "./stand-in-pulumi";

export const ROOT = path.join(__dirname, "..", "..", "..");
export const STAND_IN_BIN = path.join(__dirname, "stand-in-pulumi.sh");

export interface StandIn {
  /** A scratch project directory holding a copy of the repository's Pulumi.yaml, Pulumi.pr.yaml and policy/. */
  projectDir: string;
  env: NodeJS.ProcessEnv;
  lifecycle: Lifecycle;
  /** What the CI code logged. */
  lines: string[];
  invocations(): Invocation[];
  /** The commands issued, each as one string, `--non-interactive` left out. */
  commands(): string[];
  state(): StandInState;
  cleanup(): void;
}

export function standIn(initial: StandInState, options: { now?: Date; files?: Record<string, string> } = {}): StandIn {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "webstack-ci-test-"));
  const projectDir = path.join(dir, "project");
  fs.mkdirSync(projectDir);
  for (const file of ["Pulumi.yaml", "Pulumi.pr.yaml"])
    fs.copyFileSync(path.join(ROOT, file), path.join(projectDir, file));
  for (const [name, content] of Object.entries(options.files ?? {})) {
    fs.mkdirSync(path.dirname(path.join(projectDir, name)), { recursive: true });
    fs.writeFileSync(path.join(projectDir, name), content);
  }
  const statePath = path.join(dir, "state.json");
  const logPath = path.join(dir, "invocations.jsonl");
  fs.writeFileSync(statePath, JSON.stringify(initial));
  fs.writeFileSync(logPath, "");
  const env = {
    ...process.env,
    STAND_IN_PULUMI_STATE: statePath,
    STAND_IN_PULUMI_LOG: logPath,
    PULUMI_BIN: STAND_IN_BIN,
  };
  const lines: string[] = [];
  const log = (line: string) => lines.push(line);
  const invocations = () =>
    fs
      .readFileSync(logPath, "utf8")
      .split("\n")
      .filter((l) => l !== "")
      .map((l) => JSON.parse(l) as Invocation);
  return {
    projectDir,
    env,
    lines,
    lifecycle: {
      pulumi: new PulumiCli(STAND_IN_BIN, { cwd: projectDir, env }),
      projectDir,
      log,
      now: () => options.now ?? new Date("2026-11-25T12:00:00Z"),
    },
    invocations,
    commands: () => invocations().map((i) => i.argv.filter((a) => a !== "--non-interactive").join(" ")),
    state: () => JSON.parse(fs.readFileSync(statePath, "utf8")) as StandInState,
    cleanup: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}

/** A stack as the stand-in keeps it. */
export function stack(tags: Record<string, string> = {}, resources = 12): StandInState["stacks"][string] {
  return { tags, resources, outputs: { url: "http://203.0.113.10" }, config: {} };
}
