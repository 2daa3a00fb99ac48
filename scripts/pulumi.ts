// Runs the Pulumi CLI pinned by package.json (the `pulumi` npm package fetches it on first use),
// with a local state backend in .pulumi-state/ unless PULUMI_BACKEND_URL says otherwise.
//   npm run pulumi -- <pulumi arguments>
//   npm run up        (creates the dev stack if needed, then `pulumi up` on it)
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { resolve } = require("pulumi/lib/resolve") as { resolve: () => Promise<string> };
// eslint-disable-next-line @typescript-eslint/no-require-imports
const cliVersion = (require("pulumi/package.json") as { version: string }).version;

const root = path.join(__dirname, "..");

async function main(argv: string[]): Promise<number> {
  let bin: string;
  try {
    bin = await resolve();
  } catch (error) {
    process.stderr.write(
      `webstack: the Pulumi CLI v${cliVersion} is not installed and could not be downloaded ` +
        `(${(error as Error).message}).\n` +
        "  Either make get.pulumi.com reachable and run this again, or install the CLI yourself\n" +
        "  (https://www.pulumi.com/docs/install/) and run `pulumi` directly.\n",
    );
    return 1;
  }
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PATH: `${path.dirname(bin)}${path.delimiter}${process.env.PATH ?? ""}`,
  };
  if (env.PULUMI_BACKEND_URL === undefined) {
    const state = path.join(root, ".pulumi-state");
    fs.mkdirSync(state, { recursive: true });
    env.PULUMI_BACKEND_URL = `file://${state}`;
  }
  const run = (args: string[]) => spawnSync(bin, args, { stdio: "inherit", env, cwd: root }).status ?? 1;

  if (argv[0] === "dev-up") {
    const selected = run(["stack", "select", "--create", "dev"]);
    return selected !== 0 ? selected : run(["up", "--stack", "dev", ...argv.slice(1)]);
  }
  return run(argv);
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`webstack: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
