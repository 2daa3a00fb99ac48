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
#
# HTTPS: when tls.conf and tls.env lie next to this script, the certificate bundle tls.env names
# ($tls_bundle, written whole by the stack's ACME client) is watched too. While it exists,
# tls.conf (the HTTPS listener and certificate) is copied into $tls_active, which nginx.conf
# includes; a new bundle is picked up with a graceful reload. At start, a bundle nginx rejects is
# left out, so nginx starts serving HTTP rather than not at all.
set -u

dir=$(dirname "$0")
names=$(cat "$dir/upstream-names" 2>/dev/null || true)
interval=${WATCH_INTERVAL:-1}
reload_gap=${WATCH_RELOAD_GAP:-3}
start_wait=${WATCH_START_WAIT:-30}
lookup=${WATCH_LOOKUP:-getent ahosts}
config=${WATCH_CONFIG:-$dir/../nginx.conf}
tls_conf=""
tls_bundle=""
tls_active=""
if [ -f "$dir/tls.conf" ] && [ -f "$dir/tls.env" ]; then
  tls_conf="$dir/tls.conf"
  # Two assignments written by nginx/render.ts: tls_bundle and tls_active.
  . "$dir/tls.env"
fi

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
  cert=""
  if [ -n "$tls_conf" ]; then
    cert=$(cksum "$tls_bundle" 2>/dev/null) || cert="none"
    cert="cert: ${cert%% *};"
  fi
  printf '%s\n' "${out}config: ${sum%% *};$cert"
}

# Puts the HTTPS part in place while the certificate bundle exists, and takes it out otherwise.
tls_apply() {
  [ -n "$tls_conf" ] || return 0
  mkdir -p "$tls_active"
  if [ -s "$tls_bundle" ]; then
    cp "$tls_conf" "$tls_active/https.conf.tmp" && mv "$tls_active/https.conf.tmp" "$tls_active/https.conf"
  else
    rm -f "$tls_active/https.conf"
  fi
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
    log "upstream addresses, certificate or config changed from [$current] to [$seen]; reloading nginx"
    # A bundle nginx cannot load fails only this reload: nginx keeps its last good one.
    tls_apply
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
tls_apply
if [ -n "$tls_conf" ] && [ -f "$tls_active/https.conf" ] && ! nginx -t -q 2>/dev/null; then
  log "nginx rejects the certificate in $tls_bundle; starting without HTTPS until it changes"
  nginx -t 2>&1 | sed 's/^/nginx-upstream-watch: /' >&2
  rm -f "$tls_active/https.conf"
fi
# The snapshot is taken before nginx loads its config, so any later change is noticed.
watch_upstreams "$$" "$initial" &

exec nginx -g 'daemon off;'
