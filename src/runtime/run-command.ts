/**
 * Runs a host tool (ip, nft, qemu-img, apt-get, debootstrap, mkfs.ext4, …)
 * without a shell and collects its output. One runner for the whole runtime:
 * a failure says which command failed and what it printed last.
 */
import { spawn } from "node:child_process";
import { RuntimeError } from "./errors.js";

/** Options of {@link runCommand}. */
export interface RunCommandOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Written to stdin, then stdin is closed. */
  input?: Buffer | string;
  /** Resolve on a non-zero exit too (the caller inspects `code`). */
  allowFail?: boolean;
  /** Killed (SIGTERM) after this long; default: no limit. */
  timeoutMs?: number;
  /** Called for every output line (stdout and stderr), e.g. to stream debootstrap's progress. */
  onLine?: (line: string) => void;
}

/** Result of a finished {@link runCommand}. */
export interface RunCommandResult {
  code: number;
  stdout: string;
  /** stdout as bytes, for binary output. */
  stdoutBytes: Buffer;
  stderr: string;
}

/** Lines of output kept for the error message of a failed command. */
const TAIL_LINES = 20;

/**
 * Spawns `cmd args` and resolves with its output once it exits 0 (or with any
 * exit code under `allowFail`). Rejects with RuntimeError("internal") naming
 * the exit status and the last lines of output otherwise.
 */
export function runCommand(cmd: string, args: string[], opts: RunCommandOptions = {}): Promise<RunCommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: ["pipe", "pipe", "pipe"],
      timeout: opts.timeoutMs ?? 0,
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
    child.on("error", (e) => reject(new RuntimeError("internal", `cannot run ${cmd}: ${e.message}`, { cause: e })));
    child.on("close", (code, signal) => {
      outLines(Buffer.alloc(0), true);
      errLines(Buffer.alloc(0), true);
      const c = code ?? 128;
      if (c === 0 || opts.allowFail) {
        const bytes = Buffer.concat(out);
        resolve({ code: c, stdout: bytes.toString("utf8"), stdoutBytes: bytes, stderr: Buffer.concat(err).toString("utf8") });
        return;
      }
      const how = signal ? `killed by ${signal}` : `exit ${c}`;
      const last = tail.length > 0 ? `:\n  ${tail.join("\n  ")}` : "";
      reject(new RuntimeError("internal", `${cmd} ${args.join(" ")} failed (${how})${last}`));
    });
    // A command that does not read stdin may close it early: ignore EPIPE.
    child.stdin.on("error", () => undefined);
    child.stdin.end(opts.input ?? "");
  });
}
