/**
 * An in-memory `Runtime` for unit tests of core and the API: no VMs. Create
 * can be delayed or made to fail, exec echoes (or returns configured
 * outcomes), files live in a Map, and `crash(id)` simulates a VM dying.
 */
import { Readable, type Duplex } from "node:stream";
import { RuntimeError } from "../../src/runtime/errors.js";
import { duplexPair } from "./duplex-pair.js";
import type {
  ExecOutcome,
  ExecOutput,
  ExecRequest,
  ImageInfo,
  MachineExitListener,
  MachineStallListener,
  MachineInfo,
  MachineSpec,
  Runtime,
  RuntimeCapacity,
  RunningMachine,
  ShellOptions,
  ShellSession,
  NetworkPolicy,
  NetworkUsage,
  ForkOptions,
  MachineShape,
  WarmClaim,
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
  /**
   * Guest services for openTunnel, by port: each gets the guest end of a new
   * connection. A port without one refuses (agent_error, as the agent does).
   */
  readonly guestPorts = new Map<number, (conn: Duplex) => void>();
  /** Every tunnel opened: sandbox id and port. */
  readonly tunnels: Array<{ id: string; port: number }> = [];
  /** Every shell opened, with each size it was given (open, then resizes). */
  readonly shells: Array<{ id: string; opts: ShellOptions; sizes: Array<[number, number]>; hungUp: boolean }> = [];
  opts: FakeRuntimeOptions;
  #listeners: MachineExitListener[] = [];
  #stallListeners: MachineStallListener[] = [];
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
    this.stalled.delete(id);
    this.pausedMachines.delete(id);
    for (const key of [...this.files.keys()]) if (key.startsWith(`${id}:`)) this.files.delete(key);
  }

  async exec(id: string, req: ExecRequest, out: ExecOutput, signal?: AbortSignal): Promise<ExecOutcome> {
    const m = this.machines.get(id);
    if (!m || this.stalled.has(id)) throw new RuntimeError("not_running", "sandbox is not running");
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

  /** Network policies as last set, by sandbox id (removed ones deleted). */
  readonly policies = new Map<string, NetworkPolicy>();
  /** Usage handed out by the next `takeNetworkUsage` (tests fill it). */
  pendingUsage = new Map<string, NetworkUsage>();

  async setNetworkPolicy(id: string, policy: NetworkPolicy | null): Promise<void> {
    if (policy) this.policies.set(id, policy);
    else this.policies.delete(id);
  }

  async takeNetworkUsage(): Promise<Map<string, NetworkUsage>> {
    const u = this.pendingUsage;
    this.pendingUsage = new Map();
    return u;
  }

  async dialGuest(ip: string, port: number): Promise<Duplex> {
    throw new RuntimeError("not_running", `fake runtime cannot reach ${ip}:${port}`);
  }

  async openTunnel(id: string, port: number): Promise<Duplex> {
    if (!this.machines.has(id)) throw new RuntimeError("not_running", "sandbox is not running");
    const service = this.guestPorts.get(port);
    if (!service) throw new RuntimeError("agent_error", `connect to guest port ${port}: Connection refused (errno 111)`);
    this.tunnels.push({ id, port });
    const [host, guest] = duplexPair();
    service(guest);
    return host;
  }

  /**
   * A fake terminal: echoes what is typed; a line `size` prints "ROWS COLS",
   * `exit N` ends the shell with code N.
   */
  async openShell(id: string, opts: ShellOptions): Promise<ShellSession> {
    if (!this.machines.has(id)) throw new RuntimeError("not_running", "sandbox is not running");
    const rec = { id, opts, sizes: [[opts.rows, opts.cols]] as Array<[number, number]>, hungUp: false };
    this.shells.push(rec);
    const [host, guest] = duplexPair();
    let resolveExit!: (code: number) => void;
    const exit = new Promise<number>((r) => (resolveExit = r));
    let line = "";
    guest.on("data", (c: Buffer) => {
      guest.write(c);
      line += c.toString();
      let nl: number;
      while ((nl = line.indexOf("\n")) >= 0) {
        const cmd = line.slice(0, nl).trim();
        line = line.slice(nl + 1);
        const size = rec.sizes.at(-1)!;
        if (cmd === "size") guest.write(`${size[0]} ${size[1]}\r\n`);
        const m = /^exit(?: (\d+))?$/.exec(cmd);
        if (m) {
          resolveExit(Number(m[1] ?? 0));
          guest.end();
          return;
        }
      }
    });
    guest.on("close", () => {
      rec.hungUp = true;
      resolveExit(-1);
    });
    return { stream: host, exit, resize: (rows, cols) => void rec.sizes.push([rows, cols]) };
  }

  /** Paused VMs (issue 4): their spec at pause, files kept by id. */
  readonly pausedMachines = new Map<string, MachineSpec>();
  /** Set to make the next pauses / resumes fail. */
  failPause: Error | undefined;
  failResume: Error | undefined;
  /** Delay of pause, resume and fork, ms (default 0). */
  snapshotDelayMs = 0;
  /** Ids of warm VMs `claimWarm` hands out (tests fill it). */
  readonly warm: string[] = [];

  async pause(id: string): Promise<void> {
    const m = this.machines.get(id);
    if (!m) throw new RuntimeError("not_running", "sandbox is not running");
    if (this.snapshotDelayMs) await sleep(this.snapshotDelayMs);
    if (this.failPause) throw this.failPause;
    this.machines.delete(id);
    this.pausedMachines.set(id, m.spec);
  }

  async resume(id: string, spec: MachineSpec): Promise<MachineInfo> {
    if (this.stalled.has(id)) {
      if (this.snapshotDelayMs) await sleep(this.snapshotDelayMs);
      if (this.diskFull) throw new RuntimeError("disk_full", "the host's data disk is full");
      this.stalled.delete(id);
      return { id, pid: this.machines.get(id)!.pid, bootMs: 0 };
    }
    if (!this.pausedMachines.has(id)) throw new RuntimeError("internal", `${id} is not paused`);
    if (this.snapshotDelayMs) await sleep(this.snapshotDelayMs);
    if (this.failResume) throw this.failResume;
    this.pausedMachines.delete(id);
    const pid = this.#pid++;
    this.machines.set(id, { spec, pid });
    return { id, pid, bootMs: 0 };
  }

  async fork(sourceId: string, child: MachineSpec, opts: ForkOptions = {}): Promise<MachineInfo | undefined> {
    if (!this.pausedMachines.has(sourceId)) throw new RuntimeError("internal", `${sourceId} is not paused`);
    if (this.snapshotDelayMs) await sleep(this.snapshotDelayMs);
    for (const [key, buf] of [...this.files]) if (key.startsWith(`${sourceId}:`)) this.files.set(`${child.id}:${key.slice(sourceId.length + 1)}`, buf);
    if (opts.startPaused) {
      this.pausedMachines.set(child.id, child);
      return undefined;
    }
    const pid = this.#pid++;
    this.machines.set(child.id, { spec: child, pid });
    return { id: child.id, pid, bootMs: 0 };
  }

  claimWarm(_shape: MachineShape): WarmClaim | undefined {
    const id = this.warm.shift();
    return id === undefined ? undefined : { id };
  }

  async reconcile(ids: string[]): Promise<RunningMachine[]> {
    const alive = this.reconciled ?? [...this.machines.keys()];
    // Anything not expected is killed, like the real runtime does.
    for (const id of [...this.machines.keys()]) if (!ids.includes(id)) this.machines.delete(id);
    for (const id of [...this.pausedMachines.keys()]) if (!ids.includes(id)) this.pausedMachines.delete(id);
    const paused = ids.filter((id) => this.pausedMachines.has(id)).map((id) => ({ id, pid: 0, paused: true }));
    return [
      ...ids
        .filter((id) => alive.includes(id) && !this.pausedMachines.has(id))
        .map((id) => ({ id, pid: this.machines.get(id)?.pid ?? 1, ...(this.stalled.has(id) ? { stalled: "the host's data disk is full" } : {}) })),
      ...paused,
    ];
  }

  onExit(listener: MachineExitListener): void {
    this.#listeners.push(listener);
  }

  onStall(listener: MachineStallListener): void {
    this.#stallListeners.push(listener);
  }

  /** Ids of VMs stalled on a full disk (see `stall`); `resume` continues them. */
  readonly stalled = new Set<string>();
  /** Set while the disk is "still full": resuming a stalled VM stalls it again (rejects `disk_full`). */
  diskFull = false;

  /** Simulates a VM whose disk write found the host's data dir full: it stands still, alive. */
  stall(id: string, reason = "the host's data disk is full"): void {
    if (!this.machines.has(id) || this.stalled.has(id)) return;
    this.stalled.add(id);
    for (const l of this.#stallListeners) l(id, reason);
  }

  /** Simulates a VM dying on its own (crash, SIGKILL). */
  crash(id: string, reason = "killed"): void {
    this.machines.delete(id);
    this.stalled.delete(id);
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
