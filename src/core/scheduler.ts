/**
 * Placement and admission of new sandboxes. Today there is one local host;
 * this is where multi-host placement goes later. Admission is atomic: the
 * memory check, the IP choice and the row insert run under one mutex, so two
 * concurrent creates never both take the last slot or the same IP.
 */
import { randomBytes } from "node:crypto";
import type { RuntimeCapacity } from "../runtime/runtime.js";
import { noCapacity } from "./errors.js";
import { IpPool, macForIp } from "./ip-pool.js";
import { Mutex } from "./mutex.js";
import type { SandboxRepository } from "./repositories.js";
import type { SandboxStatus } from "./sandbox-state.js";

/** Where a new sandbox goes and its network identity. */
export interface Placement {
  hostId: string;
  ip: string;
  mac: string;
}

export interface SchedulerOptions {
  sandboxes: SandboxRepository;
  localHostId: string;
  capacity: () => RuntimeCapacity;
  pool: IpPool;
}

/** An address held for a warm pool VM (`Scheduler.reserve`). */
export interface Reservation {
  ip: string;
  mac: string;
  /** Proves the holder: a late release of an address since handed on does nothing. */
  token: string;
}

export class Scheduler {
  readonly #opts: SchedulerOptions;
  readonly #mutex = new Mutex();
  /** Addresses held by warm pool VMs of this host: ip → token. In memory: pool VMs do not outlive the server. */
  readonly #reserved = new Map<string, string>();

  constructor(opts: SchedulerOptions) {
    this.#opts = opts;
  }

  /** Id of the host this control plane runs VMs on. */
  get localHostId(): string {
    return this.#opts.localHostId;
  }

  /**
   * Picks a host with room for `memMib` and a free IP on it, then runs
   * `insert` (which must persist the row) before anyone else is admitted.
   *
   * @throws AppError `no_capacity` (503) when the host is full.
   */
  admit<T>(req: { memMib: number; hostId?: string; reserved?: Reservation }, insert: (p: Placement) => Promise<T>): Promise<T> {
    return this.#mutex.run(async () => {
      const hostId = req.hostId ?? this.#opts.localHostId;
      if (hostId !== this.#opts.localHostId) throw noCapacity();
      const live = await this.#opts.sandboxes.liveOnHost(hostId);
      const used = usedMib(live);
      if (used + req.memMib > this.#opts.capacity().memMib) throw noCapacity();
      // A warm VM's address (it has it already), while still held for it.
      const r = req.reserved;
      if (r && this.#reserved.get(r.ip) === r.token) {
        const out = await insert({ hostId, ip: r.ip, mac: r.mac });
        this.#reserved.delete(r.ip); // a row holds it now
        return out;
      }
      const ip = this.#opts.pool.allocate([...live.map((s) => s.ip), ...this.#reserved.keys()]);
      if (!ip) throw noCapacity();
      return insert({ hostId, ip, mac: macForIp(ip) });
    });
  }

  /**
   * Holds a free address of the local host for a warm pool VM, which takes
   * it before any create needs it: the create that claims the VM gets this
   * address (`admit` with `reserved`), so the guest's network is not changed
   * at the hand-over. No other sandbox gets it while held. Undefined when
   * the network has no free address.
   */
  reserve(): Promise<Reservation | undefined> {
    return this.#mutex.run(async () => {
      const live = await this.#opts.sandboxes.liveOnHost(this.#opts.localHostId);
      const ip = this.#opts.pool.allocate([...live.map((s) => s.ip), ...this.#reserved.keys()]);
      if (!ip) return undefined;
      const token = randomBytes(8).toString("hex");
      this.#reserved.set(ip, token);
      return { ip, mac: macForIp(ip), token };
    });
  }

  /** Gives back a reservation whose VM was never handed over (no-op once a row took the address). */
  release(r: Pick<Reservation, "ip" | "token">): void {
    if (this.#reserved.get(r.ip) === r.token) this.#reserved.delete(r.ip);
  }

  /**
   * Admits an existing sandbox back onto its host (resume, a fork's child
   * starting): checks there is room for `memMib`, then runs `start` (which
   * must persist a status that holds memory, e.g. `resuming`) before anyone
   * else is admitted.
   *
   * @throws AppError `no_capacity` (503) when the host is full.
   */
  admitExisting<T>(req: { memMib: number; hostId: string }, start: () => Promise<T>): Promise<T> {
    return this.#mutex.run(async () => {
      const live = await this.#opts.sandboxes.liveOnHost(req.hostId);
      if (usedMib(live) + req.memMib > this.#opts.capacity().memMib) throw noCapacity();
      return start();
    });
  }

  /** Memory still free on a host, MiB (for GET /v1/hosts). */
  async freeMib(hostId: string): Promise<{ freeMib: number; vmCount: number }> {
    const live = await this.#opts.sandboxes.liveOnHost(hostId);
    const used = usedMib(live);
    return { freeMib: Math.max(0, this.#opts.capacity().memMib - used), vmCount: live.length };
  }
}

/**
 * Statuses whose sandbox holds no VM (hence no host memory): paused to disk,
 * `error` (a resume that gave up) and `forking` (a paused source, or a child
 * not started yet). They keep their IP.
 */
const NO_MEMORY: ReadonlySet<SandboxStatus> = new Set(["paused", "error", "forking"]);

/** Memory held on a host by its live rows, MiB. */
function usedMib(live: ReadonlyArray<{ memMib: number; status: SandboxStatus }>): number {
  return live.reduce((sum, s) => sum + (NO_MEMORY.has(s.status) ? 0 : s.memMib), 0);
}
