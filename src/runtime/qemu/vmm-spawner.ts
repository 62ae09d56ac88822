/**
 * Starts VMM processes through `hutch-spawn` (jailer/spawn.c), a small
 * helper process, instead of forking the server. Node forks to spawn: the
 * call copies the page tables of a 100+ MB process (8-13 ms with the event
 * loop blocked) and write-protects every page, so the server's next writes
 * fault once per page (+30-38 ms of CPU measured at 220-270 MB RSS on a
 * nested TCG host), on the path of the resume, fork or create that spawned.
 *
 * The helper reports each child's start and exit; `VmmSpawner.spawn` hands
 * back a `VmmChild` that emits "exit" like a ChildProcess. The children do
 * not depend on the helper: if it dies, they run on (adopted by init) and
 * their exits are noticed by polling; the next spawn starts a new helper.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { EventEmitter } from "node:events";
import { closeSync, openSync } from "node:fs";
import { constants } from "node:os";
import type { Socket } from "node:net";
import { createInterface } from "node:readline";
import type { RuntimeLogger } from "./runtime-logger.js";
import { isAlive, spawnDetached } from "./vm-process.js";
import { buildJailerTool, JAILER_DIR } from "./vmm-jailer.js";

/** What callers need of a spawned VMM: a ChildProcess is one too. */
export interface VmmChild {
  readonly pid?: number | undefined;
  readonly exitCode: number | null;
  readonly signalCode: NodeJS.Signals | null;
  once(event: "exit", listener: (code: number | null, signal: NodeJS.Signals | null) => void): this;
  once(event: "error", listener: (err: Error) => void): this;
  removeAllListeners(event?: string): this;
}

/** How one process is started (see jailer/spawn.c). */
export interface SpawnRequest {
  argv: string[];
  cwd: string;
  /** stdout and stderr are appended here (created 0600). */
  logFile: string;
  /** The whole environment of the child. */
  env: NodeJS.ProcessEnv;
  /** Opened read-only as the child's fd 3. */
  inputFile?: string;
}

/** How often children of a helper that died are checked for, ms. */
const ORPHAN_POLL_MS = 500;

/** A process started by the helper. Emits "exit" (code, signal) once. */
class SpawnedChild extends EventEmitter implements VmmChild {
  exitCode: number | null = null;
  signalCode: NodeJS.Signals | null = null;
  constructor(readonly pid: number) {
    super();
  }

  #ended = false;

  /**
   * Records the exit and emits it, once, on a later turn as a ChildProcess
   * does: the helper may report the start and the exit in one read, and
   * whoever awaited the start attaches its listeners first. exitCode and
   * signalCode change with the event, not before.
   */
  exited(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.#ended) return;
    this.#ended = true;
    setImmediate(() => {
      this.exitCode = code;
      this.signalCode = signal;
      this.emit("exit", code, signal);
    });
  }
}

/** One helper process and the children it started. */
class Helper {
  readonly #proc: ChildProcess;
  readonly #waiting = new Map<number, { resolve: (c: SpawnedChild) => void; reject: (e: Error) => void }>();
  readonly #children = new Map<number, SpawnedChild>();
  #nextId = 1;
  gone = false;

  constructor(binary: string, private readonly onGone: (orphans: SpawnedChild[], why: string) => void) {
    this.#proc = spawn(binary, [], { stdio: ["pipe", "pipe", "inherit"] });
    this.#proc.stdin!.on("error", () => {});
    const lines = createInterface({ input: this.#proc.stdout! });
    lines.on("line", (l) => this.#onLine(l));
    this.#proc.once("error", (e) => this.#end(`hutch-spawn: ${e.message}`));
    this.#proc.once("exit", (code, sig) => this.#end(`hutch-spawn exited (${sig ?? code})`));
    // Like a detached ChildProcess, neither the helper nor the VMMs keep the
    // server alive; only a spawn waiting for its answer does (#hold).
    this.#proc.unref();
    (this.#proc.stdin as Socket).unref();
    this.#hold();
  }

  /** Refs the helper's stdout while an answer is awaited. */
  #hold(): void {
    const out = this.#proc.stdout as Socket;
    if (this.#waiting.size > 0) out.ref();
    else out.unref();
  }

  spawn(r: SpawnRequest): Promise<SpawnedChild> {
    if (this.gone) return Promise.reject(new Error("hutch-spawn is gone"));
    const id = this.#nextId++;
    const env = Object.entries(r.env).filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${v}`);
    const strings = [r.cwd, r.logFile, r.inputFile ?? "", ...r.argv, ...env];
    if (strings.some((s) => s.includes("\0"))) return Promise.reject(new Error("a spawn argument holds a NUL byte"));
    const body = Buffer.concat([Buffer.alloc(12), ...strings.map((s) => Buffer.from(`${s}\0`, "utf8"))]);
    body.writeUInt32LE(id, 0);
    body.writeUInt32LE(r.argv.length, 4);
    body.writeUInt32LE(env.length, 8);
    const head = Buffer.alloc(4);
    head.writeUInt32LE(body.length, 0);
    return new Promise((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
      this.#hold();
      this.#proc.stdin!.write(Buffer.concat([head, body]));
    });
  }

  close(): void {
    this.#proc.stdin!.end();
  }

  #onLine(line: string): void {
    const [what, a, b, ...rest] = line.split(" ");
    if (what === "started" || what === "failed") {
      const w = this.#waiting.get(Number(a));
      if (!w) return;
      this.#waiting.delete(Number(a));
      this.#hold();
      if (what === "failed") {
        const err = Object.assign(new Error(rest.join(" ") || "spawn failed"), { errno: Number(b) });
        w.reject(err);
        return;
      }
      const child = new SpawnedChild(Number(b));
      this.#children.set(child.pid, child);
      w.resolve(child);
    } else if (what === "exited") {
      const child = this.#children.get(Number(a));
      if (!child) return;
      this.#children.delete(child.pid);
      const sig = Number(rest[0]);
      child.exited(sig ? null : Number(b), sig ? (SIGNAL_NAMES.get(sig) ?? "SIGKILL") : null);
    }
  }

  #end(why: string): void {
    if (this.gone) return;
    this.gone = true;
    for (const w of this.#waiting.values()) w.reject(new Error(why));
    this.#waiting.clear();
    this.onGone([...this.#children.values()], why);
    this.#children.clear();
  }
}

const SIGNAL_NAMES = new Map(Object.entries(constants.signals).map(([name, n]) => [n, name as NodeJS.Signals]));

export class VmmSpawner {
  #helper: Helper | undefined;
  #closed = false;
  readonly #orphans = new Set<SpawnedChild>();
  #orphanTimer: NodeJS.Timeout | undefined;

  private constructor(
    readonly binary: string,
    private readonly log: RuntimeLogger,
  ) {}

  /**
   * Builds `hutch-spawn` (make in jailer/, a no-op once built) and returns a
   * spawner; undefined, with a warning, when it cannot be built: VMMs are
   * then spawned by the server itself.
   */
  static async create(log: RuntimeLogger, dir = JAILER_DIR): Promise<VmmSpawner | undefined> {
    // Its own target: a failure elsewhere in jailer/ (the jailer, the RAM shim) does not stop it.
    const bin = await buildJailerTool("hutch-spawn", ["build/hutch-spawn"], "hutch-spawn not built: the server forks each VMM itself", log, dir);
    return bin === undefined ? undefined : VmmSpawner.at(bin, log);
  }

  /** A spawner using the helper binary at `binary`. */
  static at(binary: string, log: RuntimeLogger): VmmSpawner {
    return new VmmSpawner(binary, log);
  }

  /** Starts `r.argv` in a session of its own (see SpawnRequest); rejects when it cannot run. */
  async spawn(r: SpawnRequest): Promise<VmmChild> {
    if (this.#closed) throw new Error("spawner is closed");
    if (!this.#helper || this.#helper.gone) this.#helper = new Helper(this.binary, (orphans, why) => this.#adopt(orphans, why));
    return this.#helper.spawn(r);
  }

  /** Ends the helper (its children run on). */
  close(): void {
    this.#closed = true;
    this.#helper?.close();
    this.#helper = undefined;
    clearInterval(this.#orphanTimer);
  }

  /** Children of a helper that died: their exits are found by polling. */
  #adopt(orphans: SpawnedChild[], why: string): void {
    // Closed: the server is stopping and its VMMs outlive it, unwatched.
    if (this.#closed) return;
    this.log.warn({ why, children: orphans.length }, "hutch-spawn ended; its children run on");
    for (const c of orphans) this.#orphans.add(c);
    if (this.#orphans.size === 0 || this.#orphanTimer) return;
    this.#orphanTimer = setInterval(() => void this.#pollOrphans(), ORPHAN_POLL_MS);
    this.#orphanTimer.unref();
  }

  async #pollOrphans(): Promise<void> {
    for (const c of [...this.#orphans]) {
      // Not a zombie either: init may be slow to reap (or, in a container, never).
      if (await isAlive(c.pid)) continue;
      this.#orphans.delete(c);
      c.exited(null, null);
    }
    if (this.#orphans.size === 0) {
      clearInterval(this.#orphanTimer);
      this.#orphanTimer = undefined;
    }
  }
}

/**
 * Starts a VMM detached (its own session, stdio to `r.logFile`, fd 3 from
 * `r.inputFile`): through `spawner` when there is one, else by forking the
 * server (`spawnDetached`). The VM outlives the server either way.
 */
export async function launchDetached(spawner: VmmSpawner | undefined, r: Omit<SpawnRequest, "env"> & { env?: NodeJS.ProcessEnv }): Promise<VmmChild> {
  if (spawner) return spawner.spawn({ ...r, env: r.env ?? process.env });
  const input = r.inputFile !== undefined ? openSync(r.inputFile, "r") : undefined;
  try {
    return spawnDetached(r.argv, r.cwd, r.logFile, r.env, input === undefined ? [] : [input]);
  } finally {
    // The child has its own copy now.
    if (input !== undefined) closeSync(input);
  }
}
