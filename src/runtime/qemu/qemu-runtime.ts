/**
 * The QEMU implementation of `Runtime`: one detached `qemu-system-x86_64`
 * microvm per sandbox, started inside Hutch's network namespace, with its
 * files in `<dataDir>/sandboxes/<id>/`. VMs outlive the server; `reconcile`
 * re-attaches after a restart.
 */
import { readdir, rm } from "node:fs/promises";
import os from "node:os";
import type { Duplex, Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { AgentClient } from "../agent/agent-client.js";
import { RuntimeError } from "../errors.js";
import { detectAccel, memBudgetMib, thpMode, type Accel } from "../host-info.js";
import type { ImageStore } from "../images/image-store.js";
import type { HostNetwork } from "../network/host-network.js";
import type { NetnsDialer } from "../network/netns-dialer.js";
import type { SandboxFirewall } from "../network/sandbox-firewall.js";
import type {
  ExecOutcome,
  ExecOutput,
  ExecRequest,
  ImageInfo,
  MachineExitListener,
  MachineStallListener,
  MachineInfo,
  MachineSpec,
  Runtime,
  RuntimeCapacity,
  RunningMachine,
  ShellOptions,
  ShellSession,
  NetworkPolicy,
  NetworkUsage,
  ForkOptions,
  MachineShape,
  WarmAddresses,
  WarmClaim,
} from "../runtime.js";
import { AgentLiveness, type LivenessTarget, type VmRunState } from "./agent-liveness.js";
import { QmpClient } from "./qmp-client.js";
import type { DiskSpace } from "../disk-space.js";
import { continueStalled, DISK_FULL_REASON, isIoErrorStatus, watchIoErrors } from "./io-error-watch.js";
import { applyIdentity, identifyVm } from "../snapshot/guest-identity.js";
import type { RuntimeLogger } from "./runtime-logger.js";
import { SnapshotOps } from "./snapshot-ops.js";
import { removeForkLeftovers, settlePaused } from "./snapshot-recovery.js";
import type { WarmTarget } from "./warm-pool.js";
import { readSnapInfo, type VmSnapInfo } from "./vm-snap-info.js";
import type { VmmJail } from "./vmm-jail.js";
import type { VmmChild, VmmSpawner } from "./vmm-spawner.js";
import type { SnapVm } from "../snapshot/snapshot-vm.js";
import { bootVm } from "./vm-boot.js";
import { readVmMeta } from "./vm-meta.js";
import { checkSocketPathLength, isSandboxId, sandboxesDir, vmPaths, type VmPaths } from "./vm-paths.js";
import {
  consoleTail,
  findVmmProcesses,
  isAlive,
  isVmmOf,
  killAndWait,
  readPidfile,
  rotateConsole,
  waitGone,
} from "./vm-process.js";

export type { RuntimeLogger } from "./runtime-logger.js";

export interface QemuRuntimeOptions {
  /** Hutch's data dir; VMs live in `<dataDir>/sandboxes/<id>/`. Keep it short (socket paths ≤ 107 bytes). */
  dataDir: string;
  images: ImageStore;
  network: HostNetwork;
  /** Per-sandbox egress rules and counters; without it network policies are not enforced. */
  firewall?: SandboxFirewall;
  /** Dials guests from inside the netns (ingress); without it `dialGuest` rejects. */
  dialer?: NetnsDialer;
  /** HUTCH_ACCEL; default: detected (KVM only with hardware virtualization). */
  accel?: Accel;
  /** HUTCH_HOST_MEM_MIB; default: physical memory minus a reserve. */
  memBudgetMib?: number;
  log: RuntimeLogger;
  qemuBinary?: string;
  /** Time for the guest agent to answer after spawn; default 60 s (TCG) / 20 s (KVM). */
  bootTimeoutMs?: number;
  /** console.log is rotated past this size (default 1 MiB); at most twice that is kept. */
  consoleMaxBytes?: number;
  /** Serve creates from template snapshots (default true); false: every create cold boots. */
  templates?: boolean;
  /** See SnapshotOpsOptions.ownStreams (default true). */
  ownStreams?: boolean;
  /** See SnapshotOpsOptions.spares (default 0: none). */
  spares?: number;
  /**
   * Shapes whose template is built at start-up (after `reconcile`), each
   * with its warm pool size (0: template only). Needs `templates`.
   */
  warm?: WarmTarget[];
  /** Runs every QEMU jailed (src/runtime/qemu/vmm-jail.ts); unjailed without it. */
  jail?: VmmJail;
  /** Starts QEMU processes (src/runtime/qemu/vmm-spawner.ts; its owner closes it after the runtime); else the server forks them. */
  spawner?: VmmSpawner;
  /**
   * The data dir's free space (src/runtime/disk-space.ts): warm VMs and
   * template builds wait for room; its reserve is released when a VM
   * stalls on a full disk. Without it, no check.
   */
  disk?: DiskSpace;
  /**
   * Agent liveness sweep (src/runtime/qemu/agent-liveness.ts): a VM whose
   * agent misses `misses` pings in a row is ended like a VMM exit. Off without it.
   */
  liveness?: { intervalMs: number; timeoutMs: number; misses: number };
}

/** A VM this runtime is attached to. */
interface Vm {
  id: string;
  pid: number;
  paths: VmPaths;
  tap: string;
  memMib: number;
  agent: AgentClient;
  qmp: QmpClient;
  /** Set while this process spawned it (not after a restart). */
  child?: VmmChild;
  /** Set by destroy (or once its exit is handled): no onExit for it. */
  stopping: boolean;
  /** How its RAM and disk are mapped: what a pause writes. */
  snap: VmSnapInfo;
  /** SnapVm.identityDigest while known (kept in memory only: a re-attached VM's is unknown). */
  identityDigest?: string;
  /**
   * Set (the reason) while QEMU holds the VM stopped because a write to its
   * disk found the data dir full (io-error-watch.ts): its agent cannot
   * answer, it is not dead. `resume` continues it.
   */
  stalled?: string;
  /** console.log's size at the last poll: how fast the guest writes it (rotateConsole). */
  consoleSize?: number;
  /** SnapVm.rehearsal. */
  rehearsal?: Promise<void>;
}

/**
 * A VM found at reconcile stopped on a full disk: alive, but with no agent
 * connection (the agent's handshake needs the guest to run). `resume`
 * continues it and makes it a `Vm`.
 */
interface FrozenVm {
  id: string;
  pid: number;
  paths: VmPaths;
  tap: string;
  memMib: number;
  qmp: QmpClient;
  snap: VmSnapInfo;
}

/** Disk space a warm pool VM's files take at first (a qcow2 overlay, meta), MiB. */
const WARM_VM_DISK_MIB = 16;
/** How long a continued VM's agent may take to answer, ms. */
const CONTINUE_TIMEOUT_MS = 20_000;

const POLL_MS = 500;
/** After the agent channel breaks, how long a dying VMM's exit may take to be the reason reported. */
const AGENT_LOSS_GRACE_MS = 300;

/** Runs sandboxes as QEMU microVMs. */
export class QemuRuntime implements Runtime {
  readonly accel: Accel;
  private readonly budgetMib: number;
  private readonly binary: string;
  private readonly bootTimeoutMs: number;
  private readonly consoleMaxBytes: number;
  private readonly vms = new Map<string, Vm>();
  private readonly creating = new Map<string, { abort: AbortController; memMib: number; done: Promise<unknown> }>();
  private readonly destroying = new Map<string, Promise<void>>();
  private readonly listeners: MachineExitListener[] = [];
  private readonly stallListeners: MachineStallListener[] = [];
  /** VMs found stopped on a full disk at reconcile (see FrozenVm). */
  private readonly frozen = new Map<string, FrozenVm>();
  private readonly timer: NodeJS.Timeout;
  private closed = false;
  /** Templates, warm pool, pause/resume/fork (docs/snapshots.md). */
  private readonly snaps: SnapshotOps;
  /** Pings idle agents; ends VMs whose agent stopped answering. */
  private readonly liveness: AgentLiveness<LivenessTarget & { vm: Vm }> | undefined;

  constructor(private readonly opts: QemuRuntimeOptions) {
    checkSocketPathLength(opts.dataDir);
    this.accel = opts.accel ?? detectAccel();
    this.budgetMib = memBudgetMib(undefined, opts.memBudgetMib);
    this.binary = opts.qemuBinary ?? "qemu-system-x86_64";
    this.bootTimeoutMs = opts.bootTimeoutMs ?? (this.accel === "kvm" ? 20_000 : 60_000);
    this.consoleMaxBytes = opts.consoleMaxBytes ?? 1024 * 1024;
    if (thpMode() === "never") {
      opts.log.warn(
        { thp: "never", sysfs: "/sys/kernel/mm/transparent_hugepage/enabled" },
        "transparent huge pages are off: a resume that loads a sandbox's RAM is several times slower (set it to madvise)",
      );
    }
    // Taps belong to the uid their QEMU will run as.
    if (opts.jail) opts.network.tapOwner = (id) => opts.jail!.reserveUid(id);
    this.timer = setInterval(() => void this.poll(), POLL_MS);
    this.timer.unref();
    this.snaps = new SnapshotOps({
      deps: {
        dataDir: opts.dataDir, images: opts.images, network: opts.network, accel: this.accel, binary: this.binary, log: opts.log,
        ...(opts.jail ? { jail: opts.jail } : {}),
        ...(opts.spawner ? { spawner: opts.spawner } : {}),
      },
      templates: opts.templates ?? true,
      ownStreams: opts.ownStreams ?? true,
      spares: opts.spares ?? 0,
      ...(opts.firewall ? { firewall: opts.firewall } : {}),
      starting: () => this.creating.size > 0,
      warm: opts.warm ?? [],
      bootTimeoutMs: this.bootTimeoutMs,
      hasRoom: (memMib) => this.usedMib() + this.snaps.poolMib() + memMib <= this.budgetMib && (opts.disk?.hasRoom(WARM_VM_DISK_MIB) ?? true),
      ...(opts.disk ? { admitDisk: (needMib: number, what: string) => opts.disk!.admit(needMib, what) } : {}),
    });
    this.liveness = opts.liveness
      ? new AgentLiveness({
          ...opts.liveness,
          log: opts.log,
          targets: () => [...this.vms.values()].filter((vm) => !vm.stopping).map((vm) => this.livenessTarget(vm)),
          onDead: ({ vm }, reason) => this.gone(vm, reason),
        })
      : undefined;
    this.liveness?.start();
  }

  async create(spec: MachineSpec, signal?: AbortSignal): Promise<MachineInfo> {
    const { id } = spec;
    if (this.closed) throw new RuntimeError("internal", "runtime is closed");
    if (!isSandboxId(id)) throw new RuntimeError("internal", `invalid sandbox id: ${JSON.stringify(id)}`);
    if (this.vms.has(id) || this.creating.has(id) || this.destroying.has(id)) {
      throw new RuntimeError("internal", `VM ${id} already exists`);
    }
    // A claimed warm VM's memory is already counted in the pool's.
    const used = this.usedMib() + this.snaps.poolMib() - (this.snaps.isWarm(id) ? spec.memMib : 0);
    if (used + spec.memMib > this.budgetMib) {
      throw new RuntimeError("no_capacity", `not enough memory on this host: ${spec.memMib} MiB asked, ${this.budgetMib - used} MiB free`);
    }
    const abort = new AbortController();
    const onAbort = () => abort.abort(signal?.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    if (signal?.aborted) onAbort();
    const done = this.boot(spec, abort.signal);
    this.creating.set(id, { abort, memMib: spec.memMib, done: done.catch(() => {}) });
    try {
      return await done;
    } finally {
      this.creating.delete(id);
      signal?.removeEventListener("abort", onAbort);
    }
  }

  async destroy(id: string): Promise<void> {
    if (!isSandboxId(id)) return; // cannot exist
    const running = this.destroying.get(id);
    if (running) return running;
    const p = this.doDestroy(id).finally(() => this.destroying.delete(id));
    this.destroying.set(id, p);
    return p;
  }

  async pause(id: string): Promise<void> {
    const vm = this.running(id);
    if (this.creating.has(id) || this.destroying.has(id)) throw new RuntimeError("not_running", `sandbox ${id} is busy`);
    vm.stopping = true; // its QEMU quits on purpose: no onExit
    let streamed: boolean;
    try {
      streamed = await this.snaps.pause(this.toSnapVm(vm));
    } catch (err) {
      vm.stopping = false;
      if (!(await isAlive(vm.pid))) await this.gone(vm, "VMM died during pause");
      throw new RuntimeError("internal", `pause of ${id} failed: ${(err as Error).message}`, { cause: err });
    }
    this.vms.delete(id);
    this.detach(vm);
    // A paused sandbox holds no cgroup or uid (resume takes new ones).
    await this.opts.jail?.release(id).catch((err: unknown) => this.opts.log.warn({ id, err }, "VMM jail release failed"));
    this.opts.log.info({ id }, "VM paused");
    // Its RAM, if streamed, into a file of its own (after the release above: the owning's QEMU is jailed too).
    if (streamed) this.snaps.ownLater(id);
  }

  async resume(id: string, spec: MachineSpec): Promise<MachineInfo> {
    if (this.vms.get(id)?.stalled || this.frozen.has(id)) return this.continueVm(id, spec);
    return this.startPaused(id, spec, "resume");
  }

  async fork(sourceId: string, child: MachineSpec, opts: ForkOptions = {}): Promise<MachineInfo | undefined> {
    if (this.closed) throw new RuntimeError("internal", "runtime is closed");
    if (!isSandboxId(sourceId) || !isSandboxId(child.id)) throw new RuntimeError("internal", "invalid sandbox id");
    if (this.vms.has(sourceId) || this.creating.has(sourceId)) throw new RuntimeError("internal", `VM ${sourceId} is not paused`);
    if (this.vms.has(child.id) || this.creating.has(child.id)) throw new RuntimeError("internal", `VM ${child.id} already exists`);
    let streams: boolean;
    try {
      streams = await this.snaps.fork(sourceId, child.id);
    } catch (err) {
      // A spare claimed for the child: stopped, and the child's files in its directory removed.
      if (await this.snaps.dropSpare(child.id)) await this.removeLeftovers(child.id).catch(() => {});
      throw new RuntimeError("internal", `fork of ${sourceId} failed: ${(err as Error).message}`, { cause: err });
    }
    // Streams are owned again once the child runs (SnapshotOps' owning also
    // waits while any VM starts: the core resumes a child after a paused fork).
    const ownStreams = (...ids: string[]) => {
      if (streams) for (const id of ids) this.snaps.ownLater(id);
    };
    if (opts.startPaused) {
      ownStreams(sourceId, child.id);
      return undefined;
    }
    try {
      return await this.startPaused(child.id, child, "resume");
    } catch (err) {
      await this.removeLeftovers(child.id).catch(() => {});
      throw err;
    } finally {
      ownStreams(sourceId);
    }
  }

  claimWarm(shape: MachineShape): WarmClaim | undefined {
    return this.closed ? undefined : this.snaps.claimWarm(shape);
  }

  claimSpare(shape: MachineShape): string | undefined {
    return this.closed ? undefined : this.snaps.claimSpare(shape);
  }

  useWarmAddresses(source: WarmAddresses): void {
    this.snaps.useWarmAddresses(source);
  }

  async exec(id: string, req: ExecRequest, out: ExecOutput, signal?: AbortSignal): Promise<ExecOutcome> {
    return this.running(id).agent.exec(req, out, signal);
  }

  async writeFile(id: string, path: string, data: Readable): Promise<void> {
    return this.running(id).agent.writeFile(path, data);
  }

  async readFile(id: string, path: string): Promise<Readable> {
    return this.running(id).agent.readFile(path);
  }

  async openTunnel(id: string, port: number): Promise<Duplex> {
    return this.running(id).agent.tcpConnect(port);
  }

  async openShell(id: string, opts: ShellOptions): Promise<ShellSession> {
    return this.running(id).agent.openShell(opts);
  }

  async setNetworkPolicy(id: string, policy: NetworkPolicy | null): Promise<void> {
    const fw = this.opts.firewall;
    if (!fw) return;
    if (policy) await fw.apply(id, policy);
    else await fw.remove(id);
  }

  async takeNetworkUsage(): Promise<Map<string, NetworkUsage>> {
    return this.opts.firewall ? this.opts.firewall.takeUsage() : new Map();
  }

  async dialGuest(ip: string, port: number): Promise<Duplex> {
    if (!this.opts.dialer) throw new RuntimeError("internal", "no netns dialer configured");
    return this.opts.dialer.dial(ip, port);
  }

  async reconcile(ids: string[]): Promise<RunningMachine[]> {
    const want = new Set(ids);
    for (const d of await removeForkLeftovers(this.opts.dataDir)) this.opts.log.info({ dir: d }, "removed interrupted fork");
    const procs = await findVmmProcesses(this.opts.dataDir, this.binary);
    let dirs: string[] = [];
    try {
      dirs = await readdir(sandboxesDir(this.opts.dataDir));
    } catch {
      // no VM was ever made
    }
    // Anything else in sandboxes/ is not ours to delete.
    const all = new Set([...dirs, ...procs.map((p) => p.id)].filter(isSandboxId));
    const alive: RunningMachine[] = [];
    for (const id of all) {
      if (this.vms.has(id) || this.creating.has(id)) {
        if (want.has(id)) alive.push({ id, pid: this.vms.get(id)?.pid ?? 0 });
        else await this.destroy(id);
        continue;
      }
      // A complete pause is kept (any QEMU still next to it is killed).
      if (want.has(id) && (await settlePaused(this.opts.dataDir, id, this.opts.network))) {
        alive.push({ id, pid: 0, paused: true });
        continue;
      }
      const vm = want.has(id) ? await this.attach(id) : undefined;
      if (vm) {
        alive.push({ id, pid: vm.pid, ...(vm.stalled ? { stalled: vm.stalled } : {}) });
        continue;
      }
      for (const p of procs.filter((q) => q.id === id)) await killAndWait(p.pid, 500).catch(() => {});
      await this.removeLeftovers(id);
      this.opts.log.info({ id }, want.has(id) ? "VM not recoverable, cleaned up" : "removed VM not in the store");
    }
    // Taps whose VM is gone (a crash between tap and directory creation).
    for (const t of await this.opts.network.list()) {
      if (!t.sandboxId || (!this.vms.has(t.sandboxId) && !this.creating.has(t.sandboxId))) {
        await this.opts.network.deleteTap(t.name);
        this.opts.log.info({ tap: t.name }, "removed leaked tap");
      }
    }
    // Cgroups and uids of VMs that are gone (killed above, or died with the previous server).
    await this.opts.jail?.reconcile(new Set([...this.vms.keys(), ...this.creating.keys(), ...this.frozen.keys()]));
    // Pool VMs of a previous server were removed above (not in `ids`): build templates, refill.
    if (!this.closed) this.snaps.start();
    // Stream bundles whose owning the previous server did not finish (after
    // the sweeps above: they would take its tap and cgroup for leftovers).
    for (const m of alive) if (m.paused) this.snaps.ownLater(m.id);
    return alive;
  }

  onExit(listener: MachineExitListener): void {
    this.listeners.push(listener);
  }

  onStall(listener: MachineStallListener): void {
    this.stallListeners.push(listener);
  }

  async images(): Promise<{ images: ImageInfo[]; default: string }> {
    const images = this.opts.images
      .catalog()
      .filter((i) => i.built)
      .map((i) => ({ name: i.name, description: i.description }));
    return { images, default: this.opts.images.defaultImage };
  }

  capacity(): RuntimeCapacity {
    // Warm pool VMs hold memory too (counted against capacity).
    return { memMib: this.budgetMib - this.snaps.poolMib(), vcpus: os.cpus().length };
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    // No new sweep; one under way ends once the detaches below fail its probes.
    const livenessStopped = this.liveness?.stop();
    await this.snaps.close();
    for (const c of this.creating.values()) c.abort.abort(new Error("runtime closing"));
    await Promise.all([...this.creating.values()].map((c) => c.done));
    for (const vm of this.vms.values()) this.detach(vm);
    this.vms.clear();
    for (const f of this.frozen.values()) f.qmp.close();
    this.frozen.clear();
    await livenessStopped;
  }

  // --- internals ----------------------------------------------------------

  /** Guest memory of VMs running or starting, MiB (warm pool not included). */
  private usedMib(): number {
    return [...this.vms.values(), ...this.creating.values(), ...this.frozen.values()].reduce((s, v) => s + v.memMib, 0);
  }

  /** Resumes paused VM `id` with `spec`'s identity (a fork's child: also its new MAC). */
  private async startPaused(id: string, spec: MachineSpec, what: string): Promise<MachineInfo> {
    if (this.closed) throw new RuntimeError("internal", "runtime is closed");
    if (!isSandboxId(id)) throw new RuntimeError("internal", `invalid sandbox id: ${JSON.stringify(id)}`);
    if (this.vms.has(id) || this.creating.has(id) || this.destroying.has(id)) throw new RuntimeError("internal", `VM ${id} is not paused`);
    const used = this.usedMib() + this.snaps.poolMib();
    if (used + spec.memMib > this.budgetMib) {
      throw new RuntimeError("no_capacity", `not enough memory on this host: ${spec.memMib} MiB asked, ${this.budgetMib - used} MiB free`);
    }
    const t0 = Date.now();
    const done = this.snaps.resume(id, spec, this.bootTimeoutMs);
    this.creating.set(id, { abort: new AbortController(), memMib: spec.memMib, done: done.catch(() => {}) });
    try {
      const vm = this.adopt(await done);
      this.opts.log.info({ id, pid: vm.pid, ms: Date.now() - t0 }, `VM ${what}d`);
      return { id, pid: vm.pid, bootMs: Date.now() - t0 };
    } catch (err) {
      throw new RuntimeError("boot_failed", `${what} of ${id} failed: ${(err as Error).message}`, { cause: err });
    } finally {
      this.creating.delete(id);
    }
  }

  /** Registers a snapshot-capable VM (restored, resumed or handed over) as running, and watches it. */
  private adopt(s: SnapVm): Vm {
    if (!s.agent) throw new Error(`VM ${s.id} has no agent connection`);
    const snap: VmSnapInfo = { vcpu: s.vcpu, rootfs: s.rootfs, ram: s.ram, disk: s.disk, ...(s.template ? { template: s.template } : {}) };
    const vm: Vm = {
      id: s.id, pid: s.pid, paths: s.paths, tap: s.tap, memMib: s.memMib, agent: s.agent, qmp: s.qmp, child: s.child, stopping: false, snap,
      // What its guest got: a pause keeps it in the bundle, and a resume with the same envs and keys does not send them again.
      ...(s.identityDigest ? { identityDigest: s.identityDigest } : {}),
      ...(s.rehearsal ? { rehearsal: s.rehearsal } : {}),
    };
    this.vms.set(vm.id, vm);
    this.watchAgent(vm);
    this.watchStall(vm);
    s.child.once("exit", (code, sig) => void this.gone(vm, sig ? `VMM killed by ${sig}` : `VMM exited with code ${code}`));
    if (s.exited) void this.gone(vm, s.exited);
    return vm;
  }

  /** The liveness sweep's view of a running VM. */
  private livenessTarget(vm: Vm): LivenessTarget & { vm: Vm } {
    return {
      id: vm.id,
      vm,
      lastHeard: () => vm.agent.lastHeard,
      // Pausing/destroying set `stopping`; a stalled VM is held stopped on purpose;
      // a VM replaced under its id is not this one.
      busy: () => vm.stopping || !!vm.stalled || this.vms.get(vm.id) !== vm || this.destroying.has(vm.id) || this.creating.has(vm.id),
      ping: (ms) => vm.agent.ping(ms),
      vmStatus: (ms) => vm.qmp.execute<VmRunState>("query-status", undefined, ms),
    };
  }

  /** The snapshot module's view of a running VM. */
  private toSnapVm(vm: Vm): SnapVm {
    return {
      id: vm.id, pid: vm.pid, paths: vm.paths, tap: vm.tap, vcpu: vm.snap.vcpu, memMib: vm.memMib, rootfs: vm.snap.rootfs,
      ram: vm.snap.ram, disk: vm.snap.disk, qmp: vm.qmp, agent: vm.agent,
      // A re-attached VM has no ChildProcess; pause never uses it.
      child: vm.child as VmmChild,
      ...(vm.snap.template ? { template: vm.snap.template } : {}),
      ...(vm.identityDigest ? { identityDigest: vm.identityDigest } : {}),
      ...(vm.rehearsal ? { rehearsal: vm.rehearsal } : {}),
    };
  }

  private running(id: string): Vm {
    const vm = this.vms.get(id);
    if (!vm || vm.stopping) throw new RuntimeError("not_running", `sandbox ${id} is not running`);
    if (vm.stalled) throw new RuntimeError("not_running", `sandbox ${id} is stopped: ${vm.stalled}`);
    return vm;
  }

  /** Boots through `bootVm`, then watches the new VM's process. */
  private async boot(spec: MachineSpec, signal: AbortSignal): Promise<MachineInfo> {
    const { log, images, network, dataDir } = this.opts;
    // A warm pool VM (claimed under this id), else a template restore; cold boot when neither works.
    const t0 = Date.now();
    const restored = await this.snaps.restore(spec, this.bootTimeoutMs);
    if (restored) {
      const vm = this.adopt(restored.vm);
      log.info({ id: vm.id, pid: vm.pid, tap: vm.tap, how: restored.how, ms: Date.now() - t0 }, "VM started from snapshot");
      return { id: vm.id, pid: vm.pid, bootMs: Date.now() - t0 };
    }
    signal.throwIfAborted();
    // A spare claimed for this id that no template restore used: stopped here;
    // bootVm's removeLeftovers then takes its directory.
    await this.snaps.dropSpare(spec.id);
    const b = await bootVm(
      { dataDir, images, network, log, binary: this.binary, accel: this.accel, bootTimeoutMs: this.bootTimeoutMs,
        removeLeftovers: (id) => this.removeLeftovers(id), ...(this.opts.jail ? { jail: this.opts.jail } : {}),
        ...(this.opts.spawner ? { spawner: this.opts.spawner } : {}) },
      spec,
      signal,
    );
    const vm: Vm = {
      id: b.id, pid: b.pid, paths: b.paths, tap: b.tap, memMib: spec.memMib, agent: b.agent, qmp: b.qmp, child: b.child, stopping: false,
      snap: { vcpu: spec.vcpu, rootfs: spec.rootfs, ram: { anon: "legacy" }, disk: { file: b.paths.disk, format: "raw" } },
    };
    this.vms.set(vm.id, vm);
    this.watchAgent(vm);
    this.watchStall(vm);
    b.child.removeAllListeners("exit");
    const onExit = (code: number | null, sig: NodeJS.Signals | null) =>
      void this.gone(vm, sig ? `VMM killed by ${sig}` : `VMM exited with code ${code}`);
    b.child.once("exit", onExit);
    // It may have died between the end of bootVm and the listener.
    if (b.child.exitCode !== null || b.child.signalCode !== null) onExit(b.child.exitCode, b.child.signalCode);
    log.info({ id: vm.id, pid: vm.pid, tap: vm.tap, bootMs: b.bootMs, accel: this.accel }, "VM booted");
    return { id: vm.id, pid: vm.pid, bootMs: b.bootMs };
  }

  private async doDestroy(id: string): Promise<void> {
    const c = this.creating.get(id);
    if (c) {
      c.abort.abort(new Error("destroyed"));
      await c.done; // boot() cleans up after itself
    }
    await this.snaps.discardWarm(id);
    await this.snaps.dropSpare(id);
    await this.snaps.stopOwning(id);
    const frozen = this.frozen.get(id);
    if (frozen) {
      this.frozen.delete(id);
      await frozen.qmp.execute("quit", undefined, 1000).catch(() => {});
      if (!(await waitGone(frozen.pid, 2000))) await killAndWait(frozen.pid, 1000);
      frozen.qmp.close();
    }
    const vm = this.vms.get(id);
    if (vm) {
      vm.stopping = true;
      // A clean quit lets QEMU flush the disk; SIGTERM/SIGKILL if it hangs.
      await vm.qmp.execute("quit", undefined, 1000).catch(() => {});
      if (!(await waitGone(vm.pid, 2000))) await killAndWait(vm.pid, 1000);
      this.detach(vm);
      this.vms.delete(id);
    }
    await this.removeLeftovers(id, vm?.tap ?? frozen?.tap);
    this.opts.log.info({ id }, "VM destroyed");
  }

  /**
   * Kills the VMM of `id` if its pidfile still names a live one, deletes its
   * tap and directory. Safe when nothing is there.
   */
  private async removeLeftovers(id: string, knownTap?: string): Promise<void> {
    const paths = vmPaths(this.opts.dataDir, id);
    const pid = await readPidfile(paths.pidfile);
    if (pid !== undefined && (await isVmmOf(pid, paths.dir))) await killAndWait(pid, 500);
    const tap = knownTap ?? (await readVmMeta(paths.meta))?.tap;
    if (tap) await this.opts.network.deleteTap(tap);
    await this.opts.jail?.release(id);
    await rm(paths.dir, { recursive: true, force: true });
  }

  /**
   * Re-attaches to a VM left running by a previous server; undefined if it
   * cannot be. A VM stopped on a full disk stays stopped (a FrozenVm, `stalled` set).
   */
  private async attach(id: string): Promise<{ pid: number; stalled?: string } | undefined> {
    const paths = vmPaths(this.opts.dataDir, id);
    const pid = await readPidfile(paths.pidfile);
    const meta = await readVmMeta(paths.meta);
    if (pid === undefined || !meta || !(await isVmmOf(pid, paths.dir))) return undefined;
    let qmp: QmpClient | undefined;
    try {
      qmp = await QmpClient.connect(paths.qmp, { timeoutMs: 5000 });
      // A pause killed mid-stream (no bundle yet) left the guest stopped: it runs on.
      const st = await qmp.execute<{ running: boolean; status?: string }>("query-status");
      // A QEMU that never ran this guest: a spare (in --preconfig), or one still loading a state.
      if (st.status === "prelaunch" || st.status === "inmigrate") throw new Error(`its QEMU never ran the guest (${st.status})`);
      if (isIoErrorStatus(st.status)) {
        // Not an interrupted pause: its disk is full. `cont` would only stop
        // it again (or fill the disk further); it waits for a resume.
        const snap = (await readSnapInfo(paths.dir)) ?? {
          vcpu: meta.vcpu, rootfs: meta.rootfs, ram: { anon: "legacy" as const }, disk: { file: paths.disk, format: "raw" as const },
        };
        this.frozen.set(id, { id, pid, paths, tap: meta.tap, memMib: meta.memMib, qmp, snap });
        await this.opts.disk?.releaseReserve(`VM ${id} found stopped on a full disk`).catch(() => false);
        this.opts.log.warn({ id, pid }, "re-attached VM is stopped on a full disk: kept stopped until resumed");
        return { pid, stalled: DISK_FULL_REASON };
      }
      if (!st.running) {
        await qmp.execute("migrate_cancel").catch(() => {});
        await qmp.execute("cont");
        await rm(`${paths.dir}/state.tmp`, { force: true });
        this.opts.log.info({ id }, "interrupted pause undone: VM runs on");
      }
      const agent = await AgentClient.connect(paths.agent, { timeoutMs: 10_000 });
      await agent.ping(5000);
      const snap = (await readSnapInfo(paths.dir)) ?? {
        vcpu: meta.vcpu, rootfs: meta.rootfs, ram: { anon: "legacy" as const }, disk: { file: paths.disk, format: "raw" as const },
      };
      const vm: Vm = { id, pid, paths, tap: meta.tap, memMib: meta.memMib, agent, qmp, stopping: false, snap };
      this.vms.set(id, vm);
      this.watchAgent(vm);
      this.watchStall(vm);
      this.opts.log.info({ id, pid }, "re-attached to running VM");
      return vm;
    } catch (err) {
      qmp?.close();
      this.opts.log.warn({ id, pid, err }, "could not re-attach to VM");
      return undefined;
    }
  }

  private detach(vm: Vm): void {
    vm.child?.removeAllListeners("exit");
    vm.agent.close();
    vm.qmp.close();
  }

  /**
   * A write to the VM's disk found the data dir full and QEMU stopped the VM
   * (werror=enospc): mark it stalled, give the database its reserve back,
   * tell the listeners (core: `running → error`). Once per stall.
   */
  private watchStall(vm: Vm): void {
    watchIoErrors(vm.qmp, (ev) => {
      // Also while pausing: a pause that then fails leaves it stalled.
      if (vm.stalled || this.vms.get(vm.id) !== vm) return;
      vm.stalled = DISK_FULL_REASON;
      this.opts.log.warn({ id: vm.id, device: ev.data?.device, operation: ev.data?.operation }, "VM stopped: its disk write found the data dir full");
      void (async () => {
        await this.opts.disk?.releaseReserve(`VM ${vm.id} stalled on a full disk`).catch(() => false);
        this.notify(this.stallListeners, "onStall", vm.id, DISK_FULL_REASON);
      })();
    });
  }

  /**
   * Continues VM `id` stalled on a full disk (QEMU retries the waiting
   * writes). Rejects `disk_full` when it stalls again (it stays as it was).
   * A VM found stalled at reconcile gets its agent connection here.
   */
  private async continueVm(id: string, spec: MachineSpec): Promise<MachineInfo> {
    const t0 = Date.now();
    const disk = this.opts.disk;
    if (disk) {
      // Room above the floor, and the database's reserve back in place, so
      // that a new stall (the waiting writes may need more) can release it again.
      disk.admit(0, "continuing a VM stopped on a full disk");
      if (!(await disk.holdReserve())) throw new RuntimeError("disk_full", "not enough free disk space to continue the VM: its disk reserve cannot be put back");
    }
    const vm = this.vms.get(id);
    if (vm?.stalled) {
      // A fresh clock (it stood still) and RNG seed; its network is unchanged.
      await continueStalled(vm.qmp, () => identifyVm(vm, spec, { network: false }), CONTINUE_TIMEOUT_MS);
      vm.stalled = undefined;
      this.opts.log.info({ id, ms: Date.now() - t0 }, "stalled VM continued");
      return { id, pid: vm.pid, bootMs: Date.now() - t0 };
    }
    const f = this.frozen.get(id);
    if (!f) throw new RuntimeError("not_running", `sandbox ${id} is not stalled`);
    // The agent port takes one host connection: a handshake left waiting
    // after a failed continue must not hold it for the next one.
    const abort = new AbortController();
    const agent = await continueStalled(f.qmp, async () => {
      const a = await AgentClient.connect(f.paths.agent, { timeoutMs: CONTINUE_TIMEOUT_MS, signal: abort.signal });
      try {
        await applyIdentity(a, spec, { network: false });
        return a;
      } catch (err) {
        a.close();
        throw err;
      }
    }, CONTINUE_TIMEOUT_MS).catch((err: unknown) => {
      abort.abort();
      throw err;
    });
    this.frozen.delete(id);
    const next: Vm = { id, pid: f.pid, paths: f.paths, tap: f.tap, memMib: f.memMib, agent, qmp: f.qmp, stopping: false, snap: f.snap };
    this.vms.set(id, next);
    this.watchAgent(next);
    this.watchStall(next);
    this.opts.log.info({ id, ms: Date.now() - t0 }, "stalled VM continued");
    return { id, pid: f.pid, bootMs: Date.now() - t0 };
  }

  /**
   * A broken agent channel (protocol garbage from the guest, a socket error)
   * leaves a VM nobody can use: it is ended and reported like a VMM exit.
   * A close of ours (pause, destroy, shutdown) resolves without a reason.
   */
  private watchAgent(vm: Vm): void {
    void vm.agent.closed.then(async (reason) => {
      if (reason === undefined || vm.stopping || this.vms.get(vm.id) !== vm) return;
      // A VMM that died closes the channel too: let its exit be the reason.
      await sleep(AGENT_LOSS_GRACE_MS);
      if (vm.stopping || this.vms.get(vm.id) !== vm) return;
      void this.gone(vm, (await isAlive(vm.pid)) ? `agent channel lost: ${reason.message}` : "VMM gone");
    });
  }

  /** A VM died on its own: clean up, then tell the listeners (once). */
  private async gone(vm: Vm, reason: string): Promise<void> {
    if (vm.stopping || this.vms.get(vm.id) !== vm) return;
    vm.stopping = true;
    this.vms.delete(vm.id);
    this.detach(vm);
    const tail = await consoleTail(vm.paths, 1024);
    this.opts.log.warn({ id: vm.id, pid: vm.pid, reason, console: tail }, "VM exited unexpectedly");
    await this.reportExit(vm.id, vm.tap, reason);
  }

  /** After a VM's own exit: remove its files and tap, then tell the exit listeners. */
  private async reportExit(id: string, tap: string, reason: string): Promise<void> {
    await this.removeLeftovers(id, tap).catch((err: unknown) => this.opts.log.error({ id, err }, "cleanup after VM exit failed"));
    this.notify(this.listeners, "onExit", id, reason);
  }

  /** Calls every listener; one that throws is logged and does not stop the others. */
  private notify(listeners: readonly ((id: string, reason: string) => void)[], what: string, id: string, reason: string): void {
    for (const l of listeners) {
      try {
        l(id, reason);
      } catch (err) {
        this.opts.log.error({ id, err }, `${what} listener threw`);
      }
    }
  }

  /** Every POLL_MS: notice VMs gone without an exit event (re-attached ones), rotate consoles. */
  private async poll(): Promise<void> {
    for (const vm of [...this.vms.values()]) {
      if (vm.stopping) continue;
      if (!(await isAlive(vm.pid))) await this.gone(vm, `VMM process ${vm.pid} is gone`);
      // A stat per VM per poll: a guest flooding its console is caught within one poll.
      else vm.consoleSize = await rotateConsole(vm.paths, this.consoleMaxBytes, vm.consoleSize);
    }
    for (const f of [...this.frozen.values()]) {
      if (this.destroying.has(f.id) || (await isAlive(f.pid))) continue;
      if (this.frozen.get(f.id) !== f) continue;
      this.frozen.delete(f.id);
      f.qmp.close();
      await this.reportExit(f.id, f.tap, `VMM process ${f.pid} is gone`);
    }
  }
}
