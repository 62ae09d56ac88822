/**
 * The QEMU command line of a snapshot-capable VM: QemuRuntime's own
 * (`buildQemuArgs`, so the device layout is the same for every VM) with guest
 * RAM in a file, the writable disk swapped for a given image/format, and
 * optionally `-incoming defer`. Pure: no I/O.
 *
 * A migration stream only loads into the same device layout: keep every
 * VM restored from one template on the same `buildQemuArgs` shape (vcpu,
 * memMib, devices); only file paths, tap and MAC may differ.
 */
import { buildQemuArgs, DISK_ERROR_POLICY, type QemuArgsInput } from "../qemu/qemu-args.js";

/**
 * Name of a VM's RAM block, fixed for its whole life: a migration stream
 * names RAM blocks, so it loads only into RAM of the same name. "mem": the
 * memory-backend object of templates and their clones; "legacy": plain `-m`
 * (QemuRuntime's cold boots), whose block QEMU names after the machine.
 */
export type RamBlock = "mem" | "legacy";

/** Where guest RAM lives. */
export type RamBacking =
  /**
   * MAP_SHARED: the file IS the RAM; a snapshot needs only device state
   * (x-ignore-shared). `block` (default "mem") names the backend: a
   * cold-booted VM keeps "legacy" in a file too.
   */
  | { file: string; share: true; block?: RamBlock }
  /** MAP_PRIVATE: copy-on-write from a file that must never change while mapped. */
  | { file: string; share: false; block?: RamBlock }
  /**
   * Anonymous RAM: a snapshot must stream all of it. "object" is a
   * memory-backend-ram with the same id as the file backends (its RAM block
   * has the same name, so streams move between them); "legacy" is plain `-m`.
   */
  | { file?: undefined; anon: "object" | "legacy" };

export interface SnapshotArgsInput extends QemuArgsInput {
  ram: RamBacking;
  /** The writable disk: image and its format (raw template disk, qcow2 overlay). */
  disk: { file: string; format: "raw" | "qcow2" };
  /** Start with `-incoming defer` (a restore: load state via QMP before `cont`). */
  incoming: boolean;
  /** `-S`: the guest does not run until QMP `cont`, even after an incoming migration. */
  paused?: boolean;
}

/**
 * A spare QEMU's command line (spare-pool.ts, snapshot-vm.ts `launchSpare`): everything of `buildSnapshotArgs`
 * except the RAM backend and the writable disk, which it gets over QMP when
 * it is adopted, and `--preconfig`, so it waits for them before it builds
 * the machine. `-S -incoming defer`: it loads a paused VM's state.
 */
export type SpareArgsInput = Omit<SnapshotArgsInput, "ram" | "disk" | "incoming" | "paused">;

/** Id of the RAM backend object; a migration stream names RAM blocks by it, so it never changes. */
export const RAM_BACKEND_ID = "mem";
/**
 * The name QEMU gives plain `-m` RAM of `-M microvm` (the machine's default
 * RAM id). A file backend with this id, set as the machine's memory-backend,
 * has a RAM block of the same name: a cold-booted VM's stream loads into it.
 */
export const LEGACY_RAM_BACKEND_ID = "microvm.ram";

/** The RAM block a VM with `ram` has. */
export function ramBlockOf(ram: RamBacking): RamBlock {
  if (ram.file === undefined) return ram.anon === "legacy" ? "legacy" : "mem";
  return ram.block ?? "mem";
}

/** argv (without the binary) of a snapshot-capable VM. */
export function buildSnapshotArgs(i: SnapshotArgsInput): string[] {
  const args = buildQemuArgs(i);
  const at = writableDriveAt(args, "buildSnapshotArgs");
  // discard=unmap keeps the qcow2 overlay small when the guest trims.
  args[at] = `id=disk,file=${opt(i.disk.file)},format=${i.disk.format},if=none,discard=unmap,${DISK_ERROR_POLICY}`;
  if (i.ram.file !== undefined) {
    const id = ramBlockOf(i.ram) === "legacy" ? LEGACY_RAM_BACKEND_ID : RAM_BACKEND_ID;
    args.push(
      "-object",
      `memory-backend-file,id=${id},size=${i.memMib}M,mem-path=${opt(i.ram.file)},share=${i.ram.share ? "on" : "off"}`,
      "-machine", `memory-backend=${id}`,
    );
  } else if (i.ram.anon === "object") {
    args.push("-object", `memory-backend-ram,id=${RAM_BACKEND_ID},size=${i.memMib}M`, "-machine", `memory-backend=${RAM_BACKEND_ID}`);
  }
  if (i.paused) args.push("-S");
  if (i.incoming) args.push("-incoming", "defer");
  return args;
}

/** argv (without the binary) of a spare QEMU: `disk` is a node `blockdev-add` makes at adoption. */
export function buildSpareArgs(i: SpareArgsInput): string[] {
  const args = buildQemuArgs(i);
  const at = writableDriveAt(args, "buildSpareArgs");
  if (args[at + 2] !== "virtio-blk-device,drive=disk") throw new Error("buildQemuArgs no longer has the disk's device after its drive: update buildSpareArgs");
  // The error policy is the device's own with -blockdev (a -drive sets it on its backend).
  args.splice(at - 1, 4, "-device", `virtio-blk-device,drive=${SPARE_DISK_NODE},${DISK_ERROR_POLICY}`);
  args.push("--preconfig", "-S", "-incoming", "defer");
  return args;
}

/** Index in `buildQemuArgs`' argv of the writable disk's `-drive` value (`who` is named if it moved). */
function writableDriveAt(args: string[], who: string): number {
  const at = args.findIndex((a, n) => args[n - 1] === "-drive" && a.startsWith("id=disk,"));
  if (at < 0) throw new Error(`buildQemuArgs no longer has a drive id=disk: update ${who}`);
  return at;
}

/** The node name of a spare's writable disk (its device's `drive`). */
export const SPARE_DISK_NODE = "disk";

function opt(v: string): string {
  return v.replaceAll(",", ",,");
}
