#!/bin/sh
# Container command for nginx. nginx < 1.27.3 (open source) resolves the names in an upstream
# block only when it loads its config, so replicas joining or leaving the `app` alias would go
# unnoticed; and a new config, written into nginx's files volume by the stack's files run, takes
# effect only on a reload. This script starts a small watcher that polls the names and the config
# file and gracefully reloads nginx when the set of addresses or the config changes, then runs
# nginx in the foreground as this same process.
#
# Names to watch: one per line in upstream-names next to this script (none: only the config).
# Tunables (environment): WATCH_INTERVAL seconds between polls (default 1), WATCH_RELOAD_GAP
# seconds of quiet after each reload attempt (default 3), WATCH_START_WAIT seconds to wait for
# the names before starting nginx (default 30), WATCH_LOOKUP the lookup command (default
# "getent ahosts"; its output's first column is the address), WATCH_CONFIG the config file
# (default nginx.conf in the directory above this script's).
set -u

dir=$(dirname "$0")
names=$(cat "$dir/upstream-names" 2>/dev/null || true)
interval=${WATCH_INTERVAL:-1}
reload_gap=${WATCH_RELOAD_GAP:-3}
start_wait=${WATCH_START_WAIT:-30}
lookup=${WATCH_LOOKUP:-getent ahosts}
config=${WATCH_CONFIG:-$dir/../nginx.conf}

log() {
  printf 'nginx-upstream-watch: %s\n' "$*" >&2
}

# Prints "name: addr addr ...;" for every name, sorted, and the config's checksum, or fails if
# any name has no address or the config is missing (it is while the files run rewrites it): then
# nothing should change, and nginx keeps serving with what it has.
snapshot() {
  out=""
  for name in $names; do
    # shellcheck disable=SC2086
    addrs=$($lookup "$name" 2>/dev/null | awk '{ print $1 }' | sort -u | tr '\n' ' ')
    if [ -z "$addrs" ]; then
      return 1
    fi
    addrs=${addrs% }
    out="$out$name: $addrs;"
  done
  sum=$(cksum "$config" 2>/dev/null) || return 1
  printf '%s\n' "${out}config: ${sum%% *};"
}

# Reloads only after the same new answer was seen on two polls in a row (one odd DNS answer does
# not cause a reload), and rests after every attempt, so reloads can never come in a storm. A
# failed reload leaves nginx on its old config and is tried again later. It never stops nginx.
watch_upstreams() {
  nginx_pid=$1
  current=$2
  candidate=""
  while kill -0 "$nginx_pid" 2>/dev/null; do
    sleep "$interval"
    if ! seen=$(snapshot); then
      candidate=""
      continue
    fi
    if [ "$seen" = "$current" ]; then
      candidate=""
      continue
    fi
    if [ "$seen" != "$candidate" ]; then
      candidate=$seen
      continue
    fi
    log "upstream addresses or config changed from [$current] to [$seen]; reloading nginx"
    if nginx -s reload; then
      current=$seen
    else
      log "nginx reload failed; will try again"
    fi
    candidate=""
    sleep "$reload_gap"
  done
}

# nginx refuses to start while an upstream name does not resolve (e.g. no replica yet).
waited=0
while ! initial=$(snapshot); do
  if [ "$waited" -ge "$start_wait" ]; then
    log "upstream names unresolved or config missing after ${start_wait}s; starting nginx anyway"
    initial=""
    break
  fi
  sleep 1
  waited=$((waited + 1))
done
# The snapshot is taken before nginx loads its config, so any later change is noticed.
watch_upstreams "$$" "$initial" &

exec nginx -g 'daemon off;'
