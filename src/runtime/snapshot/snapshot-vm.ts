/**
 * Starting and stopping the QEMU process of a snapshot-capable VM. Shared by
 * template build, restore, resume: spawn inside Hutch's network namespace,
 * connect QMP, watch the process.
 */
import { existsSync } from "node:fs";
import { rm } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { AgentClient } from "../agent/agent-client.js";
import type { Accel } from "../host-info.js";
import type { ImageStore } from "../images/image-store.js";
import type { HostNetwork } from "../network/host-network.js";
import { QmpClient } from "../qemu/qmp-client.js";
import type { RuntimeLogger } from "../qemu/runtime-logger.js";
import type { VmPaths } from "../qemu/vm-paths.js";
import { consoleTail, killAndWait, waitGone } from "../qemu/vm-process.js";
import type { PhaseTimer } from "./phase-timer.js";
import { streamMachine } from "./migration.js";
import { buildSnapshotArgs, buildSpareArgs, LEGACY_RAM_BACKEND_ID, RAM_BACKEND_ID, ramBlockOf, SPARE_DISK_NODE, type RamBacking } from "./snapshot-args.js";
import { MACHINE } from "../qemu/qemu-args.js";
import { templatePaths, templatesDir } from "./snapshot-paths.js";
import { jailSpecFor, type JailLease, type VmmJail } from "../qemu/vmm-jail.js";
import { launchDetached, type VmmChild, type VmmSpawner } from "../qemu/vmm-spawner.js";

/** What the snapshot functions need from the host (the same things QemuRuntime has). */
export interface SnapshotDeps {
  dataDir: string;
  images: ImageStore;
  network: HostNetwork;
  accel: Accel;
  /** Default "qemu-system-x86_64". */
  binary?: string;
  log?: RuntimeLogger;
  /** Runs each QEMU jailed (own uid, chroot, rlimits, cgroup); unjailed without it. */
  jail?: VmmJail;
  /** Starts QEMU; the server forks it without one. */
  spawner?: VmmSpawner;
  /** QEMUs started ahead for VM ids (spare-pool.ts): `launchVm` adopts the one of its id. */
  spares?: SpareSource;
}

/** A running snapshot-capable VM, attached. */
export interface SnapVm {
  id: string;
  pid: number;
  paths: VmPaths;
  tap: string;
  vcpu: number;
  memMib: number;
  rootfs: string;
  /** How its RAM is mapped: decides what a pause must write. */
  ram: RamBacking;
  /** The writable disk QEMU has open. */
  disk: { file: string; format: "raw" | "qcow2" };
  /** Template key it descends from, if any. */
  template?: string;
  qmp: QmpClient;
  /** Set once the agent answered. */
  agent?: AgentClient;
  /** identityDigest of the envs and keys its guest got last (undefined: unknown). */
  identityDigest?: string;
  /**
   * keysDigest of the SSH keys its guest has, known only while none of the
   * user's code has run in it (a clone of a template, a warm pool VM):
   * nothing then can have changed authorized_keys behind the digest.
   */
  keysDigest?: string;
  child: VmmChild;
  /** Set when the process exited (why). */
  exited?: string;
  /**
   * Settles once its jail (cgroups, record) is released after QEMU's exit;
   * undefined without a jail. A server about to exit waits for it.
   */
  released?: Promise<void>;
  /** `migrate-incoming` URI of the state it was started with (`LaunchInput.incomingFrom`). */
  incomingUri?: string;
  /**
   * The background `rehearseExec` after a resume or restore. A pause waits
   * for it: cut off, the guest would finish it in the next resume's new
   * QEMU, translating it again while that resume waits for HELLO.
   */
  rehearsal?: Promise<void>;
}

export interface LaunchInput {
  id: string;
  paths: VmPaths;
  /**
   * The tap made by `HostNetwork.createTap`; undefined: the jail's
   * hutch-jailer makes it (`VmmJail.makesTaps`) and QEMU inherits it as an
   * fd (SnapVm.tap is then read back from the process).
   */
  tap?: string | undefined;
  mac: string;
  vcpu: number;
  memMib: number;
  rootfs: string;
  ram: RamBacking;
  disk: { file: string; format: "raw" | "qcow2" };
  incoming: boolean;
  /** `-S` (see SnapshotArgsInput.paused). */
  paused?: boolean;
  template?: string;
  /** Laps "jail" (its setup), "spawn" (until QMP's socket exists), "qmp" (negotiated). */
  timer?: PhaseTimer;
  /**
   * The state file to load (with `incoming`): QEMU inherits it open as fd 3
   * and loads it from `fd:3` (SnapVm.incomingUri). Saves the `exec:cat`
   * process QEMU would fork (tens of ms, more in a jail), and needs no
   * access to the file from inside the jail.
   */
  incomingFrom?: string;
  /**
   * A spare QEMU claimed for `id` (SnapshotDeps.spares) may serve this
   * launch (a resume or restore: with `incomingFrom`). It has `-S`: the
   * caller `cont`s after the load.
   */
  spare?: boolean;
  /** Aborting it kills the QEMU still starting and rejects (an owning a resume stops). */
  signal?: AbortSignal;
}

/**
 * Starts QEMU for `i` (detached, in the netns) and connects QMP: a spare
 * QEMU made ahead for `i.id` (SnapshotDeps.spares) when there is one that
 * fits, else a new process. On failure the process is killed and the error
 * carries the console/QEMU log tail.
 */
export async function launchVm(d: SnapshotDeps, i: LaunchInput, timeoutMs = 10_000): Promise<SnapVm> {
  const spare = i.spare ? d.spares?.take(i.id) : undefined;
  if (spare) {
    const fit = await spareMisfit(d, spare, i);
    if (fit === undefined) {
      try {
        return await adoptSpare(d, spare, i);
      } catch (err) {
        d.log?.warn({ id: i.id, err }, "spare QEMU not adopted: starting a new one");
      }
    } else d.log?.info({ id: i.id, why: fit }, "spare QEMU does not fit this launch: starting a new one");
    await stopVm(spare, 500).catch(() => {});
    await spare.released;
  }
  if (i.tap === undefined && !d.jail?.makesTaps) throw new Error(`VM ${i.id} has no tap and no jailer to make one`);
  // A stream loads only into the machine layout it was saved from (an older version's, maybe).
  const machine = i.incomingFrom !== undefined ? await streamMachine(i.incomingFrom) : undefined;
  const binary = d.binary ?? "qemu-system-x86_64";
  const shared = sharedDirs(d, i);
  return spawnVm(d, {
    ...i, binary, shared,
    ...(i.ram.file !== undefined && !i.ram.share ? { roRam: [i.ram.file] } : {}),
    args: (tap) => buildSnapshotArgs({
      id: i.id, accel: d.accel, vcpu: i.vcpu, memMib: i.memMib, paths: i.paths, kernel: d.images.kernel(),
      rootfsPath: d.images.rootfs(i.rootfs).path, tap, mac: i.mac, ram: i.ram, disk: i.disk, incoming: i.incoming,
      paused: i.paused ?? false, ...(machine !== undefined ? { machine } : {}),
    }),
  }, timeoutMs);
}

/** What spawnVm needs: the launch's files and shape, and how to build QEMU's argv. */
interface SpawnInput extends Pick<LaunchInput, "id" | "paths" | "tap" | "vcpu" | "memMib" | "rootfs" | "ram" | "disk" | "template" | "timer" | "incomingFrom" | "signal"> {
  binary: string;
  /** Directories bound into the jail read-only (see JailSpec.shared). */
  shared: string[];
  /** See JailSpec.roRam. */
  roRam?: string[];
  /** QEMU's argv (without the binary), given its tap: a name, or the fd the jailer hands it. */
  args(tap: string | { fd: number }): string[];
}

/** Jail, spawn, QMP: the part of a launch a spare QEMU does ahead of time. */
async function spawnVm(d: SnapshotDeps, i: SpawnInput, timeoutMs: number): Promise<SnapVm> {
  if (i.tap === undefined && !d.jail?.makesTaps) throw new Error(`VM ${i.id} has no tap and no jailer to make one`);
  // Stale sockets of a previous run of this VM would only refuse connections;
  // without them, the new ones appearing is the signal that QEMU listens.
  await Promise.all([rm(i.paths.qmp, { force: true }), rm(i.paths.agent, { force: true })]);
  const jail = d.jail ? await d.jail.prepare(jailSpecFor({
    id: i.id, dir: i.paths.dir, vcpu: i.vcpu, memMib: i.memMib, accel: d.accel, kernel: d.images.kernel(),
    rootfsPath: d.images.rootfs(i.rootfs).path, binary: i.binary, shared: i.shared,
    ...(i.roRam !== undefined ? { roRam: i.roRam } : {}),
    ...(i.tap === undefined ? { tap: d.network.tapSpec(i.id) } : {}),
  })) : undefined;
  i.timer?.lap("jail");
  if (i.signal?.aborted) {
    await jail?.release();
    throw i.signal.reason;
  }
  const tapFd = jail?.tapFd;
  const args = i.args(tapFd !== undefined ? { fd: tapFd } : i.tap!);
  let child: VmmChild;
  try {
    child = await launchDetached(d.spawner, {
      argv: [...(jail ? jail.prefix(d.network.execPrefix()) : d.network.execPrefix()), i.binary, ...args], cwd: i.paths.dir, logFile: i.paths.qemuLog,
      ...(jail ? { env: jail.env } : {}),
      ...(i.incomingFrom !== undefined ? { inputFile: i.incomingFrom } : {}),
    });
  } catch (err) {
    await jail?.release();
    throw err;
  }
  // The jail's cgroups go with the process, whoever stops it (pause, destroy, crash).
  const released = jail
    ? new Promise<void>((done) => {
      const release = () => void releaseJail(d, jail).then(done);
      child.once("exit", release);
      child.once("error", release);
    })
    : undefined;
  if (child.pid === undefined) throw new Error("spawn of QEMU failed");
  const vm: Omit<SnapVm, "qmp"> & { qmp?: QmpClient } = {
    id: i.id, pid: child.pid, paths: i.paths, tap: i.tap ?? "", vcpu: i.vcpu, memMib: i.memMib, rootfs: i.rootfs, ram: i.ram, disk: i.disk, child,
    ...(i.template ? { template: i.template } : {}),
    ...(i.incomingFrom !== undefined ? { incomingUri: "fd:3" } : {}),
    ...(released ? { released } : {}),
  };
  const gone = new AbortController();
  const onExit = (code: number | null, sig: NodeJS.Signals | null) => {
    vm.exited ??= sig ? `QEMU killed by ${sig}` : `QEMU exited with code ${code}`;
    gone.abort(new Error(vm.exited));
  };
  child.once("exit", onExit);
  child.once("error", (e) => {
    vm.exited ??= `spawn failed: ${e.message}`;
    gone.abort(e);
  });
  const stop = i.signal ? AbortSignal.any([gone.signal, i.signal]) : gone.signal;
  try {
    // QmpClient retries every 50 ms; a 5 ms poll for the socket first saves ~25 ms a start.
    const deadline = Date.now() + timeoutMs;
    while (!existsSync(i.paths.qmp) && Date.now() < deadline) await sleep(5, undefined, { signal: stop });
    i.timer?.lap("spawn");
    vm.qmp = await QmpClient.connect(i.paths.qmp, { timeoutMs: Math.max(deadline - Date.now(), 1), signal: stop });
    // The jailer's tap (first or fallback name), as QEMU holds it.
    if (tapFd !== undefined) vm.tap = await d.network.heldTap(child.pid, tapFd);
    i.timer?.lap("qmp");
    return vm as SnapVm;
  } catch (err) {
    await killAndWait(child.pid, 0).catch(() => {});
    if (i.signal?.aborted) throw i.signal.reason;
    throw await withTail(i.paths, `QEMU for ${i.id} did not start: ${vm.exited ?? (err as Error).message}`, err);
  }
}

/**
 * A QEMU started ahead of need for VM `id` (`launchSpare`): jailed, its tap
 * made, in `--preconfig`, waiting for its RAM and disk. Its id becomes a
 * sandbox's (a fork's child), so the directory, tap and argv need no rename.
 */
export interface SpareVm extends SnapVm {
  /** Directories its jail binds (the template of its shape): a launch that needs others does not fit. */
  shared: string[];
  /** The share=off RAM files its jail opens read-only: `<dir>/mem.base` (a fork base) and its templates' `mem`. */
  roRam: string[];
}

/** What a spare is made for: a VM of this shape, its files in `paths.dir`. */
export interface SpareInput {
  id: string;
  paths: VmPaths;
  vcpu: number;
  memMib: number;
  rootfs: string;
  /** Template directories a VM of this shape reads its disk's bottom from. */
  shared: string[];
}

/** Where `SnapshotDeps.spares` hands a launch the spare made for its id. */
export interface SpareSource {
  /** The spare made for `id`, now the caller's; undefined when there is none. */
  take(id: string): SpareVm | undefined;
  /** Whether a spare is claimed or waiting under `id` (its directory exists). */
  has(id: string): boolean;
}

/**
 * Starts a spare QEMU (its tap from the jailer: spares need `hutch-jailer`).
 * It costs QEMU's start (~100 ms of CPU under TCG) once, ahead of need, and
 * ~30 MB resident until it is adopted or stopped.
 */
export async function launchSpare(d: SnapshotDeps, s: SpareInput, timeoutMs = 10_000): Promise<SpareVm> {
  if (!d.jail?.makesTaps) throw new Error("spare QEMUs need hutch-jailer (it makes their taps)");
  const roRam = [path.join(s.paths.dir, "mem.base"), ...s.shared.map((dir) => templatePaths(dir).mem)];
  const vm = await spawnVm(d, {
    ...s, binary: d.binary ?? "qemu-system-x86_64", roRam,
    // Not known until adopted.
    ram: { anon: "object" }, disk: { file: "", format: "qcow2" },
    args: (tap) => buildSpareArgs({
      id: s.id, accel: d.accel, vcpu: s.vcpu, memMib: s.memMib, paths: s.paths, kernel: d.images.kernel(),
      rootfsPath: d.images.rootfs(s.rootfs).path, tap, mac: SPARE_MAC,
    }),
  }, timeoutMs);
  return Object.assign(vm, { shared: s.shared, roRam });
}

/** The MAC on a spare's command line: the state it loads brings the VM's own. */
const SPARE_MAC = "02:fc:00:00:00:02";

/** Why spare `s` cannot serve launch `i` (undefined: it can). */
async function spareMisfit(d: SnapshotDeps, s: SpareVm, i: LaunchInput): Promise<string | undefined> {
  if (s.exited) return s.exited;
  if (i.paths.dir !== s.paths.dir) return "another directory";
  if (!i.incoming || i.incomingFrom === undefined) return "no state to load";
  if (i.vcpu !== s.vcpu || i.memMib !== s.memMib || i.rootfs !== s.rootfs) return "another shape";
  if (i.ram.file === undefined) return "anonymous RAM";
  if (!i.ram.share && !s.roRam.includes(i.ram.file)) return "another copy-on-write RAM file";
  if (sharedDirs(d, i).some((dir) => !s.shared.includes(dir))) return "a disk outside its jail";
  if ((await streamMachine(i.incomingFrom)) !== MACHINE) return "a stream of an older machine layout";
  return undefined;
}

/**
 * Gives spare `s` the RAM backend and disk of launch `i` and builds its
 * machine (`x-exit-preconfig`). Its state comes over a unix socket in its
 * directory (`SnapVm.incomingUri`; loadState streams the file into it): the
 * spare was started before the file existed.
 */
async function adoptSpare(d: SnapshotDeps, s: SpareVm, i: LaunchInput): Promise<SnapVm> {
  const ram = i.ram as Extract<RamBacking, { file: string }>;
  // The files the fork put in its directory (disk overlay, state, RAM base) to the spare's uid and group.
  await d.jail!.adopt(s.id, s.paths.dir);
  i.timer?.lap("jail");
  // The backend's id names the RAM block the stream was saved from (a cold-booted VM's is QEMU's own name).
  const id = ramBlockOf(ram) === "legacy" ? LEGACY_RAM_BACKEND_ID : RAM_BACKEND_ID;
  await s.qmp.execute("object-add", {
    "qom-type": "memory-backend-file", id, size: i.memMib * 1048576, "mem-path": ram.file, share: ram.share,
  });
  await s.qmp.execute("qom-set", { path: "/machine", property: "memory-backend", value: id });
  await s.qmp.execute("blockdev-add", {
    driver: i.disk.format, "node-name": SPARE_DISK_NODE, discard: "unmap", file: { driver: "file", filename: i.disk.file },
  });
  await s.qmp.execute("x-exit-preconfig");
  i.timer?.lap("qmp");
  // The same object: its process's exit handler (spawnVm) sets `exited` on it.
  const vm: SnapVm = s;
  vm.ram = i.ram;
  vm.disk = i.disk;
  vm.incomingUri = `unix:${path.join(s.paths.dir, SPARE_INCOMING_SOCKET)}`;
  if (i.template) vm.template = i.template;
  return vm;
}

/** The socket a spare loads its state from (in the VM's directory). */
const SPARE_INCOMING_SOCKET = "incoming.sock";

/**
 * Directories outside the VM's own that it maps RAM from or reads disks of:
 * its template's (RAM of a clone, bottom of every descendant's disk chain).
 */
function sharedDirs(d: SnapshotDeps, i: LaunchInput): string[] {
  const dirs = new Set<string>();
  if (i.template) dirs.add(path.join(templatesDir(d.dataDir), i.template));
  for (const f of [i.ram.file, i.disk.file]) {
    if (f !== undefined && path.dirname(f) !== i.paths.dir) dirs.add(path.dirname(f));
  }
  return [...dirs];
}

async function releaseJail(d: SnapshotDeps, jail: JailLease): Promise<void> {
  await jail.release().catch((err: unknown) => d.log?.warn({ id: jail.id, err }, "VMM jail release failed"));
}

/** Error with the tail of the VM's console and QEMU log appended. */
export async function withTail(paths: VmPaths, msg: string, cause?: unknown): Promise<Error> {
  const tail = await consoleTail(paths, 1500);
  return new Error(tail ? `${msg}\n--- console/qemu log ---\n${tail}` : msg, { cause });
}

/**
 * Ends the VM's process: QMP `quit` (QEMU flushes its disks), SIGKILL if it
 * is not gone within `graceMs`. Closes the agent and QMP connections.
 */
export async function stopVm(vm: SnapVm, graceMs = 2000): Promise<void> {
  vm.agent?.close();
  await vm.qmp.execute("quit", undefined, graceMs).catch(() => {});
  vm.qmp.close();
  if (!(await waitGone(vm.pid, graceMs))) await killAndWait(vm.pid, 0);
}
