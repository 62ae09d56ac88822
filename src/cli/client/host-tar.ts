/** The host's `tar` binary, as a child process with its stream and its outcome. */
import { spawn, type ChildProcessByStdio } from "node:child_process";
import { PassThrough, type Readable, type Writable } from "node:stream";
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

/** A tar writing an archive: `out` is the archive. */
export interface HostTarCreate extends HostTar {
  out: Readable;
}

/**
 * `tar -c` of the contents of `dir`, owned by root in the archive.
 *
 * Read the archive from `out`, not from `proc.stdout`. A small archive fits in
 * the socket buffer of the child's stdout, so tar can exit before anyone reads
 * it. Node then resumes a stdout that has no reader, and the archive is
 * dropped (child_process's flushStdio). `out` is piped from stdout at once, so
 * the archive stays buffered there (with backpressure) until it is read.
 */
export function tarCreate(dir: string): HostTarCreate {
  const tar = run(["-c", "-f", "-", "--owner=0", "--group=0", "--numeric-owner", "-C", dir, "."], ["ignore", "pipe", "pipe"]);
  const out = new PassThrough();
  tar.proc.stdout!.on("error", (err) => out.destroy(err));
  tar.proc.stdout!.pipe(out);
  return { ...tar, out };
}

/** `tar -x` from stdin into `dir` (which must exist). */
export function tarExtract(dir: string): HostTar {
  return run(["-x", "-f", "-", "--no-same-owner", "-C", dir], ["pipe", "ignore", "pipe"]);
}
