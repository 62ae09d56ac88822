import { spawn } from "node:child_process";
import { RuntimeError } from "../errors.js";

/** Result of a finished host command. */
export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs a host tool (ip, nft, sysctl) without a shell and collects its output.
 * Rejects with RuntimeError("internal") on a non-zero exit unless
 * `allowFail` is set, in which case the caller inspects `code`.
 */
export async function runCommand(
  cmd: string,
  args: string[],
  opts: { input?: string; allowFail?: boolean; timeoutMs?: number } = {},
): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"], timeout: opts.timeoutMs ?? 15_000 });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.on("error", (err) => reject(new RuntimeError("internal", `${cmd}: ${err.message}`, { cause: err })));
    child.on("close", (code, signal) => {
      const c = code ?? 128;
      if (c !== 0 && !opts.allowFail) {
        const what = signal ? `killed by ${signal}` : `exit ${c}`;
        reject(new RuntimeError("internal", `${cmd} ${args.join(" ")}: ${what}: ${stderr.trim()}`));
      } else resolve({ code: c, stdout, stderr });
    });
    child.stdin.on("error", () => {}); // the tool may exit before reading its input
    child.stdin.end(opts.input ?? "");
  });
}
