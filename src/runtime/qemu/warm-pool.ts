/**
 * The warm pool: a few VMs per (rootfs, shape) already restored from their
 * template and warmed up, so a create only hands one over (one CONFIGURE,
 * ~20 ms once the guest ran its code paths) instead of restoring (~500 ms+
 * under TCG).
 *
 * A pool VM lives in `sandboxes/<id>/` under a fresh sandbox id that becomes
 * the sandbox's id when claimed (its directory, tap and QEMU argv all derive
 * from the id, so nothing is renamed at hand-over). Right after its restore
 * it got a neutral identity (link-local address, its own MAC), then a
 * second one over it, and ran one exec: the guest has run a CONFIGURE that
 * replaces an identity, so its code is translated when the real one comes.
 * With an address source (core's scheduler, `useAddresses`) the VM waits
 * with a sandbox address held for it instead of a link-local one: the
 * create that claims it gets that address, and the hand-over leaves the
 * guest's network as it is (measured: 4-7 ms of a ~10 ms CONFIGURE under
 * TCG). Such a VM also gets the firewall rules of a new sandbox at that
 * address while it waits (`WarmFirewall`), so a hand-over with the default
 * policy rewrites none. Pool VMs are not in the database: a restarted server's reconcile
 * kills those of the previous one, and the pool refills; held addresses
 * live in memory and go with the server.
 */
import { randomBytes } from "node:crypto";
import { rm } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { ulid } from "ulid";
import type { MachineNetwork, MachineShape, MachineSpec, NetworkPolicy, WarmAddress, WarmAddresses, WarmClaim } from "../runtime.js";
import { snapPaths } from "../snapshot/snapshot-paths.js";
import { stopVm, type SnapshotDeps, type SnapVm } from "../snapshot/snapshot-vm.js";
import { identifyVm, rehearseExec } from "../snapshot/guest-identity.js";
import { restoreFromTemplate } from "../snapshot/template.js";
import { Refill } from "./refill.js";
import { TemplateManager } from "./template-manager.js";

/** Delay between a claim and the refill it triggers, ms. */
const REFILL_DELAY_MS = 1000;

/** How many warm VMs to keep for one shape. */
export interface WarmTarget {
  shape: MachineShape;
  size: number;
}

export interface WarmPoolOptions {
  targets: WarmTarget[];
  templates: TemplateManager;
  /** Whether the host has room for another `memMib` of guest memory. */
  hasRoom(memMib: number): boolean;
  /** The firewall's rules for a VM holding a sandbox address (see WarmFirewall). */
  firewall?: WarmFirewall;
}

/**
 * What the pool asks of the sandbox firewall: a VM that holds a sandbox
 * address gets the rules of a new sandbox there while it waits (its tap
 * bound to the address too), so the hand-over changes none of them.
 */
export interface WarmFirewall {
  apply(id: string, policy: NetworkPolicy): Promise<void>;
  remove(id: string): Promise<void>;
}

export class WarmPool {
  readonly #ready = new Map<string, SnapVm[]>();
  readonly #claimed = new Map<string, SnapVm>();
  /** The network each pool VM has, and the address it holds (if from `#addresses`). */
  readonly #nets = new Map<string, { net: MachineNetwork; address?: WarmAddress }>();
  #addresses: WarmAddresses | undefined;
  readonly #refill = new Refill(() => this.#fillLoop(), () => this.#closed);
  #closed = false;

  constructor(
    private readonly d: SnapshotDeps,
    private readonly opts: WarmPoolOptions,
  ) {}

  /** Guest memory held by pool VMs (ready or claimed, not yet handed over), MiB. */
  memMib(): number {
    let sum = 0;
    for (const list of this.#ready.values()) for (const vm of list) sum += vm.memMib;
    for (const vm of this.#claimed.values()) sum += vm.memMib;
    return sum;
  }

  /** Whether `id` is a pool VM (ready or claimed). */
  has(id: string): boolean {
    return this.#claimed.has(id) || [...this.#ready.values()].some((l) => l.some((v) => v.id === id));
  }

  /** Where VMs made from now on get their addresses (see the file comment). */
  useAddresses(source: WarmAddresses): void {
    this.#addresses = source;
  }

  /** Reserves a live warm VM of `shape`; its id becomes the sandbox id. Refills in the background. */
  claim(shape: MachineShape): WarmClaim | undefined {
    const list = this.#ready.get(TemplateManager.shapeKey(shape));
    let vm: SnapVm | undefined;
    while ((vm = list?.shift())) {
      if (!vm.exited) break;
      void this.#discard(vm);
    }
    // Refill a moment later: a restore right now would compete for the CPU
    // with the hand-over this claim is for.
    setTimeout(() => this.fill(), REFILL_DELAY_MS).unref();
    if (!vm) return undefined;
    this.#claimed.set(vm.id, vm);
    const address = this.#nets.get(vm.id)?.address;
    return { id: vm.id, ...(address ? { address } : {}) };
  }

  /**
   * The claimed VM `id`, handed to the caller (no longer the pool's), with
   * the network its guest has. Its address, if it held one, is the
   * caller's business now (the create's row has it).
   */
  take(id: string): { vm: SnapVm; net?: MachineNetwork } | undefined {
    const vm = this.#claimed.get(id);
    const held = this.#nets.get(id);
    this.#claimed.delete(id);
    this.#nets.delete(id);
    return vm && { vm, ...(held ? { net: held.net } : {}) };
  }

  /** Ends the claimed VM `id` that no create took (its address is given back). */
  async drop(id: string): Promise<void> {
    const vm = this.#claimed.get(id);
    this.#claimed.delete(id);
    if (vm) await this.#discard(vm);
  }

  /** Starts a refill pass if none is running (builds missing templates first). */
  fill(): void {
    this.#refill.request();
  }

  /** Stops refilling and ends every pool VM (they are not sandboxes). */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#refill.settled();
    const all = [...[...this.#ready.values()].flat(), ...this.#claimed.values()];
    this.#ready.clear();
    this.#claimed.clear();
    await Promise.all(all.map((vm) => this.#discard(vm)));
  }

  async #fillLoop(): Promise<void> {
    for (const t of this.opts.targets) {
      const key = TemplateManager.shapeKey(t.shape);
      let failures = 0;
      while (!this.#closed && (this.#ready.get(key)?.length ?? 0) < t.size && failures < 3) {
        const tpl = await this.opts.templates.ensure(t.shape);
        if (!tpl || this.#closed) break;
        if (!this.opts.hasRoom(t.shape.memMib)) return;
        const address = await this.#addresses?.reserve().catch((err: unknown) => {
          this.d.log?.warn({ key, err }, "no address for a warm VM; it waits with a link-local one");
          return undefined;
        });
        const spec = neutralSpec(t.shape, address?.net);
        let vm: SnapVm | undefined;
        try {
          const restored = await restoreFromTemplate(this.d, tpl, spec);
          vm = restored.vm;
          this.#nets.set(vm.id, { net: spec.net, ...(address ? { address } : {}) });
          // Rehearse the hand-over: a second throwaway identity replaces the
          // first one the way the user's will replace it (hostname, and
          // another address and MAC unless it holds its sandbox address:
          // code paths the first CONFIGURE did not run). Under TCG a path's
          // first run is translated: ~55 → ~20 ms for the hand-over's CONFIGURE.
          const rehearsal = address ? spec : neutralSpec(t.shape);
          await identifyVm(vm, { ...rehearsal, name: "warm-rehearsal" }, { network: !address });
          this.#nets.set(vm.id, { net: rehearsal.net, ...(address ? { address } : {}) });
          // Run an exec once, for the same reason (~150 ms for exec's
          // fork/execve), which the user's first exec would otherwise pay.
          await rehearseExec(vm);
          // Best effort: without them the hand-over writes every rule itself. (After a
          // crash the previous server's rules for this address stay until the start-up
          // prune, and an apply that comes before it fails on them.)
          const id = vm.id;
          if (address?.policy) {
            await this.opts.firewall?.apply(id, address.policy)
              .catch((err: unknown) => this.d.log?.warn({ id, err }, "warm VM's firewall rules not applied; its hand-over will write them"));
          }
          if (this.#closed) {
            await this.#discard(vm);
            return;
          }
          const list = this.#ready.get(key) ?? [];
          list.push(vm);
          this.#ready.set(key, list);
          this.d.log?.info({ id: vm.id, key, readyMs: restored.timings.readyMs, ...(address ? { ip: address.net.ip } : {}) }, "warm VM ready");
        } catch (err) {
          failures++;
          // A VM that restored but failed its rehearsal is ended too (its address given back).
          if (vm) await this.#discard(vm);
          else if (address) this.#addresses?.release(address);
          this.d.log?.warn({ key, err }, "warm VM restore failed");
        }
      }
    }
  }

  async #discard(vm: SnapVm): Promise<void> {
    const address = this.#nets.get(vm.id)?.address;
    this.#nets.delete(vm.id);
    // Its rules first: the address may go to another sandbox once released.
    // (A closing server leaves them: the next one's prune removes them.)
    if (address?.policy && !this.#closed) {
      await this.opts.firewall?.remove(vm.id).catch((err: unknown) => this.d.log?.warn({ id: vm.id, err }, "warm VM's firewall rules not removed"));
    }
    if (address) this.#addresses?.release(address);
    await stopVm(vm, 500).catch(() => {});
    // Its jail's release too (pool close: the server exits next and would leave
    // its cgroups). The timer keeps the event loop alive until QEMU's exit event.
    const wait = new AbortController();
    await Promise.race([vm.released, sleep(2000, undefined, { signal: wait.signal }).catch(() => {})]);
    wait.abort();
    await this.d.network.deleteTap(vm.tap).catch(() => {});
    await rm(snapPaths(this.d.dataDir, vm.id).dir, { recursive: true, force: true });
  }
}

/**
 * The identity a pool VM waits with: the address held for it, else its own
 * MAC and a link-local address (never one of the sandbox network's, which
 * belong to sandboxes).
 */
function neutralSpec(shape: MachineShape, net?: MachineNetwork): MachineSpec {
  const r = randomBytes(6);
  return {
    id: `sb_${ulid()}`,
    name: "warm",
    ...shape,
    net: net ?? {
      ip: `169.254.${1 + (r[0]! % 253)}.${1 + (r[1]! % 253)}`,
      prefixLen: 16,
      gateway: "169.254.0.1",
      mac: `02:fd:${[...r.subarray(2)].map((b) => b.toString(16).padStart(2, "0")).join(":")}`,
      dns: [],
    },
    envs: {},
    sshPubkeys: [],
  };
}

/** Whether a guest with network `a` needs no change to have `b`. */
export function sameNetwork(a: MachineNetwork, b: MachineNetwork): boolean {
  return a.ip === b.ip && a.mac === b.mac && a.prefixLen === b.prefixLen && a.gateway === b.gateway &&
    a.dns.length === b.dns.length && a.dns.every((d, i) => d === b.dns[i]);
}
