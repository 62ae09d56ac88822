/** The host's `tar` binary, as a child process with its stream and its outcome. */
import { spawn, type ChildProcessByStdio } from "node:child_process";
import type { Readable, Writable } from "node:stream";
import { CliError } from "./cli-error.js";

/** A running tar: its data stream and a promise of success. */
export interface HostTar {
  proc: ChildProcessByStdio<Writable | null, Readable | null, Readable>;
  /** Resolves when tar exited 0; rejects with its last stderr line otherwise. */
  done: Promise<void>;
}

function run(args: string[], stdio: ["pipe" | "ignore", "pipe" | "ignore", "pipe"]): HostTar {
  const proc = spawn("tar", args, { stdio }) as HostTar["proc"];
  let stderr = "";
  proc.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
  const done = new Promise<void>((resolve, reject) => {
    proc.on("error", (err) => reject(new CliError(`cannot run tar: ${err.message}`)));
    proc.on("close", (code) =>
      code === 0 ? resolve() : reject(new CliError(`tar failed: ${stderr.trim().split("\n").pop() ?? `exit code ${code}`}`)),
    );
  });
  return { proc, done };
}

/** `tar -c` of the contents of `dir` to stdout, owned by root in the archive. */
export function tarCreate(dir: string): HostTar {
  return run(["-c", "-f", "-", "--owner=0", "--group=0", "--numeric-owner", "-C", dir, "."], ["ignore", "pipe", "pipe"]);
}

/** `tar -x` from stdin into `dir` (which must exist). */
export function tarExtract(dir: string): HostTar {
  return run(["-x", "-f", "-", "--no-same-owner", "-C", dir], ["pipe", "ignore", "pipe"]);
}
