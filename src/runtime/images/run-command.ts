/**
 * Runs the host tools the image builders need (apt-get, dpkg, debootstrap,
 * mkfs.ext4, lz4...) and turns a failure into an error that says which
 * command failed and what it printed last.
 */
import { spawn } from "node:child_process";

/** Options of {@link runCommand}. */
export interface RunCommandOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Called for every output line (stdout and stderr), e.g. to stream debootstrap's progress. */
  onLine?: (line: string) => void;
  /** Written to stdin, then stdin is closed. */
  input?: Buffer | string;
}

/** Result of a successful {@link runCommand}. */
export interface RunCommandResult {
  stdout: string;
  /** stdout as bytes, for binary output. */
  stdoutBytes: Buffer;
  stderr: string;
}

/** Lines of output kept for the error message of a failed command. */
const TAIL_LINES = 20;

/**
 * Spawns `cmd args` (no shell) and resolves with its output once it exits 0.
 * Rejects with the exit status and the last lines of output otherwise.
 */
export function runCommand(cmd: string, args: string[], opts: RunCommandOptions = {}): Promise<RunCommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: ["pipe", "pipe", "pipe"],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const tail: string[] = [];
    const splitter = () => {
      let pending = "";
      return (chunk: Buffer, final = false) => {
        pending += chunk.toString("utf8");
        const lines = pending.split(/\r?\n|\r/);
        pending = final ? "" : (lines.pop() ?? "");
        for (const line of lines) {
          if (line.length === 0) continue;
          tail.push(line);
          if (tail.length > TAIL_LINES) tail.shift();
          opts.onLine?.(line);
        }
      };
    };
    const outLines = splitter();
    const errLines = splitter();
    child.stdout.on("data", (c: Buffer) => {
      out.push(c);
      outLines(c);
    });
    child.stderr.on("data", (c: Buffer) => {
      err.push(c);
      errLines(c);
    });
    child.on("error", (e) => reject(new Error(`cannot run ${cmd}: ${e.message}`, { cause: e })));
    child.on("close", (code, signal) => {
      outLines(Buffer.alloc(0), true);
      errLines(Buffer.alloc(0), true);
      if (code === 0) {
        const bytes = Buffer.concat(out);
        resolve({ stdout: bytes.toString("utf8"), stdoutBytes: bytes, stderr: Buffer.concat(err).toString("utf8") });
        return;
      }
      const how = signal ? `killed by ${signal}` : `exit ${code}`;
      const last = tail.length > 0 ? `:\n  ${tail.join("\n  ")}` : "";
      reject(new Error(`${cmd} ${args.join(" ")} failed (${how})${last}`));
    });
    // A command that does not read stdin may close it early: ignore EPIPE.
    child.stdin.on("error", () => undefined);
    child.stdin.end(opts.input ?? "");
  });
}
