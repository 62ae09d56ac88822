/**
 * What identifyVm asks the guest to do, and which digests it keeps. The agent
 * is a test double that records each CONFIGURE: what matters here is the
 * payload the host decides to send.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { AgentClient, GuestConfig } from "../../../src/runtime/agent/agent-client.js";
import { identifyVm, identityDigest, keysDigest, TEMPLATE_KEYS_DIGEST, type GuestIdentity } from "../../../src/runtime/snapshot/guest-identity.js";
import type { SnapVm } from "../../../src/runtime/snapshot/snapshot-vm.js";

const NET = { ip: "192.168.0.7", prefixLen: 24, gateway: "192.168.0.1", mac: "02:00:00:00:00:07", dns: ["192.168.0.1"] };
const ident = (keys: string[], envs: Record<string, string> = {}): GuestIdentity => ({ name: "quiet-otter", net: NET, envs, sshPubkeys: keys });

function vmWith(digests: Partial<Pick<SnapVm, "identityDigest" | "keysDigest">>, fail = false) {
  const sent: GuestConfig[] = [];
  const agent = {
    configure: async (cfg: GuestConfig) => {
      sent.push(cfg);
      if (fail) throw new Error("agent gone");
    },
  } as unknown as AgentClient;
  const vm: Pick<SnapVm, "agent" | "identityDigest" | "keysDigest"> = { agent, ...digests };
  return { vm, sent };
}

test("a clone that has the asked keys is told to keep them; its digests follow", async () => {
  const { vm, sent } = vmWith({ keysDigest: TEMPLATE_KEYS_DIGEST });
  await identifyVm(vm, ident([]));
  assert.deepEqual(sent[0]!.keep, { envs: false, keys: true });
  assert.equal(vm.keysDigest, keysDigest([]));
  assert.equal(vm.identityDigest, identityDigest(ident([])));
});

test("other keys are sent, and the VM then knows it has them", async () => {
  const { vm, sent } = vmWith({ keysDigest: TEMPLATE_KEYS_DIGEST });
  await identifyVm(vm, ident(["ssh-ed25519 AAAA a"]));
  assert.equal(sent[0]!.keep, undefined);
  assert.deepEqual(sent[0]!.sshPubkeys, ["ssh-ed25519 AAAA a"]);
  assert.equal(vm.keysDigest, keysDigest(["ssh-ed25519 AAAA a"]));
});

test("a guest whose keys are unknown (resumed, forked) always gets them, and learns no keys digest", async () => {
  const { vm, sent } = vmWith({});
  await identifyVm(vm, ident([]), { network: false, hostname: false });
  assert.equal(sent[0]!.keep, undefined);
  assert.equal(sent[0]!.net, undefined);
  assert.equal(sent[0]!.hostname, "");
  assert.equal(vm.keysDigest, undefined, "user code ran in it: authorized_keys may differ from any digest");
  assert.equal(vm.identityDigest, identityDigest(ident([])));
});

test("keep (the guest that paused, nothing changed) keeps envs and keys", async () => {
  const { vm, sent } = vmWith({});
  await identifyVm(vm, ident(["k"], { A: "1" }), { network: false, hostname: false, keep: true });
  assert.deepEqual(sent[0]!.keep, { envs: true, keys: true });
});

test("a failed CONFIGURE leaves both digests unknown", async () => {
  const { vm } = vmWith({ keysDigest: TEMPLATE_KEYS_DIGEST, identityDigest: "old" }, true);
  await assert.rejects(identifyVm(vm, ident(["k"])), /agent gone/);
  assert.equal(vm.keysDigest, undefined);
  assert.equal(vm.identityDigest, undefined);
});
