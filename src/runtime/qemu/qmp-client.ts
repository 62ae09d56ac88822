/**
 * A client for QEMU's machine protocol (QMP) over a unix socket: one JSON
 * object per line. `connect` reads the greeting and negotiates
 * `qmp_capabilities`; `execute` sends a command with an id and resolves with
 * its `return` value; asynchronous events are emitted as "event".
 */
import { EventEmitter } from "node:events";
import net from "node:net";
import { setTimeout as sleep } from "node:timers/promises";

/** An `{"error": {class, desc}}` answer from QEMU. */
export class QmpError extends Error {
  override readonly name = "QmpError";
  constructor(
    /** QEMU's error class, e.g. "GenericError", "CommandNotFound". */
    readonly errorClass: string,
    desc: string,
    readonly command: string,
  ) {
    super(`${command}: ${errorClass}: ${desc}`);
  }
}

/** An asynchronous event, e.g. `{ event: "SHUTDOWN", data: {...} }`. */
export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

interface Pending {
  command: string;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/** Longest line accepted from QEMU; a larger one means something is wrong. */
const MAX_LINE = 16 * 1024 * 1024;

export interface QmpConnectOptions {
  /** Overall time for connecting (retried while the socket is not there yet) and negotiating. */
  timeoutMs: number;
  signal?: AbortSignal;
}

/**
 * A negotiated QMP session. Events: "event" (QmpEvent), "close" (Error | undefined).
 */
export class QmpClient extends EventEmitter {
  private buf = "";
  private nextId = 1;
  private readonly pending = new Map<string, Pending>();
  private closeError: Error | undefined;
  private isClosed = false;
  /** Resolves once the socket is closed (with the reason, if abnormal). */
  readonly closed: Promise<Error | undefined>;
  private resolveClosed!: (e: Error | undefined) => void;
  private greetingWaiter: ((line: Record<string, unknown>) => void) | undefined;

  private constructor(private readonly sock: net.Socket) {
    super();
    this.closed = new Promise((r) => (this.resolveClosed = r));
    sock.setEncoding("utf8");
    sock.on("data", (d: string) => this.onData(d));
    sock.on("error", (e) => (this.closeError ??= e));
    sock.on("close", () => this.onClose());
  }

  /**
   * Connects to `path`, retrying while the socket does not accept yet (QEMU
   * still starting), then negotiates capabilities. Rejects on timeout/abort.
   */
  static async connect(path: string, opts: QmpConnectOptions): Promise<QmpClient> {
    const deadline = Date.now() + opts.timeoutMs;
    let lastErr: unknown;
    for (;;) {
      opts.signal?.throwIfAborted();
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`QMP ${path}: no answer in ${opts.timeoutMs} ms: ${String(lastErr)}`);
      try {
        const sock = await openSocket(path, left);
        const client = new QmpClient(sock);
        try {
          await client.handshake(Math.max(deadline - Date.now(), 1));
          return client;
        } catch (err) {
          client.close();
          throw err;
        }
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== "ENOENT" && code !== "ECONNREFUSED") throw err;
        lastErr = err;
        await sleep(Math.min(50, Math.max(deadline - Date.now(), 1)), undefined, { signal: opts.signal });
      }
    }
  }

  /**
   * Runs `command` and resolves with its `return` value. Rejects with QmpError
   * when QEMU answers an error, or Error on timeout / closed socket.
   */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs = 10_000): Promise<T> {
    if (this.isClosed) return Promise.reject(new Error(`QMP ${command}: connection closed`));
    const id = `h${this.nextId++}`;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`QMP ${command}: no answer in ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { command, resolve: resolve as (v: unknown) => void, reject, timer });
      this.sock.write(JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id }) + "\n");
    });
  }

  /** Resolves with the next event named `name` (or rejects after `timeoutMs`). */
  waitEvent(name: string, timeoutMs: number): Promise<QmpEvent> {
    return new Promise((resolve, reject) => {
      const on = (ev: QmpEvent) => {
        if (ev.event !== name) return;
        clearTimeout(timer);
        this.off("event", on);
        resolve(ev);
      };
      const timer = setTimeout(() => {
        this.off("event", on);
        reject(new Error(`QMP: no ${name} event in ${timeoutMs} ms`));
      }, timeoutMs);
      this.on("event", on);
    });
  }

  /** Closes the socket; pending commands reject. */
  close(): void {
    this.sock.destroy();
  }

  private async handshake(timeoutMs: number): Promise<void> {
    const greeting = await new Promise<Record<string, unknown>>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`QMP: no greeting in ${timeoutMs} ms`)), timeoutMs);
      this.greetingWaiter = (line) => {
        clearTimeout(timer);
        resolve(line);
      };
      void this.closed.then((e) => {
        clearTimeout(timer);
        reject(e ?? new Error("QMP: closed before greeting"));
      });
    });
    if (!("QMP" in greeting)) throw new Error(`QMP: unexpected greeting ${JSON.stringify(greeting).slice(0, 200)}`);
    await this.execute("qmp_capabilities", undefined, timeoutMs);
  }

  private onData(d: string): void {
    this.buf += d;
    if (this.buf.length > MAX_LINE) {
      this.closeError = new Error("QMP: line too long");
      this.sock.destroy();
      return;
    }
    let nl: number;
    while ((nl = this.buf.indexOf("\n")) >= 0) {
      const line = this.buf.slice(0, nl).trim();
      this.buf = this.buf.slice(nl + 1);
      if (line) this.onLine(line);
    }
  }

  private onLine(line: string): void {
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(line) as Record<string, unknown>;
    } catch {
      this.closeError = new Error(`QMP: invalid JSON: ${line.slice(0, 200)}`);
      this.sock.destroy();
      return;
    }
    if (this.greetingWaiter) {
      const w = this.greetingWaiter;
      this.greetingWaiter = undefined;
      w(msg);
      return;
    }
    if (typeof msg.event === "string") {
      this.emit("event", msg as unknown as QmpEvent);
      return;
    }
    const id = typeof msg.id === "string" ? msg.id : undefined;
    const p = id ? this.pending.get(id) : undefined;
    if (!p || !id) return; // an answer to a command that timed out
    this.pending.delete(id);
    clearTimeout(p.timer);
    if ("error" in msg) {
      const e = msg.error as { class?: string; desc?: string };
      p.reject(new QmpError(e.class ?? "GenericError", e.desc ?? "unknown error", p.command));
    } else p.resolve(msg.return);
  }

  private onClose(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    for (const [, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new Error(`QMP ${p.command}: connection closed`));
    }
    this.pending.clear();
    this.resolveClosed(this.closeError);
    this.emit("close", this.closeError);
  }
}

function openSocket(path: string, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection(path);
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`QMP ${path}: connect timed out`));
    }, timeoutMs);
    sock.once("connect", () => {
      clearTimeout(timer);
      sock.removeAllListeners("error");
      resolve(sock);
    });
    sock.once("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}
