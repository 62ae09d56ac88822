/**
 * Recognises unique-constraint failures of both dialects and says which
 * rule was hit (SQLite names the columns, PostgreSQL the index).
 */
import { UniqueViolationError } from "../core/repositories.js";

/** Converts a driver error into a UniqueViolationError, or returns undefined. */
export function asUniqueViolation(err: unknown): UniqueViolationError | undefined {
  const e = err as { code?: string; message?: string; constraint?: string };
  const sqlite = typeof e.code === "string" && e.code.startsWith("SQLITE_CONSTRAINT") && /UNIQUE|PRIMARY/i.test(e.message ?? "");
  const postgres = e.code === "23505";
  if (!sqlite && !postgres) return undefined;
  const where = `${e.constraint ?? ""} ${e.message ?? ""}`;
  const target = /live_name|\.name\b/.test(where) ? "name" : /live_ip|\.ip\b/.test(where) ? "ip" : "other";
  return new UniqueViolationError(target, { cause: err });
}
