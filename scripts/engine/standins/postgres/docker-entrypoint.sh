#!/bin/bash
# Entry point of the postgres stand-in: first start initialises PGDATA (superuser POSTGRES_USER
# with POSTGRES_PASSWORD, database POSTGRES_DB, scripts from /docker-entrypoint-initdb.d), then
# postgres is exec'd so it is PID 1 and receives the stop signal itself.
set -Eeuo pipefail

if [ "${1:0:1}" = '-' ]; then
  set -- postgres "$@"
fi

if [ "$1" != 'postgres' ]; then
  exec "$@"
fi

export POSTGRES_USER="${POSTGRES_USER:-postgres}"
export POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
export PGDATA="${PGDATA:-/var/lib/postgresql/data}"

if [ "$(id -u)" = '0' ]; then
  # A fresh named volume is owned by root; the server refuses a data dir it does not own.
  mkdir -p "$PGDATA"
  chown postgres:postgres "$PGDATA"
  chmod 700 "$PGDATA"
  mkdir -p /var/run/postgresql
  chown postgres:postgres /var/run/postgresql
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo 'postgres stand-in: POSTGRES_PASSWORD is empty; set it to the superuser password' >&2
    exit 1
  fi
  # The password reaches initdb through a file descriptor, never through argv.
  # shellcheck disable=SC2086
  initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
    --auth-local=trust --auth-host=scram-sha-256 ${POSTGRES_INITDB_ARGS:-} >/dev/null
  printf 'host all all all scram-sha-256\n' >> "$PGDATA/pg_hba.conf"
  printf "listen_addresses = '*'\n" >> "$PGDATA/postgresql.conf"

  # A temporary server reachable only through the unix socket runs the first-start scripts.
  pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  psql=(psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname postgres)
  if [ "$POSTGRES_DB" != 'postgres' ]; then
    "${psql[@]}" --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";' >/dev/null
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh) echo "postgres stand-in: running $f"; . "$f" ;;
      *.sql) echo "postgres stand-in: running $f"; "${psql[@]}" --dbname "$POSTGRES_DB" -f "$f" ;;
      *.sql.gz) echo "postgres stand-in: running $f"; gunzip -c "$f" | "${psql[@]}" --dbname "$POSTGRES_DB" ;;
      *) [ -e "$f" ] && echo "postgres stand-in: ignoring $f" ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  echo 'postgres stand-in: initialisation complete'
fi

exec "$@"
