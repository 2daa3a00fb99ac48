// Process entry point: read the environment, start serving, shut down cleanly on SIGTERM/SIGINT.
import { buildServer } from "./app";
import { ConfigError, loadConfig, type AppConfig } from "./config";

function readConfig(): AppConfig {
  try {
    return loadConfig(process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`webstack-app: invalid configuration: ${error.message}\n`);
      process.exit(1);
    }
    throw error;
  }
}

async function main(): Promise<void> {
  const config = readConfig();
  const app = buildServer(config);

  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      app.server.log.warn({ signal }, "second signal: exiting without waiting");
      process.exit(1);
    }
    stopping = true;
    app.server.log.info({ signal }, "signal received");
    app.shutdown().then(
      (clean) => process.exit(clean ? 0 : 1),
      (error: Error) => {
        app.server.log.error({ err: error }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);

  try {
    await app.start();
  } catch (error) {
    // A signal during start-up is a normal stop, and `stop` exits with the shutdown's verdict.
    if (stopping) return;
    app.server.log.fatal({ err: error }, "could not start listening");
    process.exit(1);
  }
}

void main();
