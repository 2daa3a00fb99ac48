// Estimated monthly cost of a stack's resources, so a preview can say "$12.00 → $24.00". Prices
// for droplets come from DigitalOcean's sizes data; the rest from ci/prices.json, which states
// the date its figures were taken.
import table from "./prices.json";

export type PriceTable = typeof table;
export const PRICE_TABLE: PriceTable = table;

export interface PriceBook {
  table: PriceTable;
  /** Droplet size slug → monthly price; empty when DigitalOcean's sizes could not be read. */
  dropletMonthly: ReadonlyMap<string, number>;
}

/** A resource as a preview or a state export shows it: its type and inputs. */
export interface PricedResource {
  type: string;
  name: string;
  inputs: Record<string, unknown>;
}

export interface CostEstimate {
  /** Sum of the resources with a known price. */
  monthly: number;
  /** What each priced resource costs a month. */
  lines: { name: string; monthly: number; basis: string }[];
  /** Resources that cost money but whose price is not known (the total leaves them out). */
  unknown: string[];
}

const money = (n: number) => Math.round(n * 100) / 100;

/** The monthly cost of one set of resources; resources that cost nothing are left out. */
export function monthlyCost(resources: readonly PricedResource[], book: PriceBook): CostEstimate {
  const { aws, digitalocean } = book.table;
  const lines: CostEstimate["lines"] = [];
  const unknown: string[] = [];
  const add = (name: string, monthly: number, basis: string) => lines.push({ name, monthly: money(monthly), basis });
  const size = (value: unknown) => (typeof value === "number" ? value : Number(value));

  for (const r of resources) {
    const i = r.inputs;
    switch (r.type) {
      case "digitalocean:index/droplet:Droplet": {
        const slug = String(i.size);
        const price = book.dropletMonthly.get(slug);
        if (price === undefined) unknown.push(`${r.name} (droplet ${slug})`);
        else add(r.name, price, `droplet ${slug}`);
        break;
      }
      case "digitalocean:index/volume:Volume":
        add(r.name, size(i.size) * digitalocean.volumeGiBMonth, `${size(i.size)} GiB volume`);
        break;
      case "digitalocean:index/reservedIp:ReservedIp":
        add(r.name, digitalocean.reservedIpAssignedMonth, "assigned reserved IP");
        break;
      case "aws:ec2/instance:Instance": {
        const type = String(i.instanceType);
        const hourly = (aws.instanceHourly as Record<string, number | undefined>)[type];
        if (hourly === undefined) unknown.push(`${r.name} (instance ${type})`);
        else add(r.name, hourly * aws.hoursPerMonth, `${type} instance`);
        const root = i.rootBlockDevice as { volumeSize?: unknown } | undefined;
        if (root?.volumeSize !== undefined)
          add(`${r.name} root volume`, size(root.volumeSize) * aws.gp3GbMonth, `${size(root.volumeSize)} GB gp3`);
        break;
      }
      case "aws:ebs/volume:Volume":
        add(r.name, size(i.size) * aws.gp3GbMonth, `${size(i.size)} GB gp3`);
        break;
      case "aws:ec2/eip:Eip":
        add(r.name, aws.publicIpv4Hourly * aws.hoursPerMonth, "public IPv4 address");
        break;
      default:
        break;
    }
  }
  return { monthly: money(lines.reduce((sum, l) => sum + l.monthly, 0)), lines, unknown };
}

interface SizesPage {
  sizes?: { slug?: unknown; price_monthly?: unknown }[];
  links?: { pages?: { next?: unknown } };
}

/**
 * Every droplet size's monthly price from the DigitalOcean API (`GET /v2/sizes`, all pages).
 * Rejects on an HTTP error; the caller decides whether prices are optional.
 */
export async function fetchDropletPrices(
  token: string,
  options: { apiUrl?: string; fetch?: typeof fetch } = {},
): Promise<Map<string, number>> {
  const get = options.fetch ?? fetch;
  const prices = new Map<string, number>();
  let next: string | undefined = `${options.apiUrl ?? "https://api.digitalocean.com"}/v2/sizes?per_page=200`;
  for (let pages = 0; next !== undefined; pages++) {
    if (pages >= 50) throw new Error("DigitalOcean sizes: more than 50 pages; giving up");
    const response = await get(next, { headers: { Authorization: `Bearer ${token}`, Accept: "application/json" } });
    if (!response.ok) throw new Error(`DigitalOcean sizes: ${next} answered ${response.status} ${response.statusText}`);
    const page = (await response.json()) as SizesPage;
    for (const s of page.sizes ?? []) {
      if (typeof s.slug === "string" && typeof s.price_monthly === "number") prices.set(s.slug, s.price_monthly);
    }
    next = typeof page.links?.pages?.next === "string" ? page.links.pages.next : undefined;
  }
  return prices;
}

export function formatMoney(n: number): string {
  return `$${n.toFixed(2)}`;
}
