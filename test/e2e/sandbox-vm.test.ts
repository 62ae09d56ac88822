/**
 * Real VMs through the real server and the official SDK: what a user of
 * `@nodeops-createos/sandbox` sees. Boots minimal:1 (fast) for most checks and
 * devbox:1 (the default image) once.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { release } from "node:os";
import { join } from "node:path";
import { Sandbox } from "@nodeops-createos/sandbox";
import { api, pidsMentioning, startServer, waitFor, type TestServer } from "./support/server.js";

const SHAPE = "s-1vcpu-256mb";

describe("sandboxes are real VMs (minimal:1)", () => {
  let server: TestServer;
  let sb: Sandbox;

  before(async () => {
    server = await startServer();
    sb = await server.client.createSandbox({
      shape: SHAPE,
      rootfs: "minimal:1",
      name: "e2e-box",
      disk_mib: 2048,
      envs: { GREETING: "hello from envs", OTHER: "x" },
    });
  });
  after(async () => {
    await server?.dispose();
  });

  test("the create response is the seed's, and the sandbox is running", async () => {
    const d = sb.data as any;
    assert.match(d.id, /^sb_[0-9A-HJKMNP-TV-Z]{26}$/);
    assert.equal(d.name, "e2e-box");
    assert.equal(d.shape, SHAPE);
    assert.equal(d.rootfs, "minimal:1");
    assert.equal(d.vcpu, 1);
    assert.equal(d.mem_mib, 256);
    assert.equal(d.disk_mib, 2048);
    assert.equal(typeof d.spawn_ms, "number");
    assert.ok(d.spawn_ms > 0);
    assert.equal(d.bandwidth_quota_bytes, 5 * 1024 ** 3);
    assert.match(d.ip, /^\d+\.\d+\.\d+\.\d+$/);
    const view = await server.client.getSandbox(sb.id);
    assert.equal(view.status, "running");
    assert.deepEqual((view.data as any).envs.sort(), ["GREETING", "OTHER"]);
    assert.ok(!JSON.stringify(view.data).includes("hello from envs"), "env values never come back");
  });

  test("it runs its own kernel, with the sandbox's name, shape and disk", async () => {
    const uname = await sb.sh("uname -r");
    assert.notEqual(uname.result.stdout.trim(), release(), "guest kernel differs from the host's");
    assert.equal((await sb.sh("hostname")).result.stdout.trim(), "e2e-box");
    assert.equal((await sb.sh("nproc")).result.stdout.trim(), "1");
    const memKb = Number(/MemTotal:\s+(\d+)/.exec((await sb.sh("cat /proc/meminfo")).result.stdout)?.[1]);
    assert.ok(memKb > 200 * 1024 && memKb <= 256 * 1024, `MemTotal ${memKb} kB for a 256 MiB shape`);
    const df = (await sb.sh("df -k / | tail -n 1")).result.stdout.trim().split(/\s+/);
    const sizeMib = Number(df[1]) / 1024;
    assert.ok(sizeMib > 2048 * 0.85 && sizeMib <= 2048, `df / says ${sizeMib} MiB for disk_mib 2048`);
    await sb.sh("echo writable > /etc/probe && cat /etc/probe");
  });

  test("the guest's interface has the IP the API reports", async () => {
    const out = (await sb.sh("ip -4 addr")).result.stdout;
    assert.ok(out.includes(`inet ${sb.ip}/`), `ip addr shows ${sb.ip}:\n${out}`);
    // IPv4 only on the network (the bridge and firewall are IPv4); lo keeps ::1.
    const v6 = (await sb.sh("cat /proc/sys/net/ipv6/conf/eth0/disable_ipv6; ip -6 addr show dev eth0 | wc -l; ip -6 addr show dev lo")).result.stdout;
    const [off, lines] = v6.split("\n");
    assert.equal(off, "1", `eth0 has IPv6 off:\n${v6}`);
    assert.equal(lines, "0", `eth0 has no IPv6 address:\n${v6}`);
    assert.match(v6, /inet6 ::1\//, `lo keeps ::1:\n${v6}`);
    const bySdk = await server.client.getSandboxByIP(sb.ip!);
    assert.equal(bySdk.id, sb.id);
  });

  test("sandbox envs reach every exec", async () => {
    assert.equal((await sb.sh("echo $GREETING")).result.stdout, "hello from envs\n");
    const r = await api(server, "POST", `/v1/sandboxes/${sb.id}/exec`, { cmd: "sh", args: ["-c", "echo $OTHER"], env: { OTHER: "override" } });
    assert.equal(r.status, 200);
    assert.equal(r.json.data.result.stdout, "override\n");
    const bad = await api(server, "POST", `/v1/sandboxes/${sb.id}/exec`, { cmd: "true", env: { UNDECLARED: "1" } });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.status, "fail");
  });

  test("exit codes, stderr and a missing binary", async () => {
    const r = await sb.runCommand("sh", ["-c", "echo out; echo err >&2; exit 3"]);
    assert.equal(r.result.exit_code, 3);
    assert.equal(r.result.stdout, "out\n");
    assert.equal(r.result.stderr, "err\n");
    assert.equal(typeof r.exec_ms, "number");
    const missing = await sb.runCommand("/no/such/binary", []);
    assert.notEqual(missing.result.exit_code, 0);
    assert.ok(missing.result.error, "error says the command could not start");
    const args = await sb.runCommand("echo", ["a b", "$HOME", "*"]);
    assert.equal(args.result.stdout, "a b $HOME *\n", "argv is not run through a shell");
  });

  test("streamCommand yields frames in order and the exit code last", async () => {
    const events: any[] = [];
    for await (const ev of sb.streamCommand("sh", ["-c", "for i in 1 2 3; do echo line$i; sleep 0.2; done; echo done >&2; exit 7"])) {
      events.push(ev);
    }
    const stdout = events.filter((e) => e.type === "stdout").map((e) => e.data).join("");
    assert.equal(stdout, "line1\nline2\nline3\n");
    assert.equal(events.filter((e) => e.type === "stderr").map((e) => e.data).join(""), "done\n");
    assert.deepEqual(events.at(-1), { type: "exit", exitCode: 7 });
  });

  test("a 5 MiB binary file round trip, also seen from inside", async () => {
    const data = randomBytes(5 * 1024 * 1024);
    const sha = createHash("sha256").update(data).digest("hex");
    await sb.files.upload("/data/deep/dir/blob.bin", data);
    const inside = await sb.sh("sha256sum /data/deep/dir/blob.bin");
    assert.equal(inside.result.stdout.split(" ")[0], sha);
    const back = Buffer.from(await sb.files.download("/data/deep/dir/blob.bin"));
    assert.equal(back.length, data.length);
    assert.equal(createHash("sha256").update(back).digest("hex"), sha);
  });

  test("files: missing is 404, relative or escaping paths are 400", async () => {
    const missing = await api(server, "GET", `/v1/sandboxes/${sb.id}/files?path=/nope/missing.txt`);
    assert.equal(missing.status, 404);
    assert.equal(missing.json.status, "fail");
    for (const p of ["relative/file.txt", "/tmp/../etc/passwd"]) {
      const r = await api(server, "GET", `/v1/sandboxes/${sb.id}/files?path=${encodeURIComponent(p)}`);
      assert.equal(r.status, 400, p);
    }
    const dir = await api(server, "GET", `/v1/sandboxes/${sb.id}/files?path=/etc`);
    assert.equal(dir.status, 400);
  });

  test("the SDK drives list, ingress and auto-pause settings", async () => {
    const all = await server.client.listSandboxes();
    assert.ok(all.some((s) => s.id === sb.id));
    const running = await server.client.listSandboxes({ status: "running" });
    assert.ok(running.every((s) => s.status === "running"));
    await sb.setIngress(true);
    assert.equal(sb.data.ingress_enabled, true);
    await sb.setAutoPause(600);
    assert.equal(sb.data.auto_pause_after_seconds, 600);
    await sb.setAutoPause(null);
    assert.equal(sb.data.auto_pause_after_seconds, undefined);
    await sb.setIngress(false);
    assert.equal(sb.data.ingress_enabled, false);
  });

  test("destroy leaves no process, file or directory of the sandbox", async () => {
    const other = await server.client.createSandbox({ shape: SHAPE, rootfs: "minimal:1" });
    assert.ok((await pidsMentioning(other.id)).length > 0, "a VMM process runs for it");
    const res = await other.destroy();
    assert.ok(res.status === "destroying" || res.status === "destroyed");
    await other.waitUntilDestroyed({ timeoutMs: 30_000 });
    assert.deepEqual(await pidsMentioning(other.id), []);
    assert.equal(existsSync(join(server.dataDir, "sandboxes", other.id)), false);
    const again = await api(server, "DELETE", `/v1/sandboxes/${other.id}`);
    assert.equal(again.json.data.status, "destroyed");
    const after = await server.client.getSandbox(other.id);
    assert.equal(after.status, "destroyed");
  });

  test("a VMM killed with SIGKILL turns the sandbox failed", async () => {
    const victim = await server.client.createSandbox({ shape: SHAPE, rootfs: "minimal:1" });
    const pids = await pidsMentioning(victim.id);
    assert.ok(pids.length > 0);
    for (const pid of pids) process.kill(pid, "SIGKILL");
    const t0 = Date.now();
    await waitFor(async () => ((await victim.refresh()).status === "failed" ? true : undefined), 10_000, "failed");
    assert.ok(Date.now() - t0 < 4_000, "noticed within about 2 s");
    assert.equal(existsSync(join(server.dataDir, "sandboxes", victim.id)), false, "its resources are reclaimed");
    const exec = await api(server, "POST", `/v1/sandboxes/${victim.id}/exec`, { cmd: "true" });
    assert.equal(exec.status, 409);
  });
});

describe("devbox:1, the default image", () => {
  let server: TestServer;
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server?.dispose();
  });

  test("is the default and has python3 and git", async () => {
    const sb = await server.client.createSandbox({ shape: SHAPE });
    assert.equal(sb.data.rootfs, "devbox:1");
    const py = await sb.sh("python3 -c 'print(6*7)'");
    assert.equal(py.result.stdout.trim(), "42");
    const git = await sb.sh("git --version");
    assert.match(git.result.stdout, /^git version/);
    await sb.sh("bash --version >/dev/null && curl --version >/dev/null && sudo true && ps >/dev/null");
    await sb.destroy();
    await sb.waitUntilDestroyed({ timeoutMs: 30_000 });
  });
});
