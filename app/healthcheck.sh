#!/bin/bash
# The container's health check: exit 0 only when GET /healthz on this container answers 200
# within 2 s. Plain bash (its /dev/tcp), so a check costs a shell, not a Node start: about a sixth
# of the CPU, paid every few seconds in every replica.
set -u
exec 3<>"/dev/tcp/127.0.0.1/${PORT:-3000}" || exit 1
printf 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3 || exit 1
IFS= read -r -t 2 status <&3 || exit 1
[[ $status == "HTTP/1."[01]" 200 "* ]]
