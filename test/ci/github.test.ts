// The GitHub calls against a local stand-in of GitHub's REST API that pages like the real one
// (`per_page`, `Link: <…>; rel="next"`), and the DigitalOcean sizes call against one of that API.
import assert from "node:assert/strict";
import * as http from "node:http";
import { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { PREVIEW_MARKER } from "../../ci/comment";
import { fetchDropletPrices } from "../../ci/cost";
import { findMarkedComment, GitHub, IssueComment, nextPage } from "../../ci/github";

interface Recorded {
  method: string;
  url: string;
  auth?: string;
  body?: unknown;
}

/** GitHub's issue-comments and pulls endpoints for one repository, in memory. */
class FakeGitHub {
  readonly requests: Recorded[] = [];
  comments: IssueComment[] = [];
  pulls = new Map<number, "open" | "closed">();
  private server!: http.Server;
  url = "";

  async start(): Promise<void> {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => this.handle(req, res, Buffer.concat(chunks).toString("utf8")));
    });
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  stop(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse, body: string): void {
    const url = new URL(req.url ?? "/", this.url);
    this.requests.push({
      method: req.method ?? "",
      url: `${url.pathname}${url.search}`,
      auth: req.headers.authorization,
      body: body ? JSON.parse(body) : undefined,
    });
    const send = (status: number, payload: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, { "Content-Type": "application/json", ...headers });
      res.end(JSON.stringify(payload));
    };
    let m: RegExpExecArray | null;
    if (req.method === "GET" && (m = /^\/repos\/acme\/shop\/issues\/(\d+)\/comments$/.exec(url.pathname))) {
      const perPage = Number(url.searchParams.get("per_page") ?? "30");
      const page = Number(url.searchParams.get("page") ?? "1");
      const last = Math.max(1, Math.ceil(this.comments.length / perPage));
      const links = [];
      if (page < last) links.push(`<${this.url}${url.pathname}?per_page=${perPage}&page=${page + 1}>; rel="next"`);
      links.push(`<${this.url}${url.pathname}?per_page=${perPage}&page=${last}>; rel="last"`);
      return send(200, this.comments.slice((page - 1) * perPage, page * perPage), { Link: links.join(", ") });
    }
    if (req.method === "POST" && /^\/repos\/acme\/shop\/issues\/\d+\/comments$/.test(url.pathname)) {
      const created = {
        id: 9000 + this.comments.length,
        body: (JSON.parse(body) as { body: string }).body,
        user: { login: "github-actions[bot]", type: "Bot" },
      };
      this.comments.push(created);
      return send(201, created);
    }
    if (req.method === "PATCH" && (m = /^\/repos\/acme\/shop\/issues\/comments\/(\d+)$/.exec(url.pathname))) {
      const comment = this.comments.find((c) => c.id === Number(m?.[1]));
      if (comment === undefined) return send(404, { message: "Not Found" });
      comment.body = (JSON.parse(body) as { body: string }).body;
      return send(200, comment);
    }
    if (req.method === "GET" && (m = /^\/repos\/acme\/shop\/pulls\/(\d+)$/.exec(url.pathname))) {
      const state = this.pulls.get(Number(m[1]));
      return state === undefined ? send(404, { message: "Not Found" }) : send(200, { number: Number(m[1]), state });
    }
    if (req.method === "GET" && url.pathname === "/v2/sizes") {
      const page = Number(url.searchParams.get("page") ?? "1");
      const sizes =
        page === 1
          ? [
              { slug: "s-1vcpu-1gb", price_monthly: 6 },
              { slug: "s-1vcpu-2gb", price_monthly: 12 },
            ]
          : [{ slug: "s-2vcpu-4gb", price_monthly: 24 }];
      return send(200, {
        sizes,
        links: { pages: page === 1 ? { next: `${this.url}/v2/sizes?page=2&per_page=200` } : {} },
        meta: { total: 3 },
      });
    }
    send(404, { message: "Not Found" });
  }
}

const fake = new FakeGitHub();
before(() => fake.start());
after(() => fake.stop());
const client = () => new GitHub({ repository: "acme/shop", token: "t0ken", apiUrl: fake.url });
const person = (id: number, body: string): IssueComment => ({ id, body, user: { login: `dev${id}`, type: "User" } });

describe("the preview comment on a busy pull request", () => {
  test("found on the third page of 250 comments and updated in place; a person quoting the marker is left alone", async () => {
    fake.comments = Array.from({ length: 250 }, (_, i) => person(i + 1, `comment ${i + 1}`));
    fake.comments[3] = person(4, `${PREVIEW_MARKER}\nquoted by a person`);
    fake.comments[230] = {
      id: 231,
      body: `${PREVIEW_MARKER}\nold preview`,
      user: { login: "github-actions[bot]", type: "Bot" },
    };
    fake.requests.length = 0;

    assert.deepEqual(await client().upsertComment(12, PREVIEW_MARKER, `${PREVIEW_MARKER}\nnew preview`), {
      id: 231,
      created: false,
    });
    assert.deepEqual(
      fake.requests.map((r) => `${r.method} ${r.url}`),
      [
        "GET /repos/acme/shop/issues/12/comments?per_page=100",
        "GET /repos/acme/shop/issues/12/comments?per_page=100&page=2",
        "GET /repos/acme/shop/issues/12/comments?per_page=100&page=3",
        "PATCH /repos/acme/shop/issues/comments/231",
      ],
    );
    assert.ok(fake.requests.every((r) => r.auth === "Bearer t0ken"));
    assert.equal(fake.comments[230].body, `${PREVIEW_MARKER}\nnew preview`);
    assert.equal(fake.comments[3].body, `${PREVIEW_MARKER}\nquoted by a person`);
    assert.equal(fake.comments.length, 250, "no second comment");
  });

  test("created once when there is none, then updated by the next push", async () => {
    fake.comments = Array.from({ length: 101 }, (_, i) => person(i + 1, "lgtm"));
    const first = await client().upsertComment(12, PREVIEW_MARKER, `${PREVIEW_MARKER}\nfirst`);
    assert.equal(first.created, true);
    const second = await client().upsertComment(12, PREVIEW_MARKER, `${PREVIEW_MARKER}\nsecond`);
    assert.deepEqual(second, { id: first.id, created: false });
    assert.deepEqual(
      fake.comments.filter((c) => c.body.startsWith(PREVIEW_MARKER)).map((c) => c.body),
      [`${PREVIEW_MARKER}\nsecond`],
    );
  });

  test("the oldest comment of webstack's bot wins when a race left two; other bots and people are never taken", () => {
    const bot = (id: number, login = "github-actions[bot]"): IssueComment => ({
      id,
      body: `${PREVIEW_MARKER}\n${id}`,
      user: { type: "Bot", login },
    });
    assert.equal(findMarkedComment([person(1, "hi"), bot(3, "renovate[bot]"), bot(5), bot(9)], PREVIEW_MARKER)?.id, 5);
    assert.equal(findMarkedComment([person(1, PREVIEW_MARKER)], PREVIEW_MARKER), undefined);
    assert.equal(findMarkedComment([bot(3, "renovate[bot]")], PREVIEW_MARKER), undefined);
    assert.equal(findMarkedComment([bot(3, "acme-deployer[bot]")], PREVIEW_MARKER, "acme-deployer[bot]")?.id, 3);
  });

  test("Link headers", () => {
    assert.equal(
      nextPage('<https://api.github.com/x?page=2>; rel="next", <https://api.github.com/x?page=5>; rel="last"'),
      "https://api.github.com/x?page=2",
    );
    assert.equal(
      nextPage('<https://api.github.com/x?page=1>; rel="prev", <https://api.github.com/x?page=1>; rel="first"'),
      undefined,
    );
    assert.equal(nextPage(null), undefined);
  });
});

describe("pull request states for the sweeper", () => {
  test("open, closed, and missing (404)", async () => {
    fake.pulls = new Map([
      [1, "open"],
      [2, "closed"],
    ]);
    assert.equal(await client().pullState(1), "open");
    assert.equal(await client().pullState(2), "closed");
    assert.equal(await client().pullState(3), "missing");
  });

  test("a repository that is not owner/name is refused", () => {
    assert.throws(
      () => new GitHub({ repository: "acme", token: "t" }),
      /GitHub repository must be "owner\/name" \(got "acme"\)/,
    );
  });
});

describe("DigitalOcean sizes", () => {
  test("every page of /v2/sizes, with the token", async () => {
    fake.requests.length = 0;
    const prices = await fetchDropletPrices("do-token", { apiUrl: fake.url });
    assert.deepEqual(
      [...prices],
      [
        ["s-1vcpu-1gb", 6],
        ["s-1vcpu-2gb", 12],
        ["s-2vcpu-4gb", 24],
      ],
    );
    assert.deepEqual(
      fake.requests.map((r) => [r.url, r.auth]),
      [
        ["/v2/sizes?per_page=200", "Bearer do-token"],
        ["/v2/sizes?page=2&per_page=200", "Bearer do-token"],
      ],
    );
  });
});
