// The one inbound policy of every cloud host, as data both clouds' firewalls are built from.
import { DOCKER_TLS_PORT } from "./cloud-init";

export interface InboundRule {
  port: number;
  /** IPv4 and IPv6 CIDRs allowed in. */
  sources: string[];
  description: string;
}

const ANYWHERE = ["0.0.0.0/0", "::/0"];

/**
 * HTTP from anywhere, and HTTPS when the stack serves it (a port nothing listens on stays
 * closed); SSH and the TLS-protected Docker API only from the admin CIDRs.
 */
export function inboundRules(adminCidrs: readonly string[], httpPort = 80, httpsPort?: number): InboundRule[] {
  return [
    { port: httpPort, sources: ANYWHERE, description: "HTTP" },
    ...(httpsPort === undefined ? [] : [{ port: httpsPort, sources: ANYWHERE, description: "HTTPS" }]),
    { port: 22, sources: [...adminCidrs], description: "SSH from admin CIDRs" },
    { port: DOCKER_TLS_PORT, sources: [...adminCidrs], description: "Docker API (mutual TLS) from admin CIDRs" },
  ];
}

/** A name usable as a cloud resource name: lower-case letters, digits and '-', at most 63 characters. */
/** DNS records a stack asks for: the name relative to its zone, "@" for the zone's apex. */
export interface DnsName {
  /** The full name. @example "app.example.com" */
  fqdn: string;
  /** The name within the zone. @example "app" */
  relative: string;
}

/** Each domain inside `zone`, relative to it (parseConfig has checked they all lie inside). */
export function dnsNames(zone: string, domains: readonly string[]): DnsName[] {
  return domains.map((fqdn) => {
    if (fqdn === zone) return { fqdn, relative: "@" };
    if (!fqdn.endsWith(`.${zone}`)) throw new Error(`webstack:dnsZone ${zone} does not contain ${fqdn}`);
    return { fqdn, relative: fqdn.slice(0, -(zone.length + 1)) };
  });
}

/** How long resolvers may keep the records: short, so a replaced address is seen within minutes. */
export const DNS_TTL = 300;

export function cloudName(name: string): string {
  const cleaned = name
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, "-")
    .replace(/^-+|-+$/g, "");
  return cleaned.slice(0, 63).replace(/-+$/, "");
}
