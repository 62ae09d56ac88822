/**
 * Maps what the agent reports (ERROR frames, broken frames, a lost
 * connection) to `RuntimeError`s.
 */
import { RuntimeError } from "../errors.js";
import type { ErrorPayload } from "./messages.js";
import { ERRNO } from "./protocol.js";

/** errnos that mean "this path is not something the guest will read/write". */
const INVALID_PATH_ERRNOS: ReadonlySet<number> = new Set([
  ERRNO.EISDIR,
  ERRNO.ENOTDIR,
  ERRNO.EINVAL,
  ERRNO.ENAMETOOLONG,
  ERRNO.ELOOP,
  ERRNO.EACCES,
  ERRNO.EPERM,
  ERRNO.EROFS,
]);

/** An ERROR frame on a file channel: ENOENT → not_found, path refusals → invalid_path. */
export function fileError(e: ErrorPayload, path: string): RuntimeError {
  if (e.errno === ERRNO.ENOENT) return new RuntimeError("not_found", `${path}: no such file or directory`);
  if (INVALID_PATH_ERRNOS.has(e.errno)) return new RuntimeError("invalid_path", `${path}: ${e.message}`);
  return new RuntimeError("agent_error", `${path}: ${e.message} (errno ${e.errno})`);
}

/** An ERROR frame on any other channel. */
export function agentError(e: ErrorPayload, what: string): RuntimeError {
  return new RuntimeError("agent_error", `${what}: ${e.message} (errno ${e.errno})`);
}

/** Pending calls fail with this when the connection is gone. */
export function connectionGone(reason?: Error): RuntimeError {
  if (reason instanceof RuntimeError && reason.code === "agent_error") return reason;
  return new RuntimeError("not_running", "agent connection closed", reason ? { cause: reason } : undefined);
}
