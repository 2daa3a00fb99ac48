// target=digitalocean: the droplet, firewall, IP and readiness command are recorded, not created;
// the container layer the program puts on the droplet's engine runs on the test engine instead.
import { DATA_MOUNT } from "../../components/specs/cloud-init";
import { describeStack } from "./support/scenario";

describeStack({
  stack: "e2e-do",
  settings: { target: "digitalocean", region: "nyc3", adminCidrs: '["127.0.0.1/32"]', replicas: "3" },
  // A cloud host publishes nginx on every address unless told otherwise.
  bindAddress: "0.0.0.0",
  dataDir: `${DATA_MOUNT}/postgres`,
  // The droplet's engine is realised on the test engine, on purpose; any other Docker provider
  // (the deployer's build engine, say) is refused.
  engineProviders: ["host-engine-docker"],
  readinessCommand: "host-engine-ready",
  // A cloud stack serves HTTPS with a certificate from its ACME CA: Pebble here.
  https: true,
  // Its container layer is the local scenario's: this one tests what a cloud host changes.
  layerTests: false,
  // Its backups go to a Spaces bucket: the s3 stand-in, under the region's endpoint name.
  bucketEndpoint: "nyc3.digitaloceanspaces.com",
});
