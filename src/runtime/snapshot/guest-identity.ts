/**
 * Giving a restored or forked guest its own identity through the agent.
 */
import { randomBytes } from "node:crypto";
import type { AgentClient, GuestConfig } from "../agent/agent-client.js";
import type { MachineSpec } from "../runtime.js";

/** What makes a guest this sandbox: a MachineSpec's identity fields. */
export type GuestIdentity = Pick<MachineSpec, "name" | "net" | "envs" | "sshPubkeys">;

/** The CONFIGURE of `id`, with a fresh RNG seed and the current wall clock. */
export function guestConfigOf(id: GuestIdentity): GuestConfig {
  return {
    hostname: id.name,
    net: { ...id.net },
    envs: id.envs,
    sshPubkeys: id.sshPubkeys,
    rngSeed: randomBytes(32),
    wallClockMs: Date.now(),
  };
}

/**
 * Sets the guest's NIC MAC to `identity.net.mac`, then CONFIGUREs hostname,
 * address, envs, keys, a fresh RNG seed and the wall clock.
 *
 * Why the MAC step: a migration stream carries virtio-net's MAC (the one
 * the template was built with) and the guest kernel keeps using its old
 * address whatever `mac=` the new QEMU was started with, so every clone
 * would talk with the template's MAC on the bridge. `ip link set address`
 * in the guest goes to the device through virtio-net's control queue
 * (VIRTIO_NET_CTRL_MAC_ADDR_SET), which also updates QEMU's receive filter.
 * The agent's CONFIGURE does not set MACs (it only finds the interface by
 * one), hence an exec; `ifname` is the guest's only NIC. A resume of the
 * same sandbox skips it (`setMac: false`): the guest still has its MAC.
 */
export async function applyIdentity(agent: AgentClient, id: GuestIdentity, opts: { setMac?: boolean; ifname?: string } = {}): Promise<void> {
  const ifname = opts.ifname ?? "eth0";
  if (opts.setMac ?? true) {
    const err: Buffer[] = [];
    const res = await agent.exec(
      { cmd: "ip", args: ["link", "set", "dev", ifname, "address", id.net.mac] },
      { onStdout: () => {}, onStderr: (c) => err.push(c) },
    );
    if (res.exitCode !== 0) throw new Error(`setting the guest MAC failed: exit ${res.exitCode} ${res.error ?? ""} ${Buffer.concat(err).toString().trim()}`);
  }
  await agent.configure(guestConfigOf(id));
}
