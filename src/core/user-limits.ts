/**
 * Per-user limits (issue 7), so one tenant cannot starve the host or the
 * other tenants: a cap on live sandboxes, a cap on the guest memory they
 * hold, and a rate of creates (forks included) per minute.
 *
 * - The caps count the user's live rows in the store (every non-terminal
 *   status, paused ones too: they may resume at any time). A failed or
 *   destroyed sandbox frees its slot by its status alone, so nothing is ever
 *   "returned" by hand and nothing leaks when a create fails.
 * - {@link UserLimits.checkQuota} is exact only when it runs in the
 *   serialization that inserts rows (`Scheduler.admit`'s mutex: one control
 *   plane process owns the store), so N concurrent creates against a cap of
 *   k admit exactly k. {@link UserLimits.admitCreate} runs the same check
 *   early (before a warm VM is claimed or a fork's source is touched) and
 *   takes a rate token.
 * - The rate is a token bucket per user: `createsPerMinute` tokens at most
 *   (a burst), refilled evenly over a minute. Held in memory: a restart
 *   refills every bucket, which only ever lets a user do more, never less.
 */
import { quotaExceeded, rateLimited } from "./errors.js";

/** The limits; an undefined field is no limit. */
export interface UserLimitsConfig {
  /** Most live (non-terminal) sandboxes per user (HUTCH_USER_MAX_SANDBOXES). */
  maxSandboxes?: number;
  /** Most guest memory, MiB, of a user's live sandboxes (HUTCH_USER_MAX_MEM_MIB). */
  maxMemMib?: number;
  /** Creates and forks per user per minute (HUTCH_USER_CREATES_PER_MINUTE). */
  createsPerMinute?: number;
}

/** What a user's live sandboxes hold. */
export interface UserUsage {
  sandboxes: number;
  memMib: number;
}

export interface UserLimitsOptions {
  config: UserLimitsConfig;
  /** The user's live sandboxes as the store sees them now. */
  usage: (userId: string) => Promise<UserUsage>;
  /** Clock, ms (tests). */
  now?: () => number;
}

interface Bucket {
  tokens: number;
  at: number;
}

/** Buckets kept before full ones are dropped (a full bucket is the same as none). */
const MAX_BUCKETS = 10_000;

export class UserLimits {
  readonly config: Readonly<UserLimitsConfig>;
  readonly #usage: (userId: string) => Promise<UserUsage>;
  readonly #now: () => number;
  readonly #buckets = new Map<string, Bucket>();

  constructor(opts: UserLimitsOptions) {
    this.config = { ...opts.config };
    this.#usage = opts.usage;
    this.#now = opts.now ?? Date.now;
  }

  /**
   * Call first in a create or a fork, once its request is valid: refuses
   * when the user is at a cap (402, no rate token spent: nothing was
   * started) or out of creates for now (429 with the seconds until the next
   * one). Not exact under concurrency: {@link checkQuota} is.
   *
   * @throws AppError `quota_exceeded` (402) or `rate_limited` (429).
   */
  async admitCreate(userId: string, memMib: number): Promise<void> {
    await this.checkQuota(userId, memMib);
    this.takeCreate(userId);
  }

  /**
   * Refuses (402) when one more sandbox of `memMib` would pass a cap. Exact
   * only when called where rows are inserted, inside the same serialization
   * (see the file comment).
   *
   * @throws AppError `quota_exceeded` (402) naming the quota.
   */
  async checkQuota(userId: string, memMib: number): Promise<void> {
    const { maxSandboxes, maxMemMib } = this.config;
    if (maxSandboxes === undefined && maxMemMib === undefined) return;
    const used = await this.#usage(userId);
    if (maxSandboxes !== undefined && used.sandboxes + 1 > maxSandboxes) {
      throw quotaExceeded(`live sandboxes: ${used.sandboxes} of ${maxSandboxes} in use`);
    }
    if (maxMemMib !== undefined && used.memMib + memMib > maxMemMib) {
      throw quotaExceeded(`guest memory: ${used.memMib} of ${maxMemMib} MiB in use, ${memMib} MiB more asked`);
    }
  }

  /**
   * Takes one create from the user's bucket, synchronously (so concurrent
   * callers cannot both take the last one).
   *
   * @throws AppError `rate_limited` (429) with `retryAfterS`: whole seconds
   *   (≥ 1) until the bucket holds a create again.
   */
  takeCreate(userId: string): void {
    const perMinute = this.config.createsPerMinute;
    if (perMinute === undefined) return;
    const now = this.#now();
    const perMs = perMinute / 60_000;
    const bucket = this.#buckets.get(userId) ?? { tokens: perMinute, at: now };
    bucket.tokens = Math.min(perMinute, bucket.tokens + (now - bucket.at) * perMs);
    bucket.at = now;
    if (bucket.tokens < 1) {
      this.#buckets.set(userId, bucket);
      // The epsilon only absorbs float noise (0.75 / 5e-5 is 15000.000000000002 ms).
      const waitMs = (1 - bucket.tokens) / perMs;
      const waitS = Math.max(1, Math.ceil((waitMs - 1e-6) / 1000));
      throw rateLimited(`creates per minute: ${perMinute} allowed; next one in ${waitS} s`, waitS);
    }
    bucket.tokens -= 1;
    if (!this.#buckets.has(userId) && this.#buckets.size >= MAX_BUCKETS) this.#prune(now, perMinute, perMs);
    this.#buckets.set(userId, bucket);
  }

  /** Drops the buckets that have refilled (they equal a fresh one). */
  #prune(now: number, perMinute: number, perMs: number): void {
    for (const [user, b] of this.#buckets) {
      if (b.tokens + (now - b.at) * perMs >= perMinute) this.#buckets.delete(user);
    }
  }
}
