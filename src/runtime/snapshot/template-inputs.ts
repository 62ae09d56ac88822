/**
 * What a template snapshot was made from, as a short fingerprint in its
 * directory name, and the removal of templates nothing uses any more.
 *
 * Why: a template freezes a booted guest (kernel, initramfs, the image with
 * its agent) and the device model of the QEMU that saved it. After
 * `hutch images build` rebuilt an image or an upgrade changed QEMU, a
 * template keyed by shape alone would go on restoring the old guest (or
 * fail to load). Keyed by its inputs too, a changed input simply makes a
 * new template; the old one stays while sandboxes still descend from it
 * (their disks are overlays on its disk) and is removed once none does.
 */
import { createHash } from "node:crypto";
import { existsSync, statSync } from "node:fs";
import { readdir, readFile, rm } from "node:fs/promises";
import path from "node:path";
import { guestCmdline } from "../images/kernel-cmdline.js";
import { sandboxesDir } from "../qemu/vm-paths.js";
import { templatesDir } from "./snapshot-paths.js";
import type { SnapshotDeps } from "./snapshot-vm.js";

/** Bumped when the way templates are made changes (2: MACHINE's `ioapic2=off`, faster to start). */
const TEMPLATE_FORMAT = 2;

/** `cmd` as PATH resolves it (or `cmd` when it is a path or not found). */
function resolveBinary(cmd: string): string {
  if (cmd.includes("/")) return cmd;
  for (const dir of (process.env.PATH ?? "/usr/bin:/bin").split(":")) {
    const p = path.join(dir, cmd);
    if (existsSync(p)) return p;
  }
  return cmd;
}

/** Identity of a file's content as cheaply known: path, size, mtime, inode. */
function fileId(file: string): string {
  try {
    const s = statSync(file);
    return `${file}:${s.size}:${s.mtimeMs}:${s.ino}`;
  } catch {
    return `${file}:missing`;
  }
}

/**
 * 10 hex digits naming what a template of `rootfs` would be built from now:
 * kernel, initramfs, command line, the image file, the QEMU binary, accel.
 */
export function templateInputs(d: SnapshotDeps, rootfs: string): string {
  const k = d.images.kernel();
  const parts = [
    `format ${TEMPLATE_FORMAT}`,
    fileId(k.vmlinux),
    fileId(k.initrd),
    guestCmdline(k.cmdline, d.accel),
    fileId(d.images.rootfs(rootfs).path),
    fileId(resolveBinary(d.binary ?? "qemu-system-x86_64")),
    d.accel,
  ];
  return createHash("sha256").update(parts.join("\n")).digest("hex").slice(0, 10);
}

/** Template keys named by sandboxes' snap.json (running) or bundle.json (paused). */
async function templatesInUse(dataDir: string): Promise<Set<string>> {
  const used = new Set<string>();
  let ids: string[] = [];
  try {
    ids = await readdir(sandboxesDir(dataDir));
  } catch {
    return used;
  }
  for (const id of ids) {
    for (const f of ["snap.json", "bundle.json"]) {
      try {
        const j = JSON.parse(await readFile(path.join(sandboxesDir(dataDir), id, f), "utf8")) as { template?: unknown };
        if (typeof j.template === "string") used.add(j.template);
      } catch {
        // absent or unreadable: names nothing
      }
    }
  }
  return used;
}

/**
 * Removes built templates whose inputs changed since (see `templateInputs`)
 * and that no sandbox descends from. Returns the removed keys. Call when no
 * restore or build is running (at start-up, after reconcile).
 */
export async function removeStaleTemplates(d: SnapshotDeps): Promise<string[]> {
  let names: string[] = [];
  try {
    names = await readdir(templatesDir(d.dataDir));
  } catch {
    return [];
  }
  const used = await templatesInUse(d.dataDir);
  const removed: string[] = [];
  for (const name of names) {
    if (name.startsWith(".") || used.has(name)) continue;
    let current: boolean;
    try {
      const meta = JSON.parse(await readFile(path.join(templatesDir(d.dataDir), name, "meta.json"), "utf8")) as { rootfs: string };
      current = name.endsWith(`-${templateInputs(d, meta.rootfs)}`);
    } catch {
      current = false; // no meta (a template of an older layout) or its image is gone
    }
    if (current) continue;
    await rm(path.join(templatesDir(d.dataDir), name), { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}
