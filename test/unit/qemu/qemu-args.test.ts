import assert from "node:assert/strict";
import { test } from "node:test";
import { buildQemuArgs, type QemuArgsInput } from "../../../src/runtime/qemu/qemu-args.js";
import { checkSocketPathLength, vmPaths } from "../../../src/runtime/qemu/vm-paths.js";

const ID = "sb_01JABCDEFGHJKMNPQRSTVWXYZ0";

function input(over: Partial<QemuArgsInput> = {}): QemuArgsInput {
  return {
    id: ID,
    accel: "tcg",
    vcpu: 2,
    memMib: 1024,
    paths: vmPaths("/var/lib/hutch", ID),
    kernel: { vmlinux: "/c/vmlinux", initrd: "/c/initrd.img", cmdline: "console=ttyS0 quiet" },
    rootfsPath: "/c/images/minimal-1.ext4",
    tap: "hvqrstvwxyz0",
    mac: "02:fc:c0:a8:00:0c",
    ...over,
  };
}

/** Value following `flag` each time it occurs. */
function values(args: string[], flag: string): string[] {
  return args.flatMap((a, i) => (a === flag ? [args[i + 1]!] : []));
}

test("shape maps to -smp and -m", () => {
  const a = buildQemuArgs(input({ vcpu: 4, memMib: 2048 }));
  assert.deepEqual(values(a, "-smp"), ["4"]);
  assert.deepEqual(values(a, "-m"), ["2048M"]);
});

test("accelerator: TCG uses -cpu max, KVM -cpu host", () => {
  const t = buildQemuArgs(input());
  assert.deepEqual(values(t, "-accel"), ["tcg,tb-size=256"]);
  assert.deepEqual(values(t, "-cpu"), ["max"]);
  const k = buildQemuArgs(input({ accel: "kvm" }));
  assert.deepEqual(values(k, "-accel"), ["kvm"]);
  assert.deepEqual(values(k, "-cpu"), ["host"]);
});

test("microvm, no defaults, sandboxed, no display, exits instead of rebooting", () => {
  const a = buildQemuArgs(input());
  assert.deepEqual(values(a, "-M"), ["microvm,x-option-roms=off,isa-serial=on,rtc=on,ioapic2=off"]);
  for (const f of ["-nodefaults", "-no-user-config", "-no-reboot"]) assert.ok(a.includes(f), f);
  assert.deepEqual(values(a, "-display"), ["none"]);
  assert.deepEqual(values(a, "-sandbox"), ["on,obsolete=deny,elevateprivileges=deny,resourcecontrol=deny"]);
  assert.ok(!a.includes("-enable-kvm") && !a.includes("-monitor"));
  assert.deepEqual(values(a, "-name"), [ID], "the id is in argv for reconcile");
});

test("base disk is read-only, the sandbox disk writable and inside the VM dir", () => {
  const a = buildQemuArgs(input());
  const drives = values(a, "-drive");
  assert.equal(drives.length, 2);
  assert.match(drives[0]!, /^id=base,file=\/c\/images\/minimal-1\.ext4,format=raw,if=none,readonly=on$/);
  assert.match(drives[1]!, new RegExp(`^id=disk,file=/var/lib/hutch/sandboxes/${ID}/disk\\.img,format=raw`));
  assert.ok(!drives[1]!.includes("readonly"));
  assert.equal(values(a, "-device").filter((d) => d.startsWith("virtio-blk-device")).length, 2);
});

test("QMP, agent and console live in the VM directory; exactly one monitor", () => {
  const a = buildQemuArgs(input());
  const dir = `/var/lib/hutch/sandboxes/${ID}`;
  const chardevs = values(a, "-chardev");
  assert.deepEqual(chardevs, [
    `socket,id=qmp,path=${dir}/qmp.sock,server=on,wait=off`,
    `file,id=con,path=${dir}/console.log,append=on`,
    `socket,id=agent,path=${dir}/agent.sock,server=on,wait=off`,
  ]);
  assert.deepEqual(values(a, "-mon"), ["chardev=qmp,mode=control"]);
  assert.deepEqual(values(a, "-serial"), ["chardev:con"]);
  // A serial port, not a console: QEMU drops console bytes the host cannot take at once.
  assert.ok(values(a, "-device").includes("virtserialport,chardev=agent,name=hutch.agent"));
  assert.ok(!values(a, "-device").some((d) => d.startsWith("virtconsole")));
  assert.deepEqual(values(a, "-pidfile"), [`${dir}/qemu.pid`]);
});

test("tap NIC with the spec's MAC", () => {
  const a = buildQemuArgs(input());
  assert.deepEqual(values(a, "-netdev"), ["tap,id=net0,ifname=hvqrstvwxyz0,script=no,downscript=no"]);
  assert.ok(values(a, "-device").includes("virtio-net-device,netdev=net0,mac=02:fc:c0:a8:00:0c"));
});

test("a tap inherited open (made by hutch-jailer) is passed by fd", () => {
  const a = buildQemuArgs(input({ tap: { fd: 8 } }));
  assert.deepEqual(values(a, "-netdev"), ["tap,id=net0,fd=8"]);
  assert.ok(values(a, "-device").includes("virtio-net-device,netdev=net0,mac=02:fc:c0:a8:00:0c"));
  assert.throws(() => buildQemuArgs(input({ tap: { fd: 1 } })), /invalid tap fd/);
});

test("kernel, initrd and cmdline from the image store; no guest ASLR under TCG only", () => {
  const a = buildQemuArgs(input());
  assert.deepEqual(values(a, "-kernel"), ["/c/vmlinux"]);
  assert.deepEqual(values(a, "-initrd"), ["/c/initrd.img"]);
  assert.deepEqual(values(a, "-append"), ["console=ttyS0 quiet norandmaps"]);
  assert.deepEqual(values(buildQemuArgs(input({ accel: "kvm" })), "-append"), ["console=ttyS0 quiet"]);
});

test("commas in paths are escaped for QEMU option lists", () => {
  const a = buildQemuArgs(input({ rootfsPath: "/c/a,b.ext4" }));
  assert.match(values(a, "-drive")[0]!, /file=\/c\/a,,b\.ext4,/);
});

test("rejects bad shapes and MACs", () => {
  assert.throws(() => buildQemuArgs(input({ vcpu: 0 })), /vcpu/);
  assert.throws(() => buildQemuArgs(input({ memMib: 1.5 })), /memMib/);
  assert.throws(() => buildQemuArgs(input({ mac: "02:fc:zz:00:00:00" })), /MAC/);
});

test("socket path length is checked against the unix limit", () => {
  assert.doesNotThrow(() => checkSocketPathLength("/var/lib/hutch"));
  assert.throws(() => checkSocketPathLength("/" + "x".repeat(70)), /too long/);
});

test("the writable disk stops the VM on ENOSPC (request kept for cont) and reports other errors; also in snapshot VMs", async () => {
  const a = buildQemuArgs(input());
  const disk = values(a, "-drive")[1]!;
  assert.match(disk, /,werror=enospc,rerror=report$/);
  assert.ok(!values(a, "-drive")[0]!.includes("werror"), "the read-only base needs no write policy");
  const { buildSnapshotArgs } = await import("../../../src/runtime/snapshot/snapshot-args.js");
  const s = buildSnapshotArgs({ ...input(), ram: { anon: "object" }, disk: { file: "/d/overlay.qcow2", format: "qcow2" }, incoming: true });
  assert.equal(values(s, "-drive")[1], "id=disk,file=/d/overlay.qcow2,format=qcow2,if=none,discard=unmap,werror=enospc,rerror=report");
});

test("a spare QEMU: no RAM backend, its disk a node added at adoption (error policy on the device), --preconfig, -S, -incoming", async () => {
  const { buildSnapshotArgs, buildSpareArgs } = await import("../../../src/runtime/snapshot/snapshot-args.js");
  const spare = buildSpareArgs(input());
  assert.deepEqual(values(spare, "-object"), [], "the RAM backend comes with the VM it is adopted for");
  assert.ok(!spare.includes("-machine"));
  assert.deepEqual(values(spare, "-drive").map((d) => d.split(",")[0]), ["id=base"], "only the read-only base is a -drive");
  assert.ok(values(spare, "-device").includes("virtio-blk-device,drive=disk,werror=enospc,rerror=report"));
  assert.deepEqual(spare.slice(-4), ["--preconfig", "-S", "-incoming", "defer"]);
  // The same devices, in the same order, as the VM it stands in for: its state loads into them.
  const full = buildSnapshotArgs({ ...input(), ram: { file: "/t/mem", share: false }, disk: { file: "/d/disk.qcow2", format: "qcow2" }, incoming: true, paused: true });
  const devices = (a: string[]) => values(a, "-device").map((d) => d.split(",")[0]);
  assert.deepEqual(devices(spare), devices(full));
});

test("RAM in a file: the backend id names the RAM block, \"microvm.ram\" for a cold-booted VM's", async () => {
  const { buildSnapshotArgs, ramBlockOf } = await import("../../../src/runtime/snapshot/snapshot-args.js");
  const disk = { file: "/d/disk.qcow2", format: "qcow2" as const };
  const clone = buildSnapshotArgs({ ...input(), ram: { file: "/t/mem", share: false }, disk, incoming: true });
  assert.deepEqual(values(clone, "-object"), ["memory-backend-file,id=mem,size=1024M,mem-path=/t/mem,share=off"]);
  assert.ok(clone.includes("memory-backend=mem"));
  // A cold boot's `-m` RAM is QEMU's block "microvm.ram": a file backend of that id loads its stream.
  const cold = buildSnapshotArgs({ ...input(), ram: { file: "/d/mem", share: true, block: "legacy" }, disk, incoming: true });
  assert.deepEqual(values(cold, "-object"), ["memory-backend-file,id=microvm.ram,size=1024M,mem-path=/d/mem,share=on"]);
  assert.ok(cold.includes("memory-backend=microvm.ram"));
  assert.deepEqual(values(buildSnapshotArgs({ ...input(), ram: { anon: "legacy" }, disk, incoming: true }), "-object"), []);
  assert.equal(ramBlockOf({ anon: "legacy" }), "legacy");
  assert.equal(ramBlockOf({ anon: "object" }), "mem");
  assert.equal(ramBlockOf({ file: "/d/mem", share: true }), "mem");
  assert.equal(ramBlockOf({ file: "/d/mem", share: true, block: "legacy" }), "legacy");
});

test("the machine layout: ioapic2=off by default; a restore picks the layout its stream was saved from", async () => {
  const { LEGACY_MACHINE, MACHINE } = await import("../../../src/runtime/qemu/qemu-args.js");
  assert.deepEqual(values(buildQemuArgs({ ...input(), machine: LEGACY_MACHINE }), "-M"), [LEGACY_MACHINE]);
  const { streamMachine } = await import("../../../src/runtime/snapshot/migration.js");
  const { mkdtemp, rm, writeFile } = await import("node:fs/promises");
  const { tmpdir } = await import("node:os");
  const dir = await mkdtemp(`${tmpdir()}/hutch-stream-`);
  try {
    // QEMU ends a stream with its device list (vmdesc); only the old layout has a second IOAPIC.
    const desc = (n: number) => JSON.stringify({ page_size: 4096, devices: Array.from({ length: n }, (_, k) => ({ name: "ioapic", instance_id: k, vmsd_name: "ioapic" })) }).replaceAll(/":/g, '": ').replaceAll(/,"/g, ', "');
    const body = Buffer.alloc(300 * 1024, 7);
    await writeFile(`${dir}/old`, Buffer.concat([body, Buffer.from(desc(2))]));
    await writeFile(`${dir}/new`, Buffer.concat([body, Buffer.from(desc(1))]));
    assert.equal(await streamMachine(`${dir}/old`), LEGACY_MACHINE);
    assert.equal(await streamMachine(`${dir}/new`), MACHINE);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
