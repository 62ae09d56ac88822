/**
 * Runs the real hutch-agent binary on the host (`--no-init --channel SOCK`)
 * against a unix socket server owned by the test: the agent connects to it,
 * and each accepted connection becomes an AgentClient via fromSocket.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { AgentClient } from "../../src/runtime/agent/agent-client.js";
import type { ExecOutcome, ExecRequest } from "../../src/runtime/runtime.js";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
/** The agent under test: agent/build/hutch-agent, or a prebuilt one from $HUTCH_TEST_AGENT_BIN. */
export const AGENT_BIN = process.env.HUTCH_TEST_AGENT_BIN || path.join(repo, "agent/build/hutch-agent");

let built = false;
/** `make -C agent` once per process (not with $HUTCH_TEST_AGENT_BIN). */
export function buildAgent(): void {
  if (built || process.env.HUTCH_TEST_AGENT_BIN) return;
  execFileSync("make", ["-s", "-C", path.join(repo, "agent")], { stdio: "inherit" });
  built = true;
}

export class AgentHarness {
  readonly dir = mkdtempSync(path.join(tmpdir(), "hutch-agent-test-"));
  readonly sockPath = path.join(this.dir, "agent.sock");
  readonly server = net.createServer();
  proc: ChildProcess | null = null;
  stderr = "";
  #waiting: ((s: net.Socket) => void)[] = [];
  #queued: net.Socket[] = [];

  async start(): Promise<void> {
    buildAgent();
    this.server.on("connection", (s) => {
      const w = this.#waiting.shift();
      if (w) w(s);
      else this.#queued.push(s);
    });
    await new Promise<void>((resolve) => this.server.listen(this.sockPath, resolve));
    this.proc = spawn(AGENT_BIN, ["--no-init", "--channel", this.sockPath], { stdio: ["ignore", "ignore", "pipe"] });
    this.proc.stderr!.on("data", (d: Buffer) => (this.stderr += d.toString()));
  }

  /** The next connection the agent makes to the server. */
  nextSocket(timeoutMs = 5000): Promise<net.Socket> {
    const q = this.#queued.shift();
    if (q) return Promise.resolve(q);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`agent did not connect; stderr:\n${this.stderr}`)), timeoutMs);
      this.#waiting.push((s) => {
        clearTimeout(t);
        resolve(s);
      });
    });
  }

  async client(): Promise<AgentClient> {
    return AgentClient.fromSocket(await this.nextSocket(), { timeoutMs: 5000 });
  }

  async stop(): Promise<void> {
    if (this.proc && this.proc.exitCode === null) {
      const exited = new Promise((r) => this.proc!.once("exit", r));
      this.proc.kill("SIGKILL");
      await exited;
    }
    await new Promise((r) => this.server.close(r));
    for (const s of this.#queued) s.destroy();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface Collected extends ExecOutcome {
  stdout: string;
  stderr: string;
}

/** Runs one command and collects its output as strings. */
export async function run(client: AgentClient, req: Partial<ExecRequest> & { cmd: string }, signal?: AbortSignal): Promise<Collected> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const outcome = await client.exec(
    { args: [], ...req },
    { onStdout: (c) => out.push(c), onStderr: (c) => err.push(c) },
    signal,
  );
  return { ...outcome, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() };
}
