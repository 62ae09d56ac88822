/**
 * The guest kernel command line. Every flag here was needed for reliable or
 * fast boots under QEMU microvm with TCG (RUNTIME-NOTES.md):
 * - console=ttyS0: kernel and /init messages on the ISA serial port;
 * - reboot=t, panic=-1: a panic reboots at once (triple fault), and with
 *   QEMU's -no-reboot that ends the process instead of hanging;
 * - no_timer_check, tsc_early_khz: skip TSC calibration, which can hang under TCG;
 * - tsc=reliable: no clocksource watchdog on the TSC. On a busy host an emulated
 *   guest's TSC reads look skewed against the other clocks, the kernel then
 *   switched to refined-jiffies (4 ms resolution, low-res timers) and every clone
 *   of that template kept it;
 * - quiet: printing to an emulated UART is slow.
 */
export const KERNEL_CMDLINE = "console=ttyS0 reboot=t panic=-1 quiet no_timer_check tsc_early_khz=2000000 tsc=reliable";

/** The command line with extra arguments appended (e.g. "loglevel=7" when debugging a boot). */
export function kernelCmdline(extra: string[] = []): string {
  return [KERNEL_CMDLINE, ...extra].join(" ");
}

/**
 * The command line a guest boots with under `accel`. Under TCG it adds
 * `norandmaps` (no address-space randomization in the guest): QEMU 7.2's
 * translation cache is keyed by virtual address on x86, so with ASLR every
 * process maps ld.so and libc somewhere new and has their code translated
 * again. Measured in devbox:1: fork+exec of the dynamically linked
 * /bin/true 47-54 ms with ASLR, 12-13 ms without; `git --version` 75 -> 26;
 * `true` through the API ~47 -> ~16 ms. The sandbox, not ASLR inside it, is
 * the isolation boundary; a guest that wants ASLR back can write 2 to
 * /proc/sys/kernel/randomize_va_space. Under KVM nothing changes.
 */
export function guestCmdline(cmdline: string, accel: string): string {
  return accel === "tcg" ? `${cmdline} norandmaps` : cmdline;
}
