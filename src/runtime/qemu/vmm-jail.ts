/**
 * The VMM jail, in the spirit of Firecracker's jailer: each QEMU runs
 *
 * - as a uid of its own (VMM_ID_BASE + N, no passwd entry) and the shared
 *   group VMM_ID_BASE, with no capabilities (empty bounding set) and
 *   no_new_privs, QEMU's seccomp filter on top (see qemu-args.ts);
 * - chrooted into a tmpfs that holds only /usr (read-only), a few device
 *   nodes, its own directory (read-write), the image files (read-only) and
 *   the template it was cloned from: nothing else of the host's file system,
 *   not even other sandboxes' directories, exists for it. Paths inside are
 *   the host's, so its argv, pidfile and qcow2 backing names are unchanged;
 * - under rlimits (open files, processes, no core dumps) and in a cgroup of
 *   its own (memory = guest RAM + overhead, pids, CPU quota).
 *
 * The jail is set up by `hutch-jailer` (jailer/jailer.c, built at start-up
 * like the agent), one process that joins the cgroups, enters the netns,
 * creates the VM's tap there (QEMU inherits it as an fd: no /dev/net/tun in
 * the jail, and the tap goes with the process), a
 * mount namespace of its own (slave to the host's), mounts the tmpfs and the
 * binds, sets rlimits, chroots, drops to the uid and execs QEMU, so the
 * spawned pid is QEMU's. Without it (no compiler), the same is done by a
 * root shell inside the mount namespace that `ip netns exec` creates,
 * then prlimit → chroot → setpriv → QEMU (slower: a dozen execs). The mounts vanish with the
 * process. What stays on the host per running VM: a record and an fstab in
 * `<dataDir>/jail/` (root only) and its cgroups; `release` removes them
 * once the VMM is gone, `reconcile` removes those of a previous server.
 */
import { randomBytes } from "node:crypto";
import { chmod, chown, lstat, mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import type { Accel } from "../host-info.js";
import type { TapSpec } from "../network/host-network.js";
import type { RuntimeLogger } from "./runtime-logger.js";
import { removeCgroups, VmmCgroups, type CgroupLimits } from "./vmm-cgroups.js";
import { JAIL_TAP_FD, jailArgv, jailFstab, mergedUsrLinks } from "./vmm-jail-argv.js";
import { buildJailer, roRamShim } from "./vmm-jailer.js";

/** First id of the reserved range: the shared VMM gid; uids are base + 1, base + 2, … */
export const VMM_ID_BASE = 2_000_000;
/** How many VMM uids there are (also the most VMs one host runs at once). */
const UID_SLOTS = 65_535;

export interface VmmJailOptions {
  dataDir: string;
  /** Names the cgroup parent (`hutch-<netns>`), so servers sharing a host do not mix. */
  netns: string;
  log: RuntimeLogger;
  /** Try cgroups (default true). */
  cgroups?: boolean;
  /** Memory limit = guest RAM + this, MiB (default 512: QEMU itself ~100, TCG's translation cache ≤ 256 (qemu-args.ts), page cache of its files). */
  memOverheadMib?: number;
  /** RLIMIT_NOFILE (default 1024). */
  nofile?: number;
  /** RLIMIT_NPROC of the VMM's uid and its pids.max: threads count (default 512). */
  nproc?: number;
  /** The `hutch-jailer` binary; default: built from the repo's jailer/ (`make`); false: the shell chain. */
  jailer?: string | false;
}

/** What one VMM launch needs exposed. */
export interface JailSpec {
  id: string;
  /** The VM's own directory: owned by its uid, bound read-write. */
  dir: string;
  vcpu: number;
  memMib: number;
  accel: Accel;
  /** Directories or files bound read-only (kernel, initrd, base images, the QEMU binary's dir). */
  readOnly: string[];
  /**
   * Template directories the VM maps RAM from and reads disks of: their
   * files root:VMM gid, group-readable (0440). QEMU 7.2 opens a share=off
   * RAM file O_RDWR (8.2+ falls back to O_RDONLY); the preloaded shim
   * (`roRam`) makes it O_RDONLY. Without the shim the RAM files must be
   * group-writable (0660).
   */
  shared: string[];
  /**
   * The RAM files this launch may map copy-on-write (share=off), opened
   * read-only through the shim: one, or a spare's candidates (spare-pool.ts).
   */
  roRam?: string[];
  /** The tap the jailer creates for this launch (only when `VmmJail.makesTaps`); QEMU gets it at `JailLease.tapFd`. */
  tap?: TapSpec;
}

/** One launch's jail: the argv prefix (after `ip netns exec NS`), its env, and its release. */
export interface JailLease {
  id: string;
  uid: number;
  /** The argv before the QEMU binary, around `netnsPrefix` (`ip netns exec NS`). */
  prefix(netnsPrefix: string[]): string[];
  /** QEMU's whole environment: the server's secrets must not be readable in /proc/<pid>/environ. */
  env: NodeJS.ProcessEnv;
  /** With `JailSpec.tap`: the fd QEMU holds its tap at (`-netdev tap,fd=N`). */
  tapFd?: number;
  /** Removes cgroups and record once the VMM is gone; a no-op once a newer launch of the id took over. */
  release(): Promise<void>;
}

interface JailRecord {
  id: string;
  uid: number;
  /** Distinguishes launches of one id (pause → resume): a late release of the old one leaves the new one. */
  token: string;
  cgroups: string[];
}

const PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin";
/** Frozen files shared through hard links (fork) or by name: never owned by one VM's uid. */
const SHARED_FILE = /^(layer-\d+\.(qcow2|img)|mem\.base)$/;

/** Per-VM uid, rlimits, cgroups and chroot of QEMU processes. */
export class VmmJail {
  readonly gid = VMM_ID_BASE;
  private readonly dir: string;
  private readonly root: string;
  private readonly leases = new Map<string, string>();
  /** libhutch-ro-ram.so (vmm-jailer.ts roRamShim), built with the jailer. */
  private readonly shim: string | undefined;
  /** Mode of shared copy-on-write RAM files: read-only when the shim opens them so. */
  private readonly ramMode: number;
  private lock: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly opts: VmmJailOptions,
    private readonly cgroups: VmmCgroups | undefined,
    private readonly links: string[],
    private readonly jailer: string | undefined,
  ) {
    this.shim = jailer ? roRamShim(jailer) : undefined;
    this.ramMode = this.shim ? 0o440 : 0o660;
    this.dir = path.join(path.resolve(opts.dataDir), "jail");
    this.root = path.join(this.dir, "root");
  }

  /**
   * Whether launches get their tap from `hutch-jailer` (JailSpec.tap)
   * rather than `HostNetwork.createTap`: true when the jailer is built.
   */
  get makesTaps(): boolean {
    return this.jailer !== undefined;
  }

  /** Prepares `<dataDir>/jail/` and detects cgroups (one log line when there are none). */
  static async create(opts: VmmJailOptions): Promise<VmmJail> {
    const dir = path.join(path.resolve(opts.dataDir), "jail");
    await mkdir(path.join(dir, "root"), { recursive: true, mode: 0o700 });
    await chmod(dir, 0o700);
    const cgroups = opts.cgroups === false ? undefined : await VmmCgroups.detect(`hutch-${opts.netns}`, opts.log);
    const links = await mergedUsrLinks();
    const jailer = opts.jailer === false ? undefined : (opts.jailer ?? (await buildJailer(opts.log)));
    opts.log.info({ uids: `${VMM_ID_BASE + 1}+`, cgroups: cgroups !== undefined, jailer: jailer ?? "shell chain" }, "VMM jail on");
    return new VmmJail(opts, cgroups, links, jailer);
  }

  /**
   * Sets up the jail of one launch of VM `spec.id`: a free uid, ownership of
   * its directory and of the shared files, its cgroups, its mount table.
   * A previous launch's leftovers of the same id are released first.
   */
  async prepare(spec: JailSpec): Promise<JailLease> {
    if (spec.tap && !this.makesTaps) throw new Error("this VMM jail has no hutch-jailer to make taps");
    return this.serial(async () => {
      // The uid reserved with the tap (reserveUid) is kept; a previous launch's cgroups are not.
      const old = await this.readRecord(spec.id);
      if (old) await removeCgroups(old.cgroups);
      const uid = old?.uid ?? (await this.freeUid());
      const token = randomBytes(6).toString("hex");
      await this.ownDir(spec.dir, uid);
      for (const s of spec.shared) await this.shareDir(s);
      const limits: CgroupLimits = {
        memBytes: (spec.memMib + (this.opts.memOverheadMib ?? 512)) * 1048576,
        pids: this.opts.nproc ?? 512,
        // The vCPU threads plus half a core for QEMU's main loop and I/O.
        cpuPeriodUs: 100_000,
        cpuQuotaUs: spec.vcpu * 100_000 + 50_000,
      };
      const rec: JailRecord = { id: spec.id, uid, token, cgroups: [] };
      // The record first: a crash from here on leaves something reconcile can clean.
      await this.writeRecord(rec);
      rec.cgroups = this.cgroups ? await this.cgroups.create(spec.id, limits) : [];
      await this.writeRecord(rec);
      const fstab = path.join(this.dir, `${spec.id}.fstab`);
      const shim = spec.roRam !== undefined ? this.shim : undefined;
      const view = shim ? { ...spec, readOnly: [...spec.readOnly, path.dirname(shim)] } : spec;
      await writeFile(fstab, jailFstab(this.root, view), { mode: 0o600 });
      this.leases.set(spec.id, token);
      const prefix = jailArgv({
        root: this.root, fstab, links: this.links, uid, gid: this.gid, accel: spec.accel, cgroups: rec.cgroups,
        nofile: this.opts.nofile ?? 1024, nproc: this.opts.nproc ?? 512, ...(this.jailer ? { jailer: this.jailer } : {}),
        ...(spec.tap ? { tap: spec.tap } : {}),
      });
      return {
        id: spec.id,
        uid,
        prefix,
        env: { PATH: PATH_ENV, ...(shim ? { LD_PRELOAD: shim, HUTCH_RO_RAM: spec.roRam!.join("\n") } : {}) },
        ...(spec.tap ? { tapFd: JAIL_TAP_FD } : {}),
        release: () => this.release(spec.id, token),
      };
    });
  }

  /**
   * Hands the files put in VM `id`'s directory after its launch (a spare
   * QEMU's, spare-pool.ts) to the uid that launch runs as, as `prepare` does.
   */
  async adopt(id: string, dir: string): Promise<void> {
    await this.serial(async () => {
      const rec = await this.readRecord(id);
      if (!rec) throw new Error(`VM ${id} has no jail to adopt files into`);
      await this.ownDir(dir, rec.uid);
    });
  }

  /**
   * The uid VM `id`'s next QEMU will run as, reserved now (its tap is made
   * for that uid before the launch). Kept until `release`.
   */
  async reserveUid(id: string): Promise<number> {
    return this.serial(async () => {
      const rec = await this.readRecord(id);
      if (rec) return rec.uid;
      const uid = await this.freeUid();
      await this.writeRecord({ id, uid, token: "reserved", cgroups: [] });
      return uid;
    });
  }

  /** Removes the cgroups and record of VM `id` (its VMM must be gone); with `token`, only if that launch is still the current one. */
  async release(id: string, token?: string): Promise<void> {
    await this.serial(async () => {
      if (token !== undefined) {
        const rec = await this.readRecord(id);
        if (rec && rec.token !== token) return;
      }
      await this.releaseNow(id);
    });
  }

  /**
   * After a restart: removes records and cgroups of VMs not in `live` and
   * not launched by this server (a leftover VMM still in such a cgroup is killed).
   */
  async reconcile(live: Set<string>): Promise<void> {
    await this.serial(async () => {
      for (const rec of await this.records()) {
        if (live.has(rec.id) || this.leases.has(rec.id)) continue;
        await this.releaseNow(rec.id);
        this.opts.log.info({ id: rec.id, uid: rec.uid }, "removed stale VMM jail");
      }
    });
  }

  /** The uid VM `id` runs as, if it has a jail now. */
  async uidOf(id: string): Promise<number | undefined> {
    return (await this.readRecord(id))?.uid;
  }

  // --- internals ----------------------------------------------------------

  private async releaseNow(id: string): Promise<void> {
    const rec = await this.readRecord(id);
    this.leases.delete(id);
    if (rec) await removeCgroups(rec.cgroups);
    await rm(path.join(this.dir, `${id}.fstab`), { force: true });
    await rm(this.recordPath(id), { force: true });
  }

  /** The VM's directory and its files to its uid, except frozen shared files (root:gid, group-readable). */
  private async ownDir(dir: string, uid: number): Promise<void> {
    await chown(dir, uid, this.gid);
    await chmod(dir, 0o700);
    for (const name of await readdir(dir)) {
      const f = path.join(dir, name);
      const st = await lstat(f);
      if (!st.isFile()) continue;
      if (SHARED_FILE.test(name) || st.nlink > 1) {
        await chown(f, 0, this.gid);
        // A share=off RAM file: writable only when no shim opens it read-only (see JailSpec.shared).
        await chmod(f, name === "mem.base" ? this.ramMode : 0o440);
      } else {
        await chown(f, uid, this.gid);
      }
    }
  }

  /** A template directory: root:gid, group may enter and read (the RAM file: `ramMode`). */
  private async shareDir(dir: string): Promise<void> {
    await fixOwner(dir, this.gid, 0o750);
    for (const name of await readdir(dir)) {
      const f = path.join(dir, name);
      const st = await lstat(f);
      if (st.isFile()) await fixOwner(f, this.gid, name === "mem" ? this.ramMode : 0o440);
    }
  }

  private async freeUid(): Promise<number> {
    const used = new Set((await this.records()).map((r) => r.uid));
    for (let n = 1; n <= UID_SLOTS; n++) if (!used.has(VMM_ID_BASE + n)) return VMM_ID_BASE + n;
    throw new Error("no free VMM uid");
  }

  private recordPath(id: string): string {
    return path.join(this.dir, `${id}.json`);
  }

  private async readRecord(id: string): Promise<JailRecord | undefined> {
    try {
      return JSON.parse(await readFile(this.recordPath(id), "utf8")) as JailRecord;
    } catch {
      return undefined;
    }
  }

  private async writeRecord(rec: JailRecord): Promise<void> {
    const tmp = `${this.recordPath(rec.id)}.tmp`;
    await writeFile(tmp, JSON.stringify(rec) + "\n", { mode: 0o600 });
    await rename(tmp, this.recordPath(rec.id));
  }

  private async records(): Promise<JailRecord[]> {
    const out: JailRecord[] = [];
    for (const name of await readdir(this.dir)) {
      if (!name.endsWith(".json")) continue;
      const rec = await this.readRecord(name.slice(0, -5));
      if (rec) out.push(rec);
    }
    return out;
  }

  /** One prepare/release at a time: uid allocation reads then writes records. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.lock.then(fn, fn);
    this.lock = p.catch(() => {});
    return p;
  }
}

/** chown root:gid and chmod `mode`, skipped when already so (clones share these files). */
async function fixOwner(f: string, gid: number, mode: number): Promise<void> {
  const st = await lstat(f);
  if (st.uid !== 0 || st.gid !== gid) await chown(f, 0, gid);
  if ((st.mode & 0o7777) !== mode) await chmod(f, mode);
}

/** What a QEMU launch uses, for `jailSpecFor`. */
export interface LaunchFiles {
  id: string;
  dir: string;
  vcpu: number;
  memMib: number;
  accel: Accel;
  kernel: { vmlinux: string; initrd: string };
  rootfsPath: string;
  /** The QEMU binary (a bare name is looked up in PATH, inside /usr). */
  binary: string;
  /** Template directories (see JailSpec.shared). */
  shared?: string[];
  /** See JailSpec.roRam. */
  roRam?: string[];
  /** See JailSpec.tap. */
  tap?: TapSpec;
}

/** The JailSpec of a launch: kernel, initrd and base image read-only, an absolute binary's directory too. */
export function jailSpecFor(f: LaunchFiles): JailSpec {
  const readOnly = [path.dirname(f.kernel.vmlinux), path.dirname(f.kernel.initrd), path.dirname(f.rootfsPath)];
  if (path.isAbsolute(f.binary)) readOnly.push(path.dirname(f.binary));
  return {
    id: f.id, dir: f.dir, vcpu: f.vcpu, memMib: f.memMib, accel: f.accel, readOnly, shared: f.shared ?? [],
    ...(f.roRam !== undefined ? { roRam: f.roRam } : {}), ...(f.tap ? { tap: f.tap } : {}),
  };
}
