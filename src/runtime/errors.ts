/**
 * Errors a `Runtime` throws. `core` maps each code to its own error (and so
 * to an HTTP status); the message is safe to show to the sandbox's owner.
 */
export const RUNTIME_ERROR_CODES = [
  /** The file or directory does not exist in the guest. → 404 */
  "not_found",
  /** A path the guest refuses: relative, a directory, not a regular file. → 400 */
  "invalid_path",
  /** The VM is not running (unknown id, dead, or not yet ready). → 409 */
  "not_running",
  /** The VM could not be booted or did not answer in time. → 500 */
  "boot_failed",
  /** The guest agent broke the protocol or stopped answering. → 502/500 */
  "agent_error",
  /** No room on this host. → 503 */
  "no_capacity",
  /** Not enough free space in the data dir for what was asked (a VM, a snapshot). → 503 */
  "disk_full",
  /** Anything else on the host side (spawn, disk, tap). → 500 */
  "internal",
] as const;

export type RuntimeErrorCode = (typeof RUNTIME_ERROR_CODES)[number];

export class RuntimeError extends Error {
  override readonly name = "RuntimeError";
  constructor(
    readonly code: RuntimeErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export function isRuntimeError(err: unknown, code?: RuntimeErrorCode): err is RuntimeError {
  return err instanceof RuntimeError && (code === undefined || err.code === code);
}
