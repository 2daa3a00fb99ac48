#!/bin/sh
# Entry point of the redis stand-in: like the official image, arguments that look like options or
# a config file go to redis-server, which runs as user redis with /data as its working directory.
set -eu

case "${1:-}" in
  -*|*.conf) set -- redis-server "$@" ;;
esac

if [ "${1:-}" = 'redis-server' ] && [ "$(id -u)" = '0' ]; then
  find . \! -user redis -exec chown redis '{}' +
  exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi

# As the official image: what Redis creates (the AOF directory among it) is its own alone.
um="$(umask)"
if [ "$um" = '0022' ]; then
  umask 0077
fi

exec "$@"
