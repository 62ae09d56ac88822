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
import { runCommand } from "../network/run-command.js";

/** One image of a chain, top first. */
export interface ChainLink {
  filename: string;
  format: string;
  /** Bytes allocated on the host. */
  actualSize: number;
}

/** Creates a qcow2 overlay `file` on `backing` (absolute, or relative to `file`'s directory). */
export async function createOverlay(file: string, backing: string, backingFormat: "raw" | "qcow2"): Promise<void> {
  await runCommand("qemu-img", ["create", "-q", "-f", "qcow2", "-F", backingFormat, "-b", backing, file]);
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
