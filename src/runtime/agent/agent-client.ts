/**
 * The host end of the agent protocol (docs/agent-protocol.md): one client per
 * connection to a guest's hutch-agent, multiplexing configure, exec and file
 * transfers over channels. Everything the agent sends is untrusted: a
 * malformed frame closes the connection with `agent_error` and fails every
 * pending call; it never throws out of an event handler.
 */
import { randomBytes } from "node:crypto";
import net from "node:net";
import type { Duplex, Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";

import { RuntimeError } from "../errors.js";
import type { ExecOutcome, ExecOutput, ExecRequest, ShellOptions, ShellSession } from "../runtime.js";
import { agentError, connectionGone } from "./agent-errors.js";
import { FrameDecoder, FrameError, encodeFrame, type Frame } from "./frame-codec.js";
import { runExec } from "./exec-channel.js";
import { openRead, streamWrite } from "./file-transfer.js";
import { openPty } from "./pty-channel.js";
import { openTcp } from "./tcp-relay.js";
import { decodeError, decodeHelloReply, encodeConfigure, encodeHello, type ConfigurePayload } from "./messages.js";
import {
  FRAME_TYPE_NAMES,
  HP_CONFIGURE,
  HP_ERROR,
  HP_HELLO,
  HP_MIN_VERSION,
  HP_NONCE_SIZE,
  HP_OK,
  HP_PING,
  HP_PONG,
  HP_VERSION,
} from "./protocol.js";

/** The sandbox identity sent with CONFIGURE: the wire payload itself. */
export type GuestConfig = ConfigurePayload;

/** How long `connect`/`fromSocket` may take in total (socket + HELLO), and a way to give up early. */
export interface ConnectOptions {
  timeoutMs: number;
  signal?: AbortSignal;
}

/** Receives the frames of one channel; `onClose` when the connection is gone. */
export interface ChannelHandler {
  onFrame(frame: Frame): void;
  onClose(err: RuntimeError): void;
}

/** How often HELLO is repeated until answered (the guest may still boot,
 *  or be discarding a stalled partial frame from a previous host). */
const HELLO_RETRY_MS = 250;
const CONNECT_RETRY_MS = 50;

/**
 * A connection to one guest agent.
 *
 * @example
 * const agent = await AgentClient.connect("/var/lib/hutch/vms/sb_x/agent.sock", { timeoutMs: 30_000 });
 * await agent.configure(cfg);
 * const outcome = await agent.exec({ cmd: "uname", args: ["-a"] }, { onStdout, onStderr });
 */
export class AgentClient {
  #sock: net.Socket;
  #decoder = new FrameDecoder();
  #channels = new Map<number, ChannelHandler>();
  #nextChannel = 1;
  #closedReason: Error | undefined | null = null; // null: still open
  #resolveClosed!: (reason: Error | undefined) => void;
  #onHello: ((f: Frame) => void) | null = null;
  #agentVersion = "";
  #protocolVersion = HP_VERSION;
  #lastHeard = Date.now();

  /** Resolves (never rejects) when the connection is gone, with the reason
   *  (undefined after `close()`). */
  readonly closed: Promise<Error | undefined>;

  private constructor(sock: net.Socket) {
    this.#sock = sock;
    this.closed = new Promise((resolve) => (this.#resolveClosed = resolve));
    sock.on("data", (chunk: Buffer) => this.#onData(chunk));
    sock.on("error", (err) => this.#shutdown(err));
    sock.on("close", () => this.#shutdown(new Error("agent connection closed")));
  }

  /** When the agent last sent anything (ms since epoch; connect time before that): proof of life. */
  get lastHeard(): number {
    return this.#lastHeard;
  }

  /** Version string the agent reported in its HELLO. */
  get agentVersion(): string {
    return this.#agentVersion;
  }

  /** Protocol version both ends speak: the agent's answer to our HELLO
   *  (lower than HP_VERSION for the agent of an older image). */
  get protocolVersion(): number {
    return this.#protocolVersion;
  }

  /**
   * Connects to the agent's unix socket (retrying ENOENT/ECONNREFUSED until
   * timeout), does the HELLO handshake. Rejects RuntimeError("boot_failed"|"agent_error").
   */
  static async connect(socketPath: string, opts: ConnectOptions): Promise<AgentClient> {
    const deadline = Date.now() + opts.timeoutMs;
    for (;;) {
      if (opts.signal?.aborted) throw new RuntimeError("boot_failed", "connect to agent aborted");
      try {
        const sock = await dial(socketPath);
        return await AgentClient.fromSocket(sock, { ...opts, timeoutMs: Math.max(1, deadline - Date.now()) });
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        const retry = code === "ENOENT" || code === "ECONNREFUSED";
        if (!retry) throw err instanceof RuntimeError ? err : new RuntimeError("boot_failed", `agent socket: ${String(err)}`, { cause: err });
        if (Date.now() + CONNECT_RETRY_MS >= deadline) {
          throw new RuntimeError("boot_failed", `agent socket ${socketPath} not reachable in ${opts.timeoutMs} ms`, { cause: err });
        }
        await sleep(CONNECT_RETRY_MS);
      }
    }
  }

  /**
   * Does the HELLO handshake over an already-connected socket (tests, where
   * the agent is the one connecting). Destroys the socket on failure.
   */
  static async fromSocket(sock: net.Socket, opts: ConnectOptions): Promise<AgentClient> {
    const client = new AgentClient(sock);
    try {
      await client.#handshake(opts);
      return client;
    } catch (err) {
      client.#shutdown(err instanceof Error ? err : new Error(String(err)));
      throw err;
    }
  }

  #handshake(opts: ConnectOptions): Promise<void> {
    const nonce = randomBytes(HP_NONCE_SIZE);
    this.#decoder.resyncUntil((f) => {
      if (f.type !== HP_HELLO) return false;
      try {
        return decodeHelloReply(f.payload).nonce.equals(nonce);
      } catch {
        return false;
      }
    });
    return new Promise<void>((resolve, reject) => {
      const hello = encodeFrame(HP_HELLO, 0, encodeHello(nonce));
      const send = () => this.#write(hello);
      const timer = setInterval(send, HELLO_RETRY_MS);
      const timeout = setTimeout(() => done(new RuntimeError("boot_failed", `agent did not answer HELLO within ${opts.timeoutMs} ms`)), opts.timeoutMs);
      const onAbort = () => done(new RuntimeError("boot_failed", "agent handshake aborted"));
      const onClosed = (reason: Error | undefined) => done(new RuntimeError("boot_failed", "agent connection closed during handshake", { cause: reason }));
      const done = (err?: Error) => {
        clearInterval(timer);
        clearTimeout(timeout);
        opts.signal?.removeEventListener("abort", onAbort);
        this.#onHello = null;
        if (err) reject(err);
        else resolve();
      };
      opts.signal?.addEventListener("abort", onAbort, { once: true });
      if (opts.signal?.aborted) return onAbort();
      void this.closed.then(onClosed);
      this.#onHello = (f) => {
        const reply = decodeHelloReply(f.payload);
        // An agent of an older image answers with its own (lower) version; a
        // current one with the lower of ours and its own.
        if (reply.version < HP_MIN_VERSION || reply.version > HP_VERSION) {
          return done(new RuntimeError("agent_error", `agent speaks protocol ${reply.version}, host ${HP_MIN_VERSION}..${HP_VERSION}`));
        }
        this.#protocolVersion = reply.version;
        this.#agentVersion = reply.agentVersion;
        done();
      };
      send();
    });
  }

  #onData(chunk: Buffer): void {
    if (this.#closedReason !== null) return;
    this.#lastHeard = Date.now();
    let frames: Frame[];
    try {
      frames = this.#decoder.push(chunk);
    } catch (err) {
      const msg = err instanceof FrameError ? err.message : String(err);
      this.#shutdown(new RuntimeError("agent_error", `agent sent a malformed frame: ${msg}`, { cause: err }));
      return;
    }
    for (const f of frames) {
      if (this.#closedReason !== null) return;
      try {
        this.#dispatch(f);
      } catch (err) {
        const msg = err instanceof Error ? err.message : String(err);
        this.#shutdown(new RuntimeError("agent_error", `agent protocol error: ${msg}`, { cause: err }));
      }
    }
  }

  #dispatch(f: Frame): void {
    if (f.type === HP_HELLO) {
      // The answer to our HELLO (or to one of its repeats: ignored).
      this.#onHello?.(f);
      return;
    }
    // Frames for a channel we already finished (output racing a KILL) are dropped.
    this.#channels.get(f.channel)?.onFrame(f);
  }

  /** Sends one frame; false when the socket buffer is full (see `drained`). */
  #write(frame: Buffer): boolean {
    if (this.#closedReason !== null || this.#sock.destroyed) return false;
    return this.#sock.write(frame);
  }

  #shutdown(reason: Error | undefined): void {
    if (this.#closedReason !== null) return;
    this.#closedReason = reason;
    this.#sock.destroy();
    const err = connectionGone(reason);
    const handlers = [...this.#channels.values()];
    this.#channels.clear();
    for (const h of handlers) h.onClose(err);
    this.#resolveClosed(reason);
  }

  #assertOpen(): void {
    if (this.#closedReason !== null) throw connectionGone(this.#closedReason);
  }

  /**
   * Opens a channel: allocates its id and routes its frames to `handler`.
   * Used by file-transfer.ts; exposed for the same reason, not for core.
   * @internal
   */
  openChannel(handler: ChannelHandler): { id: number; send(type: number, payload?: Buffer): boolean; close(): void; drained(): Promise<void> } {
    this.#assertOpen();
    let id = this.#nextChannel;
    while (this.#channels.has(id)) id = id >= 0xffffffff ? 1 : id + 1;
    this.#nextChannel = id >= 0xffffffff ? 1 : id + 1;
    this.#channels.set(id, handler);
    return {
      id,
      send: (type, payload) => this.#write(encodeFrame(type, id, payload)),
      close: () => {
        if (this.#channels.get(id) === handler) this.#channels.delete(id);
      },
      drained: () => this.#drained(),
    };
  }

  /** Resolves once the socket can take more (or is gone). */
  #drained(): Promise<void> {
    if (this.#closedReason !== null || !this.#sock.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.#sock.off("drain", done);
        this.#sock.off("close", done);
        resolve();
      };
      this.#sock.on("drain", done);
      this.#sock.on("close", done);
    });
  }

  /** One request, one OK/ERROR (or `expect`ed) answer on a fresh channel. */
  #request(type: number, payload: Buffer, what: string, expect = HP_OK, timeoutMs?: number): Promise<Frame> {
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const ch = this.openChannel({
        onFrame: (f) => {
          clearTimeout(timer);
          // Decode before letting the channel go: a malformed ERROR closes
          // the connection, which must still reach this call via onClose.
          const err =
            f.type === expect
              ? null
              : f.type === HP_ERROR
                ? agentError(decodeError(f.payload), what)
                : new RuntimeError("agent_error", `${what}: unexpected ${FRAME_TYPE_NAMES[f.type] ?? f.type}`);
          ch.close();
          if (err) reject(err);
          else resolve(f);
        },
        onClose: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      });
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          ch.close();
          reject(new RuntimeError("agent_error", `${what}: no answer within ${timeoutMs} ms`));
        }, timeoutMs);
      }
      ch.send(type, payload);
    });
  }

  /** Applies the sandbox identity in the guest (`cfg.keep` honoured from
   *  protocol 3 on, else everything is sent). Rejects agent_error / not_running. */
  async configure(cfg: GuestConfig): Promise<void> {
    if (cfg.rngSeed.length < 32) throw new RuntimeError("internal", "rngSeed must be at least 32 bytes");
    await this.#request(HP_CONFIGURE, encodeConfigure(cfg, this.#protocolVersion), "configure");
  }

  /** Round trip to the agent; rejects agent_error after `timeoutMs` (default 5 s). */
  async ping(timeoutMs = 5000): Promise<void> {
    const token = randomBytes(8);
    const f = await this.#request(HP_PING, token, "ping", HP_PONG, timeoutMs);
    if (!f.payload.equals(token)) throw new RuntimeError("agent_error", "ping: PONG does not echo the PING");
  }

  /**
   * Runs a command. Resolves with its outcome, also when it could not be
   * started (`error` set, exit 126/127) or was killed. Aborting `signal`
   * kills its process group (SIGKILL); the outcome then reports signal 9.
   * `out.ready` holds the command back while the consumer is behind (an
   * agent of protocol 1 ignores it: its output comes as fast as it is printed).
   */
  async exec(req: ExecRequest, out: ExecOutput, signal?: AbortSignal): Promise<ExecOutcome> {
    this.#assertOpen();
    return runExec(this, req, out, signal);
  }

  /** Writes a file (parents created, replaced atomically). Respects `data`'s
   *  backpressure. Rejects invalid_path / not_found / agent_error / not_running. */
  async writeFile(path: string, data: Readable, mode?: number): Promise<void> {
    this.#assertOpen();
    return streamWrite(this, path, data, mode ?? 0);
  }

  /** Opens a guest file for reading; rejects not_found / invalid_path before
   *  the first byte. The stream pulls from the agent as it is consumed. */
  async readFile(path: string): Promise<Readable> {
    this.#assertOpen();
    return openRead(this, path);
  }

  /**
   * Opens a TCP connection to 127.0.0.1:`port` inside the guest, relayed over
   * this connection. Rejects agent_error (e.g. connection refused) / not_running.
   * Ending the stream half-closes; destroying it aborts.
   */
  async tcpConnect(port: number): Promise<Duplex> {
    this.#assertOpen();
    return openTcp(this, port);
  }

  /**
   * Starts a login shell on a new pseudo-terminal in the guest. Rejects
   * agent_error (e.g. an agent without PTY support: ENOSYS) / not_running.
   */
  async openShell(opts: ShellOptions): Promise<ShellSession> {
    this.#assertOpen();
    return openPty(this, opts);
  }

  /** Drops the connection (the guest keeps running); pending calls fail not_running. */
  close(): void {
    this.#shutdown(undefined);
  }
}

function dial(path: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection(path);
    sock.once("connect", () => {
      sock.off("error", reject);
      resolve(sock);
    });
    sock.once("error", reject);
  });
}
