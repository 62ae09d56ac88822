/**
 * The QEMU implementation of `Runtime`: one detached `qemu-system-x86_64`
 * microvm per sandbox, started inside Hutch's network namespace, with its
 * files in `<dataDir>/sandboxes/<id>/`. VMs outlive the server; `reconcile`
 * re-attaches after a restart.
 */
import type { ChildProcess } from "node:child_process";
import { readdir, rm } from "node:fs/promises";
import os from "node:os";
import type { Readable } from "node:stream";
import { AgentClient } from "../agent/agent-client.js";
import { RuntimeError } from "../errors.js";
import { detectAccel, memBudgetMib, type Accel } from "../host-info.js";
import type { ImageStore } from "../images/image-store.js";
import type { HostNetwork } from "../network/host-network.js";
import type {
  ExecOutcome,
  ExecOutput,
  ExecRequest,
  ImageInfo,
  MachineExitListener,
  MachineInfo,
  MachineSpec,
  Runtime,
  RuntimeCapacity,
  RunningMachine,
} from "../runtime.js";
import { QmpClient } from "./qmp-client.js";
import type { RuntimeLogger } from "./runtime-logger.js";
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
  child?: ChildProcess;
  /** Set by destroy (or once its exit is handled): no onExit for it. */
  stopping: boolean;
}

const POLL_MS = 500;

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
  private readonly timer: NodeJS.Timeout;
  private ticks = 0;
  private closed = false;

  constructor(private readonly opts: QemuRuntimeOptions) {
    checkSocketPathLength(opts.dataDir);
    this.accel = opts.accel ?? detectAccel();
    this.budgetMib = memBudgetMib(undefined, opts.memBudgetMib);
    this.binary = opts.qemuBinary ?? "qemu-system-x86_64";
    this.bootTimeoutMs = opts.bootTimeoutMs ?? (this.accel === "kvm" ? 20_000 : 60_000);
    this.consoleMaxBytes = opts.consoleMaxBytes ?? 1024 * 1024;
    this.timer = setInterval(() => void this.poll(), POLL_MS);
    this.timer.unref();
  }

  async create(spec: MachineSpec, signal?: AbortSignal): Promise<MachineInfo> {
    const { id } = spec;
    if (this.closed) throw new RuntimeError("internal", "runtime is closed");
    if (!isSandboxId(id)) throw new RuntimeError("internal", `invalid sandbox id: ${JSON.stringify(id)}`);
    if (this.vms.has(id) || this.creating.has(id) || this.destroying.has(id)) {
      throw new RuntimeError("internal", `VM ${id} already exists`);
    }
    const used = [...this.vms.values(), ...this.creating.values()].reduce((s, v) => s + v.memMib, 0);
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

  async exec(id: string, req: ExecRequest, out: ExecOutput, signal?: AbortSignal): Promise<ExecOutcome> {
    return this.running(id).agent.exec(req, out, signal);
  }

  async writeFile(id: string, path: string, data: Readable): Promise<void> {
    return this.running(id).agent.writeFile(path, data);
  }

  async readFile(id: string, path: string): Promise<Readable> {
    return this.running(id).agent.readFile(path);
  }

  async reconcile(ids: string[]): Promise<RunningMachine[]> {
    const want = new Set(ids);
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
      const vm = want.has(id) ? await this.attach(id) : undefined;
      if (vm) {
        alive.push({ id, pid: vm.pid });
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
    return alive;
  }

  onExit(listener: MachineExitListener): void {
    this.listeners.push(listener);
  }

  async images(): Promise<{ images: ImageInfo[]; default: string }> {
    const images = this.opts.images
      .catalog()
      .filter((i) => i.built)
      .map((i) => ({ name: i.name, description: i.description }));
    return { images, default: this.opts.images.defaultImage };
  }

  capacity(): RuntimeCapacity {
    return { memMib: this.budgetMib, vcpus: os.cpus().length };
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    for (const c of this.creating.values()) c.abort.abort(new Error("runtime closing"));
    await Promise.all([...this.creating.values()].map((c) => c.done));
    for (const vm of this.vms.values()) this.detach(vm);
    this.vms.clear();
  }

  // --- internals ----------------------------------------------------------

  private running(id: string): Vm {
    const vm = this.vms.get(id);
    if (!vm || vm.stopping) throw new RuntimeError("not_running", `sandbox ${id} is not running`);
    return vm;
  }

  /** Boots through `bootVm`, then watches the new VM's process. */
  private async boot(spec: MachineSpec, signal: AbortSignal): Promise<MachineInfo> {
    const { log, images, network, dataDir } = this.opts;
    const b = await bootVm(
      { dataDir, images, network, log, binary: this.binary, accel: this.accel, bootTimeoutMs: this.bootTimeoutMs,
        removeLeftovers: (id) => this.removeLeftovers(id) },
      spec,
      signal,
    );
    const vm: Vm = { id: b.id, pid: b.pid, paths: b.paths, tap: b.tap, memMib: spec.memMib, agent: b.agent, qmp: b.qmp, child: b.child, stopping: false };
    this.vms.set(vm.id, vm);
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
    const vm = this.vms.get(id);
    if (vm) {
      vm.stopping = true;
      // A clean quit lets QEMU flush the disk; SIGTERM/SIGKILL if it hangs.
      await vm.qmp.execute("quit", undefined, 1000).catch(() => {});
      if (!(await waitGone(vm.pid, 2000))) await killAndWait(vm.pid, 1000);
      this.detach(vm);
      this.vms.delete(id);
    }
    await this.removeLeftovers(id, vm?.tap);
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
    await rm(paths.dir, { recursive: true, force: true });
  }

  /** Re-attaches to a VM left running by a previous server; undefined if it cannot be. */
  private async attach(id: string): Promise<Vm | undefined> {
    const paths = vmPaths(this.opts.dataDir, id);
    const pid = await readPidfile(paths.pidfile);
    const meta = await readVmMeta(paths.meta);
    if (pid === undefined || !meta || !(await isVmmOf(pid, paths.dir))) return undefined;
    let qmp: QmpClient | undefined;
    try {
      qmp = await QmpClient.connect(paths.qmp, { timeoutMs: 5000 });
      const agent = await AgentClient.connect(paths.agent, { timeoutMs: 10_000 });
      await agent.ping(5000);
      const vm: Vm = { id, pid, paths, tap: meta.tap, memMib: meta.memMib, agent, qmp, stopping: false };
      this.vms.set(id, vm);
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

  /** A VM died on its own: clean up, then tell the listeners (once). */
  private async gone(vm: Vm, reason: string): Promise<void> {
    if (vm.stopping || this.vms.get(vm.id) !== vm) return;
    vm.stopping = true;
    this.vms.delete(vm.id);
    this.detach(vm);
    const tail = await consoleTail(vm.paths, 1024);
    this.opts.log.warn({ id: vm.id, pid: vm.pid, reason, console: tail }, "VM exited unexpectedly");
    await this.removeLeftovers(vm.id, vm.tap).catch((err: unknown) =>
      this.opts.log.error({ id: vm.id, err }, "cleanup after VM exit failed"),
    );
    for (const l of this.listeners) {
      try {
        l(vm.id, reason);
      } catch (err) {
        this.opts.log.error({ id: vm.id, err }, "onExit listener threw");
      }
    }
  }

  /** Every POLL_MS: notice VMs gone without an exit event (re-attached ones), rotate consoles. */
  private async poll(): Promise<void> {
    const rotate = ++this.ticks % 10 === 0;
    for (const vm of [...this.vms.values()]) {
      if (vm.stopping) continue;
      if (!(await isAlive(vm.pid))) await this.gone(vm, `VMM process ${vm.pid} is gone`);
      else if (rotate) await rotateConsole(vm.paths, this.consoleMaxBytes);
    }
  }
}
