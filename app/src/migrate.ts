// One-off entry point of a release's migration run: apply the migrations the database lacks, then
// exit 0; exit 1 with a line naming the failed migration. The stack starts the release's replicas
// only after this run ended with 0.
import pino from "pino";
import { ConfigError, loadMigrateConfig } from "./config";
import { migrate, MigrationFailed } from "./migrations";

async function main(): Promise<number> {
  let config;
  try {
    config = loadMigrateConfig(process.env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`webstack-migrate: invalid configuration: ${error.message}\n`);
    return 1;
  }
  const log = pino({ level: config.logLevel, base: { run: "migrate" } });
  try {
    const applied = await migrate(config.databaseUrl, log);
    log.info({ applied }, applied.length > 0 ? `applied ${applied.join(", ")}` : "schema is up to date");
    return 0;
  } catch (error) {
    const migration = error instanceof MigrationFailed ? error.migration : undefined;
    log.error({ migration, error: (error as Error).message }, (error as Error).message);
    return 1;
  }
}

void main().then((code) => {
  process.exitCode = code;
});
