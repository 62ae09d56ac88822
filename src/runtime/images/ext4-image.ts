/**
 * ext4 images without mounting anything: the read-only base images are made
 * from a directory with `mkfs.ext4 -d`, and each sandbox's writable disk is a
 * sparse file with lazy init (tens of milliseconds even at 10 GiB).
 */
import { open, rm, stat } from "node:fs/promises";
import { runCommand } from "../run-command.js";

/** Label /init looks for on the read-only base image. */
export const BASE_LABEL = "hutch-base";
/** Label /init looks for on the per-sandbox writable disk. */
export const DISK_LABEL = "hutch-disk";

/** Bytes used by a tree (4 KiB blocks) and its number of inodes. */
export async function treeUsage(dir: string): Promise<{ bytes: number; inodes: number }> {
  const du = await runCommand("du", ["-s", "-x", "--block-size=1", dir]);
  const inodes = await runCommand("du", ["-s", "-x", "--inodes", dir]);
  return { bytes: Number(du.stdout.split(/\s/)[0]), inodes: Number(inodes.stdout.split(/\s/)[0]) };
}

/**
 * Size (MiB) of an image for a tree of `bytes` and `inodes`: content, inode
 * tables and metadata, plus small slack (the image is read-only; writes go to
 * the sandbox's disk).
 */
export function baseImageSizeMib(bytes: number, inodes: number): number {
  const metadata = inodes * 256 + bytes * 0.04;
  return Math.ceil((bytes + metadata) / 1048576) + 8;
}

/**
 * Packs `dir` into a read-only-use ext4 image labeled `hutch-base` at `out`,
 * sized to content + slack (grown and retried if mkfs runs out of room).
 * No journal: it is mounted read-only.
 */
export async function packBaseImage(dir: string, out: string, onLine?: (l: string) => void): Promise<void> {
  const usage = await treeUsage(dir);
  let sizeMib = baseImageSizeMib(usage.bytes, usage.inodes);
  const inodeCount = Math.ceil(usage.inodes * 1.1) + 256;
  for (let attempt = 0; ; attempt++) {
    await rm(out, { force: true });
    try {
      await runCommand(
        "mkfs.ext4",
        ["-q", "-F", "-t", "ext4", "-b", "4096", "-m", "0", "-O", "^has_journal", "-N", String(inodeCount),
          "-L", BASE_LABEL, "-E", "root_owner=0:0", "-d", dir, out, `${sizeMib}M`],
        { onLine },
      );
      return;
    } catch (err) {
      // Our estimate was short (many tiny files, big directories): grow and retry.
      if (attempt >= 3) throw err;
      sizeMib = Math.ceil(sizeMib * 1.3);
      onLine?.(`image too small, retrying with ${sizeMib} MiB`);
    }
  }
}

/**
 * Creates a sparse writable ext4 of `sizeMib` labeled `hutch-disk` at `path`
 * (replacing any file there). Inode tables and journal are initialized lazily
 * so this takes milliseconds; the guest mounts it with `noinit_itable`.
 */
export async function createDisk(path: string, sizeMib: number): Promise<void> {
  if (!Number.isInteger(sizeMib) || sizeMib < 16) throw new Error(`disk size must be an integer >= 16 MiB, got ${sizeMib}`);
  await rm(path, { force: true });
  const fh = await open(path, "wx", 0o600);
  try {
    await fh.truncate(sizeMib * 1048576);
  } finally {
    await fh.close();
  }
  try {
    await runCommand("mkfs.ext4", [
      "-q", "-F", "-t", "ext4", "-m", "0", "-L", DISK_LABEL,
      "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard", path,
    ]);
  } catch (err) {
    await rm(path, { force: true });
    throw err;
  }
  // mkfs must not have grown or shrunk the file.
  const size = (await stat(path)).size;
  if (size !== sizeMib * 1048576) throw new Error(`disk ${path} has ${size} bytes, expected ${sizeMib} MiB`);
}
