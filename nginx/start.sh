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
# ($tls_bundle, written whole by the stack's ACME client or the stack's files) is watched too.
# Each new bundle is copied into $tls_active, with tls.conf (the HTTPS listener, which reads that
# copy), and checked with `nginx -t`; nginx.conf includes that directory, and a graceful reload
# picks the bundle up. A bundle nginx rejects is put aside: nginx keeps the last one it accepted
# (or serves HTTP alone until the first good one), and later reloads are not held up by it.
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

# Takes a new certificate bundle in (see above). A missing bundle changes nothing: nginx keeps
# what it has. When nginx rejects the config with the new bundle and also without it, the bundle
# is not the cause (an upstream name not resolving yet, say), and it stays in place.
tls_taken=""
tls_apply() {
  [ -n "$tls_conf" ] || return 0
  sum=$(cksum "$tls_bundle" 2>/dev/null) || return 0
  sum=${sum%% *}
  [ "$sum" = "$tls_taken" ] && return 0
  tls_taken=$sum
  mkdir -p "$tls_active"
  had=""
  if [ -f "$tls_active/https.conf" ]; then
    had=yes
    cp -p "$tls_active/bundle.pem" "$tls_active/bundle.pem.good"
  fi
  (umask 077 && cp "$tls_bundle" "$tls_active/bundle.pem.tmp") || return 0
  mv "$tls_active/bundle.pem.tmp" "$tls_active/bundle.pem"
  cp "$tls_conf" "$tls_active/https.conf"
  if why=$(nginx -t 2>&1); then
    rm -f "$tls_active/bundle.pem.good"
    return 0
  fi
  mv "$tls_active/bundle.pem" "$tls_active/bundle.pem.new"
  if [ -n "$had" ]; then
    mv "$tls_active/bundle.pem.good" "$tls_active/bundle.pem"
  else
    rm -f "$tls_active/https.conf"
  fi
  if nginx -t -q 2>/dev/null; then
    rm -f "$tls_active/bundle.pem.new"
    log "nginx rejects the certificate bundle $tls_bundle; $([ -n "$had" ] && echo "keeping the last one it accepted" || echo "serving HTTP only") until it changes"
    printf '%s\n' "$why" | sed 's/^/nginx-upstream-watch: /' >&2
    return 0
  fi
  mv "$tls_active/bundle.pem.new" "$tls_active/bundle.pem"
  cp "$tls_conf" "$tls_active/https.conf"
  rm -f "$tls_active/bundle.pem.good"
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
# The snapshot is taken before nginx loads its config, so any later change is noticed.
watch_upstreams "$$" "$initial" &

exec nginx -g 'daemon off;'
