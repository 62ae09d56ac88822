/**
 * VmmJail's bookkeeping without a VM: uid allocation, ownership of a VM's
 * files, the mount table and argv it builds, release and reconcile. Needs
 * root (chown); cgroups are left out here (test/e2e/jail.test.ts has them).
 */
import assert from "node:assert/strict";
import { link, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { spawn } from "node:child_process";
import { jailSpecFor, VMM_ID_BASE, VmmJail, type JailSpec } from "../../../src/runtime/qemu/vmm-jail.js";
import { JAIL_TAP_FD } from "../../../src/runtime/qemu/vmm-jail-argv.js";
import { buildJailer, roRamShim } from "../../../src/runtime/qemu/vmm-jailer.js";
import { HostNetwork } from "../../../src/runtime/network/host-network.js";
import { fallbackTapName, tapName } from "../../../src/runtime/network/tap-name.js";

const log = { debug() {}, info() {}, warn() {}, error() {} };
const root = process.getuid?.() === 0;
const A = "sb_01JABCDEFGHJKMNPQRSTVWXYZA";
const B = "sb_01JABCDEFGHJKMNPQRSTVWXYZB";

describe("VmmJail", { skip: !root && "needs root (chown)" }, () => {
  let dataDir: string;
  let jail: VmmJail;
  const dirOf = (id: string) => path.join(dataDir, "sandboxes", id);
  const spec = (id: string, extra: Partial<JailSpec> = {}): JailSpec => ({
    id, dir: dirOf(id), vcpu: 1, memMib: 256, accel: "tcg", readOnly: ["/srv/images/kernel"], shared: [], ...extra,
  });
  const records = async () => (await readdir(path.join(dataDir, "jail"))).filter((f) => f.endsWith(".json")).sort();

  before(async () => {
    dataDir = await mkdtemp("/tmp/hj-");
    for (const id of [A, B]) await mkdir(dirOf(id), { recursive: true, mode: 0o700 });
    jail = await VmmJail.create({ dataDir, netns: "unit", log, cgroups: false, jailer: false });
  });
  after(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  test("each VM gets its own uid from the reserved range and owns its directory", async () => {
    await writeFile(path.join(dirOf(A), "disk.img"), "");
    const a = await jail.prepare(spec(A));
    const b = await jail.prepare(spec(B));
    assert.ok(a.uid > VMM_ID_BASE && b.uid > VMM_ID_BASE);
    assert.notEqual(a.uid, b.uid);
    const st = await stat(dirOf(A));
    assert.deepEqual([st.uid, st.gid, st.mode & 0o777], [a.uid, VMM_ID_BASE, 0o700]);
    assert.equal((await stat(path.join(dirOf(A), "disk.img"))).uid, a.uid);
    assert.deepEqual(a.env, { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin" });
    await a.release();
    await b.release();
    assert.deepEqual(await records(), []);
  });

  test("the argv wraps the netns prefix and drops to the uid without capabilities", async () => {
    const l = await jail.prepare(spec(A));
    const argv = l.prefix(["ip", "netns", "exec", "ns"]);
    // No cgroups here: the netns prefix comes first, then the root shell, prlimit, chroot, setpriv.
    assert.deepEqual(argv.slice(0, 4), ["ip", "netns", "exec", "ns"]);
    assert.equal(argv[4], "/bin/sh");
    const tail = argv.slice(argv.indexOf("prlimit"));
    assert.deepEqual(tail, [
      "prlimit", "--nofile=1024", "--nproc=512", "--core=0", "--",
      "chroot", path.join(dataDir, "jail", "root"),
      "setpriv", "--reuid", String(l.uid), "--regid", String(VMM_ID_BASE), "--clear-groups",
      "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--",
    ]);
    const fstab = await readFile(path.join(dataDir, "jail", `${A}.fstab`), "utf8");
    const r = path.join(dataDir, "jail", "root");
    assert.ok(fstab.includes(`/usr ${r}/usr none bind,ro,`), fstab);
    assert.ok(fstab.includes(`/srv/images/kernel ${r}/srv/images/kernel none bind,ro,`), fstab);
    assert.ok(fstab.includes(`${dirOf(A)} ${r}${dirOf(A)} none bind,nosuid,nodev,`), fstab);
    assert.ok(!fstab.includes("/dev/net/tun"), "the tun device is the jail's own node, not a bind");
    await l.release();
  });

  test("with hutch-jailer one process does it all and the program runs jailed with the same pid", async () => {
    const bin = await buildJailer(log);
    assert.ok(bin, "jailer/ builds");
    const withJailer = await VmmJail.create({ dataDir, netns: "unit", log, cgroups: false, jailer: bin });
    const l = await withJailer.prepare(spec(A, { readOnly: [] }));
    const r = path.join(dataDir, "jail", "root");
    const argv = l.prefix(["ip", "netns", "exec", "ns1"]);
    assert.deepEqual(argv.slice(0, 5), [bin, "--netns", "ns1", "--root", r]);
    assert.equal(argv.at(-1), "--");
    // Run it for real, without a netns (any other prefix wraps the jailer), on a sleep.
    const child = spawn(l.prefix([])[0]!, [...l.prefix([]).slice(1), "sleep", "5"], { env: l.env, stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    child.stderr!.on("data", (b: Buffer) => (err += b.toString()));
    try {
      let status = "";
      for (let i = 0; i < 100 && !/^Uid:\s+[1-9]/m.test(status); i++) {
        await new Promise((res) => setTimeout(res, 20));
        assert.equal(child.exitCode, null, `jailer exited: ${err}`);
        status = await readFile(`/proc/${child.pid}/status`, "utf8");
      }
      const field = (k: string) => new RegExp(`^${k}:[ \\t]*(.*)$`, "m").exec(status)?.[1]?.trim();
      assert.deepEqual(field("Uid")!.split(/\s+/).map(Number), [l.uid, l.uid, l.uid, l.uid]);
      assert.equal(field("Gid")!.split(/\s+/)[0], String(VMM_ID_BASE));
      assert.equal(field("Groups"), "");
      for (const k of ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"]) assert.equal(BigInt(`0x${field(k)}`), 0n, k);
      assert.equal(field("NoNewPrivs"), "1");
      const limits = await readFile(`/proc/${child.pid}/limits`, "utf8");
      assert.match(limits, /Max open files\s+1024\s+1024/);
      assert.match(limits, /Max processes\s+512\s+512/);
      assert.match(limits, /Max core file size\s+0\s+0/);
      const seen = (await readdir(`/proc/${child.pid}/root`)).sort();
      assert.ok(seen.includes("usr") && seen.includes("dev") && !seen.includes("etc") && !seen.includes("root"), seen.join(" "));
      assert.deepEqual((await readdir(`/proc/${child.pid}/root/dev/net`)), ["tun"]);
      assert.equal((await stat(`/proc/${child.pid}/root${dirOf(A)}`)).uid, l.uid, "its own directory is bound in");
      assert.equal(await readlink(`/proc/${child.pid}/cwd`), r, "cwd: the jail's root");
    } finally {
      child.kill("SIGKILL");
      await l.release();
    }
    // A failing step names itself on stderr.
    const bad = spawn(bin, ["--root", "/nonexistent-hutch-root", "--fstab", "/dev/null", "--uid", "2000001", "--gid", "2000000", "--nofile", "64", "--nproc", "64", "--", "true"], { stdio: ["ignore", "ignore", "pipe"] });
    let badErr = "";
    bad.stderr!.on("data", (b: Buffer) => (badErr += b.toString()));
    const code = await new Promise((res) => bad.once("exit", res));
    assert.equal(code, 126);
    assert.match(badErr, /^hutch-jailer: mount tmpfs on \/nonexistent-hutch-root: No such file or directory/);
  });

  test("hutch-jailer makes the tap in the netns and hands it over at a fixed fd; it goes with the process", async () => {
    const bin = await buildJailer(log);
    assert.ok(bin, "jailer/ builds");
    assert.equal((await VmmJail.create({ dataDir, netns: "unit", log, cgroups: false, jailer: false })).makesTaps, false);
    await assert.rejects(jail.prepare(spec(A, { tap: { names: ["hvx"], bridge: "br", alias: A } })), /no hutch-jailer/);
    const withJailer = await VmmJail.create({ dataDir, netns: "unit", log, cgroups: false, jailer: bin });
    assert.equal(withJailer.makesTaps, true);
    const suffix = process.pid.toString(36).slice(-4);
    const net = new HostNetwork({ nsName: `hutch-jt${suffix}`, bridge: `hjt${suffix}0`, hostVeth: `hjt${suffix}-h`, linkCidr: "169.254.215.0/30", cidr: "10.215.0.0/24", hostForwarding: false });
    const kids: ReturnType<typeof spawn>[] = [];
    // Two ids whose first tap names clash.
    const [C, D] = ["sb_01JAAAAAAAAAAAAAQRSTVWXYZ0", "sb_01JBBBBBBBBBBBBBQRSTVWXYZ0"];
    for (const id of [C, D]) await mkdir(dirOf(id), { recursive: true, mode: 0o700 });
    /** One jailed `sleep` holding sandbox `id`'s tap; resolves once it runs as its uid. */
    const launch = async (id: string) => {
      const l = await withJailer.prepare(spec(id, { readOnly: [], tap: net.tapSpec(id) }));
      assert.equal(l.tapFd, JAIL_TAP_FD);
      const argv = l.prefix(net.execPrefix());
      assert.deepEqual(argv.slice(0, 7), [bin, "--netns", net.netnsName, "--tap", `${tapName(id)},${fallbackTapName(id)}:${net.bridge}:${id}`, "--tap-fd", "8"]);
      const child = spawn(argv[0]!, [...argv.slice(1), "sleep", "30"], { env: l.env, stdio: ["ignore", "ignore", "pipe"] });
      kids.push(child);
      let err = "";
      child.stderr!.on("data", (b: Buffer) => (err += b.toString()));
      for (let i = 0; i < 100; i++) {
        assert.equal(child.exitCode, null, `jailer exited: ${err}`);
        if (/^Uid:\s+[1-9]/m.test(await readFile(`/proc/${child.pid}/status`, "utf8"))) return { child, lease: l };
        await new Promise((res) => setTimeout(res, 20));
      }
      throw new Error("the jailed program did not start");
    };
    try {
      await net.ensure();
      const a = await launch(C);
      const name = await net.heldTap(a.child.pid!, JAIL_TAP_FD);
      assert.equal(name, tapName(C));
      assert.equal(await readlink(`/proc/${a.child.pid}/fd/${JAIL_TAP_FD}`), "/dev/net/tun");
      assert.deepEqual((await readdir(`/proc/${a.child.pid}/root/dev`)).sort(), ["full", "null", "random", "urandom", "zero"], "no /dev/net/tun in the jail");
      const link = await new Promise<string>((res) => {
        const ip = spawn("ip", ["-n", net.netnsName, "-d", "link", "show", "dev", name]);
        let out = "";
        ip.stdout.on("data", (b: Buffer) => (out += b.toString()));
        ip.once("exit", () => res(out));
      });
      assert.match(link, new RegExp(`master ${net.bridge} `));
      assert.match(link, /,UP,/);
      assert.match(link, /tun type tap pi off vnet_hdr on persist off/);
      assert.match(link, new RegExp(`alias ${C}`));
      // The same first name held by a live process: the fallback.
      const b = await launch(D);
      assert.equal(await net.heldTap(b.child.pid!, JAIL_TAP_FD), fallbackTapName(D));
      assert.deepEqual((await net.list()).map((t) => `${t.name}=${t.sandboxId}`).sort(), [`${fallbackTapName(D)}=${D}`, `${tapName(C)}=${C}`].sort());
      // SIGKILL: the tap goes with its last holder, nobody deletes it.
      a.child.kill("SIGKILL");
      await new Promise((res) => a.child.once("exit", res));
      assert.deepEqual((await net.list()).map((t) => t.name), [fallbackTapName(D)]);
      await net.deleteTap(name); // held: nothing to run, no error
      await a.lease.release();
      b.child.kill("SIGKILL");
      await new Promise((res) => b.child.once("exit", res));
      assert.deepEqual(await net.list(), []);
      await b.lease.release();
    } finally {
      for (const k of kids) k.kill("SIGKILL");
      await net.teardown();
    }
  });

  test("frozen files shared by forks and templates are root's, group-readable (RAM group-writable)", async () => {
    const tpl = path.join(dataDir, "templates", "t1");
    await mkdir(tpl, { recursive: true, mode: 0o700 });
    for (const f of ["mem", "state", "disk"]) await writeFile(path.join(tpl, f), "x", { mode: 0o400 });
    for (const f of ["layer-1.qcow2", "mem.base", "state"]) await writeFile(path.join(dirOf(A), f), "x", { mode: 0o600 });
    await link(path.join(dirOf(A), "state"), path.join(dirOf(B), "state"));
    const l = await jail.prepare(spec(A, { shared: [tpl] }));
    const mode = async (f: string) => {
      const s = await stat(f);
      return [s.uid, s.gid, s.mode & 0o777];
    };
    assert.deepEqual(await mode(tpl), [0, VMM_ID_BASE, 0o750]);
    assert.deepEqual(await mode(path.join(tpl, "mem")), [0, VMM_ID_BASE, 0o660]);
    assert.deepEqual(await mode(path.join(tpl, "disk")), [0, VMM_ID_BASE, 0o440]);
    assert.deepEqual(await mode(path.join(dirOf(A), "layer-1.qcow2")), [0, VMM_ID_BASE, 0o440]);
    assert.deepEqual(await mode(path.join(dirOf(A), "mem.base")), [0, VMM_ID_BASE, 0o660]);
    assert.deepEqual(await mode(path.join(dirOf(A), "state")), [0, VMM_ID_BASE, 0o440], "hard-linked into B: not A's");
    await l.release();
  });

  test("with the RAM shim, shared RAM files are read-only and the jailed program opens them O_RDONLY", async () => {
    const bin = await buildJailer(log);
    assert.ok(bin, "jailer/ builds");
    const shim = roRamShim(bin);
    assert.ok(shim, "the shim is built beside the jailer");
    const withShim = await VmmJail.create({ dataDir, netns: "unit", log, cgroups: false, jailer: bin });
    const tpl = path.join(dataDir, "templates", "t2");
    await mkdir(tpl, { recursive: true, mode: 0o700 });
    const mem = path.join(tpl, "mem");
    await writeFile(mem, "template ram", { mode: 0o600 });
    await writeFile(path.join(dirOf(A), "mem.base"), "x", { mode: 0o600 });
    // Two candidates, as a spare QEMU has: a fork's mem.base and a template's mem.
    const l = await withShim.prepare(spec(A, { readOnly: [], shared: [tpl], roRam: [path.join(dirOf(A), "mem.base"), mem] }));
    const mode = async (f: string) => (await stat(f)).mode & 0o777;
    assert.equal(await mode(mem), 0o440, "no VMM uid may write the template's RAM");
    assert.equal(await mode(path.join(dirOf(A), "mem.base")), 0o440);
    assert.deepEqual(l.env, { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin", LD_PRELOAD: shim, HUTCH_RO_RAM: `${path.join(dirOf(A), "mem.base")}\n${mem}` });
    // What QEMU 7.2 does with a share=off RAM file, from inside the jail as the VM's uid:
    // open O_RDWR. The shim turns it into O_RDONLY; without it, EACCES.
    const probe = `import os, fcntl
fd = os.open(${JSON.stringify(mem)}, os.O_RDWR)
print("rdonly" if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY else "rw", os.read(fd, 64).decode())
try:
    os.write(fd, b"evil"); print("written")
except OSError as e:
    print("write refused")`;
    const runJailed = (env: NodeJS.ProcessEnv) => new Promise<{ code: number | null; out: string }>((resolve) => {
      const argv = l.prefix([]);
      const c = spawn(argv[0]!, [...argv.slice(1), "python3", "-c", probe], { env, stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      c.stdout!.on("data", (b: Buffer) => (out += b.toString()));
      c.stderr!.on("data", (b: Buffer) => (out += b.toString()));
      c.once("exit", (code) => resolve({ code, out }));
    });
    try {
      const withPreload = await runJailed(l.env);
      assert.equal(withPreload.code, 0, withPreload.out);
      assert.equal(withPreload.out.trim().split("\n").join(" | "), "rdonly template ram | write refused");
      const without = await runJailed({ PATH: l.env.PATH });
      assert.notEqual(without.code, 0);
      assert.match(without.out, /PermissionError/);
      assert.equal(await readFile(mem, "utf8"), "template ram");
    } finally {
      await l.release();
    }
  });

  test("a uid reserved with the tap is the launch's; a stale release leaves a newer launch alone", async () => {
    const uid = await jail.reserveUid(A);
    assert.equal(await jail.reserveUid(A), uid, "reserving twice keeps the uid");
    const first = await jail.prepare(spec(A));
    assert.equal(first.uid, uid);
    const second = await jail.prepare(spec(A)); // e.g. resumed before the first's exit event arrived
    await first.release();
    assert.equal(await jail.uidOf(A), uid, "the first launch's late release is a no-op");
    await second.release();
    assert.equal(await jail.uidOf(A), undefined);
  });

  test("reconcile removes the jails of VMs that are gone, keeps live ones", async () => {
    const other = await VmmJail.create({ dataDir, netns: "unit", log, cgroups: false, jailer: false }); // a previous server's
    await other.prepare(spec(A));
    await other.prepare(spec(B));
    await jail.reconcile(new Set([B]));
    assert.deepEqual(await records(), [`${B}.json`]);
    await jail.release(B);
    assert.deepEqual(await records(), []);
  });

  test("jailSpecFor exposes the kernel, initrd and image directories read-only", () => {
    const s = jailSpecFor({
      id: A, dir: dirOf(A), vcpu: 2, memMib: 512, accel: "tcg", binary: "/opt/qemu/bin/qemu-system-x86_64",
      kernel: { vmlinux: "/c/kernel/vmlinux", initrd: "/c/kernel/initrd.img" }, rootfsPath: "/c/rootfs/minimal-1.ext4",
    });
    assert.deepEqual(s.readOnly, ["/c/kernel", "/c/kernel", "/c/rootfs", "/opt/qemu/bin"]);
    assert.deepEqual(s.shared, []);
  });
});
