/**
 * snap.json in a VM's directory: how a running VM's RAM and disk are mapped,
 * i.e. what a pause has to write. Written when a snapshot-capable VM starts
 * (restore, resume, pool hand-over), read when a restarted server re-attaches.
 * A VM without it was cold-booted by `bootVm`: anonymous `-m` RAM, raw disk.img.
 */
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import type { RamBacking } from "../snapshot/snapshot-args.js";

export interface VmSnapInfo {
  vcpu: number;
  rootfs: string;
  ram: RamBacking;
  /** The writable disk QEMU has open (absolute path). */
  disk: { file: string; format: "raw" | "qcow2" };
  /** Template key the VM descends from, if any. */
  template?: string;
}

/** Path of snap.json in VM directory `dir`. */
export function snapInfoFile(dir: string): string {
  return path.join(dir, "snap.json");
}

export async function writeSnapInfo(dir: string, info: VmSnapInfo): Promise<void> {
  await writeFile(snapInfoFile(dir), JSON.stringify(info) + "\n", { mode: 0o600 });
}

/** The VM's snap.json, or undefined when missing (a cold boot) or unreadable. */
export async function readSnapInfo(dir: string): Promise<VmSnapInfo | undefined> {
  try {
    return JSON.parse(await readFile(snapInfoFile(dir), "utf8")) as VmSnapInfo;
  } catch {
    return undefined;
  }
}
