/**
 * Free-space admission of the host's data dir: before an operation writes
 * big files there (a new VM's disk, a pause's memory, a fork's or a resume's
 * RAM file), core asks whether they fit and still leave the configured floor
 * free (HUTCH_MIN_FREE_MIB), and refuses with a 503 before any status
 * changes. The check itself is the runtime side's (src/runtime/disk-space.ts).
 */
import { isRuntimeError } from "../runtime/errors.js";
import { noDiskSpace } from "./errors.js";

/** What core needs of the data dir's free space. */
export interface DiskAdmission {
  /** Throws RuntimeError `disk_full` unless `needMib` fits above the floor; `what` names the operation. */
  admit(needMib: number, what: string): void;
}

/**
 * Space a VM's own files take at first (a sparse disk's ext4 metadata, a
 * qcow2 overlay, meta, console), MiB: the guest's writes later come out of the floor.
 */
export const VM_FILES_MIB = 32;

/** What each operation writes at most, MiB. */
export const diskNeedMib = {
  create: (): number => VM_FILES_MIB,
  /** A pause may stream all guest RAM to a file. */
  pause: (memMib: number): number => memMib + VM_FILES_MIB,
  /** A resume may load a RAM stream into a fresh RAM file. */
  resume: (memMib: number): number => memMib + VM_FILES_MIB,
  /** A fork links and overlays; its child's first resume makes a RAM file. */
  fork: (memMib: number, startPaused: boolean): number => (startPaused ? 0 : memMib) + VM_FILES_MIB,
};

/** Runs `disk.admit`, turning a refusal into the API's 503 (`no_disk_space`). No check without `disk`. */
export function admitDisk(disk: DiskAdmission | undefined, needMib: number, what: string): void {
  if (!disk) return;
  try {
    disk.admit(needMib, what);
  } catch (err) {
    if (isRuntimeError(err, "disk_full")) throw noDiskSpace(err);
    throw err;
  }
}
