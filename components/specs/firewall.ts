// The one inbound policy of every cloud host, as data both clouds' firewalls are built from.
import { DOCKER_TLS_PORT } from "./cloud-init";

export interface InboundRule {
  port: number;
  /** IPv4 and IPv6 CIDRs allowed in. */
  sources: string[];
  description: string;
}

const ANYWHERE = ["0.0.0.0/0", "::/0"];

/** HTTP(S) from anywhere; SSH and the TLS-protected Docker API only from the admin CIDRs. */
export function inboundRules(adminCidrs: readonly string[], httpPort = 80): InboundRule[] {
  return [
    { port: httpPort, sources: ANYWHERE, description: "HTTP" },
    ...(httpPort === 443 ? [] : [{ port: 443, sources: ANYWHERE, description: "HTTPS" }]),
    { port: 22, sources: [...adminCidrs], description: "SSH from admin CIDRs" },
    { port: DOCKER_TLS_PORT, sources: [...adminCidrs], description: "Docker API (mutual TLS) from admin CIDRs" },
  ];
}

/** A name usable as a cloud resource name: lower-case letters, digits and '-', at most 63 characters. */
export function cloudName(name: string): string {
  const cleaned = name
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, "-")
    .replace(/^-+|-+$/g, "");
  return cleaned.slice(0, 63).replace(/-+$/, "");
}
