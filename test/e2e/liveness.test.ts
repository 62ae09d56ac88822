/**
 * Agent liveness with real VMs (jailed): a guest agent that stops answering
 * while its QEMU and guest kernel live, and a QEMU stopped from outside
 * (QMP silent too). Each affected sandbox ends `failed` within the
 * configured misses × interval (plus slack), its QEMU is gone, nothing of
 * it is left, and another sandbox is untouched and usable.
 * The sweep's logic: test/unit/qemu/agent-liveness.test.ts.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type { Sandbox } from "@nodeops-createos/sandbox";
import { api, startServer, waitFor, type TestServer } from "./support/server.js";
import { VmHost } from "./support/vm-host.js";

const run = promisify(execFile);
const MINIMAL = { shape: "s-1vcpu-256mb", rootfs: "minimal:1", disk_mib: 1024 } as const;
const INTERVAL_MS = 1000;
const TIMEOUT_MS = 1500;
const MISSES = 3;
/** Worst case: a first sweep up to an interval late, then MISSES sweeps of a ping and a QMP timeout each (+ slack for a loaded CI). */
const DETECT_MS = INTERVAL_MS + MISSES * Math.max(INTERVAL_MS, 2 * TIMEOUT_MS) + 10_000;

/**
 * Runs inside the guest as root, as a hostile guest process could: stops
 * PID 1 (the agent; it ignores SIGSTOP from inside) with ptrace
 * (PTRACE_SEIZE + PTRACE_INTERRUPT) and stays attached, so it never runs
 * again. The kernel and every other guest process run on.
 */
const FREEZE_C = `
#include <stdio.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>
int main(void) {
  if (ptrace(PTRACE_SEIZE, 1, 0, 0) != 0) { perror("PTRACE_SEIZE"); return 1; }
  if (ptrace(PTRACE_INTERRUPT, 1, 0, 0) != 0) { perror("PTRACE_INTERRUPT"); return 1; }
  int st;
  if (waitpid(1, &st, __WALL) != 1) { perror("waitpid"); return 1; }
  printf("pid 1 stopped\\n");
  fflush(stdout);
  for (;;) pause(); /* a tracer that exits would let it run again */
}
`;

describe("agent liveness (minimal:1, jailed)", () => {
  let server: TestServer;
  let frozen: Sandbox;
  let stopped: Sandbox;
  let bystander: Sandbox;
  let work: string;
  let vm: VmHost;

  /** Waits for `failed`; returns how long it took. */
  async function failedWithin(id: string, since: number): Promise<number> {
    await waitFor(async () => ((await vm.status(id)) === "failed" ? true : undefined), DETECT_MS + 10_000, `${id} failed`);
    return Date.now() - since;
  }

  before(async () => {
    work = await mkdtemp(join(tmpdir(), "hutch-liveness-"));
    await writeFile(join(work, "freeze.c"), FREEZE_C);
    await run("gcc", ["-static", "-O1", "-o", join(work, "freeze"), join(work, "freeze.c")]);
    server = await startServer({
      HUTCH_AGENT_PING_INTERVAL_MS: String(INTERVAL_MS),
      HUTCH_AGENT_PING_TIMEOUT_MS: String(TIMEOUT_MS),
      HUTCH_AGENT_PING_MISSES: String(MISSES),
    });
    vm = new VmHost(server);
    const made = await Promise.all([0, 1, 2].map(() => server.client.createSandbox(MINIMAL)));
    [frozen, stopped, bystander] = made as [Sandbox, Sandbox, Sandbox];
  });
  after(async () => {
    // A SIGSTOPped QEMU the test left behind on failure must not outlive it.
    if (stopped) for (const p of await readFile(join(vm.dir(stopped.id), "qemu.pid"), "utf8").then((t) => [Number(t)], () => [])) {
      try {
        process.kill(p, "SIGKILL");
      } catch {
        /* gone */
      }
    }
    await server?.dispose();
    await rm(work, { recursive: true, force: true });
  });

  /** A guest process ptrace-stops the agent (PID 1) while QEMU and the guest kernel run on. */
  async function freezeAgent(): Promise<number> {
    const pid = await vm.pidOf(frozen.id);
    const tap = await vm.tapOf(frozen.id);
    const mem = await vm.memCgroupOf(pid);
    await frozen.files.upload("/tmp/freeze", await readFile(join(work, "freeze")));
    // In the background, after the exec's answer went out.
    await frozen.sh("chmod +x /tmp/freeze; (sleep 0.3; /tmp/freeze > /tmp/freeze.log 2>&1) &");
    const t0 = Date.now();
    await new Promise((r) => setTimeout(r, 1000));
    assert.ok(existsSync(`/proc/${pid}`), "QEMU still runs while its agent is silent");
    const ms = await failedWithin(frozen.id, t0);
    assert.ok(ms >= MISSES * INTERVAL_MS - 1500, `not before ${MISSES} missed pings (${ms} ms)`);
    assert.ok(ms <= DETECT_MS, `failed after ${ms} ms (bound ${DETECT_MS} ms)`);
    await vm.assertNoLeftovers(frozen.id, pid, tap, mem);
    assert.match(server.output(), /guest agent stopped answering \(3 pings missed; ping: .*VM running\)/);
    const late = await api(server, "POST", `/v1/sandboxes/${frozen.id}/exec`, { cmd: "true" });
    assert.equal(late.status, 409, "exec on the failed sandbox");
    return ms;
  }

  /** The host SIGSTOPs a QEMU: its agent and its QMP are both silent. */
  async function stopVmm(): Promise<number> {
    const pid = await vm.pidOf(stopped.id);
    const tap = await vm.tapOf(stopped.id);
    const mem = await vm.memCgroupOf(pid);
    process.kill(pid, "SIGSTOP");
    const ms = await failedWithin(stopped.id, Date.now());
    assert.ok(ms <= DETECT_MS, `failed after ${ms} ms (bound ${DETECT_MS} ms)`);
    await vm.assertNoLeftovers(stopped.id, pid, tap, mem);
    assert.match(server.output(), /guest agent stopped answering \(3 pings missed; ping: .*QMP: /);
    return ms;
  }

  test("an agent ptrace-stopped by a guest process, and a QEMU SIGSTOPped from the host: both sandboxes fail and leave nothing; another works on", async () => {
    // Side by side: the sweep handles both in the same passes, and the test takes half the time.
    const [frozenMs, stoppedMs] = await Promise.all([freezeAgent(), stopVmm()]);
    console.log(`liveness: agent ptrace-stopped → failed in ${frozenMs} ms; QEMU SIGSTOPped → failed in ${stoppedMs} ms (bound ${DETECT_MS} ms)`);
    assert.equal((await bystander.sh("echo unaffected")).result.stdout.trim(), "unaffected");
    assert.equal(await vm.status(bystander.id), "running");
    assert.equal(server.proc.exitCode, null, "the server is alive");
  });
});
