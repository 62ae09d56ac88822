/**
 * Durations of the consecutive phases of one operation (restore, resume,
 * fork, hand-over), for the runtime's debug log ("snapshot phases") and
 * bench/snapshot-phases.ts, which reads them back from the server's output.
 */
import { performance } from "node:perf_hooks";

/** Records how long each named step took since the previous one (ms, 0.1 ms resolution). */
export class PhaseTimer {
  readonly #t0 = performance.now();
  #last = this.#t0;
  /** Phase → ms; a name lapped twice adds up. */
  readonly phases: Record<string, number> = {};

  /** Ends the phase `name` now (it began at the previous lap, or at construction). */
  lap(name: string): void {
    const now = performance.now();
    this.phases[name] = round1((this.phases[name] ?? 0) + now - this.#last);
    this.#last = now;
  }

  /** ms since construction. */
  totalMs(): number {
    return round1(performance.now() - this.#t0);
  }
}

function round1(ms: number): number {
  return Math.round(ms * 10) / 10;
}
