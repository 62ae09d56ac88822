/**
 * Exec in the guest through the SDK's transport: streaming (NDJSON frames)
 * and buffered. Goes through `client.http` because the SDK's own exec
 * methods do not carry `env` or `stdin`.
 */
import type { CreateosSandboxClient, ExecResponse, ExecStreamFrame } from "@nodeops-createos/sandbox";
import { CliError } from "./cli-error.js";

/** What one exec sends. */
export interface ExecSpec {
  cmd: string;
  args?: string[];
  env?: Record<string, string>;
  stdin?: string;
}

function body(spec: ExecSpec, stream: boolean): Record<string, unknown> {
  return {
    cmd: spec.cmd,
    args: spec.args ?? [],
    ...(spec.env && Object.keys(spec.env).length ? { env: spec.env } : {}),
    ...(spec.stdin !== undefined ? { stdin: spec.stdin } : {}),
    ...(stream ? { stream: true } : {}),
  };
}

/** Streams the frames of an exec; aborting `signal` closes the connection, which kills the command. */
export function streamExec(client: CreateosSandboxClient, id: string, spec: ExecSpec, signal?: AbortSignal): AsyncGenerator<ExecStreamFrame> {
  return client.http.stream<ExecStreamFrame>("POST", `/v1/sandboxes/${encodeURIComponent(id)}/exec`, {
    query: { stream: true },
    body: body(spec, true),
    // Only bounds the wait for the response head; the stream itself may run for hours.
    timeoutMs: 600_000,
    ...(signal ? { signal } : {}),
  });
}

/** Runs a command to completion and returns its buffered result. */
export function runExec(client: CreateosSandboxClient, id: string, spec: ExecSpec, timeoutMs = 600_000): Promise<ExecResponse> {
  return client.http.request<ExecResponse>("POST", `/v1/sandboxes/${encodeURIComponent(id)}/exec`, {
    body: body(spec, false),
    timeoutMs,
    retry: false,
  });
}

/** Runs a helper command and fails with its stderr unless it exits 0. */
export async function runChecked(client: CreateosSandboxClient, id: string, spec: ExecSpec, what: string): Promise<string> {
  const { result } = await runExec(client, id, spec);
  if (result.exit_code !== 0 || result.error) {
    const why = (result.error ?? result.stderr ?? "").trim().split("\n").pop() || `exit code ${result.exit_code}`;
    throw new CliError(`${what} failed in the sandbox: ${why}`);
  }
  return result.stdout;
}
