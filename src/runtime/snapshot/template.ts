/**
 * Template snapshots: boot a VM once with its RAM in a file, snapshot it
 * when the agent answers, and restore clones from it without copying RAM.
 *
 * Build (QMP): `stop` → `migrate-set-capabilities x-ignore-shared` →
 * `migrate exec:cat > state` → `quit`. RAM is already in `mem` (share=on),
 * so the stream holds only device and CPU state.
 * Restore: a qcow2 overlay on the template's disk, QEMU with the same
 * layout, RAM `share=off` on `mem` (copy-on-write: clones share the pages
 * they do not write), `-incoming defer`, the same capability,
 * `migrate-incoming exec:cat state`; the guest runs when loading completes.
 */
import { randomBytes } from "node:crypto";
import { chmod, mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { ulid } from "ulid";
import { AgentClient } from "../agent/agent-client.js";
import type { MachineSpec } from "../runtime.js";
import { writeVmMeta } from "../qemu/vm-meta.js";
import type { VmPaths } from "../qemu/vm-paths.js";
import { isVmmOf, killAndWait, readPidfile } from "../qemu/vm-process.js";
import { createOverlay } from "./disk-chain.js";
import { identifyVm, TEMPLATE_KEYS_DIGEST } from "./guest-identity.js";
import { loadState, saveState } from "./migration.js";
import { PhaseTimer } from "./phase-timer.js";
import { snapPaths, templateKey, templatePaths, templatesDir, type TemplatePaths } from "./snapshot-paths.js";
import { launchVm, stopVm, withTail, type SnapVm, type SnapshotDeps } from "./snapshot-vm.js";
import { templateInputs } from "./template-inputs.js";

/** MAC of the template VM; every clone replaces it (see applyIdentity). */
export const TEMPLATE_MAC = "02:fc:00:00:00:01";

/** meta.json of a template. */
export interface TemplateMeta {
  key: string;
  rootfs: string;
  vcpu: number;
  memMib: number;
  diskMib: number;
  accel: string;
  createdAt: string;
  /** Boot to agent HELLO, snapshot, total (ms). */
  bootMs: number;
  snapshotMs: number;
}

/** A built template. */
export interface Template {
  paths: TemplatePaths;
  meta: TemplateMeta;
}

export interface TemplateSpec {
  rootfs: string;
  vcpu: number;
  memMib: number;
  diskMib: number;
}

/**
 * Boots `spec` and turns it into a template in `<dataDir>/templates/<key>/`
 * (replacing none: if it exists it is returned as is). Built in a temp dir
 * renamed into place when complete, so a crash leaves either no template or
 * a whole one; leftovers of an interrupted build are removed first.
 * The guest gets no identity (no CONFIGURE): clones get theirs.
 */
/**
 * Builds the template of `spec` (or returns the one already built). Aborting
 * `signal` (server shutdown) stops the build VM and removes its directory:
 * a build never outlives the server that started it.
 */
export async function buildTemplate(d: SnapshotDeps, spec: TemplateSpec, bootTimeoutMs = 120_000, signal?: AbortSignal): Promise<Template> {
  const key = templateKey(spec.rootfs, spec.vcpu, spec.memMib, spec.diskMib, templateInputs(d, spec.rootfs));
  const finalDir = path.join(templatesDir(d.dataDir), key);
  const existing = await loadTemplate(finalDir);
  if (existing) return existing;
  await mkdir(templatesDir(d.dataDir), { recursive: true, mode: 0o700 });
  await removeStaleBuilds(d, key);
  const tmpDir = path.join(templatesDir(d.dataDir), `.${key}.tmp-${randomBytes(4).toString("hex")}`);
  const tp = templatePaths(tmpDir);
  const paths = buildVmPaths(tmpDir);
  await mkdir(tmpDir, { mode: 0o700 });
  // A sandbox-shaped id: the tap helpers only accept those.
  const id = `sb_${ulid()}`;
  let vm: SnapVm | undefined;
  let tap: string | undefined;
  try {
    await d.images.createDisk(tp.disk, spec.diskMib);
    // Without hutch-jailer (which makes it at launch), the tap is made here.
    if (!d.jail?.makesTaps) tap = await d.network.createTap(id);
    const t0 = Date.now();
    vm = await launchVm(d, {
      id, paths, tap, mac: TEMPLATE_MAC, vcpu: spec.vcpu, memMib: spec.memMib, rootfs: spec.rootfs,
      ram: { file: tp.mem, share: true }, disk: { file: tp.disk, format: "raw" }, incoming: false,
    });
    signal?.throwIfAborted();
    vm.agent = await AgentClient.connect(paths.agent, { timeoutMs: bootTimeoutMs, ...(signal ? { signal } : {}) });
    const bootMs = Date.now() - t0;
    // Let the guest settle (udev-like module loads, first writes) before freezing it.
    await vm.agent.ping(10_000);
    signal?.throwIfAborted();
    const t1 = Date.now();
    await vm.qmp.execute("stop");
    // The agent connection stays open through the snapshot: clones start
    // with the agent in a session, polling its port, and answer the new
    // host's HELLO at once (an agent that saw its host leave waits 100 ms).
    await saveState(vm.qmp, tp.state, true);
    const snapshotMs = Date.now() - t1;
    await stopVm(vm);
    const meta: TemplateMeta = {
      key, ...spec, accel: d.accel, createdAt: new Date().toISOString(), bootMs, snapshotMs,
    };
    await writeFile(tp.meta, JSON.stringify(meta, null, 2) + "\n", { mode: 0o400 });
    // Frozen from now on: clones map `mem` privately and read `disk` through
    // their overlays; a change to either would show up inside running clones.
    // (Root ignores the mode; it documents intent and stops other users.)
    for (const f of [tp.mem, tp.state, tp.disk]) await chmod(f, 0o400);
    // Sockets and logs of the build VM are not part of the template.
    for (const f of [paths.qmp, paths.agent, paths.pidfile]) await rm(f, { force: true });
    await rename(tmpDir, finalDir);
    d.log?.info({ key, bootMs, snapshotMs }, "template built");
    return { paths: templatePaths(finalDir), meta };
  } catch (err) {
    const e = vm ? await withTail(paths, `template ${key}: ${(err as Error).message}`, err) : err;
    if (vm) await stopVm(vm, 500).catch(() => {});
    await rm(tmpDir, { recursive: true, force: true });
    throw e;
  } finally {
    const t = tap ?? vm?.tap;
    if (t) await d.network.deleteTap(t).catch(() => {});
  }
}

/** The template in `dir`, or undefined if it is not a complete one. */
export async function loadTemplate(dir: string): Promise<Template | undefined> {
  const paths = templatePaths(dir);
  try {
    const meta = JSON.parse(await readFile(paths.meta, "utf8")) as TemplateMeta;
    for (const f of [paths.mem, paths.state, paths.disk]) await stat(f);
    return { paths, meta };
  } catch {
    return undefined;
  }
}

/** Sockets and logs of the template build VM, in its temp dir. */
function buildVmPaths(dir: string): VmPaths {
  const j = (f: string) => path.join(dir, f);
  return {
    dir, qmp: j("qmp.sock"), agent: j("agent.sock"), console: j("console.log"), consoleOld: j("console.log.1"),
    qemuLog: j("qemu.log"), pidfile: j("qemu.pid"), disk: j("disk"), meta: j("vm.json"),
  };
}

/** Kills the QEMU and removes the temp dir of interrupted builds of `key`. */
async function removeStaleBuilds(d: SnapshotDeps, key: string): Promise<void> {
  const dir = templatesDir(d.dataDir);
  for (const name of await readdir(dir)) {
    if (!name.startsWith(`.${key}.tmp-`)) continue;
    const full = path.join(dir, name);
    const pid = await readPidfile(path.join(full, "qemu.pid"));
    if (pid !== undefined && (await isVmmOf(pid, full))) await killAndWait(pid, 500);
    await rm(full, { recursive: true, force: true });
    d.log?.info({ dir: full }, "removed interrupted template build");
  }
}

/** Timings of one restore (ms from the start of the call). */
export interface RestoreTimings {
  /** Directory, overlay and tap made. */
  prepMs: number;
  /** QEMU up, QMP negotiated. */
  qmpMs: number;
  /** State loaded, guest running. */
  loadedMs: number;
  /** Agent answered HELLO. */
  agentMs: number;
  /** Identity applied (MAC + CONFIGURE): the sandbox is usable. */
  readyMs: number;
  /** Each step's own duration (PhaseTimer), for the debug log and benches. */
  phases: Record<string, number>;
}

/**
 * Restores a clone of `tpl` as sandbox `spec.id` in `<dataDir>/sandboxes/<id>/`
 * with a qcow2 overlay on the template's disk and the identity of `spec`.
 * On failure everything made is removed. `spec`'s shape must be the template's.
 */
export async function restoreFromTemplate(
  d: SnapshotDeps,
  tpl: Template,
  spec: MachineSpec,
  timeoutMs = 30_000,
): Promise<{ vm: SnapVm; timings: RestoreTimings }> {
  const m = tpl.meta;
  if (spec.rootfs !== m.rootfs || spec.vcpu !== m.vcpu || spec.memMib !== m.memMib) {
    throw new Error(`spec ${spec.rootfs}/${spec.vcpu}c/${spec.memMib}m does not match template ${m.key}`);
  }
  const t0 = Date.now();
  const timer = new PhaseTimer();
  const paths = snapPaths(d.dataDir, spec.id);
  let vm: SnapVm | undefined;
  let tap: string | undefined;
  try {
    await mkdir(path.dirname(paths.dir), { recursive: true, mode: 0o700 });
    // A spare QEMU claimed under this id waits in it already (spare-pool.ts).
    if (!d.spares?.has(spec.id)) await mkdir(paths.dir, { mode: 0o700 });
    // Independent host steps, each a process spawn: run them together.
    // With hutch-jailer there is no tap to make here: it makes it at launch.
    const [ov, tp] = await Promise.allSettled([
      createOverlay(paths.overlay, tpl.paths.disk, "raw"),
      d.jail?.makesTaps ? undefined : d.network.createTap(spec.id),
    ]);
    if (tp.status === "fulfilled") tap = tp.value;
    if (ov.status === "rejected") throw ov.reason;
    if (tp.status === "rejected") throw tp.reason;
    const prepMs = Date.now() - t0;
    timer.lap("overlay+tap");
    // meta.json names the tap for cleanup after a crash: a tap QEMU holds goes with it, so its name is written once known.
    const meta = (t: string) => writeVmMeta(paths.meta, { id: spec.id, tap: t, vcpu: spec.vcpu, memMib: spec.memMib, rootfs: spec.rootfs, createdAt: new Date().toISOString() });
    if (tap) await meta(tap);
    timer.lap("meta");
    vm = await launchVm(d, {
      id: spec.id, paths, tap, mac: spec.net.mac, vcpu: m.vcpu, memMib: m.memMib, rootfs: m.rootfs,
      ram: { file: tpl.paths.mem, share: false }, disk: { file: paths.overlay, format: "qcow2" }, incoming: true, template: m.key, timer, incomingFrom: tpl.paths.state,
      spare: true,
    });
    if (!tap) await meta(vm.tap);
    const qmpMs = Date.now() - t0;
    // Dial the agent while the state loads: HELLO waits in the socket.
    const agent = AgentClient.connect(paths.agent, { timeoutMs });
    agent.catch(() => {});
    await loadState(vm.qmp, tpl.paths.state, true, timeoutMs, vm.incomingUri);
    timer.lap("load");
    await ensureRunning(vm);
    timer.lap("run");
    const loadedMs = Date.now() - t0;
    vm.agent = await agent;
    timer.lap("hello");
    const agentMs = Date.now() - t0;
    vm.keysDigest = TEMPLATE_KEYS_DIGEST;
    await identifyVm(vm, spec);
    timer.lap("configure");
    const readyMs = Date.now() - t0;
    return { vm, timings: { prepMs, qmpMs, loadedMs, agentMs, readyMs, phases: timer.phases } };
  } catch (err) {
    const e = await withTail(paths, `restore of ${spec.id} from ${m.key}: ${(err as Error).message}`, err);
    if (vm) await stopVm(vm, 500).catch(() => {});
    const t = tap ?? vm?.tap;
    if (t) await d.network.deleteTap(t).catch(() => {});
    await rm(paths.dir, { recursive: true, force: true });
    throw e;
  }
}

/**
 * After an incoming migration QEMU starts the guest by itself (no -S); make
 * sure, and `cont` if it stayed paused.
 */
export async function ensureRunning(vm: SnapVm): Promise<void> {
  const st = await vm.qmp.execute<{ status: string; running: boolean }>("query-status");
  if (!st.running) await vm.qmp.execute("cont");
}
