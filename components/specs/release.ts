// Release ids. App replicas are named after their release, so a new release is a set of new
// resources (created and healthy before the old ones go) instead of an in-place replacement.
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";

/** Paths inside a build context that never reach the image (mirrors what .dockerignore excludes). */
const IGNORED = new Set(["node_modules", "dist", ".git", "coverage"]);

/**
 * A content hash of a directory tree: relative paths and file bytes, in sorted order, so the same
 * tree gives the same hash on every machine. Reads files; writes nothing.
 */
export function hashTree(root: string): string {
  const hash = createHash("sha256");
  const walk = (dir: string): void => {
    const entries = fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1));
    for (const entry of entries) {
      if (IGNORED.has(entry.name)) continue;
      const full = path.join(dir, entry.name);
      const rel = path.relative(root, full).split(path.sep).join("/");
      if (entry.isDirectory()) {
        walk(full);
      } else if (entry.isFile()) {
        hash.update(`${rel}\0`);
        hash.update(fs.readFileSync(full));
        hash.update("\0");
      }
    }
  };
  walk(root);
  return hash.digest("hex");
}

/**
 * The release id replicas are named after: the one CI gives (a git SHA, shortened to 12
 * characters), or else 12 hex digits of the hash of the app's source and the replica spec.
 */
export function releaseId(given: string | undefined, sourceHash: string, replicaSpec: unknown): string {
  if (given !== undefined) return given.slice(0, 12).toLowerCase();
  return createHash("sha256").update(sourceHash).update(JSON.stringify(replicaSpec)).digest("hex").slice(0, 12);
}
