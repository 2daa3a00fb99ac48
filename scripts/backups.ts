// The backups of a stack, on its own Docker engine (DOCKER_HOST, as the docker CLI finds it):
//
//   npm run backups -- --stack <name>                 the backups, the archive and the health check
//   npm run restore -- --stack <name> [--to <moment>]  Postgres back to the newest state, or to a moment
//   npm run upgrade-postgres -- --stack <name> --image <ref>  the data moved to a new major version
//
// A moment is ISO 8601 with its zone: 2026-11-26T22:30:00Z. See ops/backups.ts for what a restore does.
import Docker from "dockerode";
import { parseArgs } from "node:util";
import { listBackups, parseMoment, restoreStack, upgradePostgres } from "../ops/backups";

function age(from: Date): string {
  const seconds = Math.round((Date.now() - from.getTime()) / 1000);
  if (seconds < 120) return `${seconds} s ago`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min ago`;
  return `${(seconds / 3600).toFixed(1)} h ago`;
}

const mb = (bytes: number) => `${(bytes / 1048576).toFixed(1)} MB`;

async function main(): Promise<void> {
  const [command, ...rest] = process.argv.slice(2);
  const { values } = parseArgs({
    args: rest,
    options: { stack: { type: "string" }, to: { type: "string" }, image: { type: "string" } },
    strict: true,
  });
  if (values.stack === undefined || !/^[A-Za-z0-9_.-]+$/.test(values.stack)) {
    throw new Error("--stack <name> is required: the Pulumi stack whose backups to use, such as dev or prod");
  }
  const docker = new Docker();
  if (command === "status") {
    if (values.to !== undefined || values.image !== undefined)
      throw new Error("--to and --image do not apply to status");
    const status = await listBackups(docker, values.stack);
    console.log(`health: ${status.health.status}: ${status.health.output}`);
    for (const b of status.backups) {
      console.log(
        `${b.label}  ${b.type.padEnd(4)}  ended ${b.stop.toISOString()} (${age(b.stop)})  database ${mb(b.size)}, stored ${mb(b.repoSize)}`,
      );
    }
    if (status.backups.length === 0) console.log("no backup yet");
    console.log(`WAL archive: ${status.archive.min ?? "-"} … ${status.archive.max ?? "-"}`);
  } else if (command === "restore") {
    const to = values.to === undefined ? undefined : parseMoment(values.to);
    const report = await restoreStack(docker, { stack: values.stack, to, log: (line) => console.log(line) });
    console.log(
      `restored stack ${values.stack} from ${report.from} in ${report.seconds.toFixed(1)} s; ` +
        `the data directory before it is kept as ${report.setAside ?? "nothing (there was none)"} on the data volume`,
    );
  } else if (command === "upgrade-postgres") {
    if (values.image === undefined) {
      throw new Error(
        "--image <ref> is required: the Postgres image of the new major version, such as postgres:18.1-bookworm",
      );
    }
    const report = await upgradePostgres(docker, {
      stack: values.stack,
      image: values.image,
      log: (line) => console.log(line),
    });
    const tables = Object.entries(report.rows)
      .map(([table, rows]) => `${table} ${rows}`)
      .join(", ");
    console.log(
      `moved stack ${values.stack} from Postgres ${report.from} to ${report.to} in ${report.seconds.toFixed(1)} s, every row kept (${tables}); ` +
        `the old data directory is kept as ${report.setAside}. Now run: pulumi config set webstack:postgresImage ${values.image} && pulumi up --refresh`,
    );
  } else {
    throw new Error(`unknown command ${JSON.stringify(command)}: use status, restore or upgrade-postgres`);
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : String(err));
  process.exitCode = 1;
});
