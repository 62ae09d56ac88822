/**
 * An in-memory `Runtime` for unit tests of core and the API: no VMs. Create
 * can be delayed or made to fail, exec echoes (or returns configured
 * outcomes), files live in a Map, and `crash(id)` simulates a VM dying.
 */
import { Readable } from "node:stream";
import { RuntimeError } from "../../src/runtime/errors.js";
import type {
  ExecOutcome,
  ExecOutput,
  ExecRequest,
  ImageInfo,
  MachineExitListener,
  MachineInfo,
  MachineSpec,
  Runtime,
  RuntimeCapacity,
  RunningMachine,
} from "../../src/runtime/runtime.js";

export interface FakeRuntimeOptions {
  /** Delay of create, ms (default 0). */
  createDelayMs?: number;
  /** Delay of destroy, ms (default 0). */
  destroyDelayMs?: number;
  images?: ImageInfo[];
  defaultImage?: string;
  capacity?: RuntimeCapacity;
}

/** A scripted exec: what to print and how to end, or a function of the request. */
export type FakeExec = (req: ExecRequest, out: ExecOutput, signal: AbortSignal | undefined) => Promise<ExecOutcome>;

export class FakeRuntime implements Runtime {
  readonly machines = new Map<string, { spec: MachineSpec; pid: number }>();
  readonly files = new Map<string, Buffer>();
  /** Every spec create was called with (envs included, to check decryption). */
  readonly created: MachineSpec[] = [];
  readonly destroyed: string[] = [];
  readonly execs: Array<{ id: string; req: ExecRequest; aborted: boolean }> = [];
  /** Set to make the next creates fail with this error. */
  failCreate: Error | undefined;
  /** Set to make destroy fail. */
  failDestroy: Error | undefined;
  /** Replaces the default echo behaviour of exec. */
  execHandler: FakeExec | undefined;
  /** Ids `reconcile` reports alive (default: every machine in the map). */
  reconciled: string[] | undefined;
  opts: FakeRuntimeOptions;
  #listeners: MachineExitListener[] = [];
  #pid = 1000;

  constructor(opts: FakeRuntimeOptions = {}) {
    this.opts = opts;
  }

  async create(spec: MachineSpec): Promise<MachineInfo> {
    this.created.push(spec);
    if (this.opts.createDelayMs) await sleep(this.opts.createDelayMs);
    if (this.failCreate) throw this.failCreate;
    const pid = this.#pid++;
    this.machines.set(spec.id, { spec, pid });
    return { id: spec.id, pid, bootMs: this.opts.createDelayMs ?? 0 };
  }

  async destroy(id: string): Promise<void> {
    if (this.opts.destroyDelayMs) await sleep(this.opts.destroyDelayMs);
    if (this.failDestroy) throw this.failDestroy;
    this.destroyed.push(id);
    this.machines.delete(id);
    for (const key of [...this.files.keys()]) if (key.startsWith(`${id}:`)) this.files.delete(key);
  }

  async exec(id: string, req: ExecRequest, out: ExecOutput, signal?: AbortSignal): Promise<ExecOutcome> {
    const m = this.machines.get(id);
    if (!m) throw new RuntimeError("not_running", "sandbox is not running");
    const record = { id, req, aborted: false };
    this.execs.push(record);
    signal?.addEventListener("abort", () => (record.aborted = true), { once: true });
    if (this.execHandler) return this.execHandler(req, out, signal);
    // Default: a tiny echo/env/sleep/cat interpreter.
    const env = { ...m.spec.envs, ...req.env };
    switch (req.cmd) {
      case "echo":
        out.onStdout(Buffer.from(`${req.args.join(" ")}\n`));
        return { exitCode: 0 };
      case "env":
        out.onStdout(Buffer.from(Object.entries(env).map(([k, v]) => `${k}=${v}\n`).join("")));
        return { exitCode: 0 };
      case "cat":
        if (req.stdin) out.onStdout(req.stdin);
        return { exitCode: 0 };
      case "fail":
        out.onStderr(Buffer.from("boom\n"));
        return { exitCode: Number(req.args[0] ?? 1) };
      case "sleep": {
        const ms = Number(req.args[0] ?? 1) * 1000;
        const aborted = await sleep(ms, signal);
        return aborted ? { exitCode: 137, signal: 9 } : { exitCode: 0 };
      }
      default:
        return { exitCode: 127, error: `${req.cmd}: not found` };
    }
  }

  async writeFile(id: string, path: string, data: Readable): Promise<void> {
    if (!this.machines.has(id)) throw new RuntimeError("not_running", "sandbox is not running");
    if (path.endsWith("/")) throw new RuntimeError("invalid_path", "is a directory");
    const chunks: Buffer[] = [];
    for await (const c of data) chunks.push(Buffer.from(c as Buffer));
    this.files.set(`${id}:${path}`, Buffer.concat(chunks));
  }

  async readFile(id: string, path: string): Promise<Readable> {
    if (!this.machines.has(id)) throw new RuntimeError("not_running", "sandbox is not running");
    if (path.endsWith("/")) throw new RuntimeError("invalid_path", "is a directory");
    const buf = this.files.get(`${id}:${path}`);
    if (!buf) throw new RuntimeError("not_found", `no such file: ${path}`);
    return Readable.from([buf]);
  }

  async reconcile(ids: string[]): Promise<RunningMachine[]> {
    const alive = this.reconciled ?? [...this.machines.keys()];
    // Anything not expected is killed, like the real runtime does.
    for (const id of [...this.machines.keys()]) if (!ids.includes(id)) this.machines.delete(id);
    return ids.filter((id) => alive.includes(id)).map((id) => ({ id, pid: this.machines.get(id)?.pid ?? 1 }));
  }

  onExit(listener: MachineExitListener): void {
    this.#listeners.push(listener);
  }

  /** Simulates a VM dying on its own (crash, SIGKILL). */
  crash(id: string, reason = "killed"): void {
    this.machines.delete(id);
    for (const l of this.#listeners) l(id, reason);
  }

  async images(): Promise<{ images: ImageInfo[]; default: string }> {
    const images = this.opts.images ?? [
      { name: "devbox:1", description: "Debian with dev tools" },
      { name: "base:1", description: "Minimal Debian" },
      { name: "old:1", description: "Disabled in tests" },
    ];
    return { images, default: this.opts.defaultImage ?? "devbox:1" };
  }

  capacity(): RuntimeCapacity {
    return this.opts.capacity ?? { memMib: 64 * 1024, vcpus: 64 };
  }

  async close(): Promise<void> {}
}

/** Resolves after `ms` (true if `signal` aborted first). */
function sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve(true);
    const t = setTimeout(() => resolve(false), ms);
    signal?.addEventListener(
      "abort",
      () => {
        clearTimeout(t);
        resolve(true);
      },
      { once: true },
    );
  });
}
