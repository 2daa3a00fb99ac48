#!/bin/sh
# The stack's backup container: creates the pgBackRest stanza once Postgres answers, then takes a
# full backup when the newest full one is older than BACKUP_FULL_DAYS (or there is none) and a
# differential one when the newest backup of any kind is older than BACKUP_DIFF_HOURS. pgBackRest
# expires what falls out of the retention after each backup. Postgres itself archives every WAL
# segment (archive_command), so between backups every commit is in the repository within
# archive_timeout.
#
# Environment:
#   BACKUP_STANZA         the pgBackRest stanza (default webstack)
#   BACKUP_FULL_DAYS      days between full backups (default 7)
#   BACKUP_DIFF_HOURS     hours between backups of any kind (default 24)
#   BACKUP_RETRY_SECONDS  wait after a failure (default 300); it doubles up to 12 times this
#   PGBACKREST_BIN        the pgbackrest program (default pgbackrest; tests use a fake)
# /tmp/backup-state holds the health check's answer: "ok <label> <stop epoch>", "waiting …" or
# "failing …" with the reason. SIGUSR1 takes a full backup at once. SIGTERM ends the container.
set -u

stanza=${BACKUP_STANZA:-webstack}
full_days=${BACKUP_FULL_DAYS:-7}
diff_hours=${BACKUP_DIFF_HOURS:-24}
retry_first=${BACKUP_RETRY_SECONDS:-300}
pgbackrest=${PGBACKREST_BIN:-pgbackrest}
state_file=${BACKUP_STATE:-/tmp/backup-state}
socket_dir=${BACKUP_SOCKET_DIR:-/var/run/postgresql}

say() { printf '%s backup: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"; }
set_state() {
  printf '%s\n' "$*" > "$state_file.new" && mv "$state_file.new" "$state_file"
}

forced=""
child=""
trap 'forced=full' USR1
trap 'say "stopping"; [ -n "$child" ] && kill "$child" 2>/dev/null; exit 0' TERM INT

# pause SECONDS: a sleep that SIGUSR1 and SIGTERM cut short.
pause() {
  sleep "$1" &
  child=$!
  wait "$child" 2>/dev/null
  kill "$child" 2>/dev/null
  child=""
}

# run ARGS…: pgbackrest with the stanza, in the background so a signal reaches this script; its
# output is logged, and its last line kept in $last for the state.
run() {
  out=/tmp/backup-run.log
  "$pgbackrest" --stanza="$stanza" "$@" > "$out" 2>&1 &
  child=$!
  wait "$child"
  rc=$?
  # A signal interrupts wait with a status above 128 while pgbackrest may still run: wait again
  # (a few times: a pgbackrest that a signal ended keeps that status).
  for _ in 1 2 3; do
    [ "$rc" -gt 128 ] || break
    wait "$child"
    rc=$?
  done
  child=""
  sed 's/^/  /' "$out"
  last=$(grep -v '^[[:space:]]*$' "$out" | tail -n 1 | cut -c1-300)
  return "$rc"
}

# newest TYPE: "<label> <stop epoch>" of the newest backup of that type (full, or any), or nothing.
newest() {
  if [ "$1" = full ]; then
    filter='[.[0].backup[]? | select(.type == "full")] | max_by(.timestamp.stop) // empty | "\(.label) \(.timestamp.stop)"'
  else
    filter='[.[0].backup[]?] | max_by(.timestamp.stop) // empty | "\(.label) \(.timestamp.stop)"'
  fi
  "$pgbackrest" --stanza="$stanza" --output=json info 2>/dev/null | jq -r "$filter"
}

set_state "waiting for Postgres"
until pg_isready -q -h "$socket_dir"; do pause 2; done

# The newest Postgres major version the stanza knows, and the server's.
stanza_major() {
  "$pgbackrest" --stanza="$stanza" --output=json info 2>/dev/null | jq -r '[.[0].db[]?.version | tonumber] | max // empty'
}
server_major() {
  psql -h "$socket_dir" -XAtc "SHOW server_version_num" 2>/dev/null | awk '{ print int($1 / 10000) }'
}
# After a major upgrade (npm run upgrade-postgres) the stanza must learn the new version. Only a
# newer version is taken: a different database of the same version (an empty one after a lost
# volume) is refused, so a restore still finds the backups of the one that was lost.
stanza_ready() {
  run stanza-create && return 0
  known=$(stanza_major)
  running=$(server_major)
  if [ -n "$known" ] && [ -n "$running" ] && [ "$running" -gt "$known" ]; then
    say "Postgres went from $known to $running: upgrading the stanza"
    # The backups of the old version are no base for the new one's: a full backup comes first.
    run stanza-upgrade && forced=full && return 0
  fi
  return 1
}

retry=$retry_first
until stanza_ready; do
  set_state "failing stanza-create: $last; retrying in ${retry}s"
  say "stanza-create failed: $last; retrying in ${retry}s"
  pause "$retry"
  retry=$((retry * 2 > retry_first * 12 ? retry_first * 12 : retry * 2))
done
say "stanza $stanza is ready"

retry=$retry_first
while :; do
  now=$(date +%s)
  full=$(newest full)
  any=$(newest any)
  full_stop=${full#* }
  any_stop=${any#* }
  [ -n "$full" ] || full_stop=0
  [ -n "$any" ] || any_stop=0
  full_due=$((full_stop + full_days * 86400))
  diff_due=$((any_stop + diff_hours * 3600))
  kind=""
  if [ "$forced" = full ] || [ "$now" -ge "$full_due" ]; then
    kind=full
  elif [ "$now" -ge "$diff_due" ]; then
    kind=diff
  fi
  if [ -z "$kind" ]; then
    [ -n "$any" ] && set_state "ok $any"
    next=$((full_due < diff_due ? full_due : diff_due))
    # Waking at least hourly keeps the schedule right after the clock or the repository changed.
    wait_for=$((next - now > 3600 ? 3600 : next - now))
    pause "$((wait_for > 1 ? wait_for : 1))"
    continue
  fi
  say "taking a $kind backup"
  if run backup --type="$kind"; then
    [ "$kind" = full ] && forced=""
    retry=$retry_first
    done_now=$(newest any)
    if [ -n "$done_now" ]; then
      set_state "ok $done_now"
      say "$kind backup ${done_now% *} done"
    else
      set_state "failing: pgbackrest info answered nothing after the $kind backup"
      say "$kind backup done, but pgbackrest info answered nothing"
      pause "$retry_first"
    fi
  else
    set_state "failing $kind backup: $last; retrying in ${retry}s"
    say "$kind backup failed: $last; retrying in ${retry}s"
    pause "$retry"
    retry=$((retry * 2 > retry_first * 12 ? retry_first * 12 : retry * 2))
  fi
done
