/**
 * The jailed VMM, seen from the host: every QEMU runs as a uid of its own
 * (not root, different per VM), without capabilities, with no_new_privs and
 * seccomp, under rlimits and a cgroup, chrooted to a view holding only its
 * own directory, the images (read-only) and a few devices. Its tap is made by
 * hutch-jailer and held open by QEMU (no /dev/net/tun in the jail), so it
 * goes with the process. Pause, resume and fork work under it, and nothing
 * of a jail outlives its VM.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import type { Sandbox } from "@nodeops-createos/sandbox";
import { netnsNames } from "../../src/runtime/network/netns-names.js";
import { JAIL_TAP_FD } from "../../src/runtime/qemu/vmm-jail-argv.js";
import { ramOwned, startServer, waitFor, type TestServer } from "./support/server.js";

const run = promisify(execFile);
const GID = 2_000_000;
const MINIMAL = { shape: "s-1vcpu-256mb", rootfs: "minimal:1", disk_mib: 1024 } as const;

/** Fields of /proc/<pid>/status. */
async function procStatus(pid: number): Promise<Map<string, string>> {
  const text = await readFile(`/proc/${pid}/status`, "utf8");
  return new Map(text.split("\n").filter(Boolean).map((l) => [l.slice(0, l.indexOf(":")), l.slice(l.indexOf(":") + 1).trim()]));
}

/** Soft limit of one line of /proc/<pid>/limits. */
async function limit(pid: number, name: string): Promise<string> {
  const line = (await readFile(`/proc/${pid}/limits`, "utf8")).split("\n").find((l) => l.startsWith(name));
  assert.ok(line, `no ${name} in /proc/${pid}/limits`);
  return line.slice(26).trim().split(/\s+/)[0]!;
}

/** Absolute directory of `pid`'s cgroup in v1 controller `c`. */
async function cgroupDir(pid: number, c: string): Promise<string> {
  const line = (await readFile(`/proc/${pid}/cgroup`, "utf8")).split("\n").find((l) => l.split(":")[1]?.split(",").includes(c));
  assert.ok(line, `no ${c} cgroup for ${pid}`);
  return join("/sys/fs/cgroup", c, line.split(":").slice(2).join(":"));
}

/** Runs `cmd` as `uid` (the VMM gid, no groups, no caps) inside the mount namespace and root of `pid`. */
async function asVmm(pid: number, uid: number, cmd: string): Promise<{ code: number; out: string }> {
  try {
    const r = await run("nsenter", ["-t", String(pid), "-m", "-r", "-w", "setpriv", "--reuid", String(uid), "--regid", String(GID), "--clear-groups", "--", "/bin/sh", "-c", cmd]);
    return { code: 0, out: r.stdout + r.stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, out: e.stdout + e.stderr };
  }
}

describe("jailed VMM (minimal:1)", () => {
  let server: TestServer;
  let a: Sandbox;
  let b: Sandbox;
  const dir = (id: string) => join(server.dataDir, "sandboxes", id);
  const pidOf = async (id: string) => Number((await readFile(join(dir(id), "qemu.pid"), "utf8")).trim());
  const jailFiles = async () => (await readdir(join(server.dataDir, "jail"))).filter((f) => f !== "root").sort();
  const tapOf = async (id: string) => (JSON.parse(await readFile(join(dir(id), "meta.json"), "utf8")) as { tap: string }).tap;
  const tapGone = async (tap: string) => run("ip", ["-n", server.netns, "link", "show", "dev", tap]).then(() => false, () => true);

  before(async () => {
    server = await startServer();
    [a, b] = await Promise.all([server.client.createSandbox(MINIMAL), server.client.createSandbox(MINIMAL)]);
  });
  after(async () => {
    await server?.dispose();
  });

  test("each QEMU runs as its own uid, without privileges, under rlimits and a cgroup", async () => {
    const uids: number[] = [];
    for (const sb of [a, b]) {
      const pid = await pidOf(sb.id);
      const st = await procStatus(pid);
      const [ruid, euid, suid, fsuid] = st.get("Uid")!.split(/\s+/).map(Number);
      assert.ok(ruid! > GID, `uid ${ruid} is in the reserved range, not root`);
      assert.deepEqual([euid, suid, fsuid], [ruid, ruid, ruid]);
      assert.equal(st.get("Gid")!.split(/\s+/)[0], String(GID));
      assert.equal(st.get("Groups"), "", "no supplementary groups");
      assert.equal(Number(`0x${st.get("CapEff")}`), 0, "CapEff");
      assert.equal(Number(`0x${st.get("CapPrm")}`), 0, "CapPrm");
      assert.equal(Number(`0x${st.get("CapBnd")}`), 0, "CapBnd");
      assert.equal(st.get("NoNewPrivs"), "1");
      assert.equal(st.get("Seccomp"), "2", "seccomp filter mode");
      assert.equal(await limit(pid, "Max open files"), "1024");
      assert.equal(await limit(pid, "Max processes"), "512");
      assert.equal(await limit(pid, "Max core file size"), "0");
      // The host here is cgroup v1 (CI's too); a v2 host puts the VM in <root>/hutch-<netns>/<id>.
      const mem = await cgroupDir(pid, "memory");
      assert.ok(mem.endsWith(`/hutch-${server.netns}/${sb.id}`), mem);
      assert.equal(Number(await readFile(join(mem, "memory.limit_in_bytes"), "utf8")), (256 + 512) * 1048576);
      assert.equal((await readFile(join(await cgroupDir(pid, "pids"), "pids.max"), "utf8")).trim(), "512");
      const cpu = await cgroupDir(pid, "cpu");
      assert.equal((await readFile(join(cpu, "cpu.cfs_quota_us"), "utf8")).trim(), "150000");
      // Its tap: made by hutch-jailer, held open by QEMU (not persistent, no owner), on the bridge; no tun device in the jail.
      const tap = await tapOf(sb.id);
      assert.match(await readFile(`/proc/${pid}/fdinfo/${JAIL_TAP_FD}`, "utf8"), new RegExp(`^iff:\\s+${tap}$`, "m"));
      const link = await run("ip", ["-n", server.netns, "-d", "link", "show", "dev", tap]);
      assert.match(link.stdout, new RegExp(`master ${netnsNames(server.netns).bridge} `));
      assert.match(link.stdout, /tun type tap pi off vnet_hdr on persist off/);
      assert.doesNotMatch(link.stdout, /\buser \d/);
      assert.ok(!existsSync(`/proc/${pid}/root/dev/net/tun`), "no /dev/net/tun in the jail");
      const own = await stat(dir(sb.id));
      assert.equal(own.uid, ruid, "its directory is its own");
      assert.equal(own.mode & 0o777, 0o700);
      uids.push(ruid!);
    }
    assert.notEqual(uids[0], uids[1], "two VMs, two uids");
    assert.equal((await a.sh("echo ok")).result.stdout.trim(), "ok");
  });

  test("a VMM sees only its own directory, the images read-only and no secrets", async () => {
    const pa = await pidOf(a.id);
    const ua = Number((await procStatus(pa)).get("Uid")!.split(/\s+/)[0]);
    const other = join(dir(b.id), "console.log");
    // Inside A's jail, as A's uid: its own files yes, B's directory does not exist.
    assert.equal((await asVmm(pa, ua, `test -w ${join(dir(a.id), "disk.img")} && echo own-ok`)).out.trim(), "own-ok");
    const seen = await asVmm(pa, ua, `cat ${other}`);
    assert.notEqual(seen.code, 0);
    assert.match(seen.out, /No such file/);
    // Of the data dir it sees its own directory only (no database, keys, other sandboxes).
    assert.equal((await asVmm(pa, ua, `ls -A ${server.dataDir}`)).out.trim(), "sandboxes");
    assert.equal((await asVmm(pa, ua, `ls -A ${join(server.dataDir, "sandboxes")}`)).out.trim(), a.id);
    assert.deepEqual((await asVmm(pa, ua, "ls -A /")).out.trim().split(/\s+/).sort(), ["bin", "dev", "lib", "lib64", "root", "sbin", "tmp", "usr"].filter((d) => d !== "tmp" || server.dataDir.startsWith("/tmp/")));
    for (const hidden of ["/etc/passwd", "/home", "/proc/1/environ"]) {
      assert.notEqual((await asVmm(pa, ua, `ls -d ${hidden}`)).code, 0, `${hidden} is not in the jail`);
    }
    const kernelDir = (await readdir("/proc/" + pa + "/root" + join(process.env.HUTCH_CACHE_DIR ?? "/root/.cache/hutch", "kernel"))).length;
    assert.ok(kernelDir > 0, "the kernel's directory is visible");
    const w = await asVmm(pa, ua, `: > ${join(process.env.HUTCH_CACHE_DIR ?? "/root/.cache/hutch", "kernel", "vmlinux")}`);
    assert.match(w.out, /Read-only file system/);
    // On the host, as A's uid, B's directory refuses it too (0700, B's uid).
    const host = await run("setpriv", ["--reuid", String(ua), "--regid", String(GID), "--clear-groups", "--", "ls", dir(b.id)]).catch((e: { stderr: string }) => e);
    assert.match((host as { stderr: string }).stderr, /Permission denied/);
    // QEMU's environment holds no secret of the server.
    const env = (await readFile(`/proc/${pa}/environ`, "utf8")).split("\0").filter(Boolean);
    assert.deepEqual(env.map((e) => e.split("=")[0]).filter((k) => k !== "PWD"), ["PATH"], "only PATH (and the shell's PWD)");
  });

  test("pause, resume and fork work jailed; a paused VM holds no cgroup or uid", async () => {
    await a.sh("echo before > /root/f.txt");
    const memA = await cgroupDir(await pidOf(a.id), "memory");
    await a.pause();
    await a.waitUntilPaused({ timeoutMs: 60_000 });
    // The first pause streamed its RAM; a jailed QEMU moves it into `mem` (own-ram.ts) and ends.
    await ramOwned(server, a.id);
    assert.ok(!existsSync(memA), "the cgroup went with the QEMU");
    assert.ok(!(await jailFiles()).some((f) => f.startsWith(a.id)), "no jail record while paused");
    const child = await a.fork();
    await a.resume();
    await a.waitUntilRunning({ timeoutMs: 60_000 });
    for (const sb of [a, child]) {
      assert.equal((await sb.sh("cat /root/f.txt")).result.stdout.trim(), "before");
      const st = await procStatus(await pidOf(sb.id));
      assert.ok(Number(st.get("Uid")!.split(/\s+/)[0]) > GID);
      assert.equal(st.get("Seccomp"), "2");
    }
    const ua = Number((await procStatus(await pidOf(a.id))).get("Uid")!.split(/\s+/)[0]);
    const uc = Number((await procStatus(await pidOf(child.id))).get("Uid")!.split(/\s+/)[0]);
    assert.notEqual(ua, uc, "the fork's child has a uid of its own");
    await child.sh("echo child > /root/f.txt");
    assert.equal((await a.sh("cat /root/f.txt")).result.stdout.trim(), "before", "the disks diverge");
    // SIGKILL of its QEMU: the tap went with the process (nothing deletes a held tap).
    const [cpid, ctap] = [await pidOf(child.id), await tapOf(child.id)];
    assert.equal(await tapGone(ctap), false);
    process.kill(cpid, "SIGKILL");
    await waitFor(async () => (existsSync(`/proc/${cpid}`) ? undefined : true), 5000, `VMM ${cpid} gone`);
    assert.equal(await tapGone(ctap), true, `tap ${ctap} gone with its QEMU`);
    await child.destroy();
  });

  test("destroy leaves no cgroup, jail record or VMM process", async (t) => {
    const memParent = join(await cgroupDir(await pidOf(a.id), "memory"), "..");
    for (const sb of [a, b]) {
      const mem = await cgroupDir(await pidOf(sb.id), "memory");
      const peak = Number(await readFile(join(mem, "memory.max_usage_in_bytes"), "utf8")) / 1048576;
      t.diagnostic(`${sb.id}: peak cgroup memory ${peak.toFixed(0)} MiB of ${256 + 512}`);
      assert.equal((await readFile(join(mem, "memory.failcnt"), "utf8")).trim(), "0", "the VMM never hit its memory limit");
    }
    const pids = await Promise.all([a, b].map((sb) => pidOf(sb.id)));
    const taps = await Promise.all([a, b].map((sb) => tapOf(sb.id)));
    await Promise.all([a.destroy(), b.destroy()]);
    const deadline = Date.now() + 10_000;
    while (existsSync(memParent) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    for (const tap of taps) assert.equal(await tapGone(tap), true, `tap ${tap} gone`);
    assert.ok(!existsSync(memParent), "the per-server cgroup parent went with its last VM");
    assert.deepEqual(await jailFiles(), []);
    for (const pid of pids) assert.ok(!existsSync(`/proc/${pid}`), `VMM ${pid} is gone`);
  });
});
