// The app's images on the host, one tag per release: what a rollback deploys without a build, and
// the scripts that keep only the newest few. Both scripts run where the engine is (the local
// Docker CLI, or over SSH on a cloud host) and use nothing but the Docker CLI and POSIX sh.

/** A repository the scripts may name: a local image name or a registry path, no tag, no quote. */
const REPOSITORY = /^[a-z0-9]+([._/:-][a-z0-9]+)*$/;

function checked(repository: string): string {
  if (!REPOSITORY.test(repository)) {
    throw new Error(
      `an image repository must be lower-case letters, digits and . _ - / : (got ${JSON.stringify(repository)})`,
    );
  }
  return repository;
}

/** The image a release runs: the repository tagged with the release id. */
export function releaseImage(repository: string, release: string): string {
  return `${checked(repository)}:${release}`;
}

/**
 * Keeps the `keep` newest release images of `repository` on the engine and removes the rest: the
 * engine lists images newest first, so the tags past the first `keep` are the oldest builds. An
 * image a container still uses is not removed (the engine refuses; it goes in a later run), and
 * neither is a release's digest reference while another tag holds the image. The script lists
 * what it removed and what it kept, one line each, and never fails the update: a leftover image
 * costs disk, not service.
 */
export function imagePruneScript(repository: string, keep: number): string {
  if (!Number.isInteger(keep) || keep < 1) throw new Error(`keep must be a whole number of at least 1 (got ${keep})`);
  return removalScript(repository, keep);
}

/** Removes every release image of `repository` that no container uses: the stack's end. */
export function imageRemoveAllScript(repository: string): string {
  return removalScript(repository, 0);
}

function removalScript(repository: string, keep: number): string {
  const repo = checked(repository);
  return [
    "set -u",
    `docker image ls --format '{{.Tag}}' '${repo}' | grep -v '^<none>$' | tail -n +${keep + 1} | while read -r tag; do`,
    `  ref='${repo}':"$tag"`,
    `  digests="$(docker image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$ref" 2>/dev/null || true)"`,
    '  if docker image rm "$ref" >/dev/null 2>&1; then',
    '    echo "removed $ref"',
    '    for digest in $digests; do docker image rm "$digest" >/dev/null 2>&1 || true; done',
    "  else",
    '    echo "kept $ref: in use"',
    "  fi",
    // The loop's status is its last echo's: the script never fails.
    "done",
  ].join("\n");
}
