/**
 * Pause a running VM to files (QEMU gone) and resume it.
 *
 * Pause: `stop` → `migrate exec:cat > state.tmp` → rename → bundle.json →
 * `quit`. What the stream holds depends on the VM's RAM:
 * - share=on file of its own (`mem`): device state only (x-ignore-shared) —
 *   the file is the RAM; tens of ms and ~100 KB.
 * - private mapping (a template clone, a fork) or anonymous RAM: all RAM
 *   (zero pages cost a few bytes each). A clone's written pages live only in
 *   its QEMU process (MAP_PRIVATE copies), so they must be streamed out.
 * Resume: QEMU with the same layout, `-S -incoming defer`, same capability,
 * `migrate-incoming exec:cat state`, `cont`, agent HELLO, CONFIGURE (clock,
 * RNG seed). A "stream" bundle of a file-backed VM is loaded into a fresh
 * `mem` mapped share=on, so every later pause of it writes device state only.
 */
import { open, rename, rm, stat, unlink } from "node:fs/promises";
import path from "node:path";
import { AgentClient } from "../agent/agent-client.js";
import { readVmMeta, writeVmMeta } from "../qemu/vm-meta.js";
import { identifyVm, identityDigest, type GuestIdentity } from "./guest-identity.js";
import { loadState, saveState } from "./migration.js";
import { PhaseTimer } from "./phase-timer.js";
import { readBundle, writeBundle, BUNDLE_VERSION, type BundleMem, type PausedBundle } from "./paused-bundle.js";
import { ramBlockOf, type RamBacking } from "./snapshot-args.js";
import { snapPaths } from "./snapshot-paths.js";
import { launchVm, stopVm, withTail, type SnapVm, type SnapshotDeps } from "./snapshot-vm.js";

export interface PauseResult {
  bundle: PausedBundle;
  /** `stop` to QEMU gone (ms). */
  pauseMs: number;
  /** Each step's own duration (PhaseTimer). */
  phases: Record<string, number>;
}

/**
 * Pauses `vm` (attached, running) into its directory and ends its QEMU
 * process. The tap is gone too (one made by hutch-jailer went with QEMU,
 * else it is deleted; `resumeFromDisk` makes it again), so a
 * paused sandbox holds no host resource but files. If the stream fails, the
 * guest is `cont`inued and the error thrown: the VM stays running.
 */
export async function pauseToDisk(d: SnapshotDeps, vm: SnapVm): Promise<PauseResult> {
  const p = snapPaths(d.dataDir, vm.id);
  const t0 = Date.now();
  const timer = new PhaseTimer();
  const mem: BundleMem = vm.ram.file === undefined || !vm.ram.share ? "stream" : "owned";
  if (mem === "owned" && vm.ram.file !== p.mem) throw new Error(`VM ${vm.id} maps ${vm.ram.file} shared: only its own ${p.mem} may be`);
  await vm.qmp.execute("stop");
  timer.lap("stop");
  const tmp = `${p.state}.tmp`;
  try {
    await saveState(vm.qmp, tmp, mem === "owned");
  } catch (err) {
    await rm(tmp, { force: true });
    await vm.qmp.execute("cont").catch(() => {});
    throw await withTail(p, `pause of ${vm.id}: ${(err as Error).message}`, err);
  }
  // Up to bundle.json nothing is paused yet: a failure (the disk filling
  // up) removes what was written and the guest runs on, as after a failed stream.
  const undo = async (err: unknown): Promise<never> => {
    await rm(tmp, { force: true });
    await rm(p.state, { force: true });
    await rm(p.bundle, { force: true });
    await rm(`${p.bundle}.tmp`, { force: true });
    await vm.qmp.execute("cont").catch(() => {});
    throw await withTail(p, `pause of ${vm.id}: ${(err as Error).message}`, err);
  };
  await rename(tmp, p.state).catch(undo);
  timer.lap("save");
  const bundle: PausedBundle = {
    version: BUNDLE_VERSION,
    id: vm.id,
    vcpu: vm.vcpu,
    memMib: vm.memMib,
    rootfs: vm.rootfs,
    mem,
    ramBlock: ramBlockOf(vm.ram),
    disk: { file: path.relative(p.dir, vm.disk.file), format: vm.disk.format },
    ...(vm.template ? { template: vm.template } : {}),
    ...(vm.identityDigest ? { identityDigest: vm.identityDigest } : {}),
    pausedAt: new Date().toISOString(),
    stateBytes: (await stat(p.state).catch(undo)).size,
  };
  // bundle.json before quit: from here a crash leaves a complete pause (the
  // guest is stopped, nothing changes `mem`), and a QEMU found alive next to
  // a bundle is simply killed.
  await writeBundle(p.bundle, bundle).catch(undo);
  timer.lap("bundle");
  await stopVm(vm);
  timer.lap("quit");
  // A private mapping of a fork's frozen RAM is no longer needed: it is all in the stream.
  if (mem === "stream") await rm(p.memBase, { force: true });
  await d.network.deleteTap(vm.tap).catch(() => {});
  timer.lap("tap");
  return { bundle, pauseMs: Date.now() - t0, phases: timer.phases };
}

/** A fresh sparse RAM file of `memMib` at `file` (any old one removed): a stream loaded into it fills in the non-zero pages. */
export async function freshRamFile(file: string, memMib: number): Promise<void> {
  await rm(file, { force: true });
  const fh = await open(file, "wx", 0o600);
  await fh.truncate(memMib * 1048576).finally(() => fh.close());
}

export interface ResumeTimings {
  qmpMs: number;
  loadedMs: number;
  agentMs: number;
  /** Identity re-applied (clock, RNG seed; MAC when asked): usable. */
  readyMs: number;
  /** Each step's own duration (PhaseTimer), for the debug log and benches. */
  phases: Record<string, number>;
}

export interface ResumeOptions {
  /**
   * Where a "stream" bundle's RAM goes: "file" (default) a fresh `mem`
   * mapped share=on, so later pauses write device state only; "ram"
   * anonymous memory (faster to load, later pauses stream all RAM again).
   */
  streamInto?: "file" | "ram";
  timeoutMs?: number;
}

/**
 * Resumes the paused VM `id` from its bundle, with `identity` re-applied
 * (the wall clock jumped while paused; the RNG gets a fresh seed). The
 * bundle is consumed (bundle.json removed) just before the guest runs: from
 * then on `mem` may change, so a crash afterwards must treat the VM as
 * running, not paused. On failure before that point the bundle is intact
 * and the resume may be retried.
 */
export async function resumeFromDisk(
  d: SnapshotDeps,
  id: string,
  identity: GuestIdentity,
  opts: ResumeOptions = {},
): Promise<{ vm: SnapVm; timings: ResumeTimings }> {
  const p = snapPaths(d.dataDir, id);
  const b = await readBundle(p.bundle);
  if (!b) throw new Error(`VM ${id} has no paused bundle`);
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const t0 = Date.now();
  const timer = new PhaseTimer();
  // RAM of the block the stream names ("legacy": a cold-booted VM's, in a file too).
  const block = b.ramBlock;
  let ram: RamBacking;
  if (b.mem === "owned") ram = { file: p.mem, share: true, block };
  else if (b.mem === "base") ram = { file: p.memBase, share: false, block };
  else if (opts.streamInto === "ram") ram = { anon: block === "legacy" ? "legacy" : "object" };
  else {
    await freshRamFile(p.mem, b.memMib);
    ram = { file: p.mem, share: true, block };
  }
  let vm: SnapVm | undefined;
  let consumed = false;
  timer.lap("bundle");
  // hutch-jailer makes the tap at launch; without it, made here.
  const tap = d.jail?.makesTaps ? undefined : await d.network.createTap(id);
  timer.lap("tap");
  try {
    // meta.json names the tap for QemuRuntime's cleanup (a fork's child has none yet);
    // a tap QEMU holds goes with it: its name is written once known.
    const meta = await readVmMeta(p.meta);
    const writeMeta = (t: string) => writeVmMeta(p.meta, { id, vcpu: b.vcpu, memMib: b.memMib, rootfs: b.rootfs, createdAt: meta?.createdAt ?? b.pausedAt, tap: t });
    if (tap) await writeMeta(tap);
    timer.lap("meta");
    vm = await launchVm(d, {
      id, paths: p, tap, mac: identity.net.mac, vcpu: b.vcpu, memMib: b.memMib, rootfs: b.rootfs, ram,
      disk: { file: path.join(p.dir, b.disk.file), format: b.disk.format }, incoming: true, paused: true,
      ...(b.template ? { template: b.template } : {}), timer, incomingFrom: p.state, spare: true,
    });
    if (!tap) await writeMeta(vm.tap);
    const qmpMs = Date.now() - t0;
    const agent = AgentClient.connect(p.agent, { timeoutMs });
    agent.catch(() => {});
    await loadState(vm.qmp, p.state, b.mem !== "stream", timeoutMs, vm.incomingUri);
    timer.lap("load");
    await unlink(p.bundle);
    consumed = true;
    await vm.qmp.execute("cont");
    timer.lap("cont");
    const loadedMs = Date.now() - t0;
    vm.agent = await agent;
    timer.lap("hello");
    const agentMs = Date.now() - t0;
    // The guest keeps its network settings and hostname across its own
    // pause (a sandbox's name never changes); a fork child still has its
    // parent's until this first resume.
    const other = (b.guestIdentity ?? b.id) !== id;
    // Envs and keys too, unless they are what the guest got before it
    // paused (keys added meanwhile, a fork's overrides: they differ).
    const keep = !other && b.identityDigest !== undefined && b.identityDigest === identityDigest(identity);
    await identifyVm(vm, identity, { network: other, hostname: other, keep });
    timer.lap("configure");
    // The stream was loaded into `mem`: it is stale now, and big.
    if (b.mem === "stream") await rm(p.state, { force: true });
    timer.lap("cleanup");
    return { vm, timings: { qmpMs, loadedMs, agentMs, readyMs: Date.now() - t0, phases: timer.phases } };
  } catch (err) {
    const e = await withTail(p, `resume of ${id}: ${(err as Error).message}`, err);
    if (vm && consumed && !vm.exited) {
      // The guest ran (and wrote `mem`): the old bundle is stale. Pause it
      // again so a retry finds a consistent one.
      vm.agent?.close();
      if (await pauseToDisk(d, vm).then(() => true, () => false)) throw e;
    }
    if (vm) await stopVm(vm, 500).catch(() => {});
    // Files untouched by the guest: the bundle is still valid, put it back.
    if (consumed && b.mem !== "owned") await writeBundle(p.bundle, b).catch(() => {});
    const t = tap ?? vm?.tap;
    if (t) await d.network.deleteTap(t).catch(() => {});
    throw e;
  }
}
