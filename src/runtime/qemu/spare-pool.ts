/**
 * Spare QEMUs: a few per shape, started ahead of need and waiting in
 * `--preconfig` for their RAM and disk, so that a fork's child, or a create
 * the warm pool cannot serve, does not wait for QEMU's own start (~100 ms of CPU under TCG: the binary's start-up
 * and the jail, measured in docs/snapshots.md).
 *
 * A spare lives in `sandboxes/<id>/` under a fresh sandbox id, jailed, with
 * its tap, like a warm pool VM; a fork claims one (`claim`), makes the
 * child under that id (fork.ts `intoSpare`: the directory exists), and the
 * child's first resume adopts it (snapshot-vm.ts `launchVm`): the RAM
 * backend and disk are added over QMP, the machine is built, the state is
 * streamed in. A create claims one when the warm pool has no VM, and its
 * template restore adopts it. A spare's RAM file must be the child's
 * `mem.base`, its template's `mem` or a share=on `mem`, and its disk chain
 * must end in the template its jail binds; a launch it does not fit gets a
 * new QEMU instead.
 *
 * Spares are not in the database: a restarted server's reconcile kills
 * those of the previous one (not in the store, or next to a complete
 * paused bundle) and the pool refills. A claimed spare no launch took within
 * CLAIM_TTL_MS is stopped (the fork failed, or its child was left paused).
 * Only with `hutch-jailer`, which makes a launch's tap (a spare's tap must
 * exist before its id has a sandbox).
 */
import { mkdir, rm } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { ulid } from "ulid";
import type { MachineShape } from "../runtime.js";
import { snapPaths } from "../snapshot/snapshot-paths.js";
import { launchSpare, stopVm, type SnapshotDeps, type SpareSource, type SpareVm } from "../snapshot/snapshot-vm.js";
import { Refill } from "./refill.js";
import type { TemplateManager } from "./template-manager.js";
import type { WarmTarget } from "./warm-pool.js";

/**
 * Delay between a claim and the refill it triggers, ms: long enough for the
 * claim's launch to have begun (a fork moves its files first), after which
 * the refill waits for it through `starting`. A create that comes right
 * after another still finds a spare (1 s here missed most back-to-back ones).
 */
const REFILL_DELAY_MS = 200;
/** How often a refill looks whether a user's VM still starts, ms. */
const STARTING_POLL_MS = 50;
/** A claimed spare not taken by a launch within this is stopped, ms. */
const CLAIM_TTL_MS = 60_000;

export interface SparePoolOptions {
  /** Shapes to keep spares of from the start, and how many each (their templates are built). */
  targets: WarmTarget[];
  /**
   * Spares kept for another shape once a fork asked for one (its template
   * must exist: none is built for a spare). Default 0: none.
   */
  onDemand?: number;
  templates: TemplateManager;
  /** True while a user's VM starts: a refill waits rather than take its CPU. */
  starting?(): boolean;
}

/** The key spares are kept under: what their command line depends on. */
function spareKey(s: { rootfs: string; vcpu: number; memMib: number }): string {
  return `${s.rootfs}/${s.vcpu}c/${s.memMib}m`;
}

export class SparePool implements SpareSource {
  /** What to keep: the start-up targets, then shapes forks asked for (`build` false: no template build for them). */
  readonly #targets: Array<WarmTarget & { build: boolean }>;
  readonly #ready = new Map<string, SpareVm[]>();
  readonly #claimed = new Map<string, { vm: SpareVm; expiry: NodeJS.Timeout }>();
  readonly #refill = new Refill(() => this.#fillLoop(), () => this.#closed);
  #closed = false;

  constructor(
    private readonly d: SnapshotDeps,
    private readonly opts: SparePoolOptions,
  ) {
    this.#targets = opts.targets.map((t) => ({ ...t, build: true }));
  }

  /**
   * Reserves a spare for a VM of `shape`; its id becomes the VM's. Refills a
   * moment later; a shape with no spares yet gets `onDemand` of them from then on.
   */
  claim(shape: MachineShape): string | undefined {
    if (this.#closed) return undefined;
    const key = spareKey(shape);
    if (!this.#targets.some((t) => spareKey(t.shape) === key) && (this.opts.onDemand ?? 0) > 0) {
      this.#targets.push({ shape, size: this.opts.onDemand!, build: false });
    }
    const list = this.#ready.get(key);
    let vm: SpareVm | undefined;
    while ((vm = list?.shift())) {
      if (!vm.exited) break;
      void this.#discard(vm, true);
    }
    setTimeout(() => this.fill(), REFILL_DELAY_MS).unref();
    if (!vm) return undefined;
    const claimed = vm;
    const expiry = setTimeout(() => {
      if (this.#claimed.get(claimed.id)?.vm !== claimed) return;
      this.#claimed.delete(claimed.id);
      this.d.log?.info({ id: claimed.id }, "claimed spare QEMU not used: stopped");
      void this.#discard(claimed, false);
    }, CLAIM_TTL_MS);
    expiry.unref();
    this.#claimed.set(vm.id, { vm, expiry });
    return vm.id;
  }

  take(id: string): SpareVm | undefined {
    const c = this.#claimed.get(id);
    if (!c) return undefined;
    clearTimeout(c.expiry);
    this.#claimed.delete(id);
    return c.vm;
  }

  /** Whether `id` is a spare's (ready or claimed). */
  has(id: string): boolean {
    return this.#claimed.has(id) || [...this.#ready.values()].some((l) => l.some((v) => v.id === id));
  }

  /** Stops the claimed spare `id` if no launch took it (its directory is the VM's: left); true if there was one. */
  async drop(id: string): Promise<boolean> {
    const vm = this.take(id);
    if (vm) await this.#discard(vm, false);
    return vm !== undefined;
  }

  /** Starts a refill pass if none is running. */
  fill(): void {
    this.#refill.request();
  }

  /** Stops refilling and every spare. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#refill.settled();
    const ready = [...this.#ready.values()].flat();
    const claimed = [...this.#claimed.values()];
    this.#ready.clear();
    this.#claimed.clear();
    for (const c of claimed) clearTimeout(c.expiry);
    await Promise.all([...ready.map((vm) => this.#discard(vm, true)), ...claimed.map((c) => this.#discard(c.vm, false))]);
  }

  async #fillLoop(): Promise<void> {
    for (const t of [...this.#targets]) {
      const key = spareKey(t.shape);
      let failures = 0;
      while (!this.#closed && (this.#ready.get(key)?.length ?? 0) < t.size && failures < 3) {
        const tpl = t.build ? await this.opts.templates.ensure(t.shape) : this.opts.templates.get(t.shape);
        if (this.#closed) return;
        if (!tpl) break;
        while (this.opts.starting?.() && !this.#closed) await sleep(STARTING_POLL_MS);
        if (this.#closed) return;
        const id = `sb_${ulid()}`;
        const paths = snapPaths(this.d.dataDir, id);
        try {
          // On a new data dir the first spare may come before any sandbox made sandboxes/.
          await mkdir(path.dirname(paths.dir), { recursive: true, mode: 0o700 });
          await mkdir(paths.dir, { mode: 0o700 });
          const vm = await launchSpare(this.d, {
            id, paths, vcpu: t.shape.vcpu, memMib: t.shape.memMib, rootfs: t.shape.rootfs, shared: [tpl.paths.dir],
          });
          vm.child.once("exit", () => {
            const list = this.#ready.get(key);
            const at = list?.indexOf(vm) ?? -1;
            if (at < 0) return;
            list!.splice(at, 1);
            this.d.log?.warn({ id, reason: vm.exited }, "spare QEMU exited");
            void this.#discard(vm, true);
          });
          if (this.#closed) {
            await this.#discard(vm, true);
            return;
          }
          const list = this.#ready.get(key) ?? [];
          list.push(vm);
          this.#ready.set(key, list);
          this.d.log?.info({ id, key }, "spare QEMU ready");
        } catch (err) {
          failures++;
          await rm(paths.dir, { recursive: true, force: true });
          this.d.log?.warn({ key, err }, "spare QEMU start failed");
        }
      }
    }
  }

  /** Stops `vm`; its directory goes too unless a VM's files are in it now (`removeDir` false). */
  async #discard(vm: SpareVm, removeDir: boolean): Promise<void> {
    await stopVm(vm, 500).catch(() => {});
    // Its jail's release too: the server may exit next and would leave its cgroups.
    const wait = new AbortController();
    await Promise.race([vm.released, sleep(2000, undefined, { signal: wait.signal }).catch(() => {})]);
    wait.abort();
    if (removeDir) await rm(vm.paths.dir, { recursive: true, force: true });
  }
}
