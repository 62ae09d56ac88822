/**
 * QemuRuntime with real VMs (minimal:1, TCG here), driven directly: no HTTP.
 * The network lives in a namespace of its own made for this test and torn
 * down at the end; the only traffic is a ping from inside it to the guest.
 * Images come from the shared cache (HUTCH_CACHE_DIR or ~/.cache/hutch).
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { ulid } from "ulid";
import { isRuntimeError } from "../../src/runtime/errors.js";
import type { Accel } from "../../src/runtime/host-info.js";
import { ImageStore, defaultCacheDir } from "../../src/runtime/images/image-store.js";
import { macForIp } from "../../src/runtime/network/cidr.js";
import { HostNetwork } from "../../src/runtime/network/host-network.js";
import { runCommand } from "../../src/runtime/network/run-command.js";
import { QemuRuntime, type RuntimeLogger } from "../../src/runtime/qemu/qemu-runtime.js";
import { isAlive } from "../../src/runtime/qemu/vm-process.js";
import type { MachineSpec } from "../../src/runtime/runtime.js";

const ROOT = path.resolve(fileURLToPath(import.meta.url), "../../..");
const IMAGE = "minimal:1";

const logLines: string[] = [];
const log: RuntimeLogger = {
  debug: () => {},
  info: (o, m) => logLines.push(`info ${m} ${JSON.stringify(o)}`),
  warn: (o, m) => logLines.push(`warn ${m} ${JSON.stringify(o)}`),
  error: (o, m) => logLines.push(`error ${m} ${JSON.stringify(o)}`),
};

let dataDir: string;
let images: ImageStore;
let network: HostNetwork;
let rt: QemuRuntime;
const runtimes: QemuRuntime[] = [];

function newRuntime(): QemuRuntime {
  const r = new QemuRuntime({ dataDir, images, network, log, accel: process.env.HUTCH_ACCEL as Accel | undefined });
  runtimes.push(r);
  return r;
}

function spec(n: number, over: Partial<MachineSpec> = {}): MachineSpec {
  const ip = `10.216.0.${10 + n}`;
  return {
    id: `sb_${ulid()}`,
    name: `rt-e2e-${n}`,
    vcpu: 2,
    memMib: 384,
    diskMib: 1024,
    rootfs: IMAGE,
    net: { ip, prefixLen: network.prefixLen, gateway: network.gateway, mac: macForIp(ip), dns: [] },
    envs: { HUTCH_E2E: "yes it works", SECOND: "2" },
    sshPubkeys: [],
    ...over,
  };
}

/** Runs a command in the VM and returns its stdout (asserts exit 0). */
async function run(r: QemuRuntime, id: string, cmd: string, args: string[] = [], env?: Record<string, string>): Promise<string> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const res = await r.exec(id, { cmd, args, ...(env ? { env } : {}) }, { onStdout: (c) => out.push(c), onStderr: (c) => err.push(c) });
  assert.equal(res.exitCode, 0, `${cmd} ${args.join(" ")}: exit ${res.exitCode} ${res.error ?? ""} ${Buffer.concat(err).toString()}`);
  return Buffer.concat(out).toString("utf8");
}

async function gone(r: QemuRuntime, id: string, pid: number, tap: string | undefined) {
  assert.equal(await isAlive(pid), false, "no VMM process");
  assert.equal(existsSync(path.join(dataDir, "sandboxes", id)), false, "no VM directory");
  const taps = await network.list();
  assert.ok(!taps.some((t) => t.sandboxId === id || t.name === tap), `no tap left: ${JSON.stringify(taps)}`);
  await assert.rejects(run(r, id, "true"), (e: unknown) => isRuntimeError(e, "not_running"));
}

async function tapOf(id: string): Promise<string | undefined> {
  return (await network.list()).find((t) => t.sandboxId === id)?.name;
}

before(async () => {
  dataDir = await mkdtemp("/tmp/hrt-");
  images = new ImageStore({ cacheDir: defaultCacheDir(), agentDir: path.join(ROOT, "agent") });
  await images.ensure([IMAGE]);
  network = new HostNetwork({
    nsName: "hutch-rt-e2e",
    bridge: "hrte2e0",
    hostVeth: "hrte2e-host",
    linkCidr: "169.254.216.0/30",
    cidr: "10.216.0.0/24",
    hostForwarding: false, // nothing in this test goes out: leave the host's sysctl alone
    log,
  });
  await network.ensure();
  rt = newRuntime();
});

after(async () => {
  // Whatever a failed test left running: reconcile with nothing wanted kills it all.
  await rt.reconcile([]).catch(() => {});
  for (const r of runtimes) await r.close();
  await network.teardown();
  await rm(dataDir, { recursive: true, force: true });
  if (process.env.HUTCH_E2E_LOG) console.log(logLines.join("\n"));
});

let vm1: MachineSpec;
let pid1 = 0;

test("create boots a VM with the spec's identity", async () => {
  vm1 = spec(1);
  const t0 = Date.now();
  const info = await rt.create(vm1);
  console.log(`# ${IMAGE} boot (create → agent ready): ${info.bootMs} ms, create total ${Date.now() - t0} ms, accel ${rt.accel}`);
  assert.equal(info.id, vm1.id);
  assert.ok(info.pid > 1 && (await isAlive(info.pid)));
  assert.ok(info.bootMs > 0);
  pid1 = info.pid;
  const dir = path.join(dataDir, "sandboxes", vm1.id);
  assert.ok(existsSync(path.join(dir, "disk.img")));
  assert.ok(existsSync(path.join(dir, "qmp.sock")) && existsSync(path.join(dir, "agent.sock")));
});

test("the guest runs its own kernel with the requested shape", async () => {
  const kernel = (await run(rt, vm1.id, "uname", ["-r"])).trim();
  assert.ok(kernel.length > 0);
  assert.notEqual(kernel, os.release());
  assert.equal((await run(rt, vm1.id, "hostname")).trim(), vm1.name);
  assert.equal((await run(rt, vm1.id, "nproc")).trim(), String(vm1.vcpu));
  const meminfo = await run(rt, vm1.id, "cat", ["/proc/meminfo"]);
  const totalKib = Number(/MemTotal:\s+(\d+) kB/.exec(meminfo)?.[1]);
  assert.ok(totalKib <= vm1.memMib * 1024 && totalKib > vm1.memMib * 1024 * 0.8, `MemTotal ${totalKib} kB for ${vm1.memMib} MiB`);
});

test("the guest has its address and MAC, and answers a ping from inside the netns", async () => {
  const addr = await run(rt, vm1.id, "ip", ["addr"]);
  assert.match(addr, new RegExp(`inet ${vm1.net.ip.replaceAll(".", "\\.")}/${vm1.net.prefixLen}`));
  assert.match(addr, new RegExp(vm1.net.mac));
  const ping = await runCommand("ip", ["netns", "exec", network.netnsName, "ping", "-c", "1", "-W", "3", vm1.net.ip], { allowFail: true });
  assert.equal(ping.code, 0, ping.stdout + ping.stderr);
});

test("envs reach exec, with per-exec env on top", async () => {
  const out = await run(rt, vm1.id, "sh", ["-c", 'echo "$HUTCH_E2E|$SECOND|$EXTRA"'], { EXTRA: "more" });
  assert.equal(out.trim(), "yes it works|2|more");
});

test("file round trip", async () => {
  const data = randomBytes(300 * 1024);
  await rt.writeFile(vm1.id, "/root/sub/dir/blob.bin", Readable.from([data.subarray(0, 1000), data.subarray(1000)]));
  const chunks: Buffer[] = [];
  for await (const c of await rt.readFile(vm1.id, "/root/sub/dir/blob.bin")) chunks.push(c as Buffer);
  assert.ok(Buffer.concat(chunks).equals(data));
  await assert.rejects(rt.readFile(vm1.id, "/root/nope"), (e: unknown) => isRuntimeError(e, "not_found"));
});

test("reconcile from a fresh runtime finds the VM; exec still works; strays are removed", async () => {
  await rt.close();
  // A directory of a VM the store does not know: reconcile must remove it.
  const stray = path.join(dataDir, "sandboxes", `sb_${ulid()}`);
  await mkdir(stray);
  await writeFile(path.join(stray, "qemu.pid"), "999999\n");
  rt = newRuntime();
  const found = await rt.reconcile([vm1.id, `sb_${ulid()}`]);
  assert.deepEqual(found, [{ id: vm1.id, pid: pid1 }]);
  assert.equal(existsSync(stray), false);
  assert.equal((await run(rt, vm1.id, "hostname")).trim(), vm1.name);
  assert.equal((await run(rt, vm1.id, "sh", ["-c", "echo $HUTCH_E2E"])).trim(), "yes it works");
});

test("destroy leaves no process, directory or tap, and is idempotent", async () => {
  const tap = await tapOf(vm1.id);
  assert.ok(tap);
  let exits = 0;
  rt.onExit(() => exits++);
  await rt.destroy(vm1.id);
  await gone(rt, vm1.id, pid1, tap);
  await rt.destroy(vm1.id);
  await rt.destroy(`sb_${ulid()}`);
  assert.equal(exits, 0, "destroy is not an unexpected exit");
});

test("a VMM killed with SIGKILL is reported once within 2 s and cleaned up", async () => {
  const s = spec(2, { vcpu: 1, memMib: 256 });
  const info = await rt.create(s);
  const tap = await tapOf(s.id);
  const exits: [string, string][] = [];
  rt.onExit((id, reason) => exits.push([id, reason]));
  const t0 = Date.now();
  process.kill(info.pid, "SIGKILL");
  while (exits.length === 0 && Date.now() - t0 < 2000) await new Promise((r) => setTimeout(r, 20));
  const took = Date.now() - t0;
  console.log(`# SIGKILL noticed and cleaned up after ${took} ms`);
  assert.equal(exits.length, 1, "onExit called");
  assert.ok(took < 2000, `noticed after ${took} ms`);
  assert.equal(exits[0]![0], s.id);
  assert.match(exits[0]![1], /SIGKILL|gone/);
  await gone(rt, s.id, info.pid, tap);
  await new Promise((r) => setTimeout(r, 600));
  assert.equal(exits.length, 1, "called once");
});

test("a failed create leaves nothing behind", async () => {
  const s = spec(3, { rootfs: "nonexistent:9" });
  await assert.rejects(rt.create(s), (e: unknown) => isRuntimeError(e, "boot_failed"));
  assert.equal(existsSync(path.join(dataDir, "sandboxes", s.id)), false);
  assert.equal(await tapOf(s.id), undefined);
  await assert.rejects(rt.create(spec(4, { memMib: rt.capacity().memMib + 1 })), (e: unknown) => isRuntimeError(e, "no_capacity"));
});

test("a VMM that dies during boot fails create at once, with its output in the error", async () => {
  // A base image path that does not exist: QEMU refuses to start.
  const missing = path.join(dataDir, "no-such-image.ext4");
  class BrokenImages extends ImageStore {
    override rootfs(): { path: string } {
      return { path: missing };
    }
  }
  const broken = new QemuRuntime({
    dataDir,
    images: new BrokenImages({ cacheDir: defaultCacheDir(), agentDir: path.join(ROOT, "agent") }),
    network,
    log,
    accel: process.env.HUTCH_ACCEL as Accel | undefined,
  });
  runtimes.push(broken);
  const s = spec(5, { vcpu: 1, memMib: 256 });
  const t0 = Date.now();
  await assert.rejects(broken.create(s), (e: unknown) => {
    assert.ok(isRuntimeError(e, "boot_failed"), String(e));
    assert.match(e.message, /QEMU exited with code 1/);
    assert.match(e.message, /no-such-image\.ext4/, "QEMU's own message is in the error");
    return true;
  });
  assert.ok(Date.now() - t0 < 10_000, "did not wait for the agent timeout");
  assert.equal(existsSync(path.join(dataDir, "sandboxes", s.id)), false);
  assert.equal(await tapOf(s.id), undefined);
});

test("images and capacity", async () => {
  const { images: list, default: def } = await rt.images();
  assert.ok(list.some((i) => i.name === IMAGE));
  assert.equal(def, images.defaultImage);
  const cap = rt.capacity();
  assert.equal(cap.vcpus, os.cpus().length);
  assert.ok(cap.memMib > 0 && cap.memMib < os.totalmem() / 1048576);
});
