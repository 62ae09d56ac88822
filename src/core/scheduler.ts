/**
 * Placement and admission of new sandboxes. Today there is one local host;
 * this is where multi-host placement goes later. Admission is atomic: the
 * memory check, the IP choice and the row insert run under one mutex, so two
 * concurrent creates never both take the last slot or the same IP.
 */
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

export class Scheduler {
  readonly #opts: SchedulerOptions;
  readonly #mutex = new Mutex();

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
  admit<T>(req: { memMib: number; hostId?: string }, insert: (p: Placement) => Promise<T>): Promise<T> {
    return this.#mutex.run(async () => {
      const hostId = req.hostId ?? this.#opts.localHostId;
      if (hostId !== this.#opts.localHostId) throw noCapacity();
      const live = await this.#opts.sandboxes.liveOnHost(hostId);
      const used = usedMib(live);
      if (used + req.memMib > this.#opts.capacity().memMib) throw noCapacity();
      const ip = this.#opts.pool.allocate(live.map((s) => s.ip));
      if (!ip) throw noCapacity();
      return insert({ hostId, ip, mac: macForIp(ip) });
    });
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
