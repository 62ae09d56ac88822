import { readFile, writeFile } from "node:fs/promises";

/**
 * meta.json in a VM's directory: what a restarted server needs to find and
 * clean up the VM. Written before QEMU starts. Never holds envs or keys.
 */
export interface VmMeta {
  id: string;
  tap: string;
  vcpu: number;
  memMib: number;
  rootfs: string;
  createdAt: string;
}

export async function writeVmMeta(file: string, meta: VmMeta): Promise<void> {
  await writeFile(file, JSON.stringify(meta) + "\n", { mode: 0o600 });
}

/** The VM's meta, or undefined when missing or unreadable. */
export async function readVmMeta(file: string): Promise<VmMeta | undefined> {
  try {
    const m = JSON.parse(await readFile(file, "utf8")) as Partial<VmMeta>;
    if (typeof m.id !== "string" || typeof m.tap !== "string") return undefined;
    return { id: m.id, tap: m.tap, vcpu: m.vcpu ?? 0, memMib: m.memMib ?? 0, rootfs: m.rootfs ?? "", createdAt: m.createdAt ?? "" };
  } catch {
    return undefined;
  }
}
