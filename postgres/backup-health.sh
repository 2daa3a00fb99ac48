#!/bin/sh
# The backup container's health check. Healthy when the last backup run succeeded and is recent
# enough, and Postgres's WAL archiving keeps up: no segment waits longer than
# BACKUP_WAL_LAG_SECONDS to be archived and the last archive attempt did not fail. Prints one line,
# which `docker inspect` shows: the newest backup and its age, the newest archived WAL and its age,
# or what fails.
set -u
state_file=${BACKUP_STATE:-/tmp/backup-state}
socket_dir=${BACKUP_SOCKET_DIR:-/var/run/postgresql}
pgdata=${PGDATA:-/var/lib/postgresql/data/pgdata}
diff_hours=${BACKUP_DIFF_HOURS:-24}
lag_limit=${BACKUP_WAL_LAG_SECONDS:-120}
now=$(date +%s)

state=$(cat "$state_file" 2>/dev/null) || { echo "starting"; exit 1; }
case "$state" in
  ok\ *) ;;
  *) echo "$state"; exit 1 ;;
esac
set -- $state
label=${2:-unknown} stop=${3:-0}
backup_age=$((now - stop))
# A backup is due every BACKUP_DIFF_HOURS; one that has not happened an hour later is missing.
if [ "$backup_age" -gt $((diff_hours * 3600 + 3600)) ]; then
  echo "failing: the newest backup, $label, is ${backup_age}s old"
  exit 1
fi

# Segments Postgres finished and has not archived yet: the oldest's age is the archive's lag.
oldest=$(ls -tr "$pgdata/pg_wal/archive_status" 2>/dev/null | grep '\.ready$' | head -n 1)
waiting=$(ls "$pgdata/pg_wal/archive_status" 2>/dev/null | grep -c '\.ready$')
if [ -n "$oldest" ]; then
  # Archived between the listing and now: it waits no longer.
  since=$(stat -c %Y "$pgdata/pg_wal/archive_status/$oldest" 2>/dev/null) || since=$now
  if [ $((now - since)) -gt "$lag_limit" ]; then
    echo "failing: WAL ${oldest%.ready} has waited $((now - since))s to be archived ($waiting waiting)"
    exit 1
  fi
fi

archiver=$(psql -h "$socket_dir" -U "${PGUSER:-webstack}" -d "${PGDATABASE:-webstack}" -XAtF ' ' -c \
  "select coalesce(last_archived_wal, '-'),
          coalesce(extract(epoch from now() - last_archived_time)::bigint, -1),
          coalesce(last_failed_time > coalesce(last_archived_time, '-infinity'), false),
          coalesce(last_failed_wal, '-')
     from pg_stat_archiver" 2>&1) || { echo "failing: cannot ask Postgres: $archiver"; exit 1; }
set -- $archiver
if [ "$3" = t ]; then
  echo "failing: archiving WAL $4 failed, and nothing was archived since (see the postgres container's log)"
  exit 1
fi
if [ "$1" = - ]; then wal="no WAL archived since Postgres started"; else wal="newest WAL $1 archived $2s ago"; fi
echo "ok: newest backup $label ${backup_age}s ago; $wal; $waiting waiting"
