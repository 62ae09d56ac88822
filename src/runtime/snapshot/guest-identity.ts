/**
 * Giving a restored or forked guest its own identity through the agent.
 */
import { createHash, randomBytes } from "node:crypto";
import type { AgentClient, GuestConfig } from "../agent/agent-client.js";
import type { MachineSpec } from "../runtime.js";
import type { SnapVm } from "./snapshot-vm.js";

/** What makes a guest this sandbox: a MachineSpec's identity fields. */
export type GuestIdentity = Pick<MachineSpec, "name" | "net" | "envs" | "sshPubkeys">;

/**
 * A digest of the envs and SSH keys of `id`: recorded with a VM once its
 * guest got them (SnapVm.identityDigest, then the paused bundle), so that a
 * resume can tell whether they changed while it was paused.
 */
export function identityDigest(id: Pick<GuestIdentity, "envs" | "sshPubkeys">): string {
  const envs = Object.entries(id.envs).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return createHash("sha256").update(JSON.stringify([envs, id.sshPubkeys])).digest("hex");
}

/**
 * A digest of SSH keys `keys`: recorded with a clone or warm VM once its
 * guest got them (SnapVm.keysDigest), so that a CONFIGURE with the same keys
 * leaves authorized_keys alone.
 */
export function keysDigest(keys: readonly string[]): string {
  return createHash("sha256").update(JSON.stringify(keys)).digest("hex");
}

/**
 * keysDigest of a template's guest: images ship no authorized_keys and a
 * template gets no CONFIGURE, so its clones start with no keys.
 */
export const TEMPLATE_KEYS_DIGEST = keysDigest([]);

/**
 * The CONFIGURE of `id`, with a fresh RNG seed and the current wall clock;
 * without the network part when `network` is false (the guest has it
 * already), without the hostname when `hostname` is false (the agent leaves
 * it as it is when sent empty); envs and keys marked as kept when `keep`
 * says so (the guest has exactly these: an agent of protocol >= 3 skips them).
 */
export function guestConfigOf(id: GuestIdentity, network = true, hostname = true, keep: { envs?: boolean; keys?: boolean } = {}): GuestConfig {
  return {
    hostname: hostname ? id.name : "",
    ...(network ? { net: { ...id.net } } : {}),
    envs: id.envs,
    sshPubkeys: id.sshPubkeys,
    rngSeed: randomBytes(32),
    wallClockMs: Date.now(),
    ...(keep.envs || keep.keys ? { keep: { envs: keep.envs === true, keys: keep.keys === true } } : {}),
  };
}

/**
 * CONFIGUREs hostname, address, MAC, envs, keys, a fresh RNG seed and the
 * wall clock in one agent round trip.
 *
 * The MAC matters after a restore: a migration stream carries virtio-net's
 * MAC (the template's) and the guest kernel keeps the address it read at
 * boot whatever `mac=` the new QEMU got, so every clone would talk with the
 * template's MAC on the bridge. The agent sets eth0's address
 * (`SIOCSIFHWADDR`) when no interface has the requested one; virtio-net
 * passes that to the device (VIRTIO_NET_CTRL_MAC_ADDR_SET), which also
 * updates QEMU's receive filter.
 *
 * `network: false` leaves address, MAC and resolvers as they are, and
 * `hostname: false` the hostname and its two files: a resume of the sandbox
 * that paused has them, and under TCG the guest's first run of these paths
 * in a new QEMU process is the slow part of CONFIGURE (cold, measured:
 * ~90 ms for the network part, ~35 ms for the hostname's file writes).
 * `keep: true` leaves envs and keys too (authorized_keys rewritten cold:
 * ~40 ms): only when the guest got exactly `id`'s (its identityDigest);
 * `keepKeys: true` the keys alone (the guest has `id`'s: its keysDigest).
 *
 * Resolves with `id`'s identityDigest: what the guest now has.
 */
export async function applyIdentity(
  agent: AgentClient,
  id: GuestIdentity,
  opts: { network?: boolean; hostname?: boolean; keep?: boolean; keepKeys?: boolean } = {},
): Promise<string> {
  const keep = { envs: opts.keep === true, keys: opts.keep === true || opts.keepKeys === true };
  await agent.configure(guestConfigOf(id, opts.network ?? true, opts.hostname ?? true, keep));
  return identityDigest(id);
}

/**
 * applyIdentity on a VM, keeping its digests (identityDigest, keysDigest)
 * up to date. Its SSH keys are not sent when its guest has them already
 * (`keep`, or its keysDigest): after a restore, checking authorized_keys is
 * the guest's first look at its disk through overlayfs, ~20 ms under TCG
 * (a new QEMU translates it).
 */
export async function identifyVm(
  vm: Pick<SnapVm, "agent" | "identityDigest" | "keysDigest">,
  id: GuestIdentity,
  opts: { network?: boolean; hostname?: boolean; keep?: boolean } = {},
): Promise<void> {
  const keys = keysDigest(id.sshPubkeys);
  // Known only for a guest whose keys nothing else has touched (SnapVm.keysDigest).
  const known = vm.keysDigest !== undefined;
  const keepKeys = vm.keysDigest === keys;
  // Unknown while the guest applies it (a failed CONFIGURE may have written part).
  delete vm.identityDigest;
  delete vm.keysDigest;
  vm.identityDigest = await applyIdentity(vm.agent!, id, { ...opts, keepKeys });
  if (known) vm.keysDigest = keys;
}

/**
 * Runs `true` in the guest once. Under TCG a new QEMU process translates
 * every code path afresh, and exec's fork/execve path is ~150–300 ms the
 * first time; run here, the user's first exec does not pay it. A warm pool
 * VM awaits it before it is ready; a resumed or restored VM runs it in the
 * background. Never fails.
 */
export async function rehearseExec(vm: Pick<SnapVm, "agent">): Promise<void> {
  await vm.agent?.exec({ cmd: "true", args: [] }, { onStdout: () => {}, onStderr: () => {} }).catch(() => {});
}
