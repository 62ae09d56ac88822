/**
 * Every error core reports, in one place. Each carries a stable `code`, the
 * HTTP status the API answers with and, for client errors, the offending
 * fields (`{ field: message }`). The API's error handler turns these into
 * JSend; messages of 5xx errors are never shown to clients.
 */
import { isRuntimeError } from "../runtime/errors.js";
import { InvalidTransitionError } from "./sandbox-state.js";

export const ERROR_CODES = [
  "validation",
  "unauthorized",
  "not_found",
  "conflict",
  "payload_too_large",
  "quota_exceeded",
  "rate_limited",
  "no_capacity",
  "no_disk_space",
  "bad_gateway",
  "internal",
  "not_ready",
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

const STATUS: Record<ErrorCode, number> = {
  validation: 400,
  unauthorized: 401,
  not_found: 404,
  conflict: 409,
  payload_too_large: 413,
  quota_exceeded: 402,
  rate_limited: 429,
  no_capacity: 503,
  no_disk_space: 503,
  bad_gateway: 502,
  internal: 500,
  not_ready: 503,
};

/** An error with a stable code, an HTTP status and (below 500) field messages. */
export class AppError extends Error {
  override readonly name = "AppError";
  readonly status: number;
  /** Whole seconds the client should wait before trying again (the API sends `Retry-After`). */
  readonly retryAfterS: number | undefined;
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly fields: Record<string, string> = {},
    options?: { cause?: unknown; retryAfterS?: number },
  ) {
    super(message, options && "cause" in options ? { cause: options.cause } : undefined);
    this.status = STATUS[code];
    this.retryAfterS = options?.retryAfterS;
  }
}

/** 400 naming one field. */
export function invalid(field: string, message: string): AppError {
  return new AppError("validation", `${field}: ${message}`, { [field]: message });
}

/** 404 for a resource the caller cannot see (missing or another tenant's). */
export function notFound(what = "sandbox"): AppError {
  return new AppError("not_found", `${what} not found`, { [what === "sandbox" ? "id" : what]: `${what} not found` });
}

/** 409 naming the field that conflicts. */
export function conflict(field: string, message: string): AppError {
  return new AppError("conflict", message, { [field]: message });
}

/** 402 when the user is at a cap of their plan (live sandboxes, guest memory); `quota` says which. */
export function quotaExceeded(quota: string): AppError {
  return new AppError("quota_exceeded", `quota exceeded: ${quota}`, { quota });
}

/** 429 when the user is over a rate; `retryAfterS` (≥ 1) goes out as `Retry-After`. */
export function rateLimited(limit: string, retryAfterS: number): AppError {
  return new AppError("rate_limited", `rate limited: ${limit}`, { rate_limit: limit }, { retryAfterS: Math.max(1, Math.ceil(retryAfterS)) });
}

/** 503 when no host can take the VM. */
export function noCapacity(cause?: unknown): AppError {
  return new AppError("no_capacity", "no host capacity", {}, { cause });
}

/**
 * 503 when the host's data dir has not enough free space (a create, pause,
 * fork or resume refused before writing anything; a store write that found
 * the disk full). 503 like "no host capacity": the SDK retries it for any
 * method, since the request was not carried out.
 */
export function noDiskSpace(cause?: unknown): AppError {
  return new AppError("no_disk_space", "no host capacity: not enough free disk space on the host", {}, { cause });
}

/** Whether `err` is a write that found the disk full (SQLite's SQLITE_FULL, or ENOSPC from the file system). */
export function isDiskFullError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === "SQLITE_FULL" || code === "ENOSPC";
}

/** 500 with a generic message; the cause goes to the log only. */
export function internal(message: string, cause?: unknown): AppError {
  return new AppError("internal", message, {}, { cause });
}

/** Maps a runtime (or transition) failure on an existing sandbox to an AppError. */
export function fromRuntimeError(err: unknown, field = "path"): AppError {
  if (err instanceof AppError) return err;
  if (err instanceof InvalidTransitionError) {
    return conflict("status", `sandbox is ${err.from}`);
  }
  if (isRuntimeError(err)) {
    switch (err.code) {
      case "not_found":
        return new AppError("not_found", err.message, { [field]: err.message }, { cause: err });
      case "invalid_path":
        return new AppError("validation", err.message, { [field]: err.message }, { cause: err });
      case "not_running":
        return new AppError("conflict", "sandbox is not running", { status: "sandbox is not running" }, { cause: err });
      case "no_capacity":
        return noCapacity(err);
      case "disk_full":
        return noDiskSpace(err);
      case "agent_error":
        return new AppError("bad_gateway", "guest agent error", {}, { cause: err });
      default:
        return internal("runtime failure", err);
    }
  }
  if (isDiskFullError(err)) return noDiskSpace(err);
  return internal("internal error", err);
}
