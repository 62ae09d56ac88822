/**
 * Snapshots end to end (issue 4), real VMs through the real server and the
 * official SDK: template creates and the warm pool, pause/resume/fork with
 * memory (a background counter, /dev/shm), identity of clones (name, IP,
 * envs, distinct random bytes), status codes and no-op cases, auto-pause,
 * and a server SIGKILL in the middle of a pause and of a fork.
 *
 * minimal:1 on s-1vcpu-256mb with the default disk: the shape whose template
 * the server builds at start (HUTCH_POOL_ROOTFS=minimal:1).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readdir, readFile, readlink, stat } from "node:fs/promises";
import { join } from "node:path";
import type { Sandbox } from "@nodeops-createos/sandbox";
import { api, pidsMentioning, ramOwned, startServer, templateBuilt, waitFor, type TestServer } from "./support/server.js";

const SHAPE = "s-1vcpu-256mb";
const ROOTFS = "minimal:1";
const TEMPLATE = "minimal-1_1c256m10240d";

/** A counter in the background (its own session: it outlives the exec) writing /tmp/count every 100 ms. */
const COUNTER = "setsid sh -c 'i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done' </dev/null >/dev/null 2>&1 &";

/** A well-formed OpenSSH ed25519 public key (random, nobody holds its private half). */
function sshKey(comment: string): string {
  const u32 = (n: number) => Buffer.from([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]);
  const blob = Buffer.concat([u32(11), Buffer.from("ssh-ed25519"), u32(32), randomBytes(32)]);
  return `ssh-ed25519 ${blob.toString("base64")} ${comment}`;
}

async function count(sb: Sandbox): Promise<number> {
  return Number((await sb.sh("cat /tmp/count")).result.stdout.trim());
}

async function status(server: TestServer, id: string): Promise<string> {
  return (await api(server, "GET", `/v1/sandboxes/${id}`)).json.data.status;
}

async function waitStatus(server: TestServer, id: string, want: string, timeoutMs = 60_000): Promise<void> {
  await waitFor(async () => ((await status(server, id)) === want ? true : undefined), timeoutMs, `${id} ${want}`);
}

async function templateReady(server: TestServer): Promise<string> {
  return templateBuilt(server.dataDir, TEMPLATE);
}

/** Access modes (O_ACCMODE of /proc/PID/fdinfo) of the descriptors sandbox `id`'s QEMU holds on `file`. */
async function openModes(server: TestServer, id: string, file: string): Promise<number[]> {
  const pid = Number((await readFile(join(server.dataDir, "sandboxes", id, "qemu.pid"), "utf8")).trim());
  const modes: number[] = [];
  for (const fd of await readdir(`/proc/${pid}/fd`)) {
    const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => "");
    if (!target.endsWith(file)) continue;
    const flags = /^flags:\s+([0-7]+)$/m.exec(await readFile(`/proc/${pid}/fdinfo/${fd}`, "utf8"))![1]!;
    modes.push(parseInt(flags, 8) & 3);
  }
  return modes;
}

/** The argv of sandbox (or spare) `id`'s QEMU. */
async function qemuArgv(server: TestServer, id: string): Promise<string[]> {
  const pid = Number((await readFile(join(server.dataDir, "sandboxes", id, "qemu.pid"), "utf8")).trim());
  return (await readFile(`/proc/${pid}/cmdline`, "utf8")).split("\0");
}

/** Ids of spare QEMUs the server reported ready (spare-pool.ts), in order; of one shape's key only with `key`. */
function spareIds(server: TestServer, key?: string): string[] {
  return [...server.output().matchAll(/"id":"(sb_[0-9A-Z]+)","key":"([^"]+)","msg":"spare QEMU ready"/g)]
    .filter((m) => key === undefined || m[2] === key)
    .map((m) => m[1]!);
}

describe("snapshots: templates, pause, resume, fork (minimal:1)", () => {
  let server: TestServer;
  let sb: Sandbox;
  let idle: Sandbox;
  let idleSince = 0;
  let templateDir = "";

  before(async () => {
    server = await startServer({ HUTCH_TEMPLATES: "on", HUTCH_POOL_ROOTFS: ROOTFS, HUTCH_POOL_SIZE: "1", HUTCH_AUTO_PAUSE_CHECK_MS: "1000" });
    templateDir = await templateReady(server);
    await waitFor(async () => (server.output().includes("warm VM ready") ? true : undefined), 120_000, "warm VM");
    await waitFor(async () => spareIds(server).at(-1), 60_000, "a spare QEMU");
    // On its new data dir the first spare comes before any sandbox directory: it must start all the same.
    assert.doesNotMatch(server.output(), /spare QEMU start failed/);
    sb = await server.client.createSandbox({ shape: SHAPE, rootfs: ROOTFS, name: "snap-src", envs: { WHO: "parent" } });
    // Auto-pause set live by PATCH; checked at the end of the suite (≥ 60 s later).
    idle = await server.client.createSandbox({ shape: SHAPE, rootfs: ROOTFS });
    await idle.setAutoPause(60);
    idleSince = Date.now();
  });
  after(async () => {
    await server?.dispose();
  });

  test("creates restore the template: each clone has its own name, IP and random bytes", async () => {
    assert.equal((await sb.sh("hostname")).result.stdout.trim(), "snap-src");
    assert.equal((await sb.sh("echo $WHO")).result.stdout.trim(), "parent");
    const boxes = [sb, idle, await server.client.createSandbox({ shape: SHAPE, rootfs: ROOTFS })];
    const ips = new Set<string>();
    const rand = new Set<string>();
    for (const b of boxes) {
      if (b === idle) idleSince = Date.now() + 60_000; // set below, after its last exec
      const addr = (await b.sh("ip -4 -o addr show dev eth0")).result.stdout;
      assert.ok(addr.includes(`${b.data.ip}/`), `${b.id} has its IP ${b.data.ip}: ${addr}`);
      ips.add(String(b.data.ip));
      const mac = (await b.sh("cat /sys/class/net/eth0/address")).result.stdout.trim();
      assert.notEqual(mac, "02:fc:00:00:00:01", "not the template's MAC");
      rand.add((await b.sh("head -c 16 /dev/urandom | od -An -tx1")).result.stdout.trim());
      if (b === idle) idleSince = Date.now(); // its last activity
    }
    assert.equal(ips.size, boxes.length);
    assert.equal(rand.size, boxes.length, `distinct /dev/urandom bytes: ${[...rand].join(" | ")}`);
    // The first create took the warm VM, the others restored the template.
    assert.match(server.output(), /"how":"pool"[^\n]*VM started from snapshot/);
    // The warm VM waited with the address held for it, which its sandbox kept (no network change at the hand-over).
    assert.match(server.output(), new RegExp(`"ip":"${String(sb.data.ip).replaceAll(".", "\\.")}"[^\n]*"msg":"warm VM ready"`));
    assert.match(server.output(), /"how":"template"[^\n]*VM started from snapshot/);
    // The second create (the pool empty) restored the template in the spare QEMU the server kept.
    assert.ok(spareIds(server).includes(idle.id), "it got the spare's id");
    assert.ok((await qemuArgv(server, idle.id)).includes("--preconfig"), "and runs in the spare QEMU");
    if (process.getuid?.() === 0) {
      // Jailed (as root): every clone maps the template's RAM copy-on-write
      // through a read-only descriptor, and no VMM uid may write the file.
      const mem = join(templateDir, "mem");
      assert.equal((await stat(mem)).mode & 0o777, 0o440);
      for (const b of boxes) assert.deepEqual(await openModes(server, b.id, "/mem"), [0], `${b.id}: one O_RDONLY descriptor on the template's RAM`);
    }
    await boxes[2]!.destroy();
  });

  test("pause and resume: status codes, no-ops, memory and processes carry on", async () => {
    await sb.sh(COUNTER);
    await sb.sh("echo shm-data > /dev/shm/keep");
    await new Promise((r) => setTimeout(r, 500));
    const before = await count(sb);
    assert.ok(before > 0);

    const noop = await api(server, "POST", `/v1/sandboxes/${sb.id}/resume`);
    assert.equal(noop.status, 200, "resume of a running sandbox is a no-op");
    assert.equal(noop.json.data.status, "running");

    const p = await api(server, "POST", `/v1/sandboxes/${sb.id}/pause`);
    assert.equal(p.status, 202);
    assert.deepEqual(p.json.data, { id: sb.id, status: "pausing" });
    assert.ok(Number(p.headers.get("x-poll-after")) > 0, "X-Poll-After");
    await sb.waitUntilPaused({ timeoutMs: 60_000 });
    const paused = (await api(server, "GET", `/v1/sandboxes/${sb.id}`)).json.data;
    assert.equal(paused.status, "paused");
    assert.ok(paused.paused_at);
    // A clone's first pause streams its RAM; the server then moves it into a
    // file of the sandbox's own in the background (own-ram.ts), and that QEMU exits too.
    const dir = join(server.dataDir, "sandboxes", sb.id);
    await ramOwned(server, sb.id);
    assert.ok((await stat(join(dir, "state"))).size < 1024 * 1024, "the stream became device state only");
    assert.equal((await stat(join(dir, "mem"))).size, 256 * 1048576);
    assert.equal((await pidsMentioning(dir)).length, 0, "no QEMU while paused");

    const again = await api(server, "POST", `/v1/sandboxes/${sb.id}/pause`);
    assert.equal(again.status, 200);
    assert.equal(again.json.data.status, "paused");
    const ex = await api(server, "POST", `/v1/sandboxes/${sb.id}/exec`, { cmd: "true" });
    assert.equal(ex.status, 409, "exec on paused");
    const fl = await api(server, "GET", `/v1/sandboxes/${sb.id}/files?path=/etc/hostname`);
    assert.equal(fl.status, 409, "files on paused");
    // Keys added while paused reach the guest with the resume.
    const key = sshKey("added-while-paused");
    assert.equal((await api(server, "POST", `/v1/sandboxes/${sb.id}/ssh-pubkeys`, { keys: [key] })).status, 200);

    const r = await api(server, "POST", `/v1/sandboxes/${sb.id}/resume`);
    assert.equal(r.status, 202);
    assert.deepEqual(r.json.data, { id: sb.id, status: "resuming" });
    await sb.waitUntilRunning({ timeoutMs: 60_000 });
    const view = (await api(server, "GET", `/v1/sandboxes/${sb.id}`)).json.data;
    assert.ok(view.last_resumed_at);
    assert.equal(view.ip, sb.data.ip);
    assert.equal(view.name, "snap-src");
    const after1 = await count(sb);
    assert.ok(after1 >= before, `counter went on from ${before} (now ${after1})`);
    await new Promise((r) => setTimeout(r, 600));
    assert.ok((await count(sb)) > after1, "the counter still counts after resume");
    assert.equal((await sb.sh("cat /dev/shm/keep")).result.stdout.trim(), "shm-data");
    assert.equal((await sb.sh("hostname")).result.stdout.trim(), "snap-src");
    assert.equal((await sb.sh("cat /root/.ssh/authorized_keys")).result.stdout, `${key}\n`);

    const notPaused = await api(server, "POST", `/v1/sandboxes/${sb.id}/fork`, {});
    assert.equal(notPaused.status, 409, "fork of a running sandbox");
  });

  test("fork: the child has the memory and disk, its own identity, and parent and child diverge", async () => {
    await sb.sh("echo before-fork > /root/shared.txt");
    await sb.pause();
    await sb.waitUntilPaused({ timeoutMs: 60_000 });
    // The child starts in the spare QEMU the server keeps (HUTCH_SPARES, default 1): its id is the spare's.
    const spare = await waitFor(async () => spareIds(server).at(-1), 60_000, "a spare QEMU");
    const child = await sb.fork({ envs: { WHO: "child" } });
    assert.equal(child.id, spare, "the child has the spare's id");
    assert.ok((await qemuArgv(server, child.id)).includes("--preconfig"), "the child runs in the spare QEMU");
    const cv = (await api(server, "GET", `/v1/sandboxes/${child.id}`)).json.data;
    assert.notEqual(child.id, sb.id);
    assert.equal(cv.forked_from, sb.id);
    assert.notEqual(cv.ip, sb.data.ip);
    assert.notEqual(cv.name, "snap-src");
    assert.equal(cv.status, "running");
    assert.equal(await status(server, sb.id), "paused", "the source is paused again");

    assert.equal((await child.sh("hostname")).result.stdout.trim(), cv.name);
    assert.equal((await child.sh("echo $WHO")).result.stdout.trim(), "child");
    const addr = (await child.sh("ip -4 -o addr show dev eth0")).result.stdout;
    assert.ok(addr.includes(`${cv.ip}/`), addr);
    const c0 = await count(child);
    await new Promise((r) => setTimeout(r, 600));
    assert.ok((await count(child)) > c0, "the counter counts inside the fork");
    assert.equal((await child.sh("cat /dev/shm/keep")).result.stdout.trim(), "shm-data");
    assert.equal((await child.sh("cat /root/shared.txt")).result.stdout.trim(), "before-fork");

    await sb.resume();
    await sb.waitUntilRunning({ timeoutMs: 60_000 });
    await sb.sh("echo parent > /root/p.txt");
    await child.sh("echo child > /root/c.txt");
    assert.equal((await sb.sh("cat /root/c.txt 2>&1 || echo missing")).result.stdout.trim().split("\n").at(-1), "missing");
    assert.equal((await child.sh("cat /root/p.txt 2>&1 || echo missing")).result.stdout.trim().split("\n").at(-1), "missing");
    // Nothing changed while paused: envs and keys are as they were.
    assert.equal((await sb.sh("echo $WHO")).result.stdout.trim(), "parent");
    assert.match((await sb.sh("cat /root/.ssh/authorized_keys")).result.stdout, / added-while-paused\n$/);

    // A paused child on request; forking the same source again works.
    await sb.pause();
    await sb.waitUntilPaused({ timeoutMs: 60_000 });
    const second = await sb.fork({ start_paused: true });
    assert.equal(await status(server, second.id), "paused");
    assert.ok(!spareIds(server).includes(second.id), "a paused child claims no spare");
    await second.resume();
    await second.waitUntilRunning({ timeoutMs: 60_000 });
    assert.ok(!(await qemuArgv(server, second.id)).includes("--preconfig"), "its resume started a QEMU of its own");
    assert.equal((await second.sh("cat /root/p.txt")).result.stdout.trim(), "parent");
    await sb.resume();
    await sb.waitUntilRunning({ timeoutMs: 60_000 });
    await Promise.all([child.destroy(), second.destroy()]);
  });

  test("a fork of another shape makes the server keep a spare of that shape: the next fork's child starts in it", async () => {
    const key = `${ROOTFS}/1c/512m`;
    assert.deepEqual(spareIds(server, key), [], "no spare of this shape before a fork asked");
    const src = await server.client.createSandbox({ shape: "s-1vcpu-512mb", rootfs: ROOTFS });
    await src.sh("echo kept > /root/k.txt");
    await src.pause();
    await src.waitUntilPaused({ timeoutMs: 60_000 });
    const first = await src.fork();
    assert.ok(!(await qemuArgv(server, first.id)).includes("--preconfig"), "the first fork of the shape starts a QEMU of its own");
    const spare = await waitFor(async () => spareIds(server, key).at(-1), 60_000, "a spare of the forked shape");
    await waitStatus(server, src.id, "paused");
    const second = await src.fork();
    assert.equal(second.id, spare, "the next child has the spare's id");
    assert.ok((await qemuArgv(server, second.id)).includes("--preconfig"), "and runs in the spare QEMU");
    assert.equal((await second.sh("cat /root/k.txt; hostname")).result.stdout.trim(), `kept\n${second.data.name}`);
    await Promise.all([first.destroy(), second.destroy(), src.destroy()]);
  });

  test("auto-pause pauses an idle sandbox after its timeout (PATCHed live)", async () => {
    await idle.waitUntilPaused({ timeoutMs: Math.max(0, 60_000 - (Date.now() - idleSince)) + 30_000 });
    const pausedAt = Date.parse((await api(server, "GET", `/v1/sandboxes/${idle.id}`)).json.data.paused_at);
    const idleMs = pausedAt - idleSince;
    assert.ok(idleMs >= 59_000 && idleMs < 80_000, `paused after ${idleMs} ms idle`);
  });
});

describe("snapshots: a server SIGKILL mid-pause, mid-fork and mid-owning", () => {
  let server: TestServer;

  before(async () => {
    server = await startServer({ HUTCH_TEMPLATES: "on", HUTCH_POOL_ROOTFS: ROOTFS });
    await templateReady(server);
  });
  after(async () => {
    await server?.dispose();
  });

  /**
   * Every sandbox settled, each running one has one QEMU, nothing else runs
   * or lingers (a paused one's RAM may be being owned again: that QEMU ends).
   */
  async function consistent(): Promise<Array<{ id: string; status: string }>> {
    const rows: Array<{ id: string; status: string }> = (await api(server, "GET", "/v1/sandboxes?limit=100")).json.data.data;
    for (const r of rows) assert.ok(["running", "paused", "failed", "destroyed"].includes(r.status), `${r.id} settled: ${r.status}`);
    const running = rows.filter((r) => r.status === "running");
    const live = new Set(rows.filter((r) => r.status === "running" || r.status === "paused").map((r) => r.id));
    // Besides the sandboxes: the restarted server's spare QEMU (HUTCH_SPARES=1), in a directory of its own.
    const settled = await waitFor(async () => {
      const qemus = await pidsMentioning(join(server.dataDir, "sandboxes"));
      const extra = (await readdir(join(server.dataDir, "sandboxes"))).filter((d) => !live.has(d));
      const spares = extra.filter((d) => spareIds(server).includes(d));
      return extra.length === spares.length && spares.length <= 1 && qemus.length === running.length + spares.length ? spares : undefined;
    }, 30_000, `one QEMU per running sandbox (${running.length}) and spare, no other directory`);
    for (const d of settled) {
      const argv = () => qemuArgv(server, d).catch((): string[] => []);
      await waitFor(async () => (await argv()).includes("--preconfig") || undefined, 5000, `${d} is a spare QEMU`);
    }
    return rows;
  }

  async function usable(id: string): Promise<void> {
    const sb = await server.client.getSandbox(id);
    if (sb.status === "paused") {
      await sb.resume();
      await sb.waitUntilRunning({ timeoutMs: 60_000 });
    }
    assert.equal((await sb.sh("echo ok")).result.stdout.trim(), "ok");
  }

  test("killed mid-pause, then mid-fork: everything settles and works", async () => {
    const a = await server.client.createSandbox({ shape: SHAPE, rootfs: ROOTFS });
    await a.sh(COUNTER);
    const p = await api(server, "POST", `/v1/sandboxes/${a.id}/pause`);
    assert.equal(p.status, 202);
    await new Promise((r) => setTimeout(r, 30));
    await server.kill();
    await server.restart();
    let rows = await consistent();
    assert.ok(["running", "paused"].includes(rows.find((r) => r.id === a.id)!.status));
    await usable(a.id);
    assert.ok((await count(a)) > 0, "the counter survived");

    await a.pause();
    await a.waitUntilPaused({ timeoutMs: 60_000 });
    const fork = fetch(`${server.url}/v1/sandboxes/${a.id}/fork`, {
      method: "POST",
      headers: { "x-api-key": server.apiKey, "content-type": "application/json" },
      body: "{}",
    }).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 150));
    await server.kill();
    await fork;
    await server.restart();
    rows = await consistent();
    assert.equal(rows.find((r) => r.id === a.id)!.status, "paused", "the source is paused");
    for (const r of rows.filter((x) => x.status === "running" || x.status === "paused")) await usable(r.id);
    const tmp = (await readdir(join(server.dataDir, "sandboxes"))).filter((d) => d.includes("fork-tmp"));
    assert.deepEqual(tmp, []);

    // A fresh clone's first pause streams its RAM; the server is killed while
    // a QEMU moves that RAM into the sandbox's own file.
    const b = await server.client.createSandbox({ shape: SHAPE, rootfs: ROOTFS });
    await b.sh(COUNTER);
    await b.pause();
    await b.waitUntilPaused({ timeoutMs: 60_000 });
    const dir = join(server.dataDir, "sandboxes", b.id);
    await waitFor(async () => ((await pidsMentioning(dir)).length > 0 ? true : undefined), 10_000, "the owning's QEMU");
    await new Promise((r) => setTimeout(r, 200));
    await server.kill();
    await server.restart();
    rows = await consistent();
    assert.equal(rows.find((r) => r.id === b.id)!.status, "paused");
    // Reconcile finished or undid the owning, then queued it again: it completes.
    await ramOwned(server, b.id);
    const leftovers = (await readdir(dir)).filter((f) => f === "mem.owning" || f === "state.owned");
    assert.deepEqual(leftovers, [], "nothing of the killed owning is left");
    await usable(b.id);
    const c0 = await count(b);
    await new Promise((r) => setTimeout(r, 600));
    assert.ok((await count(b)) > c0, "the counter survived");
  });
});
