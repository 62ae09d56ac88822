/**
 * Finds the kernel modules the initramfs needs in an unpacked kernel package,
 * with their dependencies (read from each module's `depends=` modinfo field)
 * and in an order where every module comes after what it depends on.
 */
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { runCommand } from "../run-command.js";

/** Modules `/init` loads, in the order RUNTIME-NOTES found to work. */
export const INITRAMFS_MODULES = [
  "virtio_ring",
  "virtio",
  "virtio_mmio",
  "virtio_blk",
  "virtio_console",
  "failover",
  "net_failover",
  "virtio_net",
  "overlay",
] as const;

/** Module names use "_" internally; file names may use "-". */
export function normalizeModuleName(name: string): string {
  return name.replace(/-/g, "_");
}

/** The `depends=` list of a module's .modinfo section (empty if none). */
export function moduleDepends(ko: Buffer): string[] {
  const key = Buffer.from("depends=", "latin1");
  let at = ko.indexOf(key);
  // The modinfo strings are NUL-separated; skip matches inside other strings.
  while (at > 0 && ko[at - 1] !== 0) at = ko.indexOf(key, at + 1);
  if (at < 0) return [];
  const end = ko.indexOf(0, at);
  const value = ko.toString("latin1", at + key.length, end < 0 ? ko.length : end);
  return value
    .split(",")
    .map((s) => normalizeModuleName(s.trim()))
    .filter((s) => s.length > 0);
}

/**
 * Orders `wanted` so that dependencies come first, adding any dependency not
 * listed. Keeps the given order otherwise. Throws on a dependency cycle.
 */
export function orderModules(wanted: readonly string[], dependsOf: (name: string) => string[]): string[] {
  const done = new Set<string>();
  const visiting = new Set<string>();
  const order: string[] = [];
  const visit = (name: string) => {
    if (done.has(name)) return;
    if (visiting.has(name)) throw new Error(`module dependency cycle at ${name}`);
    visiting.add(name);
    for (const dep of dependsOf(name)) visit(dep);
    visiting.delete(name);
    done.add(name);
    order.push(name);
  };
  for (const name of wanted) visit(normalizeModuleName(name));
  return order;
}

/** Maps module name → path of its file under `modulesDir` (lib/modules/<version>). */
export async function indexModules(modulesDir: string): Promise<Map<string, string>> {
  const index = new Map<string, string>();
  const entries = await readdir(modulesDir, { recursive: true, withFileTypes: true });
  for (const e of entries) {
    if (!e.isFile()) continue;
    const m = /^(.+)\.ko(\.xz|\.zst|\.gz)?$/.exec(e.name);
    if (m?.[1]) index.set(normalizeModuleName(m[1]), join(e.parentPath ?? e.path, e.name));
  }
  return index;
}

/** Reads a module file, decompressing .ko.xz / .ko.zst / .ko.gz so plain insmod can load it. */
export async function readModule(path: string): Promise<Buffer> {
  const tool = path.endsWith(".xz") ? "xz" : path.endsWith(".zst") ? "zstd" : path.endsWith(".gz") ? "gzip" : null;
  if (!tool) return readFile(path);
  // No onLine: the output is binary, only the bytes matter.
  return (await runCommand(tool, ["-dc", path])).stdoutBytes;
}

/** A module ready to go into the initramfs. */
export interface ResolvedModule {
  name: string;
  data: Buffer;
}

/**
 * Loads `wanted` and their dependencies from `modulesDir`, in load order.
 * Throws naming the first module that is missing.
 */
export async function resolveModules(modulesDir: string, wanted: readonly string[]): Promise<ResolvedModule[]> {
  const index = await indexModules(modulesDir);
  const data = new Map<string, Buffer>();
  const load = (name: string): Buffer => {
    const got = data.get(name);
    if (got) return got;
    throw new Error(`kernel module ${name} not found under ${modulesDir}`);
  };
  // Read every module reachable from `wanted` first (async), then order (sync).
  const pending = wanted.map(normalizeModuleName);
  while (pending.length > 0) {
    const name = pending.pop() as string;
    if (data.has(name)) continue;
    const path = index.get(name);
    if (!path) throw new Error(`kernel module ${name} not found under ${modulesDir} (built in? then drop it from the list)`);
    const ko = await readModule(path);
    data.set(name, ko);
    pending.push(...moduleDepends(ko));
  }
  return orderModules(wanted, (n) => moduleDepends(load(n))).map((name) => ({ name, data: load(name) }));
}
