// The guard in front of state-changing admin routes (`POST /reset`): a bearer token, and no
// requests a browser makes on behalf of another site. Nothing of a presented token is logged.
import { createHash, timingSafeEqual } from "node:crypto";
import type { FastifyReply, FastifyRequest } from "fastify";

type Headers = FastifyRequest["headers"];

/** Why a request was refused, or undefined when it may go on. */
export type AdminRefusal = { status: 401 | 403; error: string };

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? undefined : value;
}

/** The host name of a Host header or an origin, lower-cased and without its port. */
function hostnameOf(hostOrOrigin: string, isOrigin: boolean): string | undefined {
  try {
    const url = new URL(isOrigin ? hostOrOrigin : `http://${hostOrOrigin}`);
    return url.hostname === "" ? undefined : url.hostname.toLowerCase();
  } catch {
    return undefined;
  }
}

/**
 * True for a request a browser sends on another site's behalf. Bearer tokens are not sent by
 * browsers on their own (unlike cookies), so this is defence in depth for a token that leaked
 * into a page. `Sec-Fetch-Site` settles it where browsers send it; otherwise the `Origin` must
 * name the host the request was sent to. Only host names are compared: nginx passes `$host`,
 * which has no port, while the browser's origin has one.
 */
export function isCrossSite(headers: Headers): boolean {
  if (headers["sec-fetch-site"] !== undefined) {
    // "same-site" includes sibling subdomains, which someone else may control.
    const fetchSite = single(headers["sec-fetch-site"]);
    if (fetchSite !== "same-origin" && fetchSite !== "none") return true;
  }
  if (headers.origin === undefined) return false;
  const origin = single(headers.origin);
  const host = single(headers.host);
  const originHost = origin === undefined ? undefined : hostnameOf(origin, true);
  const requestHost = host === undefined ? undefined : hostnameOf(host, false);
  // "Origin: null" (sandboxed frames, redirects across sites) has no host: refused.
  return originHost === undefined || requestHost === undefined || originHost !== requestHost;
}

function digest(text: string): Buffer {
  return createHash("sha256").update(text, "utf8").digest();
}

/**
 * Checks `Authorization: Bearer <token>` against `token` in constant time: both sides are
 * hashed first, so neither the content nor the length of the token shows in the timing.
 */
export function bearerMatches(authorization: string | string[] | undefined, token: string): boolean {
  const header = single(authorization);
  if (header === undefined) return false;
  const match = /^Bearer +(\S+) *$/i.exec(header);
  const presented = match?.[1] ?? "";
  const equal = timingSafeEqual(digest(presented), digest(token));
  return match !== null && equal;
}

/** The refusal for this request, or undefined when it carries the token and comes from no other site. */
export function adminRefusal(headers: Headers, token: string): AdminRefusal | undefined {
  if (isCrossSite(headers)) return { status: 403, error: "cross-site request refused" };
  if (!bearerMatches(headers.authorization, token)) return { status: 401, error: "admin token required" };
  return undefined;
}

/** A Fastify preHandler that lets only authorised, same-site requests through. */
export function requireAdmin(token: string) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> => {
    const refusal = adminRefusal(request.headers, token);
    if (refusal === undefined) return undefined;
    // The reason only, never the header: a near-miss token is still a secret.
    request.log.warn({ status: refusal.status, reason: refusal.error }, "admin request refused");
    if (refusal.status === 401) reply.header("www-authenticate", 'Bearer realm="webstack"');
    return reply.code(refusal.status).send({ error: refusal.error });
  };
}
