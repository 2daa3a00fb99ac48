// The bucket a cloud stack's backups go to, and a key that reaches that bucket alone. pgBackRest
// encrypts every file before it leaves the host; the bucket encrypts at rest as well, keeps the
// versions pgBackRest replaces or deletes for NONCURRENT_DAYS (so a deletion can be undone) and
// drops uploads left unfinished.
import * as aws from "@pulumi/aws";
import * as digitalocean from "@pulumi/digitalocean";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import { BackupBucket } from "./docker-host";

/** Days a replaced or deleted object's old version stays in the bucket. */
export const NONCURRENT_DAYS = 14;

export interface BackupBucketArgs {
  /** Cloud object names start with it. @example "webstack-prod" */
  prefix: string;
  /** The bucket's region. @example "fra1" */
  region: string;
  /**
   * Keep the bucket and its backups when the stack is destroyed (environment stacks); a throwaway
   * stack's bucket goes with it, backups and all.
   */
  keepOnDestroy: boolean;
}

/** A DigitalOcean Spaces bucket with versioning, and a Spaces key granted read-write on it alone. */
export function spacesBackupBucket(
  name: string,
  args: BackupBucketArgs,
  opts: pulumi.CustomResourceOptions,
): BackupBucket {
  // Spaces names are global: a suffix of the stack's own keeps two accounts' stacks of one name apart.
  const suffix = new random.RandomId(`${name}-backups-suffix`, { byteLength: 4 }, { parent: opts.parent });
  const bucket = new digitalocean.SpacesBucket(
    `${name}-backups`,
    {
      name: pulumi.interpolate`${args.prefix}-backups-${suffix.hex}`,
      region: args.region,
      acl: "private",
      versioning: { enabled: true },
      forceDestroy: !args.keepOnDestroy,
      lifecycleRules: [
        {
          id: "old-versions",
          enabled: true,
          noncurrentVersionExpiration: { days: NONCURRENT_DAYS },
          abortIncompleteMultipartUploadDays: 1,
        },
      ],
    },
    { ...opts, retainOnDelete: args.keepOnDestroy },
  );
  const key = new digitalocean.SpacesKey(
    `${name}-backups-key`,
    { name: `${args.prefix}-backups`, grants: [{ bucket: bucket.name, permission: "readwrite" }] },
    opts,
  );
  return {
    bucket: bucket.name,
    endpoint: `${args.region}.digitaloceanspaces.com`,
    region: args.region,
    // Path-style: the TLS name is always the region's endpoint, whatever the bucket is called.
    pathStyle: true,
    accessKeyId: pulumi.secret(key.accessKey.apply((k) => k ?? "")),
    secretAccessKey: pulumi.secret(key.secretKey.apply((k) => k ?? "")),
  };
}

/**
 * An S3 bucket: private, versioned, encrypted at rest (SSE-S3), with an IAM user whose key may
 * list the bucket and read, write and delete its objects, and nothing else: it cannot delete an
 * object's old versions, so a stolen key cannot erase the history NONCURRENT_DAYS keeps.
 */
export function s3BackupBucket(
  name: string,
  args: BackupBucketArgs & { tags: Record<string, string> },
  opts: pulumi.CustomResourceOptions,
): BackupBucket {
  const bucket = new aws.s3.Bucket(
    `${name}-backups`,
    { bucketPrefix: `${args.prefix}-backups-`, forceDestroy: !args.keepOnDestroy, tags: args.tags },
    { ...opts, retainOnDelete: args.keepOnDestroy },
  );
  // The bucket's protections stay with a kept bucket: deleting the versioning resource would suspend it.
  const kept = { ...opts, retainOnDelete: args.keepOnDestroy };
  new aws.s3.BucketPublicAccessBlock(
    `${name}-backups-private`,
    {
      bucket: bucket.id,
      blockPublicAcls: true,
      blockPublicPolicy: true,
      ignorePublicAcls: true,
      restrictPublicBuckets: true,
    },
    kept,
  );
  new aws.s3.BucketVersioning(
    `${name}-backups-versioning`,
    { bucket: bucket.id, versioningConfiguration: { status: "Enabled" } },
    kept,
  );
  new aws.s3.BucketServerSideEncryptionConfiguration(
    `${name}-backups-encryption`,
    { bucket: bucket.id, rules: [{ applyServerSideEncryptionByDefault: { sseAlgorithm: "AES256" } }] },
    kept,
  );
  new aws.s3.BucketLifecycleConfiguration(
    `${name}-backups-lifecycle`,
    {
      bucket: bucket.id,
      rules: [
        {
          id: "old-versions",
          status: "Enabled",
          filter: {},
          noncurrentVersionExpiration: { noncurrentDays: NONCURRENT_DAYS },
          abortIncompleteMultipartUpload: { daysAfterInitiation: 1 },
        },
      ],
    },
    kept,
  );
  // The key goes with the stack: a kept bucket is read again with new credentials.
  const user = new aws.iam.User(`${name}-backups-user`, { name: `${args.prefix}-backups`, tags: args.tags }, opts);
  new aws.iam.UserPolicy(
    `${name}-backups-policy`,
    { user: user.name, policy: bucket.arn.apply(backupBucketPolicy) },
    opts,
  );
  const key = new aws.iam.AccessKey(`${name}-backups-key`, { user: user.name }, opts);
  return {
    bucket: bucket.bucket,
    endpoint: `s3.${args.region}.amazonaws.com`,
    region: args.region,
    accessKeyId: pulumi.secret(key.id),
    secretAccessKey: pulumi.secret(key.secret),
  };
}

/** What the backups' key may do: list the bucket, and read, write and delete the current objects. */
export function backupBucketPolicy(bucketArn: string): string {
  return JSON.stringify({
    Version: "2012-10-17",
    Statement: [
      { Effect: "Allow", Action: ["s3:ListBucket", "s3:GetBucketLocation"], Resource: bucketArn },
      { Effect: "Allow", Action: ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], Resource: `${bucketArn}/*` },
    ],
  });
}
