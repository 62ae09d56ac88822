/**
 * Black-box tests of hutch-agent's exec: the real binary, on the host, in
 * --no-init mode, driven through AgentClient.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";

import type { AgentClient } from "../../src/runtime/agent/agent-client.js";
import { AgentHarness, run } from "./agent-harness.js";

describe("hutch-agent exec", () => {
  const h = new AgentHarness();
  let client: AgentClient;

  before(async () => {
    await h.start();
    client = await h.client();
    await client.configure({
      hostname: "test-box",
      envs: { SANDBOX_A: "from-sandbox", SHARED: "sandbox" },
      sshPubkeys: [],
      rngSeed: randomBytes(32),
      wallClockMs: Date.now(),
    });
  });
  after(async () => {
    client?.close();
    await h.stop();
  });

  it("answers HELLO with its version and PING", async () => {
    assert.equal(client.agentVersion, "0.1.0");
    await client.ping(2000);
  });

  it("runs echo and reports exit codes", async () => {
    assert.deepEqual(await run(client, { cmd: "echo", args: ["hello", "world"] }), { exitCode: 0, stdout: "hello world\n", stderr: "" });
    const f = await run(client, { cmd: "false" });
    assert.equal(f.exitCode, 1);
    assert.equal(f.error, undefined);
  });

  it("reports a missing binary with an error and 127, a non-executable with 126", async () => {
    const missing = await run(client, { cmd: "definitely-not-a-command-hutch" });
    assert.equal(missing.exitCode, 127);
    assert.match(missing.error ?? "", /No such file or directory/);
    const byPath = await run(client, { cmd: "/nonexistent/bin/x" });
    assert.equal(byPath.exitCode, 127);
    const notExec = await run(client, { cmd: "/tmp" }); // a directory: EACCES
    assert.equal(notExec.exitCode, 126);
    assert.match(notExec.error ?? "", /Permission denied/);
  });

  it("keeps stdout and stderr apart", async () => {
    const r = await run(client, { cmd: "sh", args: ["-c", "echo to-out; echo to-err >&2; echo more-out; exit 7"] });
    assert.equal(r.exitCode, 7);
    assert.equal(r.stdout, "to-out\nmore-out\n");
    assert.equal(r.stderr, "to-err\n");
  });

  it("feeds stdin and closes it", async () => {
    const input = randomBytes(1024 * 1024);
    const chunks: Buffer[] = [];
    const r = await client.exec({ cmd: "cat", args: [], stdin: input }, { onStdout: (c) => chunks.push(c), onStderr: () => {} });
    assert.equal(r.exitCode, 0);
    assert.ok(Buffer.concat(chunks).equals(input));
    // No stdin at all: the command sees EOF at once.
    assert.equal((await run(client, { cmd: "wc", args: ["-c"] })).stdout.trim(), "0");
  });

  it("passes sandbox envs, request env on top, and defaults", async () => {
    const r = await run(client, { cmd: "env", env: { REQ_B: "from-request", SHARED: "request" } });
    const env = new Map(r.stdout.trim().split("\n").map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]));
    assert.equal(env.get("SANDBOX_A"), "from-sandbox");
    assert.equal(env.get("REQ_B"), "from-request");
    assert.equal(env.get("SHARED"), "request");
    assert.equal(env.get("PATH"), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    assert.equal(env.get("HOME"), "/root");
    assert.equal(env.get("USER"), "root");
    assert.equal(env.get("LANG"), "C.UTF-8");
  });

  it("resolves the program with the PATH the command gets", async () => {
    const r = await run(client, { cmd: "env", env: { PATH: "/nonexistent" } });
    assert.equal(r.exitCode, 127);
  });

  it("searches PATH like execvp: missing and relative dirs, a non-executable match skipped", async () => {
    const dir = path.join(h.dir, "path-search");
    mkdirSync(path.join(dir, "noexec"), { recursive: true });
    mkdirSync(path.join(dir, "bin"), { recursive: true });
    writeFileSync(path.join(dir, "noexec", "hutch-probe"), "#!/bin/sh\necho wrong\n", { mode: 0o644 });
    writeFileSync(path.join(dir, "bin", "hutch-probe"), "#!/bin/sh\necho found \"$0\"\n", { mode: 0o755 });
    const PATH = `/nonexistent-a:${dir}/noexec:/etc/hostname:bin:${dir}/bin`;
    // "bin" is relative to the command's cwd, like execvp's search.
    const rel = await run(client, { cmd: "hutch-probe", cwd: dir, env: { PATH } });
    assert.deepEqual(rel, { exitCode: 0, stdout: "found bin/hutch-probe\n", stderr: "" });
    const abs = await run(client, { cmd: "hutch-probe", cwd: "/", env: { PATH } });
    assert.deepEqual(abs, { exitCode: 0, stdout: `found ${dir}/bin/hutch-probe\n`, stderr: "" });
    // Only a non-executable match: EACCES (126), not "not found".
    const denied = await run(client, { cmd: "hutch-probe", cwd: "/", env: { PATH: `/nonexistent-a:${dir}/noexec` } });
    assert.equal(denied.exitCode, 126);
    assert.match(denied.error ?? "", /Permission denied/);
  });

  it("starts commands with default signal dispositions and nothing blocked", async () => {
    // The agent ignores SIGPIPE (and blocks SIGCHLD for its signalfd).
    const r = await run(client, { cmd: "grep", args: ["-E", "^Sig(Ign|Blk)", "/proc/self/status"] });
    assert.equal(r.exitCode, 0);
    assert.deepEqual(r.stdout.trim().split("\n").map((l) => l.split(/\s+/)[1]), ["0000000000000000", "0000000000000000"]);
  });

  it("runs in cwd, defaulting to /root", async () => {
    assert.equal((await run(client, { cmd: "pwd", cwd: "/tmp" })).stdout, "/tmp\n");
    assert.equal((await run(client, { cmd: "pwd" })).stdout, "/root\n");
    const bad = await run(client, { cmd: "pwd", cwd: "/nonexistent-dir" });
    assert.notEqual(bad.exitCode, 0);
    assert.match(bad.error ?? "", /cannot change directory/);
  });

  it("runs each command in its own session", async () => {
    const r = await run(client, { cmd: "sh", args: ["-c", "ps -o sid= -p $$; echo $$"] });
    const [sid, pid] = r.stdout.trim().split(/\s+/);
    assert.equal(sid, pid);
  });

  it("runs many commands at once", async () => {
    const start = Date.now();
    const results = await Promise.all(
      Array.from({ length: 24 }, (_, i) => run(client, { cmd: "sh", args: ["-c", `sleep 0.3; echo job-${i}`] })),
    );
    results.forEach((r, i) => assert.deepEqual(r, { exitCode: 0, stdout: `job-${i}\n`, stderr: "" }));
    assert.ok(Date.now() - start < 24 * 300, "commands ran concurrently");
  });

  it("interleaves a chatty command with others", async () => {
    const big = run(client, { cmd: "sh", args: ["-c", "head -c 20000000 /dev/zero"] });
    const small = await run(client, { cmd: "echo", args: ["quick"] });
    assert.equal(small.stdout, "quick\n");
    assert.equal((await big).stdout.length, 20_000_000);
  });

  it("kills the process group on abort", async () => {
    const ac = new AbortController();
    const start = Date.now();
    setTimeout(() => ac.abort(), 200);
    const r = await run(client, { cmd: "sh", args: ["-c", "sleep 30 & sleep 30; echo never"] }, ac.signal);
    assert.equal(r.signal, 9);
    assert.equal(r.exitCode, 137);
    assert.equal(r.stdout, "");
    assert.ok(Date.now() - start < 5000);
  });

  it("kills the command when an output callback throws, keeping the connection", async () => {
    const boom = new Error("consumer bug");
    await assert.rejects(
      client.exec({ cmd: "sh", args: ["-c", "echo x; sleep 30"] }, { onStdout: () => { throw boom; }, onStderr: () => {} }),
      (e) => e === boom,
    );
    await client.ping(2000);
  });

  it("reports death by signal", async () => {
    const r = await run(client, { cmd: "sh", args: ["-c", "kill -TERM $$"] });
    assert.equal(r.signal, 15);
    assert.equal(r.exitCode, 143);
  });

  it("does not wait for a background process holding the pipes", async () => {
    const start = Date.now();
    const r = await run(client, { cmd: "sh", args: ["-c", "sleep 5 & echo started"] });
    assert.equal(r.exitCode, 0);
    assert.equal(r.stdout, "started\n");
    assert.ok(Date.now() - start < 2000, `took ${Date.now() - start} ms`);
  });

  it("streams large output intact", async () => {
    const hash = createHash("sha256");
    let n = 0;
    const r = await client.exec(
      { cmd: "sh", args: ["-c", "seq 1 300000"] },
      { onStdout: (c) => { hash.update(c); n += c.length; }, onStderr: () => {} },
    );
    assert.equal(r.exitCode, 0);
    const expected = createHash("sha256");
    for (let i = 1; i <= 300000; i++) expected.update(`${i}\n`);
    assert.equal(hash.digest("hex"), expected.digest("hex"));
    assert.ok(n > 1_000_000);
  });
});
