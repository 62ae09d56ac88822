/**
 * Client-to-server frames of the shell endpoint: `[type u8][len u32 BE][payload]`,
 * type 0 = data, 1 = resize (payload u16 rows, u16 cols, big endian).
 * Server output is not framed.
 */

/** Frame type of keyboard input. */
export const FRAME_DATA = 0;
/** Frame type of a terminal size change. */
export const FRAME_RESIZE = 1;

/** Frames a chunk of input. */
export function dataFrame(payload: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt8(FRAME_DATA, 0);
  head.writeUInt32BE(payload.length, 1);
  return Buffer.concat([head, payload]);
}

/** Frames a resize to `rows` x `cols` (each clamped to 1..65535). */
export function resizeFrame(rows: number, cols: number): Buffer {
  const clamp = (n: number) => Math.min(65535, Math.max(1, Math.floor(n) || 1));
  const f = Buffer.alloc(9);
  f.writeUInt8(FRAME_RESIZE, 0);
  f.writeUInt32BE(4, 1);
  f.writeUInt16BE(clamp(rows), 5);
  f.writeUInt16BE(clamp(cols), 7);
  return f;
}
