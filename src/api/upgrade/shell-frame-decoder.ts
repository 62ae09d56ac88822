/**
 * The client side of a shell connection (`POST .../shell` after the upgrade,
 * and each binary message of `GET .../shell-ws`): frames of
 * `[type u8][len u32 BE][payload]`; type 0 = data (bytes typed), 1 = resize
 * (`u16 rows, u16 cols`, big-endian). Server output is unframed.
 */

export const SHELL_FRAME_DATA = 0;
export const SHELL_FRAME_RESIZE = 1;
/** Largest payload accepted in one frame; a bigger one is a client error. */
export const SHELL_MAX_FRAME = 1024 * 1024;

export type ShellFrame = { type: "data"; data: Buffer } | { type: "resize"; rows: number; cols: number };

export class ShellFrameError extends Error {
  override readonly name = "ShellFrameError";
}

/** Encodes one client frame (for clients and tests). */
export function encodeShellFrame(frame: ShellFrame): Buffer {
  const payload = frame.type === "data" ? frame.data : Buffer.alloc(4);
  if (frame.type === "resize") {
    payload.writeUInt16BE(frame.rows, 0);
    payload.writeUInt16BE(frame.cols, 2);
  }
  const head = Buffer.alloc(5);
  head.writeUInt8(frame.type === "data" ? SHELL_FRAME_DATA : SHELL_FRAME_RESIZE, 0);
  head.writeUInt32BE(payload.length, 1);
  return Buffer.concat([head, payload]);
}

/**
 * Incremental decoder: `push` bytes as they arrive, get the complete frames.
 * Throws ShellFrameError on an unknown type, a bad resize or an oversize frame.
 */
export class ShellFrameDecoder {
  #buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): ShellFrame[] {
    this.#buf = this.#buf.length ? Buffer.concat([this.#buf, chunk]) : chunk;
    const out: ShellFrame[] = [];
    while (this.#buf.length >= 5) {
      const type = this.#buf.readUInt8(0);
      const len = this.#buf.readUInt32BE(1);
      if (type !== SHELL_FRAME_DATA && type !== SHELL_FRAME_RESIZE) throw new ShellFrameError(`unknown frame type ${type}`);
      if (len > SHELL_MAX_FRAME) throw new ShellFrameError(`frame of ${len} bytes is too large`);
      if (this.#buf.length < 5 + len) break;
      const payload = this.#buf.subarray(5, 5 + len);
      this.#buf = this.#buf.subarray(5 + len);
      if (type === SHELL_FRAME_DATA) {
        if (len > 0) out.push({ type: "data", data: Buffer.from(payload) });
      } else {
        if (len !== 4) throw new ShellFrameError(`resize frame of ${len} bytes (4 expected)`);
        out.push({ type: "resize", rows: payload.readUInt16BE(0), cols: payload.readUInt16BE(2) });
      }
    }
    return out;
  }

  /** True when a frame has started but not completed. */
  get pending(): boolean {
    return this.#buf.length > 0;
  }
}
