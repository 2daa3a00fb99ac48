#!/bin/sh
# Makes the certificate for S3_NAMES (space-separated) with the test CA, then runs s3rver on 443.
set -eu
: "${S3_NAMES:?S3_NAMES is not set}"
san=""
for name in $S3_NAMES; do san="${san:+$san,}DNS:$name"; done
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=${S3_NAMES%% *}" \
  -keyout /tmp/tls.key -out /tmp/tls.csr 2>/dev/null
printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$san" > /tmp/ext.cnf
openssl x509 -req -in /tmp/tls.csr -CA /s3/ca.crt -CAkey /s3/ca.key -CAcreateserial -days 7 \
  -extfile /tmp/ext.cnf -out /tmp/tls.crt 2>/dev/null
exec node /s3/serve.js
