/**
 * Runs the built CLI (`node dist/cli/main.js ...`) against a test server the
 * way a user's shell would: HUTCH_URL / HUTCH_API_KEY in the environment and
 * a private HOME (so no real config file is read or written).
 */
import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CLI, type TestServer } from "./support/server.js";

/** The outcome of one CLI run. */
export interface CliResult {
  code: number;
  stdout: string;
  /** stdout as bytes (binary output). */
  stdoutBytes: Buffer;
  stderr: string;
  /** ms since spawn at which each stdout chunk arrived (to check streaming). */
  stdoutTimes: { at: number; text: string }[];
  ms: number;
}

/** A runner bound to one server; `env` overrides per call. */
export function cliRunner(server: Pick<TestServer, "url" | "apiKey">) {
  const home = mkdtempSync(join(tmpdir(), "hutch-cli-home-"));
  const baseEnv: Record<string, string | undefined> = { ...process.env, HUTCH_URL: server.url, HUTCH_API_KEY: server.apiKey, HOME: home, XDG_CONFIG_HOME: undefined };
  const run = (args: string[], opts: { env?: Record<string, string | undefined>; input?: string | Buffer; cwd?: string; timeoutMs?: number } = {}): Promise<CliResult> =>
    new Promise((resolve, reject) => {
      const t0 = Date.now();
      const env: Record<string, string | undefined> = { ...baseEnv, ...opts.env };
      for (const [k, v] of Object.entries(env)) if (v === undefined) delete env[k];
      const child = spawn(process.execPath, [CLI, ...args], { env, cwd: opts.cwd ?? process.cwd(), stdio: ["pipe", "pipe", "pipe"] });
      const res: CliResult = { code: -1, stdout: "", stdoutBytes: Buffer.alloc(0), stderr: "", stdoutTimes: [], ms: 0 };
      const outChunks: Buffer[] = [];
      child.stdout.on("data", (b: Buffer) => {
        res.stdout += b.toString();
        outChunks.push(b);
        res.stdoutTimes.push({ at: Date.now() - t0, text: b.toString() });
      });
      child.stderr.on("data", (b: Buffer) => (res.stderr += b.toString()));
      child.stdin.end(opts.input ?? "");
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        reject(new Error(`hutch ${args.join(" ")} timed out\n${res.stdout}\n${res.stderr}`));
      }, opts.timeoutMs ?? 300_000);
      child.on("error", reject);
      child.on("close", (code, signal) => {
        clearTimeout(timer);
        res.code = code ?? (signal ? 128 : -1);
        res.ms = Date.now() - t0;
        res.stdoutBytes = Buffer.concat(outChunks);
        resolve(res);
      });
    });
  return { run, home, env: baseEnv };
}

/** Fails with everything the CLI said when its exit code is not `code`. */
export function expectCode(r: CliResult, code: number, what: string): CliResult {
  if (r.code !== code) throw new Error(`${what}: exit ${r.code}, expected ${code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}
