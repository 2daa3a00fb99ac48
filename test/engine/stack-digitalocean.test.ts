// target=digitalocean: the droplet, firewall, IP and readiness command are recorded, not created;
// the container layer the program puts on the droplet's engine runs on the local engine instead.
import { DATA_MOUNT } from "../../components/specs/cloud-init";
import { describeStack } from "./support/scenario";

describeStack({
  stack: "e2e-do",
  settings: { target: "digitalocean", region: "nyc3", adminCidrs: '["127.0.0.1/32"]', replicas: "3" },
  dataDir: `${DATA_MOUNT}/postgres`,
});
