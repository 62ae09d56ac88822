/**
 * Per-VM cgroups of jailed VMMs: a memory limit, a pids limit and a CPU
 * quota, one cgroup per VM under a `hutch-<netns>` parent. cgroup v2 when
 * /sys/fs/cgroup/cgroup.controllers exists, else v1 (one hierarchy per
 * controller, the parent nested in the server's own cgroup so the host's
 * limits on the server still hold), else none.
 */
import { existsSync } from "node:fs";
import { mkdir, readFile, rmdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { RuntimeLogger } from "./runtime-logger.js";

const CGROUP_ROOT = "/sys/fs/cgroup";
const V1_CONTROLLERS = ["memory", "pids", "cpu"] as const;
type Controller = (typeof V1_CONTROLLERS)[number];

/** Limits of one VMM's cgroup. */
export interface CgroupLimits {
  memBytes: number;
  pids: number;
  /** CPU time per `cpuPeriodUs`, µs (vcpus × period = that many cores). */
  cpuQuotaUs: number;
  cpuPeriodUs: number;
}

/** Where VM cgroups go: v2's one parent, or v1's parent per controller. */
type Layout = { version: 2; parent: string; enable: string } | { version: 1; parents: Map<Controller, string> };

/** Creates and removes the cgroups of VMMs. */
export class VmmCgroups {
  private constructor(private readonly layout: Layout) {}

  /**
   * The cgroup setup usable on this host for parent `name`, or undefined
   * (logged once) when cgroups are absent or not writable.
   */
  static async detect(name: string, log: RuntimeLogger, root = CGROUP_ROOT): Promise<VmmCgroups | undefined> {
    try {
      if (existsSync(path.join(root, "cgroup.controllers"))) {
        // v2: "no internal processes" forbids children with controllers under
        // the server's own (populated) cgroup, so the parent sits at the root.
        const parent = path.join(root, name);
        await mkdir(parent, { recursive: true });
        const want = ["memory", "pids", "cpu"];
        const have = (await readFile(path.join(root, "cgroup.controllers"), "utf8")).split(/\s+/);
        const enable = want.filter((c) => have.includes(c)).map((c) => `+${c}`).join(" ");
        await writeFile(path.join(root, "cgroup.subtree_control"), enable);
        await writeFile(path.join(parent, "cgroup.subtree_control"), enable);
        log.info({ parent }, "VMM cgroups: v2");
        await dropIfEmpty(parent);
        return new VmmCgroups({ version: 2, parent, enable });
      }
      const self = await readFile("/proc/self/cgroup", "utf8");
      const parents = new Map<Controller, string>();
      for (const c of V1_CONTROLLERS) {
        const line = self.split("\n").find((l) => l.split(":")[1]?.split(",").includes(c));
        const mount = path.join(root, c);
        if (!line || !existsSync(path.join(mount, "cgroup.procs"))) continue;
        const own = line.split(":").slice(2).join(":");
        const parent = path.join(mount, own, name);
        try {
          await mkdir(parent, { recursive: true });
          parents.set(c, parent);
        } catch (err) {
          log.warn({ controller: c, err: (err as Error).message }, "VMM cgroups: controller not writable, skipped");
        }
      }
      if (parents.size === 0) throw new Error("no writable cgroup v1 controller");
      log.info({ controllers: [...parents.keys()] }, "VMM cgroups: v1");
      for (const parent of parents.values()) await dropIfEmpty(parent);
      return new VmmCgroups({ version: 1, parents });
    } catch (err) {
      log.warn({ err: (err as Error).message }, "VMM cgroups unavailable: VMs run without memory/CPU/pids cgroup limits");
      return undefined;
    }
  }

  /**
   * Makes the cgroup(s) of VM `id` with `limits`; returns their directories
   * (join them by writing a pid to each one's cgroup.procs).
   */
  async create(id: string, limits: CgroupLimits): Promise<string[]> {
    const dirs: string[] = [];
    try {
      if (this.layout.version === 2) {
        const dir = path.join(this.layout.parent, id);
        // The parent goes when its last VM does (removeCgroups): made again, controllers on.
        if (!existsSync(this.layout.parent)) {
          await mkdir(this.layout.parent, { recursive: true });
          await writeFile(path.join(this.layout.parent, "cgroup.subtree_control"), this.layout.enable);
        }
        await mkdir(dir, { recursive: true });
        dirs.push(dir);
        await writeFile(path.join(dir, "memory.max"), String(limits.memBytes));
        // Swap would only hide the limit; the host's swap is not the VM's.
        await writeFile(path.join(dir, "memory.swap.max"), "0").catch(() => {});
        await writeFile(path.join(dir, "pids.max"), String(limits.pids));
        await writeFile(path.join(dir, "cpu.max"), `${limits.cpuQuotaUs} ${limits.cpuPeriodUs}`);
        return dirs;
      }
      for (const [c, parent] of this.layout.parents) {
        const dir = path.join(parent, id);
        await mkdir(dir, { recursive: true });
        dirs.push(dir);
        if (c === "memory") await writeFile(path.join(dir, "memory.limit_in_bytes"), String(limits.memBytes));
        if (c === "pids") await writeFile(path.join(dir, "pids.max"), String(limits.pids));
        if (c === "cpu") {
          await writeFile(path.join(dir, "cpu.cfs_period_us"), String(limits.cpuPeriodUs));
          await writeFile(path.join(dir, "cpu.cfs_quota_us"), String(limits.cpuQuotaUs));
        }
      }
      return dirs;
    } catch (err) {
      await removeCgroups(dirs);
      throw err;
    }
  }
}

/**
 * Removes a `hutch-*` parent that has no VM in it: after detection (`create`
 * makes it again for the first VM) and with a VM's own cgroup
 * (`removeCgroups`), so a server that runs no VM leaves none behind.
 */
async function dropIfEmpty(parent: string): Promise<void> {
  await rmdir(parent).catch(() => {}); // a VM still in it (or one being made): it stays
}

/**
 * Removes cgroup directories, and their `hutch-*` parent once it has no VM
 * left. Any process still in one is a leftover of a VM that is gone (the
 * only callers): it is SIGKILLed first.
 */
export async function removeCgroups(dirs: string[]): Promise<void> {
  for (const dir of dirs) {
    await removeCgroup(dir);
    const parent = path.dirname(dir);
    if (path.basename(parent).startsWith("hutch-")) await dropIfEmpty(parent);
  }
}

/** rmdir of one cgroup, killing what is left in it (EBUSY) and retrying for up to ~1 s. */
async function removeCgroup(dir: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await rmdir(dir);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT") return;
      // A VMM that just exited is still counted until the server reaps it.
      if (code !== "EBUSY" || attempt >= 50) throw err;
      for (const pid of await cgroupPids(dir)) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // already gone
        }
      }
      await sleep(20);
    }
  }
}

/** Pids in cgroup `dir` (empty when it is gone). */
export async function cgroupPids(dir: string): Promise<number[]> {
  try {
    return (await readFile(path.join(dir, "cgroup.procs"), "utf8")).split("\n").filter(Boolean).map(Number);
  } catch {
    return [];
  }
}
