/**
 * `hutch shell ID`: an interactive PTY in the sandbox. The local terminal goes
 * raw, follows window size changes (SIGWINCH → resize frame) and is restored
 * on exit. `--ssh` runs the system `ssh` through `hutch tunnel --stdio` instead.
 */
import { spawn } from "node:child_process";
import type { Socket } from "node:net";
import { constants } from "node:os";
import { CliError } from "../client/cli-error.js";
import { resolveSandbox } from "../client/resolve-sandbox.js";
import type { CommandContext } from "../client/run-action.js";
import { dataFrame, resizeFrame } from "../client/shell-frames.js";
import { shellPath } from "../client/tunnel-path.js";
import { openUpgrade } from "../client/upgrade-connection.js";

/** Flags of `hutch shell`. */
export interface ShellFlags {
  ssh?: boolean;
  user: string;
  identity?: string;
}

/** Quotes one word for a POSIX shell (ssh runs ProxyCommand through one). */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/** The ssh argv that reaches `id` through `hutch tunnel --stdio ID 22`. */
export function sshArgs(
  id: string,
  flags: ShellFlags,
  extra: string[],
  self: string[] = [process.execPath, process.argv[1] ?? "hutch"],
  interactive = process.stdin.isTTY === true,
): string[] {
  const proxy = [...self, "tunnel", "--stdio", id, "22"].map(shellQuote).join(" ");
  return [
    "-o", `ProxyCommand=${proxy}`,
    // Sandboxes share no host name: pin each one's host key under its own id.
    "-o", `HostKeyAlias=hutch-${id}`,
    "-o", "StrictHostKeyChecking=accept-new",
    // Without a terminal nobody can answer a prompt: fail instead of waiting for one.
    ...(interactive ? [] : ["-o", "BatchMode=yes"]),
    ...(flags.identity ? ["-i", flags.identity] : []),
    "-l", flags.user,
    id,
    ...extra,
  ];
}

async function sshShell(id: string, flags: ShellFlags, extra: string[]): Promise<number> {
  const child = spawn("ssh", sshArgs(id, flags, extra), { stdio: "inherit" });
  return new Promise((resolve, reject) => {
    child.on("error", (err: NodeJS.ErrnoException) =>
      reject(new CliError(err.code === "ENOENT" ? "ssh is not installed (apt-get install openssh-client)" : err.message)),
    );
    child.on("exit", (code, signal) => resolve(code ?? 128 + (signal ? (constants.signals[signal] ?? 0) : 127)));
  });
}

/** The local terminal's size, or 24x80 when stdout is not a terminal. */
function termSize(): { rows: number; cols: number } {
  return process.stdout.isTTY ? { rows: process.stdout.rows || 24, cols: process.stdout.columns || 80 } : { rows: 24, cols: 80 };
}

/** Drives the PTY over the upgraded socket until the server closes it. */
function attach(sock: Socket): Promise<number> {
  const stdin = process.stdin;
  const raw = stdin.isTTY === true;
  const restore = () => {
    if (raw && stdin.isRaw) stdin.setRawMode(false);
  };
  // Whatever ends the process, the user's terminal must come back cooked.
  process.once("exit", restore);
  if (raw) stdin.setRawMode(true);

  const onInput = (chunk: Buffer) => sock.write(dataFrame(chunk));
  // Piped input: at its end, send ^D as a terminal would, and let the shell close the session.
  const onInputEnd = () => sock.write(dataFrame(Buffer.from([4])));
  const onResize = () => {
    const { rows, cols } = termSize();
    sock.write(resizeFrame(rows, cols));
  };
  stdin.on("data", onInput);
  stdin.on("end", onInputEnd);
  stdin.resume();
  // Node turns SIGWINCH into a 'resize' event on a TTY stdout.
  process.stdout.on("resize", onResize);
  sock.on("data", (chunk: Buffer) => process.stdout.write(chunk));

  return new Promise((resolve, reject) => {
    let settled = false;
    const finish = (err?: Error) => {
      if (settled) return;
      settled = true;
      stdin.off("data", onInput);
      stdin.off("end", onInputEnd);
      stdin.pause();
      process.stdout.off("resize", onResize);
      restore();
      if (err) reject(new CliError(`shell connection failed: ${err.message}`));
      else resolve(0);
    };
    sock.on("error", finish);
    sock.on("end", () => finish());
    sock.on("close", () => finish());
  });
}

export async function shellCommand(ctx: CommandContext, ref: string, extra: string[], flags: ShellFlags): Promise<number> {
  const sb = await resolveSandbox(ctx.client(), ref);
  if (flags.ssh) return sshShell(sb.id, flags, extra);
  if (extra.length) throw new CliError("extra arguments are only passed on with --ssh");
  const { rows, cols } = termSize();
  const sock = await openUpgrade(ctx.config, shellPath(sb.id, rows, cols));
  // Say the size at once: the server may not read the query.
  sock.write(resizeFrame(rows, cols));
  return attach(sock);
}
