#!/bin/sh
# The stack's ACME client: gets the certificate for the stack's names with lego by HTTP-01 (nginx
# answers the challenge from the webroot volume this writes to), renews it well before it
# expires, and installs each certificate as one file nginx reads: the private key, then the chain,
# replaced whole (rename), so nginx never sees a key without its certificate. nginx's watcher
# reloads it gracefully when the file changes.
#
# Environment:
#   ACME_SERVER         the ACME directory URL
#   ACME_EMAIL          the account's contact address
#   ACME_DOMAINS        the names, space-separated; the first names the files
#   ACME_CA_PEM         optional: the CA of a private ACME server's own HTTPS certificate
#   ACME_RETRY_SECONDS  wait after a failure (default 300); it doubles each time up to 12 times
#                       this, so a CA that refuses is asked at most five times in its first hour
#   ACME_RENEW_DAYS     renew when fewer days than this are left (default 30)
#   ACME_CHECK_SECONDS  how often the expiry is checked once all is well (default 43200)
# Files: /certs (a volume: lego's account and certificates), /live (a volume nginx reads:
# bundle.pem alone), /webroot (a volume nginx serves at /.well-known/acme-challenge/),
# /tmp/acme-state (the health check's answer: "ok …", "waiting …" or "failing …", with the reason).
# SIGUSR1 renews at once, whatever the expiry. SIGTERM ends the client.
set -u

certs=${ACME_CERTS:-/certs}
live=${ACME_LIVE:-/live}
webroot=${ACME_WEBROOT:-/webroot}
lego=${ACME_LEGO:-/lego}
state_file=${ACME_STATE:-/tmp/acme-state}
retry_first=${ACME_RETRY_SECONDS:-300}
renew_days=${ACME_RENEW_DAYS:-30}
check_every=${ACME_CHECK_SECONDS:-43200}
: "${ACME_SERVER:?ACME_SERVER is not set}" "${ACME_EMAIL:?ACME_EMAIL is not set}" "${ACME_DOMAINS:?ACME_DOMAINS is not set}"

# shellcheck disable=SC2086
set -- $ACME_DOMAINS
main=$1
domain_args=""
for name in "$@"; do domain_args="$domain_args --domains $name"; done
crt="$certs/lego/certificates/$main.crt"
key="$certs/lego/certificates/$main.key"
bundle="$live/bundle.pem"

log() { printf 'webstack-acme: %s\n' "$*" >&2; }

state() {
  printf '%s %s: %s\n' "$1" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$2" > "$state_file.tmp" && mv "$state_file.tmp" "$state_file"
}

if [ -n "${ACME_CA_PEM:-}" ]; then
  printf '%s\n' "$ACME_CA_PEM" > /tmp/acme-ca.pem
  export LEGO_CA_CERTIFICATES=/tmp/acme-ca.pem
fi
mkdir -p "$live" "$webroot"

# lego with the stack's account, server and names; $1 is run or renew, the rest its options. Its
# output goes to $lego_out. It runs in the background, so SIGTERM reaches it too (see the traps),
# and a SIGUSR1, which ends `wait` early (a status above 128), does not abandon it.
lego_out=/tmp/lego.out
lego_pid=""
lego_do() {
  # shellcheck disable=SC2086
  "$lego" --accept-tos --email "$ACME_EMAIL" --server "$ACME_SERVER" --path "$certs/lego" \
    --http --http.webroot "$webroot" --key-type ec256 $domain_args "$@" > "$lego_out" 2>&1 &
  lego_pid=$!
  while :; do
    wait "$lego_pid"
    code=$?
    if [ "$code" -gt 128 ] && kill -0 "$lego_pid" 2>/dev/null; then continue; fi
    break
  done
  lego_pid=""
  return "$code"
}

# Gets or renews the certificate ($1: "force" to renew whatever the expiry); installs it when new.
# (Shell variables are global: this one must not be named after the `force` flag.)
# The names of an existing certificate are compared with the wanted ones: a new name needs a new
# order (run), not a renewal.
obtain() {
  how=$1
  if [ -s "$crt" ] && [ "$(cat "$certs/domains" 2>/dev/null)" = "$ACME_DOMAINS" ] && [ ! -e "$certs/lego/reorder" ]; then
    days=$renew_days
    [ "$how" = force ] && days=100000
    # Without --no-random-sleep, lego waits up to 8 minutes when not on a terminal.
    lego_do renew --days "$days" --no-random-sleep || { failed "$(cat "$lego_out")"; return 1; }
  else
    lego_do run || { failed "$(cat "$lego_out")"; return 1; }
    printf '%s\n' "$ACME_DOMAINS" > "$certs/domains"
    rm -f "$certs/lego/reorder"
  fi
  cat "$lego_out" >&2
  install || { failure="lego succeeded, but installing $bundle failed"; return 1; }
}

# Logs lego's output and keeps its last line as the reason. A CA that no longer knows the
# account (a test CA restarted, an account deactivated) needs a new one and a new order.
failed() {
  printf '%s\n' "$1" >&2
  failure=$(printf '%s\n' "$1" | tail -n 1)
  case "$1" in
    *accountDoesNotExist* | *"is not registered"*)
      log "the CA does not know the account; a new one is registered on the next attempt"
      rm -rf "$certs/lego/accounts"
      : > "$certs/lego/reorder"
      ;;
  esac
}

# Writes key and chain into the bundle when the certificate differs from the installed one.
install() {
  new=$(cksum < "$crt")
  if [ -s "$bundle" ] && [ "$(cat "$live/installed" 2>/dev/null)" = "$new" ]; then
    return 0
  fi
  (umask 077 && cat "$key" "$crt" > "$bundle.tmp") && mv "$bundle.tmp" "$bundle" || return 1
  printf '%s\n' "$new" > "$live/installed"
  log "installed a new certificate for $ACME_DOMAINS"
}

force=""
trap 'force=force; [ -n "${sleeper:-}" ] && kill "$sleeper" 2>/dev/null' USR1
trap 'log "stopping"; for p in ${lego_pid:-} ${sleeper:-}; do kill "$p" 2>/dev/null; done; exit 0' TERM INT

# Sleeps $1 seconds; SIGUSR1 or SIGTERM end the sleep early, and a SIGUSR1 that came while lego
# ran skips it.
pause() {
  [ -n "$force" ] && return 0
  sleep "$1" &
  sleeper=$!
  wait "$sleeper" 2>/dev/null
  sleeper=""
}

delay=$retry_first
limit=$((retry_first * 12))
state waiting "no certificate yet"
[ -s "$bundle" ] && state ok "serving the certificate installed before this start; checking it"
while :; do
  wanted=$force
  force=""
  failure=""
  if obtain "$wanted"; then
    state ok "certificate for $ACME_DOMAINS installed; next check in ${check_every}s"
    delay=$retry_first
    pause "$check_every"
  else
    state failing "${failure:-lego failed}; retrying in ${delay}s"
    log "ACME order for $ACME_DOMAINS failed at $ACME_SERVER; retrying in ${delay}s"
    pause "$delay"
    delay=$((delay * 2))
    [ "$delay" -gt "$limit" ] && delay=$limit
  fi
done
