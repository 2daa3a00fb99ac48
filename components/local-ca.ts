import * as pulumi from "@pulumi/pulumi";
import * as tls from "@pulumi/tls";

export interface LocalCertificateArgs {
  /** The names the certificate is for; localhost and 127.0.0.1 are added. @example ["app.localhost"] */
  domains: string[];
  /** The stack's name, in the CA's name so several stacks' CAs tell apart in a trust store. */
  stack: string;
}

/** A day in the hours the tls provider counts in. */
const DAY_HOURS = 24;

/**
 * HTTPS for the local target: a CA of the stack's own, trusted once by the developer (the
 * `caCertificate` output), and a certificate it signs for the stack's names. Keys are ECDSA P-256,
 * as the ACME client's are. The keys are secrets in the stack's state; `pulumi up` replaces the
 * certificate within 30 days of its expiry (the provider marks it due), and nginx reloads it.
 */
export class LocalCertificate extends pulumi.ComponentResource {
  /** The CA's certificate (not a secret): what a browser or `curl --cacert` trusts. */
  readonly caCertificate: pulumi.Output<string>;
  /** The server's private key, then its certificate: one PEM file for nginx (a secret). */
  readonly bundle: pulumi.Output<string>;

  constructor(name: string, args: LocalCertificateArgs, opts?: pulumi.ComponentResourceOptions) {
    super("webstack:index:LocalCertificate", name, {}, opts);
    const parent = { parent: this };
    const caKey = new tls.PrivateKey(`${name}-ca-key`, { algorithm: "ECDSA", ecdsaCurve: "P256" }, parent);
    const ca = new tls.SelfSignedCert(
      `${name}-ca`,
      {
        privateKeyPem: caKey.privateKeyPem,
        subject: { commonName: `webstack ${args.stack} local CA`, organization: "webstack" },
        isCaCertificate: true,
        validityPeriodHours: 5 * 365 * DAY_HOURS,
        allowedUses: ["cert_signing", "crl_signing"],
      },
      parent,
    );
    const key = new tls.PrivateKey(`${name}-key`, { algorithm: "ECDSA", ecdsaCurve: "P256" }, parent);
    const request = new tls.CertRequest(
      `${name}-request`,
      {
        privateKeyPem: key.privateKeyPem,
        subject: { commonName: args.domains[0] },
        dnsNames: [...args.domains, "localhost"],
        ipAddresses: ["127.0.0.1"],
      },
      parent,
    );
    // A year: within what browsers accept from a CA a user added (825 days at most on Apple's).
    const certificate = new tls.LocallySignedCert(
      `${name}-cert`,
      {
        certRequestPem: request.certRequestPem,
        caPrivateKeyPem: caKey.privateKeyPem,
        caCertPem: ca.certPem,
        validityPeriodHours: 365 * DAY_HOURS,
        earlyRenewalHours: 30 * DAY_HOURS,
        allowedUses: ["digital_signature", "server_auth"],
      },
      parent,
    );
    this.caCertificate = ca.certPem;
    this.bundle = pulumi.secret(pulumi.all([key.privateKeyPem, certificate.certPem]).apply(([k, c]) => `${k}${c}`));
    this.registerOutputs({ caCertificate: this.caCertificate });
  }
}
