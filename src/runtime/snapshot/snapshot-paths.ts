/**
 * Where snapshot files live. A template is a directory of its own; a
 * snapshot-capable VM (running or paused) keeps everything in its sandbox
 * directory, next to the files QemuRuntime already uses (sockets, console).
 *
 * ```
 * <dataDir>/templates/<key>/    mem (guest RAM, frozen) · state (device state) · disk (raw, frozen) · meta.json
 * <dataDir>/sandboxes/<id>/     disk.qcow2 (active overlay) · layer-N.qcow2 (frozen, hard-linked on fork)
 *                               state · mem | mem.base (paused only) · bundle.json · sockets, logs
 *                               mem.owning · state.owned (while own-ram.ts turns a stream into mem + state)
 * ```
 */
import path from "node:path";
import { vmPaths, type VmPaths } from "../qemu/vm-paths.js";

/** Files of one snapshot-capable VM: QemuRuntime's paths plus the snapshot's. */
export interface SnapPaths extends VmPaths {
  /** The active (writable) qcow2 overlay; its backing chain ends at a template's disk. */
  overlay: string;
  /** Migration stream written by pause: device state, plus all RAM when `bundle.mem` is "stream". */
  state: string;
  /** RAM owned by this VM alone (mapped share=on while it runs). */
  mem: string;
  /** RAM frozen by a fork, hard-linked into every bundle that uses it (mapped share=off). */
  memBase: string;
  /** `mem` being filled from a "stream" bundle's `state` (own-ram.ts). */
  memOwning: string;
  /** Device state saved next to `memOwning`; replaces `state` once bundle.json says "owned". */
  stateOwned: string;
  /** bundle.json: what resume needs (see PausedBundle). Written last, atomically: its presence marks a complete pause. */
  bundle: string;
}

/** Paths of snapshot-capable VM `id` (same directory as `vmPaths`). */
export function snapPaths(dataDir: string, id: string): SnapPaths {
  const p = vmPaths(dataDir, id);
  return {
    ...p,
    overlay: path.join(p.dir, "disk.qcow2"),
    state: path.join(p.dir, "state"),
    mem: path.join(p.dir, "mem"),
    memBase: path.join(p.dir, "mem.base"),
    memOwning: path.join(p.dir, "mem.owning"),
    stateOwned: path.join(p.dir, "state.owned"),
    bundle: path.join(p.dir, "bundle.json"),
  };
}

/** Files of one template. */
export interface TemplatePaths {
  dir: string;
  /** Guest RAM at the snapshot (exactly memMib): clones map it privately. */
  mem: string;
  /** Device and CPU state (x-ignore-shared stream: no RAM in it), a few tens of KB. */
  state: string;
  /** The writable disk at the snapshot, raw ext4; the backing file of every clone's overlay. */
  disk: string;
  meta: string;
}

/** Directory holding every template. */
export function templatesDir(dataDir: string): string {
  return path.join(path.resolve(dataDir), "templates");
}

/**
 * Directory name of the template of (rootfs, shape) built from `inputs`
 * (see template-inputs.ts): "minimal-1_1c256m4096d-0123abcdef". One template
 * per rootfs, vCPUs, RAM and disk size (the guest's ext4 has the template's
 * size) and inputs.
 */
export function templateKey(rootfs: string, vcpu: number, memMib: number, diskMib: number, inputs: string): string {
  return `${rootfs.replace(/[^A-Za-z0-9_.-]/g, "-")}_${vcpu}c${memMib}m${diskMib}d-${inputs}`;
}

/** Paths inside template directory `dir`. */
export function templatePaths(dir: string): TemplatePaths {
  return {
    dir,
    mem: path.join(dir, "mem"),
    state: path.join(dir, "state"),
    disk: path.join(dir, "disk"),
    meta: path.join(dir, "meta.json"),
  };
}
