/**
 * qcow2 overlay chains for snapshot disks, through `qemu-img`:
 *
 * ```
 * <tpl>/disk (raw, frozen)  ←  layer-1.qcow2 (frozen by a fork)  ←  disk.qcow2 (active)
 * ```
 *
 * Backing references inside a sandbox directory are relative ("layer-1.qcow2"),
 * so a frozen layer hard-linked into a forked child's directory resolves to
 * the child's own link: destroying either sandbox never breaks the other. The
 * bottom layer names the template's disk by absolute path (templates outlive
 * their clones).
 */
import { open, readFile, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { runCommand } from "../network/run-command.js";

/** One image of a chain, top first. */
export interface ChainLink {
  filename: string;
  format: string;
  /** Bytes allocated on the host. */
  actualSize: number;
}

/**
 * Empty overlays made before, by (backing format, backing name, virtual
 * size): an empty qcow2 overlay's bytes depend on nothing else (no
 * timestamp, no id), so the next one with the same three is a copy of those
 * bytes (~0.3 ms) instead of a `qemu-img create` process (40–200 ms here).
 */
const prototypes = new Map<string, Buffer>();
const MAX_PROTOTYPES = 32;

/** Creates a qcow2 overlay `file` on `backing` (absolute, or relative to `file`'s directory). */
export async function createOverlay(file: string, backing: string, backingFormat: "raw" | "qcow2"): Promise<void> {
  const size = await virtualSize(path.resolve(path.dirname(file), backing), backingFormat);
  const key = size === undefined ? undefined : `${backingFormat}\0${backing}\0${size}`;
  const proto = key === undefined ? undefined : prototypes.get(key);
  if (proto) {
    await writeFile(file, proto);
    return;
  }
  await runCommand("qemu-img", ["create", "-q", "-f", "qcow2", "-F", backingFormat, "-b", backing, file]);
  if (key === undefined) return;
  const bytes = await readFile(file);
  // Only a plausible empty overlay is kept (a few clusters).
  if (bytes.length > 1024 * 1024 || bytes.readUInt32BE(0) !== QCOW2_MAGIC) return;
  if (prototypes.size >= MAX_PROTOTYPES) prototypes.delete(prototypes.keys().next().value!);
  prototypes.set(key, bytes);
}

const QCOW2_MAGIC = 0x514649fb;

/** Guest-visible size of a disk image: a raw file's length, a qcow2 header's size field; undefined when unreadable. */
async function virtualSize(file: string, format: "raw" | "qcow2"): Promise<bigint | undefined> {
  try {
    if (format === "raw") return BigInt((await stat(file)).size);
    const fh = await open(file, "r");
    try {
      const b = Buffer.alloc(32);
      const { bytesRead } = await fh.read(b, 0, 32, 0);
      return bytesRead === 32 && b.readUInt32BE(0) === QCOW2_MAGIC ? b.readBigUInt64BE(24) : undefined;
    } finally {
      await fh.close();
    }
  } catch {
    return undefined;
  }
}

/** The backing chain of `file`, top first. */
export async function diskChain(file: string): Promise<ChainLink[]> {
  const r = await runCommand("qemu-img", ["info", "-U", "--backing-chain", "--output=json", file]);
  const infos = JSON.parse(r.stdout) as { filename: string; format: string; "actual-size"?: number }[];
  return infos.map((i) => ({ filename: i.filename, format: i.format, actualSize: i["actual-size"] ?? 0 }));
}

/**
 * Makes `file` (qcow2, not in use) sit directly on `base`: every cluster that
 * differs between its current backing chain and `base` is copied into it
 * (`qemu-img rebase`, safe mode). Cost: the data written in the layers
 * dropped, not the disk size. Afterwards the dropped layers are unused by
 * `file` and may be deleted by the caller.
 */
export async function flattenOnto(file: string, base: string, baseFormat: "raw" | "qcow2"): Promise<void> {
  await runCommand("qemu-img", ["rebase", "-q", "-f", "qcow2", "-F", baseFormat, "-b", base, file], { timeoutMs: 600_000 });
}
