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
import { buildSnapshotArgs, type RamBacking } from "./snapshot-args.js";
import { templatesDir } from "./snapshot-paths.js";
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
}

/**
 * Spawns QEMU for `i` (detached, in the netns) and connects QMP. On failure
 * the process is killed and the error carries the console/QEMU log tail.
 */
export async function launchVm(d: SnapshotDeps, i: LaunchInput, timeoutMs = 10_000): Promise<SnapVm> {
  if (i.tap === undefined && !d.jail?.makesTaps) throw new Error(`VM ${i.id} has no tap and no jailer to make one`);
  // A stream loads only into the machine layout it was saved from (an older version's, maybe).
  const machine = i.incomingFrom !== undefined ? await streamMachine(i.incomingFrom) : undefined;
  // Stale sockets of a previous run of this VM would only refuse connections;
  // without them, the new ones appearing is the signal that QEMU listens.
  await Promise.all([rm(i.paths.qmp, { force: true }), rm(i.paths.agent, { force: true })]);
  const binary = d.binary ?? "qemu-system-x86_64";
  const jail = d.jail ? await d.jail.prepare(jailSpecFor({
    id: i.id, dir: i.paths.dir, vcpu: i.vcpu, memMib: i.memMib, accel: d.accel, kernel: d.images.kernel(),
    rootfsPath: d.images.rootfs(i.rootfs).path, binary, shared: sharedDirs(d, i),
    ...(i.ram.file !== undefined && !i.ram.share ? { roRam: i.ram.file } : {}),
    ...(i.tap === undefined ? { tap: d.network.tapSpec(i.id) } : {}),
  })) : undefined;
  i.timer?.lap("jail");
  const tapFd = jail?.tapFd;
  const args = buildSnapshotArgs({
    id: i.id,
    accel: d.accel,
    vcpu: i.vcpu,
    memMib: i.memMib,
    paths: i.paths,
    kernel: d.images.kernel(),
    rootfsPath: d.images.rootfs(i.rootfs).path,
    tap: tapFd !== undefined ? { fd: tapFd } : i.tap!,
    mac: i.mac,
    ram: i.ram,
    disk: i.disk,
    incoming: i.incoming,
    paused: i.paused ?? false,
    ...(machine !== undefined ? { machine } : {}),
  });
  let child: VmmChild;
  try {
    child = await launchDetached(d.spawner, {
      argv: [...(jail ? jail.prefix(d.network.execPrefix()) : d.network.execPrefix()), binary, ...args], cwd: i.paths.dir, logFile: i.paths.qemuLog,
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
  try {
    // QmpClient retries every 50 ms; a 5 ms poll for the socket first saves ~25 ms a start.
    const deadline = Date.now() + timeoutMs;
    while (!existsSync(i.paths.qmp) && Date.now() < deadline) await sleep(5, undefined, { signal: gone.signal });
    i.timer?.lap("spawn");
    vm.qmp = await QmpClient.connect(i.paths.qmp, { timeoutMs: Math.max(deadline - Date.now(), 1), signal: gone.signal });
    // The jailer's tap (first or fallback name), as QEMU holds it.
    if (tapFd !== undefined) vm.tap = await d.network.heldTap(child.pid, tapFd);
    i.timer?.lap("qmp");
    return vm as SnapVm;
  } catch (err) {
    await killAndWait(child.pid, 0).catch(() => {});
    throw await withTail(i.paths, `QEMU for ${i.id} did not start: ${vm.exited ?? (err as Error).message}`, err);
  }
}

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
