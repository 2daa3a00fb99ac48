#!/bin/sh
# Makes a Docker engine available for the real-engine test tier and prints its address.
#
#   ensure-docker.sh start   install docker.io when missing; when no engine answers on the private
#                            socket, start a private dockerd; print "DOCKER_HOST=unix://…" and
#                            "STARTED=1|0" (1 only when this call started the daemon)
#   ensure-docker.sh stop    stop the private dockerd recorded in its pidfile (and nothing else)
#   ensure-docker.sh status  exit 0 iff the private engine answers
#
# The daemon is private on purpose: its own socket, data root, exec root and pidfile, so it never
# touches a system engine and its image cache (stand-in base images, build cache) survives between
# runs on the same machine. There is no systemd here, so the daemon runs detached under setsid and
# logs to a file next to its pidfile.
set -eu

here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
repo=$(CDPATH='' cd -- "$here/../.." && pwd)

socket=${WEBSTACK_TEST_DOCKER_SOCKET:-/run/webstack-test-docker.sock}
data_root=${WEBSTACK_TEST_DOCKER_DATA_ROOT:-/var/lib/webstack-test-docker}
exec_root=${WEBSTACK_TEST_DOCKER_EXEC_ROOT:-/run/webstack-test-docker}
pidfile=${WEBSTACK_TEST_DOCKER_PIDFILE:-/run/webstack-test-docker.pid}
logfile=${WEBSTACK_TEST_DOCKER_LOG:-/var/log/webstack-test-docker.log}
start_timeout=${WEBSTACK_TEST_DOCKER_START_TIMEOUT:-60}
host="unix://$socket"

answers() {
  DOCKER_HOST="$host" timeout 10 docker info --format '{{.ServerVersion}}' >/dev/null 2>&1
}

recorded_pid() {
  if [ -s "$pidfile" ]; then
    pid=$(cat "$pidfile")
    # Only a live dockerd counts: a stale pidfile may name a recycled pid of an unrelated process.
    if [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "dockerd" ]; then
      printf '%s\n' "$pid"
      return 0
    fi
  fi
  return 1
}

start() {
  # A machine with an engine of its own (Docker CE on a CI runner) keeps it: installing Debian's
  # docker.io over it would conflict. Point WEBSTACK_TEST_DOCKER_SOCKET at that engine to use it.
  if ! command -v dockerd >/dev/null 2>&1; then
    sh "$repo/scripts/ensure-debian-packages.sh" docker.io
  fi
  # Serialised, so two test processes starting at once do not both launch a daemon.
  exec 7>/var/lock/webstack-test-docker.lock
  flock -w 300 7 || { echo "ensure-docker: timed out waiting for /var/lock/webstack-test-docker.lock" >&2; return 1; }
  if answers; then
    printf 'DOCKER_HOST=%s\nSTARTED=0\n' "$host"
    return 0
  fi
  if pid=$(recorded_pid); then
    echo "ensure-docker: dockerd (pid $pid) from $pidfile does not answer on $socket; stop it first ($0 stop)" >&2
    return 1
  fi
  mkdir -p "$data_root" "$exec_root" "$(dirname "$logfile")"
  rm -f "$pidfile"
  # As docker.service does (LimitNOFILE): every published port's docker-proxy inherits this, and
  # it holds three or more descriptors per connection (two sockets, splice pipes). At the limit it
  # stops accepting for good, so a low one (often 1024 or 20000 outside systemd) lets a few
  # thousand clients take a stack's published port down until its container restarts.
  ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -H -n)" 2>/dev/null || true
  # Published ports by iptables alone, as on webstack's cloud hosts (their daemon.json): the
  # host's own connections to a published port then take the path outside clients take.
  # setsid detaches the daemon from the caller's process group, so a test runner that kills its
  # own group on exit does not take the engine down mid-cleanup; `stop` ends it explicitly. The
  # daemon must not inherit the lock's descriptor, or it would hold the lock for its lifetime.
  setsid dockerd \
    --host "$host" \
    --data-root "$data_root" \
    --exec-root "$exec_root" \
    --pidfile "$pidfile" \
    --storage-driver overlay2 \
    --userland-proxy=false \
    --log-level warn ${WEBSTACK_TEST_DOCKERD_ARGS:-} \
    </dev/null >>"$logfile" 2>&1 7>&- &
  waited=0
  until answers; do
    if [ "$waited" -ge "$start_timeout" ]; then
      echo "ensure-docker: dockerd did not answer on $socket within ${start_timeout}s; last log lines:" >&2
      tail -n 20 "$logfile" >&2 || true
      return 1
    fi
    sleep 1
    waited=$((waited + 1))
  done
  printf 'DOCKER_HOST=%s\nSTARTED=1\n' "$host"
}

stop() {
  if ! pid=$(recorded_pid); then
    return 0
  fi
  kill -TERM "$pid"
  # dockerd stops its containers (each with its own grace period) before exiting.
  waited=0
  while [ -d "/proc/$pid" ]; do
    if [ "$waited" -ge 60 ]; then
      echo "ensure-docker: dockerd (pid $pid) still running 60s after SIGTERM; sending SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 1
    waited=$((waited + 1))
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) answers ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
