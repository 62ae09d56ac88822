/**
 * Host-process helpers for VMM processes: spawning them detached, finding
 * them again through /proc, killing them, and the console log's tail and
 * rotation.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { open, readdir, readFile, stat, truncate, writeFile } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { readTail } from "../file-tail.js";
import { sandboxesDir, type VmPaths } from "./vm-paths.js";

/**
 * Starts `argv` in its own session with stdio going to `logFile`, and unrefs
 * it: the VM outlives the server. The returned child reports its exit while
 * this server runs. `env` replaces the server's environment (a jailed VMM
 * gets only PATH: no secret of the server is readable in its /proc/<pid>/environ).
 * `fds` are inherited as fd 3, 4, … (e.g. a migration stream QEMU reads as `fd:3`).
 */
export function spawnDetached(argv: string[], cwd: string, logFile: string, env?: NodeJS.ProcessEnv, fds: number[] = []): ChildProcess {
  const fd = openSync(logFile, "a", 0o600);
  try {
    const child = spawn(argv[0]!, argv.slice(1), { cwd, detached: true, stdio: ["ignore", fd, fd, ...fds], ...(env ? { env } : {}) });
    child.unref();
    return child;
  } finally {
    closeSync(fd);
  }
}

/** Whether `pid` exists and is not a zombie. */
export async function isAlive(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
  try {
    const s = await readFile(`/proc/${pid}/stat`, "utf8");
    // State follows the parenthesised command name, which may hold spaces.
    return s.slice(s.lastIndexOf(")") + 2, s.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/** argv of `pid` from /proc, or undefined when it is gone. */
export async function processArgv(pid: number): Promise<string[] | undefined> {
  try {
    const raw = await readFile(`/proc/${pid}/cmdline`, "utf8");
    return raw.split("\0").filter((s) => s !== "");
  } catch {
    return undefined;
  }
}

/** Pid from QEMU's pidfile, or undefined. */
export async function readPidfile(file: string): Promise<number | undefined> {
  try {
    const n = Number((await readFile(file, "utf8")).trim());
    return Number.isInteger(n) && n > 1 ? n : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Whether `pid` is the VMM of the VM in `dir`: a live process whose argv
 * names that directory (guards against a recycled pid).
 */
export async function isVmmOf(pid: number, dir: string): Promise<boolean> {
  const argv = await processArgv(pid);
  if (!argv || !(await isAlive(pid))) return false;
  return argv.some((a) => a.includes(dir + path.sep));
}

/** A VMM process found in /proc: its pid and the sandbox id in its argv. */
export interface FoundVmm {
  pid: number;
  id: string;
}

/** Every live process whose argv points into `<dataDir>/sandboxes/<id>/`. */
export async function findVmmProcesses(dataDir: string, binary: string): Promise<FoundVmm[]> {
  const prefix = sandboxesDir(dataDir) + path.sep;
  const base = path.basename(binary);
  const found: FoundVmm[] = [];
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    if (pid === process.pid) continue;
    const argv = await processArgv(pid);
    if (!argv?.length || !argv.some((a) => path.basename(a) === base)) continue;
    for (const a of argv) {
      const at = a.indexOf(prefix);
      if (at < 0) continue;
      const id = a.slice(at + prefix.length).split(path.sep)[0];
      if (id && (await isAlive(pid))) found.push({ pid, id });
      break;
    }
  }
  return found;
}

/** Polls until `pid` is gone; true when it went within `timeoutMs`. */
export async function waitGone(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (await isAlive(pid)) {
    if (Date.now() >= deadline) return false;
    await sleep(20);
  }
  return true;
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
export async function killAndWait(pid: number, graceMs = 1500): Promise<void> {
  if (!(await isAlive(pid))) return;
  signal(pid, "SIGTERM");
  if (await waitGone(pid, graceMs)) return;
  signal(pid, "SIGKILL");
  if (!(await waitGone(pid, 5000))) throw new Error(`process ${pid} survived SIGKILL`);
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/** The last `bytes` of the console (rotated part included), for error messages. */
export async function consoleTail(paths: VmPaths, bytes = 2048): Promise<string> {
  const parts: Buffer[] = [];
  for (const f of [paths.consoleOld, paths.console, paths.qemuLog]) {
    try {
      parts.push(await readTail(f, bytes));
    } catch {
      // missing file
    }
  }
  const text = Buffer.concat(parts).toString("utf8");
  return text.slice(-bytes).trim();
}

/**
 * Keeps a VM's console within twice `maxBytes` (called every runtime poll):
 * console.log moves to console.log.1 (its last `maxBytes` only, replacing
 * the previous one) and is truncated once it is past `maxBytes` — or would
 * be by the next call at the pace it grew since the last one (whose
 * result is `lastSize`), so a guest flooding its serial port stays within
 * the bound as long as it writes less than `maxBytes` between two calls.
 * QEMU appends (O_APPEND), so it continues at the new end. Lines written
 * between the copy and the truncate are lost: acceptable for a console.
 * Returns console.log's size afterwards (0 when it is missing).
 */
export async function rotateConsole(paths: VmPaths, maxBytes: number, lastSize?: number): Promise<number> {
  try {
    const { size } = await stat(paths.console);
    const grew = lastSize === undefined ? 0 : Math.max(size - lastSize, 0);
    if (size + grew <= maxBytes) return size;
    const keep = Math.min(size, maxBytes);
    const tail = Buffer.alloc(keep);
    const h = await open(paths.console, "r");
    try {
      await h.read(tail, 0, keep, size - keep);
    } finally {
      await h.close();
    }
    await writeFile(paths.consoleOld, tail, { mode: 0o600 });
    await truncate(paths.console, 0);
    return 0;
  } catch {
    return 0; // the VM is going away
  }
}
