// webstack: read and validate the stack's config, build host → app image → stack, export what a
// user needs. Every decision lives in components/.
import * as pulumi from "@pulumi/pulumi";
import * as path from "node:path";
import { readStackConfig } from "./components/config";
import { buildWebstack } from "./components/program";

const { config, secrets } = readStackConfig();
const { host, stack, localCertificate } = buildWebstack(config, secrets, {
  stack: pulumi.getStack(),
  appDir: path.join(__dirname, "app"),
});

/** Where the stack answers: http://127.0.0.1:8080 locally, http://<public IP> on a cloud host. */
export const url = stack.url;
/** The site over HTTPS by its name, when `webstack:domain` is set. */
export const httpsUrl = stack.httpsUrl;
/** The cloud host's public IP (undefined for the local engine). */
export const publicIp = host.publicIp;
/** The release the app replicas belong to. */
export const release = stack.releaseId;
/**
 * The local target's own CA, when it serves HTTPS: trust it once (`pulumi stack output
 * caCertificate > webstack-ca.pem`, then your system's or browser's trust store).
 */
export const caCertificate = localCertificate?.caCertificate;
/** The bearer token `POST /reset` requires: `pulumi stack output adminToken --show-secrets`. */
export const adminToken = pulumi.secret(stack.adminToken);
/**
 * The passphrase that encrypts the stack's backups (with backups on): keep a copy apart from the
 * stack (`pulumi stack output backupPassphrase --show-secrets`), or a kept bucket cannot be read
 * once the stack is gone.
 */
export const backupPassphrase = stack.backupPassphrase && pulumi.secret(stack.backupPassphrase);
