// s3rver on 443 with the certificate start.sh made. Path-style requests only: the host name is
// the region's endpoint, never a bucket. Buckets are directories of /data (a test makes them).
const fs = require("fs");
const S3rver = require("s3rver");
new S3rver({
  port: 443,
  address: "0.0.0.0",
  directory: "/data",
  key: fs.readFileSync("/tmp/tls.key"),
  cert: fs.readFileSync("/tmp/tls.crt"),
  vhostBuckets: false,
  silent: false,
})
  .run()
  .then(() => console.log("s3 stand-in listening on 443"));
