/**
 * QemuRuntime's snapshot side, kept out of qemu-runtime.ts: creates from a
 * warm pool VM or a template, pause, resume and fork, on top of
 * src/runtime/snapshot/ (docs/snapshots.md). QemuRuntime keeps the
 * bookkeeping (which VMs run, capacity); this class does the file and QEMU work.
 */
import { rm } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import path from "node:path";
import type { MachineShape, MachineSpec, WarmAddresses, WarmClaim } from "../runtime.js";
import { forkPaused } from "../snapshot/fork.js";
import { ownStreamRam } from "../snapshot/own-ram.js";
import { readBundle } from "../snapshot/paused-bundle.js";
import { identifyVm, rehearseExec } from "../snapshot/guest-identity.js";
import { pauseToDisk, resumeFromDisk } from "../snapshot/pause.js";
import { snapPaths } from "../snapshot/snapshot-paths.js";
import { stopVm, type SnapshotDeps, type SnapVm } from "../snapshot/snapshot-vm.js";
import { restoreFromTemplate } from "../snapshot/template.js";
import { TemplateManager } from "./template-manager.js";
import { SparePool } from "./spare-pool.js";
import { sameNetwork, WarmPool, type WarmFirewall, type WarmTarget } from "./warm-pool.js";
import { writeSnapInfo } from "./vm-snap-info.js";
import { PhaseTimer } from "../snapshot/phase-timer.js";

/** How often a queued owning looks whether user VMs are still starting. */
const STARTING_POLL_MS = 50;
/** How long a queued owning waits before it looks the first time. */
const OWNING_GRACE_MS = 300;

/** How long a pause waits for a resume's rehearsal exec still running (it takes ~150–300 ms). */
const REHEARSAL_WAIT_MS = 1000;

export interface SnapshotOpsOptions {
  deps: SnapshotDeps;
  /** Serve creates from templates (false: cold boots only, no pool). */
  templates: boolean;
  /** Templates built at start, with their pool sizes. */
  warm: WarmTarget[];
  bootTimeoutMs: number;
  /** Whether the host has room for another `memMib` (pool refills ask). */
  hasRoom(memMib: number): boolean;
  /** Throws (RuntimeError `disk_full`) unless the data dir has `needMib` free for `what` (template builds ask). */
  admitDisk?(needMib: number, what: string): void;
  /**
   * True while a VM is being started for a user (create, resume, a fork's
   * child): an owning waits for it to end rather than take its CPU.
   */
  starting?(): boolean;
  /**
   * After a pause that had to stream all RAM, give the paused VM its own
   * `mem` in the background (own-ram.ts), so its first resume is as fast as
   * a later one. Default true.
   */
  ownStreams?: boolean;
  /**
   * Spare QEMUs kept per warm shape, and per shape forked since
   * (spare-pool.ts), for forks' children and creates without a warm VM;
   * 0 (default) none. Only with templates and a jailer that makes taps.
   */
  spares?: number;
  /** Rules for warm VMs holding a sandbox address (warm-pool.ts). */
  firewall?: WarmFirewall;
}

/** A background ownStreamRam of one paused VM. */
interface Owning {
  abort: AbortController;
  /** The stream is loaded (ownStreamRam's onLoaded): resume and fork wait for the rest rather than stop it. */
  loaded: boolean;
  done: Promise<void>;
}

export class SnapshotOps {
  readonly #d: SnapshotDeps;
  readonly #templates: TemplateManager | undefined;
  readonly #pool: WarmPool | undefined;
  readonly #spares: SparePool | undefined;
  readonly #owning = new Map<string, Owning>();
  /** Settles when the last queued owning has; one runs at a time. */
  #owningTail: Promise<void> = Promise.resolve();
  #closed = false;

  constructor(private readonly opts: SnapshotOpsOptions) {
    this.#d = opts.deps;
    if (opts.templates) {
      this.#templates = new TemplateManager(opts.deps, opts.bootTimeoutMs, opts.admitDisk);
      const targets = opts.warm.filter((t) => t.size > 0);
      if (targets.length > 0) {
        this.#pool = new WarmPool(opts.deps, { targets, templates: this.#templates, hasRoom: opts.hasRoom, ...(opts.firewall ? { firewall: opts.firewall } : {}) });
      }
      const spares = opts.spares ?? 0;
      if (spares > 0 && opts.deps.jail?.makesTaps) {
        this.#spares = new SparePool(opts.deps, {
          targets: opts.warm.map((t) => ({ shape: t.shape, size: spares })), onDemand: spares, templates: this.#templates,
          ...(opts.starting ? { starting: opts.starting } : {}),
        });
        this.#d = { ...opts.deps, spares: this.#spares };
      }
    }
  }

  /** After reconcile: builds the start-up templates (in the background), then fills the pool. */
  start(): void {
    if (!this.#templates) return;
    void this.#templates.prune();
    for (const t of this.opts.warm) void this.#templates.ensure(t.shape);
    this.#pool?.fill();
    this.#spares?.fill();
  }

  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all([...this.#owning.keys()].map((id) => this.stopOwning(id)));
    await this.#templates?.close();
    await this.#pool?.close();
    await this.#spares?.close();
  }

  /** Memory held by warm pool VMs, MiB. */
  poolMib(): number {
    return this.#pool?.memMib() ?? 0;
  }

  isWarm(id: string): boolean {
    return this.#pool?.has(id) ?? false;
  }

  claimWarm(shape: MachineShape): WarmClaim | undefined {
    return this.#pool?.claim(shape);
  }

  useWarmAddresses(source: WarmAddresses): void {
    this.#pool?.useAddresses(source);
  }

  /** Reserves a spare QEMU for a VM of `shape` (a fork's child, a create without a warm VM): its id is the VM's. */
  claimSpare(shape: MachineShape): string | undefined {
    return this.#spares?.claim(shape);
  }

  /** Stops the spare claimed under `id` if no launch took it (destroy, a failed fork); true if there was one. */
  async dropSpare(id: string): Promise<boolean> {
    return (await this.#spares?.drop(id)) ?? false;
  }

  /** Ends the claimed warm VM `id` if create never took it (destroy of a claim). */
  async discardWarm(id: string): Promise<void> {
    await this.#pool?.drop(id);
  }

  /**
   * Starts `spec` from a snapshot: the warm VM claimed under its id (gets
   * its identity), else a restore of its shape's template. Undefined when
   * neither is available (or both failed: logged): the caller cold boots.
   */
  async restore(spec: MachineSpec, timeoutMs: number): Promise<{ vm: SnapVm; how: "pool" | "template" } | undefined> {
    const taken = this.#pool?.take(spec.id);
    if (taken) {
      const warm = taken.vm;
      try {
        if (warm.exited) throw new Error(warm.exited);
        const timer = new PhaseTimer();
        // A VM that held the sandbox's address keeps its network as it is.
        // snap.json does not depend on the identity: written while the guest configures.
        const [configured, recorded] = await Promise.allSettled([
          identifyVm(warm, spec, { network: !(taken.net && sameNetwork(taken.net, spec.net)) }).then(() => timer.lap("configure")),
          this.#recordSnap(warm),
        ]);
        if (configured.status === "rejected") throw configured.reason;
        if (recorded.status === "rejected") throw recorded.reason;
        this.#phases("hand-over", spec.id, timer.phases, timer.totalMs());
        return { vm: warm, how: "pool" };
      } catch (err) {
        this.#d.log?.warn({ id: spec.id, err }, "warm VM hand-over failed; restoring instead");
        await stopVm(warm, 500).catch(() => {});
        await this.#d.network.deleteTap(warm.tap).catch(() => {});
        await rm(snapPaths(this.#d.dataDir, spec.id).dir, { recursive: true, force: true });
      }
    }
    const tpl = this.#templates?.get(spec);
    if (!tpl) return undefined;
    try {
      const timer = new PhaseTimer();
      const { vm, timings } = await restoreFromTemplate(this.#d, tpl, spec, timeoutMs);
      timer.lap("restore");
      await this.#recordSnap(vm);
      timer.lap("snapinfo");
      this.#phases("restore", spec.id, { ...timings.phases, snapinfo: timer.phases.snapinfo! }, timer.totalMs());
      vm.rehearsal = rehearseExec(vm);
      return { vm, how: "template" };
    } catch (err) {
      this.#d.log?.warn({ id: spec.id, err }, "template restore failed; cold booting");
      return undefined;
    }
  }

  /**
   * Pauses `vm` to its directory (QEMU and tap gone). The VM runs on if it
   * throws. True when its RAM was streamed: see ownLater.
   */
  async pause(vm: SnapVm): Promise<boolean> {
    const timer = new PhaseTimer();
    if (vm.rehearsal) await Promise.race([vm.rehearsal, sleep(REHEARSAL_WAIT_MS, undefined, { ref: false })]);
    timer.lap("rehearsal");
    const { phases, bundle } = await pauseToDisk(this.#d, vm);
    await rm(path.join(vm.paths.dir, "snap.json"), { force: true });
    this.#phases("pause", vm.id, { rehearsal: timer.phases.rehearsal!, ...phases }, timer.totalMs());
    return bundle.mem === "stream";
  }

  /**
   * Queues the background owning of paused VM `id`'s RAM (own-ram.ts), if
   * its bundle is a stream and the host has room when its turn comes. One
   * runs at a time: each is a QEMU loading hundreds of MB.
   */
  ownLater(id: string): void {
    if (this.opts.ownStreams === false || this.#closed || this.#owning.has(id)) return;
    const abort = new AbortController();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const prev = this.#owningTail;
    this.#owningTail = prev.then(() => mine);
    const aborted = new Promise<void>((r) => abort.signal.addEventListener("abort", () => r(), { once: true }));
    const owning: Owning = { abort, loaded: false, done: Promise.resolve() };
    owning.done = (async () => {
      try {
        await Promise.race([prev, aborted]);
        // Background work: it waits while a user's VM starts. The grace lets
        // one that follows at once begin first (the core resumes a fork's
        // child right after the paused fork that queued this).
        await Promise.race([sleep(OWNING_GRACE_MS), aborted]);
        while (this.opts.starting?.() && !abort.signal.aborted) await Promise.race([sleep(STARTING_POLL_MS), aborted]);
        if (abort.signal.aborted) return;
        const b = await readBundle(snapPaths(this.#d.dataDir, id).bundle).catch(() => undefined);
        if (abort.signal.aborted || b?.mem !== "stream" || !this.opts.hasRoom(b.memMib)) return;
        const r = await ownStreamRam(this.#d, id, abort.signal, { onLoaded: () => (owning.loaded = true) });
        if (r) this.#d.log?.debug({ op: "own", id, phases: r.phases, totalMs: r.ms, streamBytes: r.streamBytes, stateBytes: r.stateBytes }, "snapshot phases");
      } catch (err) {
        if (!abort.signal.aborted) this.#d.log?.warn({ id, err }, "owning a paused VM's RAM failed: it resumes from its stream");
      } finally {
        if (this.#owning.get(id) === owning) this.#owning.delete(id);
        release();
      }
    })();
    this.#owning.set(id, owning);
  }

  /**
   * Before a resume or fork of `id`: an owning past its load is waited for
   * (~100 ms left, then the resume maps `mem`); any other is stopped, and
   * the resume loads the stream itself. Waiting for a whole owning cost more
   * than that load: QEMU start, load, save and quit, then a resume (a pause
   * and an immediate resume took 2.7 s against 1.8 in a devbox smoke).
   */
  async #settleOwning(id: string): Promise<void> {
    const o = this.#owning.get(id);
    if (!o) return;
    if (!o.loaded) o.abort.abort(new Error(`${id} is resumed or forked`));
    await o.done;
  }

  /** Stops the owning of `id`, if any (destroy, close): its QEMU is killed, the stream bundle stays. */
  async stopOwning(id: string): Promise<void> {
    const o = this.#owning.get(id);
    if (!o) return;
    o.abort.abort(new Error(`owning of ${id} stopped`));
    await o.done;
  }

  /**
   * Resumes paused VM `id` with `spec`'s identity (a fork child's first
   * resume gives it its own MAC and address). On failure the bundle is intact: retry.
   */
  async resume(id: string, spec: MachineSpec, timeoutMs: number): Promise<SnapVm> {
    const timer = new PhaseTimer();
    await this.#settleOwning(id);
    timer.lap("owning");
    const { vm, timings } = await resumeFromDisk(this.#d, id, spec, { timeoutMs });
    timer.lap("resume");
    await this.#recordSnap(vm);
    timer.lap("snapinfo");
    this.#phases("resume", id, { owning: timer.phases.owning!, ...timings.phases, snapinfo: timer.phases.snapinfo! }, timer.totalMs());
    // In the background: the first exec after a resume is otherwise ~250 ms (guest-identity.ts).
    vm.rehearsal = rehearseExec(vm);
    return vm;
  }

  /**
   * Makes paused `childId` from paused `sourceId` (links and overlays only).
   * True when both hold a stream (the source's owning was stopped, or
   * failed): see ownLater.
   */
  async fork(sourceId: string, childId: string): Promise<boolean> {
    const timer = new PhaseTimer();
    await this.#settleOwning(sourceId);
    timer.lap("owning");
    const { phases, forkMs, parent } = await forkPaused(this.#d, sourceId, childId, { intoSpare: this.#spares?.has(childId) ?? false });
    this.#phases("fork", childId, { owning: timer.phases.owning!, ...phases }, timer.phases.owning! + forkMs);
    return parent.mem === "stream";
  }

  /** One debug line per operation: what each of its steps took (bench/snapshot-phases.ts reads them). */
  #phases(op: string, id: string, phases: Record<string, number>, totalMs: number): void {
    this.#d.log?.debug({ op, id, phases, totalMs }, "snapshot phases");
  }

  async #recordSnap(vm: SnapVm): Promise<void> {
    await writeSnapInfo(vm.paths.dir, {
      vcpu: vm.vcpu, rootfs: vm.rootfs, ram: vm.ram, disk: vm.disk, ...(vm.template ? { template: vm.template } : {}),
    });
  }
}
