/**
 * The end of a file: a console's tail for an error message, a migration
 * stream's device list.
 */
import { open } from "node:fs/promises";

/** The last `bytes` of `file` (all of it when shorter). Rejects when it cannot be opened. */
export async function readTail(file: string, bytes: number): Promise<Buffer> {
  const h = await open(file, "r");
  try {
    const { size } = await h.stat();
    const len = Math.min(size, bytes);
    const b = Buffer.alloc(len);
    await h.read(b, 0, len, size - len);
    return b;
  } finally {
    await h.close();
  }
}
