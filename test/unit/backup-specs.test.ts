// The pgBackRest configuration a stack's backups run with (components/specs/backups.ts), as plain
// text from plain values: the repository (a volume or a bucket), encryption, retention, and the
// values it refuses. The fast tests `npm run mutate -- specs` runs.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { BackupConfig } from "../../components/config";
import { pgbackrestConf } from "../../components/specs/backups";

describe("pgbackrestConf", () => {
  const schedule: BackupConfig = {
    fullDays: 7,
    diffHours: 24,
    retentionFull: 4,
    retentionDiff: 7,
    archiveTimeoutSeconds: 30,
  };
  const cipherPass = "Cipher0123456789abcdefABCDEF";
  const bucket = {
    kind: "bucket" as const,
    bucket: "webstack-prod-backups-1a2b3c4d",
    endpoint: "fra1.digitaloceanspaces.com",
    region: "fra1",
  };
  const keys = { cipherPass, accessKeyId: "DO00ABCDEF", secretAccessKey: "abc/def+ghi=" };
  const tail = [
    "repo1-path=/var/lib/pgbackrest",
    "repo1-cipher-type=aes-256-cbc",
    `repo1-cipher-pass=${cipherPass}`,
    "repo1-retention-full-type=count",
    "repo1-retention-full=4",
    "repo1-retention-diff=7",
    "compress-type=zst",
    "start-fast=y",
    "log-level-console=info",
    "log-level-file=off",
    "lock-path=/tmp/pgbackrest",
    "",
    "[global:archive-push]",
    "log-level-console=warn",
    "",
    "[webstack]",
    "pg1-path=/var/lib/postgresql/data/pgdata",
    "pg1-socket-path=/var/run/postgresql",
    "pg1-user=webstack",
    "pg1-database=webstack",
    "",
  ];

  test("a volume: a posix repository, encrypted, with the schedule's retention", () => {
    assert.equal(
      pgbackrestConf({ kind: "volume" }, schedule, { cipherPass }),
      ["[global]", "repo1-type=posix", ...tail].join("\n"),
    );
  });

  test("a bucket: an s3 repository with its endpoint, region and key; host-style URLs unless pathStyle", () => {
    const s3 = [
      "repo1-type=s3",
      "repo1-s3-bucket=webstack-prod-backups-1a2b3c4d",
      "repo1-s3-endpoint=fra1.digitaloceanspaces.com",
      "repo1-s3-region=fra1",
    ];
    const key = ["repo1-s3-key=DO00ABCDEF", "repo1-s3-key-secret=abc/def+ghi="];
    assert.equal(
      pgbackrestConf(bucket, schedule, keys),
      ["[global]", ...s3, "repo1-s3-uri-style=host", ...key, ...tail].join("\n"),
    );
    assert.equal(
      pgbackrestConf({ ...bucket, pathStyle: true }, schedule, keys),
      ["[global]", ...s3, "repo1-s3-uri-style=path", ...key, ...tail].join("\n"),
    );
    assert.match(pgbackrestConf({ ...bucket, pathStyle: false }, schedule, keys), /^repo1-s3-uri-style=host$/m);
  });

  test("the retention follows the schedule; the backup intervals are the backup container's, not pgBackRest's", () => {
    const conf = pgbackrestConf(
      { kind: "volume" },
      { ...schedule, retentionFull: 52, retentionDiff: 100 },
      { cipherPass },
    );
    assert.match(conf, /^repo1-retention-full=52$/m);
    assert.match(conf, /^repo1-retention-diff=100$/m);
    assert.equal(
      conf,
      pgbackrestConf(
        { kind: "volume" },
        { ...schedule, retentionFull: 52, retentionDiff: 100, fullDays: 1, diffHours: 1 },
        { cipherPass },
      ),
    );
  });

  test("a value with a line break, a space or another unsafe character is refused by setting, without showing it", () => {
    const refused = (build: () => string, key: string, value: string) =>
      assert.throws(
        build,
        (error: Error) =>
          error.message === `pgBackRest setting ${key} has a character it cannot take safely` &&
          (value === "" || !error.message.includes(value)),
        `${key}=${JSON.stringify(value)}`,
      );
    for (const value of ["pass\nrepo1-type=posix", "pass word", "pass\r", "pass#", "", "pass\u00e9"]) {
      refused(() => pgbackrestConf({ kind: "volume" }, schedule, { cipherPass: value }), "repo1-cipher-pass", value);
    }
    refused(
      () => pgbackrestConf({ ...bucket, bucket: "b\n[global]" }, schedule, keys),
      "repo1-s3-bucket",
      "b\n[global]",
    );
    refused(
      () => pgbackrestConf(bucket, schedule, { ...keys, secretAccessKey: "abc def" }),
      "repo1-s3-key-secret",
      "abc def",
    );
    refused(
      () =>
        pgbackrestConf({ ...bucket, endpoint: "fra1.digitaloceanspaces.com\nrepo1-s3-verify-tls=n" }, schedule, keys),
      "repo1-s3-endpoint",
      "fra1.digitaloceanspaces.com\nrepo1-s3-verify-tls=n",
    );
  });

  test("a bucket without its key is refused by what is missing", () => {
    assert.throws(
      () => pgbackrestConf(bucket, schedule, { cipherPass, secretAccessKey: "x" }),
      /^Error: pgBackRest's bucket repository needs the bucket's access key$/,
    );
    assert.throws(
      () => pgbackrestConf(bucket, schedule, { cipherPass, accessKeyId: "x", secretAccessKey: "" }),
      /^Error: pgBackRest's bucket repository needs the bucket's secret key$/,
    );
  });
});
