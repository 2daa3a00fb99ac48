// target=local: the whole stack on a real engine, end to end.
import { describeStack } from "./support/scenario";

describeStack({
  stack: "e2e-local",
  settings: { target: "local", replicas: "3" },
  bindAddress: "127.0.0.1",
  // Asked for by an update at the end, so the tests before it keep plain HTTP.
  localHttps: true,
  restores: true,
});
