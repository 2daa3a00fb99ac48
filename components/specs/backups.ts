// pgBackRest's configuration for a stack, as plain text built from plain values. The secrets in it
// (the repository's passphrase, the bucket's key) make the whole file a secret document.
import { BackupConfig } from "../config";
import { BACKUP_REPO_PATH, BACKUP_STANZA, PGDATA, POSTGRES_DB, POSTGRES_SOCKET_DIR, POSTGRES_USER } from "./containers";

/** Where a stack's backups go: a volume of its own (local target) or a bucket (cloud targets). */
export type BackupRepository =
  | { kind: "volume" }
  | {
      kind: "bucket";
      bucket: string;
      /** The S3 API's host name. @example "fra1.digitaloceanspaces.com" */
      endpoint: string;
      region: string;
      /** Path-style URLs (`endpoint/bucket/key`) for S3 servers without virtual hosts. @default false */
      pathStyle?: boolean;
    };

export interface RepositorySecrets {
  /** The passphrase pgBackRest encrypts every file of the repository with (AES-256-CBC). */
  cipherPass: string;
  /** The bucket's access key and its secret, scoped to that bucket. */
  accessKeyId?: string;
  secretAccessKey?: string;
}

const SAFE_VALUE = /^[A-Za-z0-9._:/+=-]+$/;

function line(key: string, value: string | number): string {
  const text = String(value);
  // pgBackRest reads `key=value` lines as they are; a line break in a value would add a setting.
  if (!SAFE_VALUE.test(text)) throw new Error(`pgBackRest setting ${key} has a character it cannot take safely`);
  return `${key}=${text}`;
}

/**
 * The one pgbackrest.conf both Postgres (archive-push, archive-get) and the backup container read.
 * Retention: `retentionFull` full backups and `retentionDiff` differential ones; WAL is kept back
 * to the oldest full backup, so every moment since then can be restored.
 */
export function pgbackrestConf(
  repository: BackupRepository,
  schedule: BackupConfig,
  secrets: RepositorySecrets,
): string {
  const repo =
    repository.kind === "volume"
      ? [line("repo1-type", "posix")]
      : [
          line("repo1-type", "s3"),
          line("repo1-s3-bucket", repository.bucket),
          line("repo1-s3-endpoint", repository.endpoint),
          line("repo1-s3-region", repository.region),
          line("repo1-s3-uri-style", repository.pathStyle === true ? "path" : "host"),
          line("repo1-s3-key", required(secrets.accessKeyId, "the bucket's access key")),
          line("repo1-s3-key-secret", required(secrets.secretAccessKey, "the bucket's secret key")),
        ];
  return [
    "[global]",
    ...repo,
    line("repo1-path", BACKUP_REPO_PATH),
    line("repo1-cipher-type", "aes-256-cbc"),
    line("repo1-cipher-pass", secrets.cipherPass),
    line("repo1-retention-full-type", "count"),
    line("repo1-retention-full", schedule.retentionFull),
    line("repo1-retention-diff", schedule.retentionDiff),
    line("compress-type", "zst"),
    // A backup asks for an immediate checkpoint instead of waiting for the next one.
    line("start-fast", "y"),
    line("log-level-console", "info"),
    line("log-level-file", "off"),
    line("lock-path", "/tmp/pgbackrest"),
    "",
    // Every pushed segment would be three lines of Postgres's log: only problems are logged.
    "[global:archive-push]",
    line("log-level-console", "warn"),
    "",
    `[${BACKUP_STANZA}]`,
    line("pg1-path", PGDATA),
    line("pg1-socket-path", POSTGRES_SOCKET_DIR),
    line("pg1-user", POSTGRES_USER),
    line("pg1-database", POSTGRES_DB),
    "",
  ].join("\n");
}

function required(value: string | undefined, what: string): string {
  if (value === undefined || value === "") throw new Error(`pgBackRest's bucket repository needs ${what}`);
  return value;
}
