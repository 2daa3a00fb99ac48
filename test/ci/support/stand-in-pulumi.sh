#!/bin/sh
# Runs the stand-in Pulumi CLI (see stand-in-pulumi.ts) with the repository's tsx.
here=$(dirname "$0")
exec "$here/../../../node_modules/.bin/tsx" "$here/stand-in-pulumi.ts" "$@"
