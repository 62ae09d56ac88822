/**
 * `hutch exec ID -- CMD ARGS...`: runs a command in the sandbox, streams its
 * stdout/stderr live and exits with its exit code. Ctrl-C closes the stream,
 * which kills the command in the guest (exit 130).
 */
import { once } from "node:events";
import { CliError } from "../client/cli-error.js";
import { streamExec } from "../client/guest-exec.js";
import { resolveSandbox } from "../client/resolve-sandbox.js";
import type { CommandContext } from "../client/run-action.js";

/** Writes respecting backpressure, so a slow consumer (a pipe) is not flooded. */
async function write(stream: NodeJS.WriteStream, data: string): Promise<void> {
  if (!stream.write(data)) await once(stream, "drain");
}

/** Maps the guest's exit code onto a process exit code (0–255). */
export function processExitCode(code: number, failedToStart: boolean): number {
  if (failedToStart && code === 0) return 127;
  if (code < 0 || code > 255) return 255;
  return code;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

export async function execCommand(
  ctx: CommandContext,
  ref: string,
  argv: string[],
  flags: { env?: Record<string, string>; stdin?: boolean },
): Promise<number> {
  const [cmd, ...args] = argv;
  if (!cmd) throw new CliError("missing command: hutch exec ID -- CMD [ARGS...]");
  const client = ctx.client();
  const sb = await resolveSandbox(client, ref);
  const stdin = flags.stdin ? await readStdin() : undefined;
  const ac = new AbortController();
  let interrupted = false;
  const onSigint = () => {
    interrupted = true;
    ac.abort();
  };
  process.once("SIGINT", onSigint);
  process.once("SIGTERM", onSigint);
  let exitCode: number | undefined;
  let startError: string | undefined;
  try {
    for await (const frame of streamExec(client, sb.id, { cmd, args, ...(flags.env ? { env: flags.env } : {}), ...(stdin !== undefined ? { stdin } : {}) }, ac.signal)) {
      if (frame.stdout !== undefined) await write(process.stdout, frame.stdout);
      if (frame.stderr !== undefined) await write(process.stderr, frame.stderr);
      if (frame.error !== undefined) startError = frame.error;
      if (frame.exit_code !== undefined) exitCode = frame.exit_code;
    }
  } catch (err) {
    if (interrupted) return 130;
    throw err;
  } finally {
    process.off("SIGINT", onSigint);
    process.off("SIGTERM", onSigint);
  }
  if (interrupted) return 130;
  if (startError !== undefined) process.stderr.write(`hutch: ${startError}\n`);
  if (exitCode === undefined) throw new CliError("the exec stream ended without an exit code (connection lost?)");
  return processExitCode(exitCode, startError !== undefined);
}
