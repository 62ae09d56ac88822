import path from "node:path";

/** Longest unix socket path the kernel accepts (sun_path is 108 bytes with the NUL). */
export const MAX_SOCKET_PATH = 107;

/** Files of one VM, all inside `<dataDir>/sandboxes/<id>/` (mode 0700). */
export interface VmPaths {
  dir: string;
  /** QMP control socket (QEMU listens). */
  qmp: string;
  /** Guest agent virtio-serial socket (QEMU listens). */
  agent: string;
  /** Serial console output, rotated to `console.log.1` past a size limit. */
  console: string;
  consoleOld: string;
  /** QEMU's own stdout/stderr (startup errors). */
  qemuLog: string;
  pidfile: string;
  /** The sandbox's writable disk (sparse ext4). */
  disk: string;
  /** meta.json: tap name and shape, written before QEMU starts (no secrets). */
  meta: string;
}

/** Directory holding every VM directory. */
export function sandboxesDir(dataDir: string): string {
  return path.join(path.resolve(dataDir), "sandboxes");
}

/** Whether `id` looks like a sandbox id (`sb_` + letters/digits): safe as a directory name. */
export function isSandboxId(id: string): boolean {
  return /^sb_[0-9A-Za-z]{1,64}$/.test(id);
}

/** Paths of the VM `id`. Throws on an id that is not a safe directory name. */
export function vmPaths(dataDir: string, id: string): VmPaths {
  // The directory is removed recursively on destroy: never let an id escape it.
  if (!isSandboxId(id)) throw new Error(`invalid sandbox id: ${JSON.stringify(id)}`);
  const dir = path.join(sandboxesDir(dataDir), id);
  return {
    dir,
    qmp: path.join(dir, "qmp.sock"),
    agent: path.join(dir, "agent.sock"),
    console: path.join(dir, "console.log"),
    consoleOld: path.join(dir, "console.log.1"),
    qemuLog: path.join(dir, "qemu.log"),
    pidfile: path.join(dir, "qemu.pid"),
    disk: path.join(dir, "disk.img"),
    meta: path.join(dir, "meta.json"),
  };
}

/**
 * Throws when the sockets of a VM under `dataDir` would exceed the unix
 * socket path limit; call at startup so it fails clearly, not at first create.
 */
export function checkSocketPathLength(dataDir: string): void {
  const p = vmPaths(dataDir, `sb_${"0".repeat(26)}`).agent;
  if (Buffer.byteLength(p) > MAX_SOCKET_PATH) {
    throw new Error(
      `data dir ${path.resolve(dataDir)} is too long: VM sockets like ${p} exceed ${MAX_SOCKET_PATH} bytes; use a shorter HUTCH data dir`,
    );
  }
}
