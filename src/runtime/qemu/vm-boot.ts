/**
 * The boot sequence of one VM: directory, disk, tap, QEMU, QMP, agent,
 * CONFIGURE. On any failure everything made so far is removed before the
 * error is thrown.
 */
import { mkdir, rm } from "node:fs/promises";
import { AgentClient } from "../agent/agent-client.js";
import { RuntimeError, isRuntimeError } from "../errors.js";
import type { Accel } from "../host-info.js";
import type { ImageStore } from "../images/image-store.js";
import type { HostNetwork } from "../network/host-network.js";
import type { MachineSpec } from "../runtime.js";
import { guestConfigOf } from "../snapshot/guest-identity.js";
import { buildQemuArgs } from "./qemu-args.js";
import { QmpClient } from "./qmp-client.js";
import type { RuntimeLogger } from "./runtime-logger.js";
import { writeVmMeta } from "./vm-meta.js";
import { sandboxesDir, vmPaths, type VmPaths } from "./vm-paths.js";
import { consoleTail, killAndWait } from "./vm-process.js";
import { jailSpecFor, type JailLease, type VmmJail } from "./vmm-jail.js";
import { launchDetached, type VmmChild, type VmmSpawner } from "./vmm-spawner.js";

/** What `bootVm` needs from the runtime. */
export interface BootDeps {
  dataDir: string;
  images: ImageStore;
  network: HostNetwork;
  log: RuntimeLogger;
  binary: string;
  accel: Accel;
  bootTimeoutMs: number;
  /** Runs the QEMU jailed (own uid, chroot, rlimits, cgroup); unjailed without it. */
  jail?: VmmJail;
  /** Starts QEMU; the server forks it without one. */
  spawner?: VmmSpawner;
  /** Removes what a previous VM of the same id may have left. */
  removeLeftovers(id: string): Promise<void>;
}

/** A VM whose agent answered and took its identity. */
export interface BootedVm {
  id: string;
  pid: number;
  paths: VmPaths;
  tap: string;
  agent: AgentClient;
  qmp: QmpClient;
  /** Still carries a provisional "exit" listener: replace it. */
  child: VmmChild;
  /** Start of boot to the agent's HELLO answer. */
  bootMs: number;
}

/**
 * Boots `spec`. Rejects RuntimeError: "boot_failed" for anything about the
 * guest (QEMU exit, no agent in time, abort; the console's tail is in the
 * message), "internal" for host failures (disk, tap).
 */
export async function bootVm(d: BootDeps, spec: MachineSpec, signal: AbortSignal): Promise<BootedVm> {
  const t0 = Date.now();
  const paths = vmPaths(d.dataDir, spec.id);
  let tap: string | undefined;
  let pid: number | undefined;
  let exitedWith: string | undefined;
  const exited = new AbortController();
  let agent: AgentClient | undefined;
  let qmp: QmpClient | undefined;
  let jail: JailLease | undefined;
  try {
    const rootfs = imagePath(d.images, spec.rootfs);
    const kernel = d.images.kernel();
    await d.removeLeftovers(spec.id);
    await mkdir(sandboxesDir(d.dataDir), { recursive: true, mode: 0o700 });
    await mkdir(paths.dir, { mode: 0o700 });
    await d.images.createDisk(paths.disk, spec.diskMib).catch((err: unknown) => {
      throw new RuntimeError("internal", `could not create the disk of ${spec.id}: ${(err as Error).message}`, { cause: err });
    });
    signal.throwIfAborted();
    // meta.json names the tap for cleanup after a crash. hutch-jailer makes
    // the tap at launch and QEMU holds it (it goes with QEMU): named once known.
    const meta = (t: string) => writeVmMeta(paths.meta, {
      id: spec.id,
      tap: t,
      vcpu: spec.vcpu,
      memMib: spec.memMib,
      rootfs: spec.rootfs,
      createdAt: new Date().toISOString(),
    });
    const fdTap = d.jail?.makesTaps === true;
    if (!fdTap) {
      tap = await d.network.createTap(spec.id);
      await meta(tap);
    }
    signal.throwIfAborted();
    jail = d.jail
      ? await d.jail.prepare(jailSpecFor({
        id: spec.id, dir: paths.dir, vcpu: spec.vcpu, memMib: spec.memMib, accel: d.accel, kernel, rootfsPath: rootfs, binary: d.binary,
        ...(fdTap ? { tap: d.network.tapSpec(spec.id) } : {}),
      }))
      : undefined;
    const tapFd = jail?.tapFd;
    const args = buildQemuArgs({
      id: spec.id,
      accel: d.accel,
      vcpu: spec.vcpu,
      memMib: spec.memMib,
      paths,
      kernel,
      rootfsPath: rootfs,
      tap: tapFd !== undefined ? { fd: tapFd } : tap!,
      mac: spec.net.mac,
    });
    // `ip netns exec` (and the jail's sh, prlimit, chroot, setpriv) exec QEMU in place: the child's pid is QEMU's.
    const child = await launchDetached(d.spawner, {
      argv: [...(jail ? jail.prefix(d.network.execPrefix()) : d.network.execPrefix()), d.binary, ...args], cwd: paths.dir, logFile: paths.qemuLog,
      ...(jail ? { env: jail.env } : {}),
    });
    pid = child.pid;
    const onGone = (how: string) => {
      exitedWith ??= how;
      exited.abort(new Error(how));
    };
    child.once("error", (e) => onGone(`spawn failed: ${e.message}`));
    child.once("exit", (code, sig) => onGone(sig ? `QEMU killed by ${sig}` : `QEMU exited with code ${code}`));
    if (pid === undefined) throw new Error("spawn failed");
    const bootSignal = AbortSignal.any([signal, exited.signal]);
    qmp = await QmpClient.connect(paths.qmp, { timeoutMs: 10_000, signal: bootSignal });
    if (tapFd !== undefined) {
      tap = await d.network.heldTap(pid, tapFd);
      await meta(tap);
    }
    agent = await AgentClient.connect(paths.agent, { timeoutMs: d.bootTimeoutMs, signal: bootSignal });
    const bootMs = Date.now() - t0;
    await agent.configure(guestConfigOf(spec));
    signal.throwIfAborted();
    if (exitedWith) throw new Error(exitedWith);
    return { id: spec.id, pid, paths, tap: tap!, agent, qmp, child, bootMs };
  } catch (err) {
    agent?.close();
    qmp?.close();
    if (pid !== undefined) await killAndWait(pid, 0).catch(() => {});
    await jail?.release().catch(() => {});
    const tail = await consoleTail(paths);
    if (tap) await d.network.deleteTap(tap).catch(() => {});
    await rm(paths.dir, { recursive: true, force: true }).catch(() => {});
    // Host-side failures keep their code; anything about the guest is a boot failure.
    if (!exitedWith && !signal.aborted && (isRuntimeError(err, "internal") || isRuntimeError(err, "no_capacity"))) throw err;
    if (!exitedWith && !signal.aborted && isRuntimeError(err, "boot_failed") && !tail) throw err;
    const why = signal.aborted
      ? `create aborted: ${String((signal.reason as Error | undefined)?.message ?? signal.reason)}`
      : (exitedWith ?? (err as Error).message);
    d.log.warn({ id: spec.id, err, console: tail }, "VM boot failed");
    throw new RuntimeError("boot_failed", `VM ${spec.id} failed to boot: ${why}${tail ? `\n--- console ---\n${tail}` : ""}`, {
      cause: err,
    });
  }
}

/** Base image path of `name`; unknown or unbuilt image → boot_failed. */
function imagePath(images: ImageStore, name: string): string {
  try {
    return images.rootfs(name).path;
  } catch (err) {
    throw new RuntimeError("boot_failed", `image ${name} is not available on this host`, { cause: err });
  }
}
