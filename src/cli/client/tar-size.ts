/** Estimates the size of a tar archive of a directory, for a progress bar. */
import { lstat, readdir } from "node:fs/promises";
import { join } from "node:path";

const BLOCK = 512;

/**
 * Each entry is a 512-byte header plus its data rounded up to 512; the
 * archive ends with two zero blocks, padded to a 10 KiB record. Long names
 * add headers, so this is a close lower bound.
 */
export async function estimateTarSize(dir: string): Promise<number> {
  let total = BLOCK; // the "." entry
  const walk = async (d: string): Promise<void> => {
    for (const ent of await readdir(d, { withFileTypes: true })) {
      const p = join(d, ent.name);
      total += BLOCK;
      if (ent.isDirectory()) await walk(p);
      else if (ent.isFile()) total += Math.ceil((await lstat(p)).size / BLOCK) * BLOCK;
    }
  };
  await walk(dir);
  total += 2 * BLOCK;
  return Math.ceil(total / 10240) * 10240;
}
