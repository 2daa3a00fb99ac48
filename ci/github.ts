// The few GitHub REST calls CI needs: find, create and update one marked comment on a pull
// request (following every page of comments), and read a pull request's state.
export interface GitHubOptions {
  /** `owner/name`. */
  repository: string;
  token: string;
  /** @default https://api.github.com (GITHUB_API_URL on Actions) */
  apiUrl?: string;
  fetch?: typeof fetch;
  /** Whose comments are webstack's: the account the token belongs to. @default "github-actions[bot]" */
  commentAuthor?: string;
}

export interface IssueComment {
  id: number;
  body: string;
  user?: { login?: string; type?: string };
}

export type PullState = "open" | "closed" | "missing";

export class GitHub {
  private readonly api: string;
  private readonly get: typeof fetch;

  constructor(private readonly options: GitHubOptions) {
    if (!/^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+$/.test(options.repository)) {
      throw new Error(`GitHub repository must be "owner/name" (got ${JSON.stringify(options.repository)})`);
    }
    this.api = (options.apiUrl ?? "https://api.github.com").replace(/\/+$/, "");
    this.get = options.fetch ?? fetch;
  }

  private async request(method: string, url: string, body?: unknown): Promise<Response> {
    const response = await this.get(url.startsWith("http") ? url : `${this.api}${url}`, {
      method,
      headers: {
        Accept: "application/vnd.github+json",
        Authorization: `Bearer ${this.options.token}`,
        "X-GitHub-Api-Version": "2022-11-28",
        ...(body === undefined ? {} : { "Content-Type": "application/json" }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return response;
  }

  private async json<T>(method: string, url: string, body?: unknown): Promise<T> {
    const response = await this.request(method, url, body);
    if (!response.ok) {
      const text = await response.text().catch(() => "");
      throw new Error(
        `GitHub ${method} ${url.replace(this.api, "")} answered ${response.status}: ${text.slice(0, 300)}`,
      );
    }
    return (await response.json()) as T;
  }

  /** Every comment on an issue or pull request, oldest first, following the `Link: next` pages. */
  async comments(issue: number): Promise<IssueComment[]> {
    const all: IssueComment[] = [];
    let url: string | undefined = `/repos/${this.options.repository}/issues/${issue}/comments?per_page=100`;
    for (let page = 0; url !== undefined; page++) {
      if (page >= 200) throw new Error(`GitHub: more than 200 pages of comments on #${issue}`);
      const response = await this.request("GET", url);
      if (!response.ok) throw new Error(`GitHub GET comments of #${issue} answered ${response.status}`);
      all.push(...((await response.json()) as IssueComment[]));
      url = nextPage(response.headers.get("link"));
    }
    return all;
  }

  /**
   * Creates the comment that starts with `marker`, or updates it in place when one exists. Only
   * comments by webstack's own account count, so nobody quoting the marker has theirs overwritten.
   */
  async upsertComment(issue: number, marker: string, body: string): Promise<{ id: number; created: boolean }> {
    if (!body.startsWith(marker)) throw new Error("the comment body must start with its marker");
    const existing = findMarkedComment(await this.comments(issue), marker, this.options.commentAuthor);
    if (existing !== undefined) {
      await this.json("PATCH", `/repos/${this.options.repository}/issues/comments/${existing.id}`, { body });
      return { id: existing.id, created: false };
    }
    const created = await this.json<IssueComment>(
      "POST",
      `/repos/${this.options.repository}/issues/${issue}/comments`,
      { body },
    );
    return { id: created.id, created: true };
  }

  /** Whether a pull request is open, closed (merged or not), or does not exist. */
  async pullState(pr: number): Promise<PullState> {
    const response = await this.request("GET", `/repos/${this.options.repository}/pulls/${pr}`);
    if (response.status === 404) return "missing";
    if (!response.ok) throw new Error(`GitHub GET pull request #${pr} answered ${response.status}`);
    const { state } = (await response.json()) as { state?: string };
    return state === "open" ? "open" : "closed";
  }
}

/** The oldest comment by `author` (a bot) whose body starts with the marker. */
export function findMarkedComment(
  comments: readonly IssueComment[],
  marker: string,
  author = "github-actions[bot]",
): IssueComment | undefined {
  return comments.find((c) => c.body?.startsWith(marker) === true && c.user?.type === "Bot" && c.user.login === author);
}

/** The `rel="next"` URL of a Link header, if any. */
export function nextPage(link: string | null): string | undefined {
  for (const part of (link ?? "").split(",")) {
    const match = /<([^>]+)>\s*;\s*rel="?next"?/.exec(part);
    if (match !== null) return match[1];
  }
  return undefined;
}
