// TEST INFRASTRUCTURE — a stand-in for the Pulumi CLI binary. It keeps stacks, tags, outputs and
// resource counts in a JSON state file, answers the commands webstack's CI issues the way the
// real CLI does, refuses flags the real command does not have (as its flag parser would), and
// logs every invocation (arguments, and the stack file as it was at that moment) for the tests
// to check the exact commands, flags and order.
//
// Environment: STAND_IN_PULUMI_STATE (state file), STAND_IN_PULUMI_LOG (JSON lines).
import * as fs from "node:fs";
import * as path from "node:path";

export interface StandInStack {
  tags: Record<string, string>;
  /** Resources in the stack's state; `stack rm` refuses while any remain. */
  resources: number;
  outputs: Record<string, string>;
  /** `pulumi stack export` output. */
  export?: unknown;
  config: Record<string, string>;
}

export interface StandInState {
  stacks: Record<string, StandInStack>;
  /** Per stack: what `pulumi preview --json` prints, its exit code, and the event log it writes. */
  previews?: Record<string, { stdout: string; code: number; events?: string[] }>;
  /** What `up` sets as the stack's url output, per stack (default http://203.0.113.10). */
  urls?: Record<string, string>;
  /** Commands that fail, e.g. ["up pr-7"] fails `pulumi up --stack pr-7`. */
  failing?: string[];
  /** What a failing command says (default: that it fails as told). */
  failMessage?: string;
}

export interface Invocation {
  argv: string[];
  /** The stack file named by --stack (or a positional stack) when the command ran, if it existed. */
  stackFile?: string;
  env: { backend?: string; passphraseSet: boolean };
}

/** Flags each command accepts besides the global ones (from the CLI's reference). */
const FLAGS: Record<string, { flags: string[]; booleans: string[] }> = {
  "stack ls": { flags: ["--tag", "--organization", "--project"], booleans: ["--json", "--all"] },
  "stack select": { flags: ["--stack", "--secrets-provider"], booleans: ["--create"] },
  "stack tag set": { flags: ["--stack"], booleans: [] },
  "stack tag ls": { flags: ["--stack"], booleans: ["--json"] },
  "stack export": { flags: ["--stack", "--file", "--version"], booleans: ["--show-secrets"] },
  "stack output": { flags: ["--stack"], booleans: ["--json", "--show-secrets", "--shell"] },
  "stack rm": { flags: ["--stack"], booleans: ["--yes", "--force", "--preserve-config"] },
  "config set": { flags: ["--stack"], booleans: ["--secret", "--plaintext", "--path"] },
  "config rm": { flags: ["--stack"], booleans: ["--path"] },
  preview: {
    flags: [
      "--stack",
      "--event-log",
      "--policy-pack",
      "--policy-pack-config",
      "--config",
      "--target",
      "--parallel",
      "--message",
    ],
    booleans: [
      "--json",
      "--refresh",
      "--expect-no-changes",
      "--diff",
      "--suppress-outputs",
      "--suppress-progress",
      "--show-sames",
    ],
  },
  up: {
    flags: ["--stack", "--policy-pack", "--policy-pack-config", "--config", "--target", "--parallel", "--message"],
    booleans: ["--yes", "--skip-preview", "--refresh", "--diff", "--suppress-outputs", "--suppress-progress", "--json"],
  },
  destroy: {
    flags: ["--stack", "--target", "--parallel", "--message"],
    booleans: ["--yes", "--skip-preview", "--remove", "--refresh", "--json"],
  },
};
const GLOBAL_BOOLEANS = ["--non-interactive", "--color", "--verbose"];

function fail(message: string, code = 1): never {
  process.stderr.write(`error: ${message}\n`);
  process.exit(code);
}

/** Splits argv into the command words, flags with values, boolean flags and positionals. */
function parse(argv: string[]) {
  const words: string[] = [];
  let i = 0;
  const commandWords = [
    "stack",
    "ls",
    "select",
    "tag",
    "set",
    "export",
    "output",
    "rm",
    "config",
    "preview",
    "up",
    "destroy",
  ];
  while (i < argv.length && !argv[i].startsWith("-") && commandWords.includes(argv[i]) && words.length < 3) {
    words.push(argv[i]);
    i++;
    if (!["stack", "tag", "config"].includes(words.at(-1) ?? "")) break;
  }
  const command = words.join(" ");
  const spec = FLAGS[command];
  if (spec === undefined) fail(`unknown command "${command}"`);
  const flags: Record<string, string[]> = {};
  const booleans = new Set<string>();
  const positionals: string[] = [];
  for (; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith("--")) {
      positionals.push(arg);
    } else if (spec.booleans.includes(arg) || GLOBAL_BOOLEANS.includes(arg)) {
      booleans.add(arg);
    } else if (spec.flags.includes(arg)) {
      const value = argv[++i];
      if (value === undefined) fail(`flag needs an argument: ${arg}`);
      (flags[arg] ??= []).push(value);
    } else {
      fail(`unknown flag: ${arg}`);
    }
  }
  return { command, flags, booleans, positionals };
}

function main(): void {
  const statePath = process.env.STAND_IN_PULUMI_STATE ?? fail("STAND_IN_PULUMI_STATE is not set");
  const logPath = process.env.STAND_IN_PULUMI_LOG ?? fail("STAND_IN_PULUMI_LOG is not set");
  const state = JSON.parse(fs.readFileSync(statePath, "utf8")) as StandInState;
  const argv = process.argv.slice(2);
  const { command, flags, booleans, positionals } = parse(argv);
  const stackName =
    flags["--stack"]?.[0] ?? (["stack select", "stack rm"].includes(command) ? positionals[0] : undefined);
  const stackFilePath = stackName === undefined ? undefined : path.join(process.cwd(), `Pulumi.${stackName}.yaml`);
  const invocation: Invocation = {
    argv,
    stackFile:
      stackFilePath !== undefined && fs.existsSync(stackFilePath) ? fs.readFileSync(stackFilePath, "utf8") : undefined,
    env: { backend: process.env.PULUMI_BACKEND_URL, passphraseSet: process.env.PULUMI_CONFIG_PASSPHRASE !== undefined },
  };
  fs.appendFileSync(logPath, `${JSON.stringify(invocation)}\n`);
  const save = () => fs.writeFileSync(statePath, JSON.stringify(state, null, 2));

  if (!booleans.has("--non-interactive"))
    fail("stand-in: every CI command must pass --non-interactive (a prompt would hang CI)");
  const needsYes = ["up", "destroy", "stack rm"].includes(command);
  if (needsYes && !booleans.has("--yes"))
    fail("--yes must be passed in order to proceed when running in non-interactive mode", 2);
  if (stackName !== undefined && state.failing?.includes(`${command} ${stackName}`))
    fail(state.failMessage ?? `stand-in: ${command} of ${stackName} fails as told`);

  const stack = stackName === undefined ? undefined : state.stacks[stackName];
  const requireStack = (): StandInStack => stack ?? fail(`no stack named '${stackName ?? ""}' found`, 6);
  switch (command) {
    case "stack ls":
      process.stdout.write(
        JSON.stringify(
          Object.keys(state.stacks).map((name) => ({
            name,
            current: false,
            resourceCount: state.stacks[name].resources,
          })),
        ),
      );
      return;
    case "stack select":
      if (stack === undefined) {
        if (!booleans.has("--create")) fail(`no stack named '${stackName ?? ""}' found`, 6);
        state.stacks[stackName ?? fail("a stack name is required")] = {
          tags: {},
          resources: 0,
          outputs: {},
          config: {},
        };
        save();
      }
      return;
    case "stack tag set":
      requireStack().tags[positionals[0]] = positionals[1];
      save();
      return;
    case "stack tag ls":
      process.stdout.write(JSON.stringify(requireStack().tags));
      return;
    case "stack export":
      process.stdout.write(JSON.stringify(requireStack().export ?? { version: 3, deployment: { resources: [] } }));
      return;
    case "stack output": {
      const value = requireStack().outputs[positionals[0]];
      if (value === undefined) fail(`current stack does not have output property '${positionals[0]}'`);
      process.stdout.write(`${value}\n`);
      return;
    }
    case "config set":
      requireStack().config[positionals[0]] = positionals[1];
      save();
      return;
    case "config rm":
      // A key that is not set is no error.
      delete requireStack().config[positionals[0]];
      save();
      return;
    case "preview": {
      requireStack();
      const preview = state.previews?.[stackName ?? ""] ?? { stdout: JSON.stringify({ steps: [] }), code: 0 };
      const eventLog = flags["--event-log"]?.[0];
      if (eventLog !== undefined) fs.writeFileSync(eventLog, (preview.events ?? []).map((e) => `${e}\n`).join(""));
      process.stdout.write(preview.stdout);
      process.exit(preview.code);
      return;
    }
    case "up": {
      const s = requireStack();
      s.resources = 12;
      s.outputs.url = state.urls?.[stackName ?? ""] ?? "http://203.0.113.10";
      save();
      return;
    }
    case "destroy":
      requireStack().resources = 0;
      save();
      return;
    case "stack rm":
      if (requireStack().resources > 0 && !booleans.has("--force"))
        fail(`'${stackName ?? ""}' still has resources; removal rejected`);
      delete state.stacks[stackName ?? ""];
      save();
      return;
  }
}

main();
