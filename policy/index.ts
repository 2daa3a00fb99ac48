// The webstack policy pack. Constructing the PolicyPack starts the policy server the Pulumi CLI
// talks to, so this file does nothing else; the policies live in ./policies.
import { PolicyPack } from "@pulumi/policy";
import { webstackPolicies } from "./policies";

new PolicyPack("webstack", {
  description:
    "Guard rails for webstack stacks: one public entry point, no privileged containers, pinned images, secret credentials, closed admin ports, protected data and approved VM sizes.",
  enforcementLevel: "mandatory",
  policies: webstackPolicies(),
});
