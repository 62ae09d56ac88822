/**
 * What QemuRuntime's reconcile does with snapshot files a previous server
 * left (see the crash table in docs/snapshots.md).
 */
import { readdir, rm, stat, unlink } from "node:fs/promises";
import path from "node:path";
import type { HostNetwork } from "../network/host-network.js";
import { finishOwning } from "../snapshot/own-ram.js";
import { readBundle } from "../snapshot/paused-bundle.js";
import { snapPaths } from "../snapshot/snapshot-paths.js";
import { readVmMeta } from "./vm-meta.js";
import { sandboxesDir } from "./vm-paths.js";
import { isVmmOf, killAndWait, readPidfile } from "./vm-process.js";

/**
 * True when VM `id` has a complete paused bundle. A QEMU still alive next
 * to it (pause killed after the bundle was written, a resume killed before
 * the guest ran, or a background owning of its RAM) is killed and its tap
 * removed, and an owning is finished or undone: the VM is paused.
 */
export async function settlePaused(dataDir: string, id: string, network: HostNetwork): Promise<boolean> {
  const p = snapPaths(dataDir, id);
  const bundle = await readBundle(p.bundle).catch(() => undefined);
  if (!bundle) return false;
  const pid = await readPidfile(p.pidfile);
  if (pid !== undefined && (await isVmmOf(pid, p.dir))) await killAndWait(pid, 500);
  const tap = (await readVmMeta(p.meta))?.tap;
  if (tap) await network.deleteTap(tap).catch(() => {});
  await rm(`${p.state}.tmp`, { force: true });
  await finishOwning(dataDir, id, bundle);
  await unlinkStrayLayers(p.dir, path.join(p.dir, bundle.disk.file));
  return true;
}

/**
 * A fork killed while freezing the disk (fork.ts freezeDisk) leaves the
 * active disk hard-linked as a new layer the bundle does not use yet. The
 * extra link is not harmless: the VMM jail makes hard-linked files root's
 * and read-only (shared with forks), so the resumed QEMU could not write its
 * own disk. A layer that is the active disk's inode is never in its chain: unlinked.
 */
async function unlinkStrayLayers(dir: string, active: string): Promise<void> {
  const ino = (await stat(active).catch(() => undefined))?.ino;
  if (ino === undefined) return;
  for (const name of await readdir(dir)) {
    if (!/^layer-\d+\.(qcow2|img)$/.test(name)) continue;
    const f = path.join(dir, name);
    if ((await stat(f).catch(() => undefined))?.ino === ino) await unlink(f);
  }
}

/** Removes the half-made child directories of forks interrupted before the child existed. */
export async function removeForkLeftovers(dataDir: string): Promise<string[]> {
  const dir = sandboxesDir(dataDir);
  let names: string[] = [];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const gone = names.filter((n) => /^\.sb_[0-9A-Za-z]+\.fork-tmp$/.test(n));
  for (const n of gone) await rm(path.join(dir, n), { recursive: true, force: true });
  return gone;
}
