/**
 * bundle.json: the description of a paused VM's files, written last (temp
 * file + rename) so that its presence means "a complete pause is here".
 */
import { readFile, rename, writeFile } from "node:fs/promises";
import type { RamBlock } from "./snapshot-args.js";

/**
 * Where the paused VM's RAM is:
 * - "owned":  `mem`, this VM's alone; `state` holds device state only. Resume maps it share=on.
 * - "base":   `mem.base`, frozen by a fork and hard-linked into each bundle that uses it;
 *             `state` holds device state only. Resume maps it share=off (copy-on-write).
 * - "stream": all RAM is inside `state` (a VM whose RAM was private or anonymous).
 */
export type BundleMem = "owned" | "base" | "stream";

/** Current bundle.json format. */
export const BUNDLE_VERSION = 1;

export interface PausedBundle {
  version: number;
  id: string;
  vcpu: number;
  memMib: number;
  rootfs: string;
  mem: BundleMem;
  /**
   * Name of the VM's RAM block (RamBlock): "mem" (templates and their
   * clones) or "legacy" (a cold-booted VM: plain -m at boot, a file backend
   * of the same name once resumed). Migration streams name RAM blocks, so a
   * stream loads only into the same kind.
   */
  ramBlock: RamBlock;
  /** The active writable disk, relative to the VM's directory. */
  disk: { file: string; format: "raw" | "qcow2" };
  /**
   * The sandbox whose address and MAC the guest holds, when not `id`: a
   * fork child until its first resume gives it its own.
   */
  guestIdentity?: string;
  /**
   * identityDigest (guest-identity.ts) of the envs and SSH keys the guest
   * got last; a resume with the same ones does not send them again.
   * Absent: unknown (they are sent).
   */
  identityDigest?: string;
  /** Template key the VM came from, if any (its disk is the chain's bottom). */
  template?: string;
  pausedAt: string;
  /** Size of `state` in bytes. */
  stateBytes: number;
}

export async function writeBundle(file: string, b: PausedBundle): Promise<void> {
  const tmp = `${file}.tmp`;
  await writeFile(tmp, JSON.stringify(b, null, 2) + "\n", { mode: 0o600 });
  await rename(tmp, file);
}

/** The bundle at `file`, or undefined when there is none (not paused, or the pause did not complete). */
export async function readBundle(file: string): Promise<PausedBundle | undefined> {
  let raw: string;
  try {
    raw = await readFile(file, "utf8");
  } catch {
    return undefined;
  }
  const b = JSON.parse(raw) as PausedBundle;
  if (b.version !== BUNDLE_VERSION) throw new Error(`${file}: bundle version ${b.version}, expected ${BUNDLE_VERSION}`);
  return b;
}
