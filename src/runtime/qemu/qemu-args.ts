/**
 * Builds the QEMU command line of one VM. Pure: no I/O, unit-tested.
 */
import { HP_PORT_NAME } from "../agent/protocol.js";
import type { Accel } from "../host-info.js";
import { guestCmdline } from "../images/kernel-cmdline.js";
import type { VmPaths } from "./vm-paths.js";

export interface QemuArgsInput {
  id: string;
  accel: Accel;
  vcpu: number;
  memMib: number;
  paths: VmPaths;
  kernel: { vmlinux: string; initrd: string; cmdline: string };
  /** Read-only base ext4 shared by every VM of that image. */
  rootfsPath: string;
  /** The tap QEMU opens by name, or the fd of one it inherits open (made by hutch-jailer). */
  tap: string | { fd: number };
  mac: string;
  /** The `-M` value (default MACHINE); a restore passes the layout its state was saved from. */
  machine?: string;
}

/**
 * The machine: a microvm. `ioapic2=off` keeps its 8 virtio-mmio transports
 * on the first IOAPIC instead of 24 on a second one (we use 4): QEMU's
 * machine init is ~20 ms shorter under TCG, on every start (cold boot,
 * restore, resume, fork). The guest finds them the same way (ACPI).
 */
export const MACHINE = "microvm,x-option-roms=off,isa-serial=on,rtc=on,ioapic2=off";

/**
 * The machine before `ioapic2=off`: a migration stream loads only into the
 * device layout it was saved from, so templates and pauses saved by earlier
 * versions still restore with it (see `streamMachine` in snapshot/migration.ts).
 */
export const LEGACY_MACHINE = "microvm,x-option-roms=off,isa-serial=on,rtc=on";

/**
 * What the writable disk does on a host I/O error. ENOSPC (the data dir's
 * file system is full) stops the VM and keeps the request, which QEMU
 * retries on `cont`: no guest write is lost, and the runtime notices the stop
 * (io-error-watch.ts) and reports the sandbox stalled. Any other error is
 * reported to the guest (EIO), as a real disk would.
 */
export const DISK_ERROR_POLICY = "werror=enospc,rerror=report";

/** TCG translation cache, MiB: ample for a microVM's kernel and userland. */
export const TCG_TB_MIB = 256;

/**
 * argv (without the binary) for `qemu-system-x86_64`: a microvm with the
 * image's base disk read-only, the sandbox's disk writable, a tap NIC (by
 * name, or an inherited fd: then QEMU needs no /dev/net/tun), QMP
 * and the agent's virtio-serial port on unix sockets in the VM's directory,
 * the serial console appended to console.log. `-no-reboot` plus the
 * kernel's `panic=-1` make a guest panic or reboot end the process, which
 * the runtime reports as an exit.
 */
export function buildQemuArgs(i: QemuArgsInput): string[] {
  for (const [k, v] of [["vcpu", i.vcpu], ["memMib", i.memMib]] as const) {
    if (!Number.isInteger(v) || v <= 0) throw new Error(`invalid ${k}: ${v}`);
  }
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(i.mac)) throw new Error(`invalid MAC: ${i.mac}`);
  if (typeof i.tap !== "string" && !(Number.isInteger(i.tap.fd) && i.tap.fd > 2)) throw new Error(`invalid tap fd: ${i.tap.fd}`);
  const p = i.paths;
  return [
    // The id in argv lets reconcile recognise the process via /proc/<pid>/cmdline.
    "-name", i.id,
    "-M", i.machine ?? MACHINE,
    // TCG's translation cache defaults to 1 GiB (allocated as code is
    // translated): bounded, so the jail's memory limit (guest RAM + a fixed
    // overhead, vmm-jail.ts) cannot be reached by translated code alone.
    "-accel", i.accel === "tcg" ? `tcg,tb-size=${TCG_TB_MIB}` : i.accel,
    // `-cpu host` needs KVM; `max` gives TCG every feature it emulates.
    "-cpu", i.accel === "kvm" ? "host" : "max",
    "-smp", String(i.vcpu),
    "-m", `${i.memMib}M`,
    "-nodefaults", "-no-user-config", "-display", "none",
    "-no-reboot",
    // seccomp: no obsolete syscalls, no set*id, no scheduler/NUMA tuning.
    // spawn stays allowed: migration to/from a file runs `exec:cat`.
    "-sandbox", "on,obsolete=deny,elevateprivileges=deny,resourcecontrol=deny",
    "-kernel", i.kernel.vmlinux,
    "-initrd", i.kernel.initrd,
    "-append", guestCmdline(i.kernel.cmdline, i.accel),
    "-chardev", `socket,id=qmp,path=${opt(p.qmp)},server=on,wait=off`,
    "-mon", "chardev=qmp,mode=control",
    // append=on opens with O_APPEND, so truncating the file from outside
    // (rotation) does not leave QEMU writing at a stale offset.
    "-chardev", `file,id=con,path=${opt(p.console)},append=on`,
    "-serial", "chardev:con",
    "-device", "virtio-serial-device",
    "-chardev", `socket,id=agent,path=${opt(p.agent)},server=on,wait=off`,
    // A named virtserialport, not a virtconsole: QEMU throttles the guest
    // when the host socket is full, where a console silently drops bytes.
    // The agent finds the port by this name (/sys/class/virtio-ports/*/name).
    "-device", `virtserialport,chardev=agent,name=${HP_PORT_NAME}`,
    "-drive", `id=base,file=${opt(i.rootfsPath)},format=raw,if=none,readonly=on`,
    "-device", "virtio-blk-device,drive=base",
    "-drive", `id=disk,file=${opt(p.disk)},format=raw,if=none,discard=unmap,${DISK_ERROR_POLICY}`,
    "-device", "virtio-blk-device,drive=disk",
    "-netdev", typeof i.tap === "string" ? `tap,id=net0,ifname=${i.tap},script=no,downscript=no` : `tap,id=net0,fd=${i.tap.fd}`,
    "-device", `virtio-net-device,netdev=net0,mac=${i.mac}`,
    "-pidfile", p.pidfile,
  ];
}

/** Escapes a value inside a QEMU option list (a comma is written twice). */
function opt(v: string): string {
  return v.replaceAll(",", ",,");
}
