/**
 * Turns a paused VM's "stream" bundle (all its RAM inside `state`) into an
 * "owned" one (RAM in `mem`, `state` holding device state only) without
 * running the guest. A QEMU loads the stream into a fresh `mem` mapped
 * share=on, saves device state only, and quits. It has the VM's tap, as a
 * resume would (virtio-net's state needs a tap's vnet_hdr), but the guest
 * never runs, so nothing goes through it.
 *
 * A clone's or a cold-booted VM's first pause has to stream its RAM, and its
 * first resume would load that stream into a fresh file (0.8–1.6 s under
 * TCG). Done here, in the background after the pause, the first resume maps
 * `mem` like any later one, and a fork links `mem` as its base instead of
 * handing the stream (and that slow load) to the child.
 *
 * Files, in this order, so a crash anywhere leaves one valid bundle
 * (`finishOwning` settles what is left):
 * 1. QEMU fills `mem.owning` and writes `state.owned`;
 * 2. `mem.owning` → `mem` (unused by a stream bundle);
 * 3. bundle.json says "owned": the commit;
 * 4. `state.owned` → `state` (the stream goes).
 * Before 3 the stream bundle holds and the new files are leftovers; after 3
 * a `state.owned` still there is the state the bundle means.
 */
import { rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import { killAndWait } from "../qemu/vm-process.js";
import { loadState, saveState } from "./migration.js";
import { freshRamFile } from "./pause.js";
import { readBundle, writeBundle, type PausedBundle } from "./paused-bundle.js";
import { PhaseTimer } from "./phase-timer.js";
import { snapPaths } from "./snapshot-paths.js";
import { launchVm, stopVm, withTail, type SnapshotDeps, type SnapVm } from "./snapshot-vm.js";

/** Any valid MAC: the NIC's own comes from the stream, and the guest never runs to send. */
const OWNING_MAC = "02:00:00:00:00:00";

export interface OwnRamResult {
  ms: number;
  /** Size of the stream it replaced, and of the device state now. */
  streamBytes: number;
  stateBytes: number;
  phases: Record<string, number>;
}

/**
 * Makes paused VM `id`'s "stream" bundle "owned". Undefined when there is
 * nothing to do (not paused, or not a stream). Aborting `signal` kills the
 * QEMU and leaves the stream bundle as it was; the caller holds off resume,
 * fork and destroy of `id` until this settles. `onLoaded`: the stream is in
 * `mem.owning`; what is left (device state, quit, renames) takes ~100 ms.
 */
export async function ownStreamRam(
  d: SnapshotDeps,
  id: string,
  signal: AbortSignal,
  opts: { timeoutMs?: number; onLoaded?: () => void } = {},
): Promise<OwnRamResult | undefined> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const p = snapPaths(d.dataDir, id);
  const b = await readBundle(p.bundle);
  if (!b || b.mem !== "stream") return undefined;
  const t0 = Date.now();
  const timer = new PhaseTimer();
  const clean = () => Promise.all([rm(p.memOwning, { force: true }), rm(p.stateOwned, { force: true })]);
  await clean();
  let vm: SnapVm | undefined;
  let tap: string | undefined;
  const onAbort = () => {
    if (vm) void killAndWait(vm.pid, 0).catch(() => {});
  };
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    await freshRamFile(p.memOwning, b.memMib);
    signal.throwIfAborted();
    // hutch-jailer makes the tap at launch (it goes with QEMU); without it, made here.
    if (!d.jail?.makesTaps) tap = await d.network.createTap(id);
    vm = await launchVm(d, {
      id, paths: p, tap, mac: OWNING_MAC, vcpu: b.vcpu, memMib: b.memMib, rootfs: b.rootfs,
      ram: { file: p.memOwning, share: true, block: b.ramBlock },
      disk: { file: path.join(p.dir, b.disk.file), format: b.disk.format }, incoming: true, paused: true,
      ...(b.template ? { template: b.template } : {}), timer, incomingFrom: p.state, signal,
    });
    signal.throwIfAborted();
    await loadState(vm.qmp, p.state, false, timeoutMs, vm.incomingUri);
    timer.lap("load");
    signal.throwIfAborted();
    opts.onLoaded?.();
    await saveState(vm.qmp, p.stateOwned, true, timeoutMs);
    timer.lap("save");
    signal.throwIfAborted();
    await stopVm(vm);
    await vm.released;
    timer.lap("quit");
    signal.throwIfAborted();
  } catch (err) {
    if (vm) {
      await killAndWait(vm.pid, 0).catch(() => {});
      vm.qmp.close();
      await vm.released;
    }
    await clean();
    if (signal.aborted) throw signal.reason;
    throw await withTail(p, `owning the RAM of ${id}: ${(err as Error).message}`, err);
  } finally {
    signal.removeEventListener("abort", onAbort);
    if (tap) await d.network.deleteTap(tap).catch(() => {});
  }
  // No abort from here: these are renames, and resume waits for them.
  await rename(p.memOwning, p.mem);
  const owned: PausedBundle = { ...b, mem: "owned", stateBytes: (await stat(p.stateOwned)).size };
  await writeBundle(p.bundle, owned);
  await rename(p.stateOwned, p.state);
  timer.lap("commit");
  return { ms: Date.now() - t0, streamBytes: b.stateBytes, stateBytes: owned.stateBytes, phases: timer.phases };
}

/**
 * After a crash: finishes or undoes an `ownStreamRam` of the paused VM whose
 * bundle is `b` (its QEMU already gone). Committed ("owned"): a `state.owned`
 * still there replaces the stream. Not committed: the new files go.
 */
export async function finishOwning(dataDir: string, id: string, b: PausedBundle): Promise<void> {
  const p = snapPaths(dataDir, id);
  if (b.mem === "owned") {
    await rename(p.stateOwned, p.state).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== "ENOENT") throw err;
    });
  } else {
    await rm(p.stateOwned, { force: true });
  }
  await rm(p.memOwning, { force: true });
  // A stream bundle never uses `mem`: one there is step 2 of an unfinished owning.
  if (b.mem === "stream") await rm(p.mem, { force: true });
}
