/**
 * The sandbox lifecycle: the ten statuses of the seed and which moves between
 * them are allowed. Pure data, no I/O; `SandboxService.transition` is the only
 * caller that changes a status.
 */

/** Every status a sandbox can be in, as listed by the seed. */
export const SANDBOX_STATUSES = [
  "creating",
  "running",
  "pausing",
  "paused",
  "resuming",
  "forking",
  "error",
  "destroying",
  "destroyed",
  "failed",
] as const;

export type SandboxStatus = (typeof SANDBOX_STATUSES)[number];

/** Statuses after which a sandbox no longer holds a name, an IP or host memory. */
export const TERMINAL_STATUSES = ["destroyed", "failed"] as const satisfies readonly SandboxStatus[];

/** Statuses accepted by the list filter (`GET /v1/sandboxes?status=`). */
export const LISTABLE_STATUSES = ["running", "creating", "destroyed", "failed"] as const satisfies readonly SandboxStatus[];

/** Runtime check for an untrusted string. */
export function isSandboxStatus(value: unknown): value is SandboxStatus {
  return typeof value === "string" && (SANDBOX_STATUSES as readonly string[]).includes(value);
}

/** True for `destroyed` and `failed`. */
export function isTerminal(status: SandboxStatus): boolean {
  return (TERMINAL_STATUSES as readonly string[]).includes(status);
}

/**
 * Allowed moves. Why some exist:
 * - `pausing → running`, `resuming → running`: a pause/resume interrupted by a
 *   server restart settles on what actually exists.
 * - `resuming → paused`: a resume interrupted by a restart whose snapshot is
 *   still intact; `forking → failed`: a fork child left half-made by a restart.
 * - `failed → destroyed`: deleting a failed sandbox only has to clean up; it
 *   must not pass through `destroying` (non-terminal), which would reclaim a
 *   name or IP that may already belong to a newer sandbox.
 * - `running → error`: the VM stands still, alive, because a write to its
 *   disk found the host's data dir full (the runtime's `onStall`). Nothing is
 *   lost and nothing runs; `error → resuming` continues it once there is
 *   space (`failed` would be wrong: it can still be recovered as it was).
 */
const TRANSITIONS: Readonly<Record<SandboxStatus, readonly SandboxStatus[]>> = {
  creating: ["running", "failed", "destroying"],
  running: ["pausing", "destroying", "failed", "error"],
  pausing: ["paused", "running", "error", "failed", "destroying"],
  paused: ["resuming", "forking", "destroying", "failed"],
  resuming: ["running", "paused", "error", "failed", "destroying"],
  forking: ["paused", "error", "failed"],
  error: ["resuming", "destroying", "failed"],
  destroying: ["destroyed", "failed"],
  destroyed: [],
  failed: ["destroyed"],
};

/** Whether a sandbox in `from` may move to `to`. */
export function canTransition(from: SandboxStatus, to: SandboxStatus): boolean {
  return TRANSITIONS[from].includes(to);
}

/** The statuses reachable from `from` in one move. */
export function nextStatuses(from: SandboxStatus): readonly SandboxStatus[] {
  return TRANSITIONS[from];
}

/** Thrown by {@link assertTransition}; core maps it to a 409. */
export class InvalidTransitionError extends Error {
  override readonly name = "InvalidTransitionError";
  constructor(
    readonly from: SandboxStatus,
    readonly to: SandboxStatus,
  ) {
    super(`cannot go from ${from} to ${to}`);
  }
}

/** Throws {@link InvalidTransitionError} unless `from → to` is allowed. */
export function assertTransition(from: SandboxStatus, to: SandboxStatus): void {
  if (!canTransition(from, to)) throw new InvalidTransitionError(from, to);
}
