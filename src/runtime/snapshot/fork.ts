/**
 * Fork of a paused VM: a child bundle with the same memory and disk, made of
 * hard links and two new qcow2 overlays, never copies of RAM or disk data.
 *
 * Disk, before and after forking P into C (relative backing names):
 * ```
 * before  P: tpl/disk ← disk.qcow2 (active)
 * after   P: tpl/disk ← layer-1.qcow2 (frozen: P's old disk.qcow2) ← disk.qcow2 (new, empty)
 *         C: tpl/disk ← layer-1.qcow2 (hard link, same inode)      ← disk.qcow2 (new, empty)
 * ```
 * Neither writes the shared layer again; each writes its own overlay.
 * Chains are bounded: past `maxLayers` frozen layers, the parent's overlay is
 * flattened onto the chain's bottom (`qemu-img rebase`) before freezing, and
 * the layers it no longer uses are unlinked from its directory.
 *
 * Memory: "stream" bundles share the (read-only) stream; "owned" RAM is
 * frozen into `mem.base` (the parent becomes a "base" bundle: it resumes
 * with a private mapping), and `mem.base` + `state` are hard-linked.
 */
import { link, mkdir, readdir, rename, rm, stat, unlink } from "node:fs/promises";
import path from "node:path";
import { createOverlay, diskChain, flattenOnto } from "./disk-chain.js";
import { PhaseTimer } from "./phase-timer.js";
import { readBundle, writeBundle, type PausedBundle } from "./paused-bundle.js";
import { snapPaths, type SnapPaths } from "./snapshot-paths.js";
import type { SnapshotDeps } from "./snapshot-vm.js";
import { writeVmMeta } from "../qemu/vm-meta.js";

export interface ForkOptions {
  /** Frozen layers allowed in a chain before the parent's is flattened (default 4). */
  maxLayers?: number;
  /**
   * The child's directory exists: a spare QEMU made for the child's id
   * waits in it (spare-pool.ts). The child's files are moved into it, the
   * bundle last, instead of renaming the whole directory into place.
   */
  intoSpare?: boolean;
}

export interface ForkResult {
  child: PausedBundle;
  parent: PausedBundle;
  forkMs: number;
  /** Each step's own duration (PhaseTimer). */
  phases: Record<string, number>;
}

const LAYER_RE = /^layer-(\d+)\.(qcow2|img)$/;

/**
 * Makes paused VM `childId` from paused VM `parentId` (which must have a
 * bundle and no running QEMU: the caller holds both ids' locks). The child
 * directory is built under a temp name and renamed last; the parent's files
 * change only by atomic renames, so a crash leaves the parent valid and the
 * child either whole or absent (a stray `.<id>.fork-tmp` dir to remove).
 * Resume the child (its identity, MAC included, comes with its CONFIGURE)
 * before the parent: until then it has the parent's address.
 */
export async function forkPaused(d: SnapshotDeps, parentId: string, childId: string, opts: ForkOptions = {}): Promise<ForkResult> {
  const t0 = Date.now();
  const timer = new PhaseTimer();
  const pp = snapPaths(d.dataDir, parentId);
  const cp = snapPaths(d.dataDir, childId);
  const parent = await readBundle(pp.bundle);
  if (!parent) throw new Error(`VM ${parentId} is not paused`);
  const tmpDir = path.join(path.dirname(cp.dir), `.${childId}.fork-tmp`);
  await rm(tmpDir, { recursive: true, force: true });
  if (opts.intoSpare) {
    if (await readBundle(cp.bundle)) throw new Error(`VM ${childId} already exists`);
  } else {
    try {
      await stat(cp.dir);
      throw new Error(`VM ${childId} already exists`);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
  }

  // 1. Parent: bound the chain, freeze its active disk into a layer, new overlay on it.
  await boundChain(pp, parent, opts.maxLayers ?? 4);
  timer.lap("bound");
  const frozen = await freezeDisk(pp, parent);
  timer.lap("freeze");
  // 2. Parent: owned RAM becomes a shared, frozen base.
  let memMode = parent.mem;
  if (memMode === "owned") {
    await rm(pp.memBase, { force: true });
    await link(pp.mem, pp.memBase);
    memMode = "base";
  }
  const newParent: PausedBundle = { ...parent, mem: memMode, disk: { file: "disk.qcow2", format: "qcow2" } };
  await writeBundle(pp.bundle, newParent);
  if (parent.mem === "owned") await unlink(pp.mem);
  timer.lap("parent");

  // 3. Child: links to every frozen layer and to the memory, its own overlay, then rename into place.
  await mkdir(tmpDir, { mode: 0o700 });
  try {
    for (const name of await readdir(pp.dir)) {
      if (LAYER_RE.test(name)) await link(path.join(pp.dir, name), path.join(tmpDir, name));
    }
    timer.lap("links");
    await createOverlay(path.join(tmpDir, "disk.qcow2"), frozen.name, frozen.format);
    timer.lap("overlay");
    await link(pp.state, path.join(tmpDir, path.basename(pp.state)));
    if (memMode === "base") await link(pp.memBase, path.join(tmpDir, path.basename(pp.memBase)));
    const child: PausedBundle = { ...newParent, id: childId, guestIdentity: parent.guestIdentity ?? parent.id, pausedAt: new Date().toISOString() };
    await writeBundle(path.join(tmpDir, path.basename(cp.bundle)), child);
    // meta.json lets QemuRuntime's cleanup find the child's tap once it runs.
    await writeVmMeta(path.join(tmpDir, path.basename(cp.meta)), {
      id: childId, tap: "", vcpu: child.vcpu, memMib: child.memMib, rootfs: child.rootfs, createdAt: child.pausedAt,
    });
    if (opts.intoSpare) {
      // The bundle last: until it is there, reconcile sees no paused child
      // here and removes the directory (files and spare QEMU with it).
      const last = path.basename(cp.bundle);
      const names = (await readdir(tmpDir)).sort((a, b) => Number(a === last) - Number(b === last));
      for (const name of names) await rename(path.join(tmpDir, name), path.join(cp.dir, name));
      await rm(tmpDir, { recursive: true, force: true });
    } else await rename(tmpDir, cp.dir);
    timer.lap("child");
    return { child, parent: newParent, forkMs: Date.now() - t0, phases: timer.phases };
  } catch (err) {
    await rm(tmpDir, { recursive: true, force: true });
    throw err;
  }
}

/**
 * Renames the parent's active disk into the next frozen layer and gives it a
 * new empty overlay on it. Order: new overlay under a temp name, hard link
 * the old disk as the layer, atomically rename the new overlay over the old
 * name. A crash leaves the old disk in place plus an extra link to it, which
 * reconcile removes (settlePaused: the jail would make a linked disk read-only).
 */
async function freezeDisk(p: SnapPaths, b: PausedBundle): Promise<{ name: string; format: "raw" | "qcow2" }> {
  const active = path.join(p.dir, b.disk.file);
  const n = (await layerNumbers(p.dir)).reduce((m, x) => Math.max(m, x), 0) + 1;
  const name = `layer-${n}.${b.disk.format === "raw" ? "img" : "qcow2"}`;
  const tmp = path.join(p.dir, "disk.qcow2.new");
  await rm(tmp, { force: true });
  await rm(path.join(p.dir, name), { force: true });
  await link(active, path.join(p.dir, name));
  await createOverlay(tmp, name, b.disk.format);
  await rename(tmp, p.overlay);
  if (active !== p.overlay) await unlink(active); // a raw disk.img moved into layer-N.img
  return { name, format: b.disk.format };
}

async function layerNumbers(dir: string): Promise<number[]> {
  return (await readdir(dir)).flatMap((f) => {
    const m = LAYER_RE.exec(f);
    return m ? [Number(m[1])] : [];
  });
}

/**
 * When the active overlay's chain already has `maxLayers` frozen layers,
 * rebases the overlay straight onto the chain's bottom (the template's disk
 * or a cold-booted VM's raw layer) and unlinks the layers it skipped (other
 * sandboxes keep their own links).
 */
async function boundChain(p: SnapPaths, b: PausedBundle, maxLayers: number): Promise<void> {
  if (b.disk.format !== "qcow2") return;
  // Every frozen layer of the chain is a file of this directory (backing
  // names are relative): fewer files than the bound, no need to ask
  // `qemu-img info` (a process, 40–120 ms here) for the chain.
  if ((await layerNumbers(p.dir)).length < maxLayers) return;
  const active = path.join(p.dir, b.disk.file);
  const chain = await diskChain(active);
  const frozen = chain.slice(1, -1); // between the active overlay and the bottom
  if (frozen.length < maxLayers) return;
  const bottom = chain[chain.length - 1]!;
  // The bottom in this directory is named relatively, a template disk absolutely.
  const bottomRef = path.dirname(bottom.filename) === p.dir ? path.basename(bottom.filename) : bottom.filename;
  await flattenOnto(active, bottomRef, bottom.format as "raw" | "qcow2");
  for (const l of frozen) if (path.dirname(l.filename) === p.dir) await rm(l.filename, { force: true });
}
