/**
 * Agent liveness: a guest agent that stops answering while its QEMU lives
 * (a hung PID 1, or one a hostile guest process stopped with ptrace) would
 * leave its sandbox `running` forever with every call hanging. One sweep per
 * interval pings the agent of every running VM not heard from lately; a VM
 * whose agent misses `misses` pings in a row is reported dead, and the
 * runtime ends it through its usual exit path.
 *
 * Never a miss: a VM held on purpose (being paused, destroyed, ...: `busy`),
 * or one whose QEMU says the guest is stopped on purpose (QMP `query-status`:
 * paused, stalled on a host I/O error, migrating). A QMP that does not
 * answer at all is a miss too: a stopped or wedged VMM serves nobody.
 */
import type { RuntimeLogger } from "./runtime-logger.js";

/** QMP `query-status` answer (the fields used here). */
export interface VmRunState {
  running: boolean;
  /** QEMU's RunState: "running", "paused", "io-error", "postmigrate", "internal-error", ... */
  status: string;
}

/** One VM as the sweep sees it; the runtime builds these from its VMs. */
export interface LivenessTarget {
  readonly id: string;
  /** When the agent last sent anything (ms, `Date.now()` clock): an answer proves life. */
  lastHeard(): number;
  /** Whether the VM is being paused, destroyed, started, ... right now: never a miss. */
  busy(): boolean;
  /** A round trip to the agent; rejects when it does not answer within `timeoutMs`. */
  ping(timeoutMs: number): Promise<void>;
  /** QMP `query-status`; rejects when QEMU does not answer within `timeoutMs`. */
  vmStatus(timeoutMs: number): Promise<VmRunState>;
}

export interface AgentLivenessOptions<T extends LivenessTarget> {
  /** Time between sweeps, ms; a VM heard from within it is not pinged. */
  intervalMs: number;
  /** How long one ping (and one `query-status`) may take, ms. */
  timeoutMs: number;
  /** Consecutive misses after which a VM is reported dead. */
  misses: number;
  /** Probes in flight at once (default 16): a sweep of hundreds of VMs stays cheap. */
  concurrency?: number;
  /** The VMs to check, asked at the start of each sweep. */
  targets(): Iterable<T>;
  /** Called once for a VM that missed `misses` pings in a row. */
  onDead(target: T, reason: string): void | Promise<void>;
  log: RuntimeLogger;
  /** Clock (tests). */
  now?: () => number;
}

/**
 * Run states in which QEMU holds the guest stopped on the host's behalf
 * (`stop`, a disk write stalled on a host I/O error, a migration or
 * snapshot under way): its silent agent is not dead. Any other state that
 * is not running (guest-panicked, internal-error, shutdown, suspended by
 * the guest itself, ...) is a miss like a silent agent on a running guest.
 */
const HELD_STATES = new Set(["paused", "io-error", "inmigrate", "postmigrate", "finish-migrate", "prelaunch", "save-vm", "restore-vm"]);

/** The periodic liveness sweep over a runtime's VMs. */
export class AgentLiveness<T extends LivenessTarget> {
  readonly #misses = new Map<string, number>();
  readonly #concurrency: number;
  readonly #now: () => number;
  #timer: NodeJS.Timeout | undefined;
  #sweeping: Promise<void> | undefined;
  #stopped = true;

  constructor(private readonly opts: AgentLivenessOptions<T>) {
    for (const k of ["intervalMs", "timeoutMs", "misses"] as const) {
      if (!Number.isInteger(opts[k]) || opts[k] <= 0) throw new Error(`agent liveness: invalid ${k}: ${opts[k]}`);
    }
    this.#concurrency = opts.concurrency ?? 16;
    this.#now = opts.now ?? Date.now;
  }

  /** Starts sweeping every `intervalMs` (one timer, never overlapping sweeps). */
  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#schedule(this.opts.intervalMs);
  }

  /** Stops sweeping; resolves once a sweep under way has ended. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#sweeping;
  }

  /** Consecutive misses counted for `id` so far (0 when none). */
  missesOf(id: string): number {
    return this.#misses.get(id) ?? 0;
  }

  /**
   * One pass over every target, at most `concurrency` probes at a time.
   * Exposed for tests; `start` runs it periodically.
   */
  async sweep(): Promise<void> {
    const targets = [...this.opts.targets()];
    const present = new Set(targets.map((t) => t.id));
    for (const id of this.#misses.keys()) if (!present.has(id)) this.#misses.delete(id);
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < targets.length) await this.#check(targets[next++]!);
    };
    await Promise.all(Array.from({ length: Math.min(this.#concurrency, targets.length) }, worker));
  }

  #schedule(delayMs: number): void {
    this.#timer = setTimeout(() => {
      const t0 = this.#now();
      this.#sweeping = this.sweep()
        .catch((err: unknown) => this.opts.log.error({ err }, "agent liveness sweep failed"))
        .finally(() => {
          this.#sweeping = undefined;
          // Start to start `intervalMs` apart; a slow sweep is followed at once, never overlapped.
          if (!this.#stopped) this.#schedule(Math.max(0, this.opts.intervalMs - (this.#now() - t0)));
        });
    }, delayMs);
    this.#timer.unref();
  }

  async #check(t: T): Promise<void> {
    // An agent that just spoke (an exec's output, a file, a PONG) is alive: no ping needed.
    if (t.busy() || this.#now() - t.lastHeard() < this.opts.intervalMs) {
      this.#misses.delete(t.id);
      return;
    }
    const miss = await this.#probe(t);
    // Paused or destroyed while it was probed: its silence says nothing.
    if (miss === undefined || t.busy()) {
      this.#misses.delete(t.id);
      return;
    }
    const n = this.missesOf(t.id) + 1;
    if (n < this.opts.misses) {
      this.#misses.set(t.id, n);
      this.opts.log.warn({ id: t.id, misses: n, of: this.opts.misses, why: miss }, "guest agent did not answer a ping");
      return;
    }
    this.#misses.delete(t.id);
    try {
      await this.opts.onDead(t, `guest agent stopped answering (${n} pings missed; ${miss})`);
    } catch (err) {
      this.opts.log.error({ id: t.id, err }, "ending an unresponsive VM failed");
    }
  }

  /** undefined when the VM is alive or held on purpose; else why this counts as a miss. */
  async #probe(t: T): Promise<string | undefined> {
    const { timeoutMs } = this.opts;
    let pingErr: string;
    try {
      await t.ping(timeoutMs);
      return undefined;
    } catch (err) {
      pingErr = (err as Error).message;
    }
    // A guest its QEMU stopped (pause, `stalled` on a host I/O error) cannot answer, and is not dead.
    try {
      const st = await t.vmStatus(timeoutMs);
      if (!st.running && HELD_STATES.has(st.status)) return undefined;
      return `${pingErr}; VM ${st.status}`;
    } catch (err) {
      return `${pingErr}; QMP: ${(err as Error).message}`;
    }
  }
}
