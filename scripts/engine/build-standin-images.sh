#!/bin/sh
# Builds the stand-in base images the real-engine tests substitute for official images (no image
# registry is reachable here): a debootstrapped Debian bookworm imported as
# webstack-standin/debian:bookworm, and from it postgres:15, redis:7, nginx:1.22, node:20, lego:4.9
# pebble:2.4 and s3:3.7 (s3rver, on the node stand-in) under webstack-standin/. The postgres stand-in
# trusts a test CA made once per machine (/var/lib/webstack-standin/ca), which signs the s3 stand-in's
# certificate. Cached: an image is rebuilt only when its tag is missing
# or its webstack.recipe label differs from the hash of its recipe (files, base image id, inputs).
#
# Usage: DOCKER_HOST=unix:///run/webstack-test-docker.sock build-standin-images.sh [NAME...]
#   NAME is postgres, postgres17, redis, nginx, node, lego, pebble or s3; none means all.
set -eu

here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
repo=$(CDPATH='' cd -- "$here/../.." && pwd)
standins="$here/standins"
prefix=webstack-standin
suite=bookworm
base_tag="$prefix/debian:$suite"

log() { printf 'build-standin-images: %s\n' "$*" >&2; }

sha() { sha256sum | cut -c1-16; }

# The recipe label of an existing image, or nothing when the tag does not exist.
current_recipe() {
  docker image inspect --format '{{index .Config.Labels "webstack.recipe"}}' "$1" 2>/dev/null || true
}

# The Debian mirror this machine already uses (deb822 .sources or one-line sources.list).
debian_mirror() {
  mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }')
  if [ -z "$mirror" ]; then
    mirror=$(cat /etc/apt/sources.list 2>/dev/null \
      | awk '$1 == "deb" && $2 !~ /^\[/ && $2 !~ /security/ { print $2; exit }')
  fi
  printf '%s\n' "${mirror:-http://deb.debian.org/debian}"
}

build_base() {
  mirror=$(debian_mirror)
  # The recipe covers this function's own text, so changing how the rootfs is made rebuilds it.
  recipe=$( (printf '%s %s minbase\n' "$suite" "$mirror"; sed -n '/^build_base()/,/^}/p' "$0") | sha)
  if [ "$(current_recipe "$base_tag")" = "$recipe" ]; then
    log "$base_tag is up to date"
    return 0
  fi
  sh "$repo/scripts/ensure-debian-packages.sh" debootstrap
  rootfs=$(mktemp -d /var/tmp/webstack-standin-rootfs.XXXXXX)
  trap 'rm -rf "$rootfs"' EXIT INT TERM
  log "debootstrap $suite from $mirror (minbase)"
  debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
    || { tail -n 20 "$rootfs.log" >&2; rm -f "$rootfs.log"; exit 1; }
  rm -f "$rootfs.log"
  # Container conventions: services never start at install time, no docs or recommends.
  printf '#!/bin/sh\nexit 101\n' > "$rootfs/usr/sbin/policy-rc.d"
  chmod 755 "$rootfs/usr/sbin/policy-rc.d"
  printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
    > "$rootfs/etc/apt/apt.conf.d/90webstack-no-recommends"
  printf 'path-exclude /usr/share/doc/*\npath-exclude /usr/share/man/*\npath-exclude /usr/share/info/*\npath-exclude /usr/share/locale/*\npath-include /usr/share/doc/*/copyright\n' \
    > "$rootfs/etc/dpkg/dpkg.cfg.d/90webstack-excludes"
  rm -rf "$rootfs/var/lib/apt/lists"/* "$rootfs/var/cache/apt"/*.bin "$rootfs/var/cache/apt/archives"/*.deb \
    "$rootfs/usr/share/doc"/* "$rootfs/usr/share/man"/* "$rootfs/usr/share/info"/*
  tar -C "$rootfs" --numeric-owner -c . \
    | docker import --change "LABEL webstack.recipe=$recipe" --change 'CMD ["/bin/bash"]' - "$base_tag" >/dev/null
  rm -rf "$rootfs"
  trap - EXIT INT TERM
  log "imported $base_tag"
}

# build_standin NAME TAG CONTEXT_DIR [BASE] [ARG]: CONTEXT_DIR holds the Dockerfile and its files;
# BASE is the image it builds on (the Debian base unless given); ARG one more NAME=VALUE build argument.
build_standin() {
  name=$1 tag=$2 context=$3 base=${4:-$base_tag} arg=${5:-}
  base_id=$(docker image inspect --format '{{.Id}}' "$base")
  recipe=$( (printf '%s\n' "$base_id${arg:+ $arg}"; cd "$context" && find . -type f | LC_ALL=C sort | xargs sha256sum) | sha)
  if [ "$(current_recipe "$tag")" = "$recipe" ]; then
    log "$tag is up to date"
    return 0
  fi
  log "building $tag"
  # Only the host network reaches the Debian mirror and the npm registry from here.
  docker build --network host --build-arg "BASE_IMAGE=$base" ${arg:+--build-arg "$arg"} --label "webstack.recipe=$recipe" \
    --tag "$tag" "$context" >"/var/tmp/webstack-standin-$name.log" 2>&1 \
    || { log "building $tag failed; last lines of /var/tmp/webstack-standin-$name.log:"; tail -n 30 "/var/tmp/webstack-standin-$name.log" >&2; exit 1; }
  log "built $tag"
}

# The node stand-in carries this machine's node and npm, so its context is assembled in a
# temporary directory (the recipe hash then covers the binary, npm's files and extra CAs too).
build_node() {
  node_bin=$(command -v node)
  npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
  if [ ! -f "$npm_dir/package.json" ]; then
    log "cannot find npm's package directory (looked at $npm_dir)"
    exit 1
  fi
  context=$(mktemp -d /var/tmp/webstack-standin-node.XXXXXX)
  trap 'rm -rf "$context"' EXIT INT TERM
  cp "$standins/node/Dockerfile" "$context/"
  cp "$(readlink -f "$node_bin")" "$context/node"
  cp -a "$npm_dir" "$context/npm"
  mkdir "$context/extra-ca"
  for crt in /usr/local/share/ca-certificates/*.crt; do
    if [ -f "$crt" ]; then cp "$crt" "$context/extra-ca/"; fi
  done
  build_standin node "$prefix/node:20" "$context"
  rm -rf "$context"
  trap - EXIT INT TERM
}

# The test CA: made once per machine, trusted by the postgres stand-in, signing the s3 stand-in's
# certificate. It certifies nothing outside the test engine's networks.
ca_dir=/var/lib/webstack-standin/ca
test_ca() {
  if [ ! -s "$ca_dir/ca.key" ] || [ ! -s "$ca_dir/ca.crt" ]; then
    mkdir -p "$ca_dir"
    chmod 0700 "$ca_dir"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
      -subj "/CN=webstack test CA" -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -keyout "$ca_dir/ca.key" -out "$ca_dir/ca.crt" 2>/dev/null
    log "made the test CA in $ca_dir"
  fi
}

# build_with_ca NAME TAG [BASE] [KEY] [ARG]: the stand-in's directory plus the test CA's certificate
# (and with KEY=key its private key too), assembled in a temporary context.
build_with_ca() {
  name=$1 tag=$2 base=${3:-$base_tag} key=${4:-} arg=${5:-}
  test_ca
  context=$(mktemp -d /var/tmp/webstack-standin-$name.XXXXXX)
  trap 'rm -rf "$context"' EXIT INT TERM
  cp -a "$standins/$name/." "$context/"
  cp "$ca_dir/ca.crt" "$context/ca.crt"
  if [ "$key" = key ]; then cp "$ca_dir/ca.key" "$context/ca.key"; fi
  build_standin "$name" "$tag" "$context" "$base" "$arg"
  rm -rf "$context"
  trap - EXIT INT TERM
}

if ! docker info >/dev/null 2>&1; then
  log "no Docker engine answers at ${DOCKER_HOST:-the default socket}; run scripts/engine/ensure-docker.sh start"
  exit 1
fi

# Two test processes building at once would race on the same tags.
exec 8>/var/lock/webstack-standin-images.lock
flock -w 1800 8 || { log "timed out waiting for /var/lock/webstack-standin-images.lock"; exit 1; }

names=${*:-postgres postgres17 redis nginx node lego pebble s3}
build_base

# Debian trixie's base, for the Postgres of another major version (17) than bookworm's (15).
trixie_base() {
  bookworm_suite=$suite bookworm_tag=$base_tag
  suite=trixie base_tag="$prefix/debian:trixie"
  build_base
  suite=$bookworm_suite base_tag=$bookworm_tag
}
for name in $names; do
  case "$name" in
    postgres) build_with_ca postgres "$prefix/postgres:15" ;;
    postgres17)
      trixie_base
      build_with_ca postgres "$prefix/postgres:17" "$prefix/debian:trixie" "" PG_MAJOR=17
      ;;
    redis) build_standin redis "$prefix/redis:7" "$standins/redis" ;;
    nginx) build_standin nginx "$prefix/nginx:1.22" "$standins/nginx" ;;
    node) build_node ;;
    lego) build_standin lego "$prefix/lego:4.9" "$standins/lego" ;;
    pebble) build_standin pebble "$prefix/pebble:2.4" "$standins/pebble" ;;
    s3)
      if [ -z "$(current_recipe "$prefix/node:20")" ]; then build_node; fi
      build_with_ca s3 "$prefix/s3:3.7" "$prefix/node:20" key
      ;;
    *) log "unknown stand-in '$name' (allowed: postgres postgres17 redis nginx node lego pebble s3)"; exit 2 ;;
  esac
done
