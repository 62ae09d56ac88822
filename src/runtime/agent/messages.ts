/**
 * Payloads of the agent protocol's messages (docs/agent-protocol.md), one
 * encoder per host→agent message and one strict decoder per agent→host
 * message. Decoders throw `FrameError("bad_payload")` on anything malformed.
 */
import { FrameError, PayloadReader, PayloadWriter } from "./frame-codec.js";
import { HP_KEEP_ENVS, HP_KEEP_KEYS, HP_NONCE_SIZE, HP_VERSION, HP_VERSION_CONFIGURE_KEEP } from "./protocol.js";

/** HELLO host→agent: u32 version, bytes nonce. */
export function encodeHello(nonce: Buffer, version = HP_VERSION): Buffer {
  return new PayloadWriter().u32(version).bytes(nonce).toBuffer();
}

export interface HelloReply {
  version: number;
  nonce: Buffer;
  agentVersion: string;
}

/** HELLO agent→host: u32 version, bytes nonce (echoed), str agent version. */
export function decodeHelloReply(p: Buffer): HelloReply {
  const r = new PayloadReader(p);
  const reply = { version: r.u32(), nonce: Buffer.from(r.bytes()), agentVersion: r.str() };
  r.end();
  if (reply.nonce.length !== HP_NONCE_SIZE) throw new FrameError("bad_payload", "bad nonce length");
  return reply;
}

/** What CONFIGURE carries: the sandbox identity (again after every restore). */
export interface ConfigurePayload {
  hostname: string;
  net?: { ip: string; prefixLen: number; gateway: string; mac: string; dns: string[] };
  envs: Record<string, string>;
  sshPubkeys: string[];
  /** >= 32 bytes, from crypto.randomBytes. */
  rngSeed: Buffer;
  /** Date.now() at send time. */
  wallClockMs: number;
  /**
   * Parts the guest already has exactly so (a resume of the guest that
   * paused, nothing changed since): an agent of protocol >= 3 is told to
   * keep them and they are not sent; an older agent gets them in full.
   */
  keep?: { envs?: boolean; keys?: boolean };
}

/** CONFIGURE: str hostname, u8 hasNet [str ip, u8 prefix, str gw, str mac,
 *  strlist dns], kv envs, strlist keys, bytes seed, u64 wall clock ms;
 *  from protocol 3 on, u8 keep flags (a kept part is sent empty). */
export function encodeConfigure(c: ConfigurePayload, version = HP_VERSION): Buffer {
  const flagged = version >= HP_VERSION_CONFIGURE_KEEP;
  const keepEnvs = flagged && c.keep?.envs === true;
  const keepKeys = flagged && c.keep?.keys === true;
  const w = new PayloadWriter().str(c.hostname);
  if (c.net) {
    w.u8(1).str(c.net.ip).u8(c.net.prefixLen).str(c.net.gateway).str(c.net.mac).strList(c.net.dns);
  } else {
    w.u8(0);
  }
  w.kv(keepEnvs ? {} : c.envs).strList(keepKeys ? [] : c.sshPubkeys).bytes(c.rngSeed).u64(Math.max(0, Math.floor(c.wallClockMs)));
  if (flagged) w.u8((keepEnvs ? HP_KEEP_ENVS : 0) | (keepKeys ? HP_KEEP_KEYS : 0));
  return w.toBuffer();
}

/** EXEC_START: strlist argv, kv env, str cwd ("" = /root or /). */
export function encodeExecStart(argv: string[], env: Record<string, string>, cwd: string): Buffer {
  return new PayloadWriter().strList(argv).kv(env).str(cwd).toBuffer();
}

export interface ExitPayload {
  exitCode: number;
  signal: number;
  error: string;
}

/** EXIT: i32 exit code, u32 signal (0 = none), str error ("" = started fine). */
export function decodeExit(p: Buffer): ExitPayload {
  const r = new PayloadReader(p);
  const out = { exitCode: r.i32(), signal: r.u32(), error: r.str() };
  r.end();
  return out;
}

export interface ErrorPayload {
  errno: number;
  message: string;
}

/** ERROR: u32 errno (Linux numbering), str message. Ends the channel. */
export function decodeError(p: Buffer): ErrorPayload {
  const r = new PayloadReader(p);
  const out = { errno: r.u32(), message: r.str() };
  r.end();
  return out;
}

/** FILE_WRITE_OPEN: str path, u32 mode (0 = 0644). */
export function encodeFileWriteOpen(path: string, mode: number): Buffer {
  return new PayloadWriter().str(path).u32(mode).toBuffer();
}

/** FILE_READ: str path. */
export function encodeFileRead(path: string): Buffer {
  return new PayloadWriter().str(path).toBuffer();
}

/** OK answering FILE_READ: u64 size of the file when it was opened. */
export function decodeFileReadOk(p: Buffer): bigint {
  const r = new PayloadReader(p);
  const size = r.u64();
  r.end();
  return size;
}

/** CREDIT: u32 more bytes the agent may send on a read channel. */
export function encodeCredit(bytes: number): Buffer {
  return new PayloadWriter().u32(bytes).toBuffer();
}

/** TCP_CONNECT: u32 port on the guest's 127.0.0.1. */
export function encodeTcpConnect(port: number): Buffer {
  return new PayloadWriter().u32(port).toBuffer();
}

/** TCP_CLOSE agent→host: u32 errno (0 = clean end), str message. */
export function decodeTcpClose(p: Buffer): ErrorPayload {
  return decodeError(p);
}

/** PTY_OPEN: u32 rows, u32 cols (0 = 24×80), kv env (on top of the sandbox envs). */
export function encodePtyOpen(rows: number, cols: number, env: Record<string, string>): Buffer {
  return new PayloadWriter().u32(rows).u32(cols).kv(env).toBuffer();
}

/** PTY_RESIZE: u32 rows, u32 cols. */
export function encodePtyResize(rows: number, cols: number): Buffer {
  return new PayloadWriter().u32(rows).u32(cols).toBuffer();
}
