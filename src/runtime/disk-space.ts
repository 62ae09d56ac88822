/**
 * Free space of the data dir, where VM disks, snapshot files and the SQLite
 * database live together. Two jobs:
 *
 * - Admission: before writing something big (a VM's files, a pause's memory,
 *   a template), `admit` checks that it fits and still leaves `minFreeMib`
 *   (HUTCH_MIN_FREE_MIB) for guests' disks to grow into; else it throws
 *   `disk_full` and nothing was written.
 * - A reserve ("ballast") file of `reserveMib`: created at start, removed the
 *   moment a guest's disk write hits ENOSPC (the runtime's stall handling),
 *   so the database still has room for the status changes that follow;
 *   recreated once the space is back.
 */
import { statfsSync } from "node:fs";
import { open, rm, stat } from "node:fs/promises";
import path from "node:path";
import { RuntimeError } from "./errors.js";

/** Name of the reserve file in the data dir. */
export const RESERVE_FILE = "disk-reserve";

const MIB = 1024 * 1024;

export interface DiskSpaceOptions {
  /** The data dir. */
  dir: string;
  /** Space that must stay free after any admitted write, MiB. */
  minFreeMib: number;
  /** Size of the reserve file, MiB (0: none). */
  reserveMib: number;
  log?: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
  /** Free bytes of the file system of `dir` (tests); default statfs. */
  freeBytes?: (dir: string) => number;
}

/** The data dir's free space, checked before big writes, with a reserve for the database. */
export class DiskSpace {
  readonly #o: DiskSpaceOptions;
  readonly #reserve: string;
  #reserveHeld = false;
  #restoring: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(opts: DiskSpaceOptions) {
    this.#o = opts;
    this.#reserve = path.join(opts.dir, RESERVE_FILE);
  }

  get minFreeMib(): number {
    return this.#o.minFreeMib;
  }

  /** Whether the reserve file is in place. */
  get reserveHeld(): boolean {
    return this.#reserveHeld;
  }

  /** Free space for unprivileged writers (statfs `bavail`), MiB. */
  freeMib(): number {
    const bytes = this.#o.freeBytes ? this.#o.freeBytes(this.#o.dir) : defaultFreeBytes(this.#o.dir);
    return Math.floor(bytes / MIB);
  }

  /** Whether `needMib` more still leaves the floor free. */
  hasRoom(needMib: number): boolean {
    return this.freeMib() - needMib >= this.#o.minFreeMib;
  }

  /**
   * Throws RuntimeError `disk_full` (message names `what`, the free space
   * and what was needed) unless `needMib` fits above the floor.
   */
  admit(needMib: number, what: string): void {
    const free = this.freeMib();
    if (free - needMib >= this.#o.minFreeMib) return;
    throw new RuntimeError(
      "disk_full",
      `not enough free disk space for ${what}: ${free} MiB free in the data dir, ${Math.ceil(needMib)} MiB needed plus ${this.#o.minFreeMib} MiB kept free`,
    );
  }

  /**
   * Creates the reserve file if it is missing and there is room for it
   * above the floor (never makes the disk full itself). Written with zeros,
   * not sparse, so its blocks are really held.
   */
  async ensureReserve(): Promise<void> {
    if (this.#o.reserveMib <= 0 || this.#reserveHeld) return;
    const have = await stat(this.#reserve).then((s) => s.size, () => -1);
    if (have === this.#o.reserveMib * MIB) {
      this.#reserveHeld = true;
      return;
    }
    if (!this.hasRoom(this.#o.reserveMib + (have > 0 ? -have / MIB : 0))) return;
    const fh = await open(this.#reserve, "w", 0o600);
    try {
      const chunk = Buffer.alloc(MIB);
      for (let i = 0; i < this.#o.reserveMib; i++) await fh.write(chunk, 0, MIB, i * MIB);
      await fh.sync();
    } catch (err) {
      await fh.close().catch(() => {});
      await rm(this.#reserve, { force: true });
      this.#o.log?.warn({ err }, "could not create the disk reserve");
      return;
    }
    await fh.close();
    this.#reserveHeld = true;
    this.#o.log?.info({ mib: this.#o.reserveMib }, "disk reserve in place");
  }

  /**
   * Puts the reserve in place (see `ensureReserve`); true when it is held
   * afterwards (or none is configured). Before continuing a VM that stalled
   * on a full disk: if it stalls again, the reserve can be released again.
   */
  async holdReserve(): Promise<boolean> {
    if (this.#o.reserveMib <= 0) return true;
    if (this.#restoring) await this.#restoring;
    if (!this.#reserveHeld) await this.ensureReserve();
    return this.#reserveHeld;
  }

  /**
   * Removes the reserve file (the data dir's disk is full: the database
   * gets its room back). Resolves true when it was held.
   */
  async releaseReserve(why: string): Promise<boolean> {
    if (this.#o.reserveMib <= 0) return false;
    const held = this.#reserveHeld || (await stat(this.#reserve).then(() => true, () => false));
    this.#reserveHeld = false;
    if (!held) return false;
    await rm(this.#reserve, { force: true });
    this.#o.log?.warn({ why, mib: this.#o.reserveMib }, "disk reserve released");
    return true;
  }

  /** Every `intervalMs`: puts a released reserve back once there is room again. */
  start(intervalMs = 5000): void {
    if (this.#timer || this.#o.reserveMib <= 0) return;
    this.#timer = setInterval(() => {
      if (this.#reserveHeld || this.#restoring) return;
      // Only when the space is clearly back: not the moment a few MiB free up.
      if (!this.hasRoom(2 * this.#o.reserveMib)) return;
      this.#restoring = this.ensureReserve().finally(() => (this.#restoring = undefined));
    }, intervalMs);
    this.#timer.unref();
  }

  /** Stops the periodic check (the reserve file stays). */
  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#restoring;
  }
}

function defaultFreeBytes(dir: string): number {
  const s = statfsSync(dir);
  return s.bavail * s.bsize;
}
