/**
 * Frames of the agent protocol (docs/agent-protocol.md): an encoder, an
 * incremental decoder for an untrusted byte stream, and strict payload
 * readers/writers. Every length read from the wire is checked against what
 * remains before anything is allocated.
 */
import { HP_HEADER_SIZE, HP_MAGIC, HP_MAX_PAYLOAD } from "./protocol.js";

/** Why bytes from the agent were rejected. */
export type FrameErrorCode = "bad_header" | "oversize" | "bad_payload";

/** The one error the codec throws: the stream or a payload is malformed. */
export class FrameError extends Error {
  override readonly name = "FrameError";
  constructor(
    readonly code: FrameErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** One decoded frame. `payload` is a copy, safe to keep. */
export interface Frame {
  type: number;
  channel: number;
  payload: Buffer;
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (IEEE 802.3, as zlib), used to check frame headers. */
export function crc32(buf: Uint8Array, start = 0, end = buf.length): number {
  let c = 0xffffffff;
  for (let i = start; i < end; i++) c = CRC_TABLE[(c ^ buf[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** Builds one frame. Throws `FrameError("oversize")` past `HP_MAX_PAYLOAD`. */
export function encodeFrame(type: number, channel: number, payload: Uint8Array = Buffer.alloc(0)): Buffer {
  if (payload.length > HP_MAX_PAYLOAD) throw new FrameError("oversize", `payload of ${payload.length} bytes`);
  const out = Buffer.allocUnsafe(HP_HEADER_SIZE + payload.length);
  out.writeUInt32BE(HP_MAGIC, 0);
  out.writeUInt32BE(payload.length, 4);
  out.writeUInt16BE(type, 8);
  out.writeUInt16BE(0, 10);
  out.writeUInt32BE(channel >>> 0, 12);
  out.writeUInt32BE(crc32(out, 0, 16), 16);
  out.set(payload, HP_HEADER_SIZE);
  return out;
}

interface Header {
  length: number;
  type: number;
  channel: number;
}

/** Header at `off`, or null when magic/crc do not match. */
function readHeader(buf: Buffer, off: number): Header | null {
  if (buf.readUInt32BE(off) !== HP_MAGIC) return null;
  if (buf.readUInt32BE(off + 16) !== crc32(buf, off, off + 16)) return null;
  return { length: buf.readUInt32BE(off + 4), type: buf.readUInt16BE(off + 8), channel: buf.readUInt32BE(off + 12) };
}

/**
 * Turns arbitrary chunks of the agent's byte stream into frames.
 *
 * Strict by default: the stream must be frame after frame, and anything else
 * throws `FrameError` (the caller then drops the connection). In resync mode
 * (`resyncUntil`) it instead skips bytes until a frame with a valid header
 * satisfies the predicate — used for the HELLO answer after (re)connecting,
 * when the guest may still be mid-frame from the previous connection. It
 * never holds more than one maximal frame of bytes.
 *
 * @example
 * const dec = new FrameDecoder();
 * sock.on("data", (chunk) => { for (const f of dec.push(chunk)) handle(f); });
 */
export class FrameDecoder {
  #buf: Buffer = Buffer.alloc(0);
  #resync: ((f: Frame) => boolean) | null = null;

  /** Skips everything until a frame for which `accept` returns true. */
  resyncUntil(accept: (f: Frame) => boolean): void {
    this.#resync = accept;
  }

  /** True while skipping bytes for `resyncUntil`. */
  get resyncing(): boolean {
    return this.#resync !== null;
  }

  /** Bytes held that are not yet a whole frame. */
  get buffered(): number {
    return this.#buf.length;
  }

  /** Feeds one chunk; returns the frames completed by it. Throws `FrameError`. */
  push(chunk: Uint8Array): Frame[] {
    const frames: Frame[] = [];
    let buf = this.#buf.length ? Buffer.concat([this.#buf, chunk]) : Buffer.from(chunk);
    let off = 0;
    try {
      while (buf.length - off >= (this.#resync ? 4 : 1)) {
        if (this.#resync) {
          const skip = this.#scan(buf, off);
          if (skip.frame) frames.push(skip.frame);
          if (skip.next === off) break;
          off = skip.next;
          continue;
        }
        if (buf.length - off < HP_HEADER_SIZE) {
          this.#checkPartialMagic(buf, off);
          break;
        }
        const h = readHeader(buf, off);
        if (!h) throw new FrameError("bad_header", "bad frame header (magic or checksum)");
        if (h.length > HP_MAX_PAYLOAD) throw new FrameError("oversize", `frame of ${h.length} bytes`);
        if (buf.length - off < HP_HEADER_SIZE + h.length) break;
        const start = off + HP_HEADER_SIZE;
        frames.push({ type: h.type, channel: h.channel, payload: Buffer.from(buf.subarray(start, start + h.length)) });
        off = start + h.length;
      }
    } catch (err) {
      this.#buf = Buffer.alloc(0);
      throw err;
    }
    buf = buf.subarray(off);
    // Resync keeps at most one maximal frame of unmatched bytes.
    const cap = HP_HEADER_SIZE + HP_MAX_PAYLOAD;
    if (this.#resync && buf.length > cap) buf = buf.subarray(buf.length - cap);
    this.#buf = Buffer.from(buf);
    return frames;
  }

  #checkPartialMagic(buf: Buffer, off: number): void {
    const magic = Buffer.alloc(4);
    magic.writeUInt32BE(HP_MAGIC);
    const n = Math.min(4, buf.length - off);
    if (!buf.subarray(off, off + n).equals(magic.subarray(0, n))) {
      throw new FrameError("bad_header", "bad frame magic");
    }
  }

  /** Resync step: where to continue, and the accepted frame if one ends here. */
  #scan(buf: Buffer, off: number): { next: number; frame?: Frame } {
    if (buf.length - off < HP_HEADER_SIZE) {
      // Not enough for a header: keep a possible magic prefix, drop the rest.
      return { next: buf.readUInt32BE(off) === HP_MAGIC ? off : off + 1 };
    }
    const h = readHeader(buf, off);
    if (!h || h.length > HP_MAX_PAYLOAD) return { next: off + 1 };
    if (buf.length - off < HP_HEADER_SIZE + h.length) {
      // A valid header whose payload is not here yet: it may be the answer,
      // or a stale frame that will never complete. Only wait while later
      // bytes cannot hold another header.
      return { next: this.#laterHeader(buf, off + 1) ?? off };
    }
    const start = off + HP_HEADER_SIZE;
    const frame = { type: h.type, channel: h.channel, payload: Buffer.from(buf.subarray(start, start + h.length)) };
    if (this.#resync?.(frame)) {
      this.#resync = null;
      return { next: start + h.length, frame };
    }
    return { next: off + 1 };
  }

  #laterHeader(buf: Buffer, from: number): number | null {
    for (let i = from; i + HP_HEADER_SIZE <= buf.length; i++) {
      if (readHeader(buf, i)) return i;
    }
    return null;
  }
}

/** Appends big-endian fields; `toBuffer()` yields the payload. */
export class PayloadWriter {
  #parts: Buffer[] = [];
  #length = 0;

  #push(b: Buffer): this {
    this.#parts.push(b);
    this.#length += b.length;
    return this;
  }
  u8(v: number): this {
    const b = Buffer.alloc(1);
    b.writeUInt8(v);
    return this.#push(b);
  }
  u32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(v >>> 0);
    return this.#push(b);
  }
  u64(v: number | bigint): this {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(BigInt(v));
    return this.#push(b);
  }
  bytes(v: Uint8Array): this {
    return this.u32(v.length).#push(Buffer.from(v));
  }
  /** UTF-8; NUL is refused by the agent, so it is refused here already. */
  str(v: string): this {
    if (v.includes("\0")) throw new FrameError("bad_payload", "string contains NUL");
    return this.bytes(Buffer.from(v, "utf8"));
  }
  strList(v: readonly string[]): this {
    this.u32(v.length);
    for (const s of v) this.str(s);
    return this;
  }
  kv(v: Readonly<Record<string, string>>): this {
    const entries = Object.entries(v);
    this.u32(entries.length);
    for (const [k, val] of entries) this.str(k).str(val);
    return this;
  }
  get length(): number {
    return this.#length;
  }
  toBuffer(): Buffer {
    return Buffer.concat(this.#parts, this.#length);
  }
}

/** Reads a payload strictly: any read past the end throws `FrameError("bad_payload")`. */
export class PayloadReader {
  #off = 0;
  constructor(readonly buf: Buffer) {}

  #need(n: number): number {
    if (n > this.buf.length - this.#off) throw new FrameError("bad_payload", "payload truncated");
    const at = this.#off;
    this.#off += n;
    return at;
  }
  u8(): number {
    return this.buf.readUInt8(this.#need(1));
  }
  u32(): number {
    return this.buf.readUInt32BE(this.#need(4));
  }
  i32(): number {
    return this.buf.readInt32BE(this.#need(4));
  }
  u64(): bigint {
    return this.buf.readBigUInt64BE(this.#need(8));
  }
  bytes(): Buffer {
    const n = this.u32();
    const at = this.#need(n);
    return this.buf.subarray(at, at + n);
  }
  str(): string {
    return this.bytes().toString("utf8");
  }
  strList(): string[] {
    const n = this.u32();
    if (n > (this.buf.length - this.#off) / 4) throw new FrameError("bad_payload", "list count too large");
    const out: string[] = [];
    for (let i = 0; i < n; i++) out.push(this.str());
    return out;
  }
  get remaining(): number {
    return this.buf.length - this.#off;
  }
  /** Throws when bytes are left over: payloads have no trailing data. */
  end(): void {
    if (this.remaining !== 0) throw new FrameError("bad_payload", "trailing bytes in payload");
  }
}
