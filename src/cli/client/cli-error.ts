/**
 * One line per failure: `hutch: <message>` on stderr and a non-zero exit.
 * SDK errors are mapped to the server's own message plus the HTTP status.
 */
import {
  CreateosSandboxApiError,
  CreateosSandboxConnectionError,
  CreateosSandboxTimeoutError,
} from "@nodeops-createos/sandbox";

/** An error whose message is already meant for the user, with the exit code to use. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = "CliError";
  }
}

/** The server's words from a JSend fail/error envelope, if any. */
function envelopeMessage(envelope: unknown): string | undefined {
  if (!envelope || typeof envelope !== "object") return undefined;
  const env = envelope as { status?: string; data?: unknown; message?: unknown };
  if (env.status === "error" && typeof env.message === "string") return env.message;
  if (env.status === "fail") {
    if (typeof env.data === "string" && env.data) return env.data;
    if (env.data && typeof env.data === "object") {
      const parts = Object.entries(env.data as Record<string, unknown>).map(([k, v]) => `${k}: ${String(v)}`);
      if (parts.length) return parts.join(", ");
    }
  }
  return undefined;
}

/** Builds the user-facing message of an HTTP failure (also used for raw upgrade answers). */
export function httpFailureMessage(status: number, envelope: unknown, fallback?: string): string {
  const msg = envelopeMessage(envelope) ?? fallback ?? "request failed";
  return `${msg} (HTTP ${status})`;
}

/**
 * The one line to print for any error (no `hutch:` prefix, no trailing
 * newline); `serverUrl` names the server when it could not be reached.
 */
export function errorLine(err: unknown, serverUrl?: string): string {
  if (err instanceof CreateosSandboxApiError) {
    const fallback = err.message.replace(/^createos-sandbox request failed \(\d+\): /, "");
    return httpFailureMessage(err.statusCode, err.envelope, fallback).replace(/\s*\n\s*/g, " ");
  }
  if (err instanceof CreateosSandboxConnectionError) {
    const cause = err.cause as { cause?: { code?: string; message?: string }; message?: string } | undefined;
    const detail = cause?.cause?.code ?? cause?.cause?.message ?? cause?.message;
    const where = serverUrl ? ` at ${serverUrl}` : "";
    return `cannot reach the server${where}: ${err.message.replace(/^Network error: /, "")}${detail ? ` (${detail})` : ""}`;
  }
  if (err instanceof CreateosSandboxTimeoutError) return err.message;
  const msg = err instanceof Error ? err.message : String(err);
  return msg.replace(/\s*\n\s*/g, " ");
}

/** The exit code for an error: a CliError's own, else 1. */
export function exitCodeOf(err: unknown): number {
  return err instanceof CliError ? err.exitCode : 1;
}
