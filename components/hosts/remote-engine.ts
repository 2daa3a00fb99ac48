import * as command from "@pulumi/command";
import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import * as tls from "@pulumi/tls";
import { DOCKER_TLS_PORT, readinessCommand } from "../specs/cloud-init";
import { HostScript } from "./docker-host";

export interface RemoteEngineArgs {
  /** The host's stable public IP (reserved IP / Elastic IP); the server certificate is issued for it. */
  publicIp: pulumi.Input<string>;
  /** Login user of the cloud image, holding the key below. */
  sshUser: string;
  /** OpenSSH private key for that user (a secret). */
  sshPrivateKey: pulumi.Input<string>;
  /** The host's own SSH public key (OpenSSH), installed by cloud-init: a host that shows another is refused. */
  sshHostKey: pulumi.Input<string>;
  /** Block device of the data volume, as the VM sees it. */
  dataDevice: pulumi.Input<string>;
  /** Resources the host is not usable before (VM, IP assignment, volume attachment, firewall). */
  hostResources: pulumi.Resource[];
  /** The VM's id: a new VM behind the same IP must be prepared again. */
  vmId: pulumi.Input<string>;
}

/**
 * How a remote command reaches the host: as the login user, with the deployer's key, and only to
 * the host whose key cloud-init installed (`hostKey` is required here, optional in the provider).
 */
export type HostConnection = command.types.input.remote.ConnectionArgs & { hostKey: pulumi.Input<string> };

const CERT_HOURS = 24 * 365;
// Private keys are wrapped in pulumi.secret() where they are used, not only where the tls provider
// marks them: a key must stay secret even in a program evaluated without the provider's schema.
const RENEW_HOURS = 24 * 30;

/**
 * A Docker engine on a cloud VM, reached over TCP with mutual TLS: webstack is its own CA and
 * issues the engine a server certificate for the public IP and itself a client certificate. The
 * keys never enter cloud-init user data; the server's reach the VM over SSH on the readiness
 * command's standard input. The Docker provider is configured only after that command reports
 * the engine up, and `ready` is what every resource on the engine must depend on.
 */
export class RemoteEngine extends pulumi.ComponentResource {
  readonly provider: docker.Provider;
  readonly ready: command.remote.Command;
  /** For further commands on the host; they must depend on `ready`. */
  readonly connection: HostConnection;

  constructor(name: string, args: RemoteEngineArgs, opts?: pulumi.ComponentResourceOptions) {
    super("webstack:hosts:RemoteEngine", name, {}, opts);
    const parent = { parent: this };

    const caKey = new tls.PrivateKey(`${name}-ca-key`, { algorithm: "ECDSA", ecdsaCurve: "P256" }, parent);
    const ca = new tls.SelfSignedCert(
      `${name}-ca`,
      {
        privateKeyPem: pulumi.secret(caKey.privateKeyPem),
        subject: { commonName: `${name} Docker CA`, organization: "webstack" },
        isCaCertificate: true,
        validityPeriodHours: CERT_HOURS * 5,
        earlyRenewalHours: RENEW_HOURS,
        allowedUses: ["cert_signing", "crl_signing", "digital_signature"],
      },
      parent,
    );
    const issue = (role: "server" | "client", ipAddresses: pulumi.Input<string>[] | undefined) => {
      const key = new tls.PrivateKey(`${name}-${role}-key`, { algorithm: "ECDSA", ecdsaCurve: "P256" }, parent);
      const request = new tls.CertRequest(
        `${name}-${role}-csr`,
        {
          privateKeyPem: pulumi.secret(key.privateKeyPem),
          subject: { commonName: `${name} docker ${role}` },
          ipAddresses,
        },
        parent,
      );
      const cert = new tls.LocallySignedCert(
        `${name}-${role}-cert`,
        {
          certRequestPem: request.certRequestPem,
          caPrivateKeyPem: pulumi.secret(caKey.privateKeyPem),
          caCertPem: ca.certPem,
          validityPeriodHours: CERT_HOURS,
          earlyRenewalHours: RENEW_HOURS,
          allowedUses:
            role === "server"
              ? ["digital_signature", "key_encipherment", "server_auth"]
              : ["digital_signature", "key_encipherment", "client_auth"],
        },
        parent,
      );
      return { key, cert };
    };
    const server = issue("server", [args.publicIp]);
    const client = issue("client", undefined);

    this.connection = {
      host: args.publicIp,
      user: args.sshUser,
      privateKey: pulumi.secret(args.sshPrivateKey),
      // Pinned before the first connection: whoever sits on the path cannot pose as the host and
      // receive the Docker server's key on standard input.
      hostKey: pulumi.output(args.sshHostKey).apply((key) => key.trim()),
    };
    this.ready = new command.remote.Command(
      `${name}-ready`,
      {
        connection: this.connection,
        create: pulumi.output(args.dataDevice).apply(readinessCommand),
        // CA cert, server cert, server key: the prepare script splits them by their PEM headers.
        stdin: pulumi.secret(pulumi.interpolate`${ca.certPem}${server.cert.certPem}${server.key.privateKeyPem}`),
        // Re-run for a new VM (same IP, blank engine) and for renewed TLS material.
        triggers: [args.vmId, server.cert.certPem],
      },
      { parent: this, dependsOn: args.hostResources },
    );

    const address = pulumi.output(args.publicIp);
    this.provider = new docker.Provider(
      `${name}-docker`,
      {
        // Derived from the command's output, so the provider is configured only once the engine is up.
        host: pulumi.all([address, this.ready.stdout]).apply(([ip]) => `tcp://${ip}:${DOCKER_TLS_PORT}`),
        caMaterial: ca.certPem,
        certMaterial: client.cert.certPem,
        keyMaterial: pulumi.secret(client.key.privateKeyPem),
      },
      { parent: this, dependsOn: [this.ready] },
    );
    this.registerOutputs({});
  }

  /** A script over SSH once the engine is ready. The host goes with the stack: no delete script runs. */
  run(
    name: string,
    script: HostScript,
    opts: { parent: pulumi.Resource; dependsOn?: pulumi.Input<pulumi.Resource>[] },
  ): command.remote.Command {
    return new command.remote.Command(
      name,
      { connection: this.connection, create: script.create },
      { parent: opts.parent, dependsOn: [this.ready, ...(opts.dependsOn ?? [])] },
    );
  }
}
