#!/bin/sh
# Installs the named Debian packages, but only those not yet installed.
# Safe to call from several test processes at once: the whole check-and-install runs under one
# flock, and the check is repeated inside the lock so a second caller does not reinstall.
# Services whose packages start them on install (redis-server, postgresql, nginx, docker.io) are
# kept from starting: tests start their own instances on free ports and must not find a stray
# system instance holding the default port.
set -eu

if [ "$#" -eq 0 ]; then
  echo "usage: $0 PACKAGE..." >&2
  exit 2
fi

for pkg in "$@"; do
  case "$pkg" in
    *[!a-z0-9.+-]*|'') echo "ensure-debian-packages: invalid package name '$pkg' (allowed: a-z 0-9 . + -)" >&2; exit 2 ;;
  esac
done

missing_packages() {
  for pkg in "$@"; do
    if ! dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
      printf '%s\n' "$pkg"
    fi
  done
}

if [ -z "$(missing_packages "$@")" ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "ensure-debian-packages: missing packages: $(missing_packages "$@" | tr '\n' ' ')- installing them needs root" >&2
  exit 1
fi

lock_file=/var/lock/webstack-ensure-debian-packages.lock
exec 9>"$lock_file"
flock -w 900 9 || { echo "ensure-debian-packages: timed out waiting for $lock_file" >&2; exit 1; }

missing=$(missing_packages "$@")
if [ -z "$missing" ]; then
  exit 0
fi

# policy-rc.d exit code 101 tells invoke-rc.d "action forbidden": postinst scripts then leave
# services stopped. Only install our own policy when none exists, and always remove it again.
policy=/usr/sbin/policy-rc.d
own_policy=0
cleanup() {
  if [ "$own_policy" -eq 1 ]; then rm -f "$policy"; fi
}
trap cleanup EXIT INT TERM
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"
  chmod 755 "$policy"
  own_policy=1
fi

export DEBIAN_FRONTEND=noninteractive
apt_opts="-o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold"
# shellcheck disable=SC2086
apt-get $apt_opts update -qq
# shellcheck disable=SC2086,SC2046
apt-get $apt_opts install -y -qq --no-install-recommends $(printf '%s ' $missing) >/dev/null

still_missing=$(missing_packages "$@")
if [ -n "$still_missing" ]; then
  echo "ensure-debian-packages: still missing after install: $(printf '%s ' $still_missing)" >&2
  exit 1
fi
