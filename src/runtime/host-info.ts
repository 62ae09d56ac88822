/**
 * What the host offers VMs: which accelerator QEMU should use and how much
 * memory guests may take. Read once at server start.
 */
import { accessSync, constants, existsSync, readFileSync } from "node:fs";
import os from "node:os";

export type Accel = "kvm" | "tcg";

/** Facts about the host that decide the accelerator. */
export interface AccelFacts {
  /** `/sys/module/kvm_intel` or `/sys/module/kvm_amd` exists (hardware virtualization). */
  hardwareVirt: boolean;
  /** `/dev/kvm` can be opened read-write. */
  kvmDevice: boolean;
}

/**
 * Picks the accelerator: the override when given (HUTCH_ACCEL), else KVM only
 * with hardware virtualization AND a usable /dev/kvm. A /dev/kvm without
 * kvm_intel/kvm_amd (e.g. kvm_pvm, nested PVM) hangs stock kernels: TCG then.
 */
export function chooseAccel(facts: AccelFacts, override?: string): Accel {
  if (override !== undefined && override !== "") {
    if (override !== "kvm" && override !== "tcg") throw new Error(`HUTCH_ACCEL must be "kvm" or "tcg", not ${override}`);
    return override;
  }
  return facts.hardwareVirt && facts.kvmDevice ? "kvm" : "tcg";
}

/** Reads the facts from /sys and /dev. */
export function readAccelFacts(): AccelFacts {
  let kvmDevice = false;
  try {
    accessSync("/dev/kvm", constants.R_OK | constants.W_OK);
    kvmDevice = true;
  } catch {
    kvmDevice = false;
  }
  return { hardwareVirt: existsSync("/sys/module/kvm_intel") || existsSync("/sys/module/kvm_amd"), kvmDevice };
}

/** `chooseAccel` on this host. */
export function detectAccel(override?: string): Accel {
  return chooseAccel(readAccelFacts(), override);
}

/**
 * Memory guests may use, MiB: physical memory minus a reserve for the host
 * (the larger of 1 GiB and 10%), or the override (HUTCH_HOST_MEM_MIB).
 */
export function memBudgetMib(totalMib = Math.floor(os.totalmem() / 1048576), override?: number): number {
  if (override !== undefined) {
    if (!Number.isInteger(override) || override <= 0) throw new Error(`HUTCH_HOST_MEM_MIB must be a positive integer, not ${override}`);
    return override;
  }
  return Math.max(0, totalMib - Math.max(1024, Math.ceil(totalMib / 10)));
}

/** The selected mode in a sysfs choice list ("always [madvise] never" → "madvise"). */
export function parseSysfsChoice(text: string): string | undefined {
  return /\[([^\]]+)\]/.exec(text)?.[1];
}

/**
 * Transparent huge pages' mode on this host, undefined when unknown. With
 * "never", every 4 KiB page of guest RAM QEMU touches is its own fault:
 * loading a paused sandbox's RAM stream took 1.2–1.3 s here against
 * 0.3–0.5 s with "madvise" (BENCHMARKS.md).
 */
export function thpMode(path = "/sys/kernel/mm/transparent_hugepage/enabled"): string | undefined {
  try {
    return parseSysfsChoice(readFileSync(path, "utf8"));
  } catch {
    return undefined;
  }
}
