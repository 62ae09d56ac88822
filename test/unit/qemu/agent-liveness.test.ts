/** The agent liveness sweep, with test doubles for the agent and QMP (the VM path: test/e2e/liveness.test.ts). */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { loadConfig } from "../../../src/config.js";
import { AgentLiveness, type LivenessTarget, type VmRunState } from "../../../src/runtime/qemu/agent-liveness.js";

const log = { debug() {}, info() {}, warn() {}, error() {} };
const INTERVAL = 10_000;

/** A VM double: its agent answers or not, its QEMU reports `state` or does not answer (`qmpDead`). */
class FakeVm implements LivenessTarget {
  heard = 0;
  answers = true;
  state: VmRunState = { running: true, status: "running" };
  qmpDead = false;
  isBusy = false;
  pings = 0;
  statusCalls = 0;
  /** Runs during a ping (to change state mid-probe). */
  duringPing: (() => void) | undefined;
  constructor(readonly id: string) {}
  lastHeard(): number {
    return this.heard;
  }
  busy(): boolean {
    return this.isBusy;
  }
  async ping(timeoutMs: number): Promise<void> {
    this.pings++;
    this.duringPing?.();
    if (!this.answers) throw new Error(`ping: no answer within ${timeoutMs} ms`);
  }
  async vmStatus(timeoutMs: number): Promise<VmRunState> {
    this.statusCalls++;
    if (this.qmpDead) throw new Error(`QMP query-status: no answer in ${timeoutMs} ms`);
    return this.state;
  }
}

function setup(vms: FakeVm[], misses = 3) {
  let now = 1_000_000;
  const dead: Array<{ id: string; reason: string }> = [];
  const live = new AgentLiveness<FakeVm>({
    intervalMs: INTERVAL, timeoutMs: 1000, misses, log,
    targets: () => vms,
    onDead: (t, reason) => void dead.push({ id: t.id, reason }),
    now: () => now,
  });
  // Each sweep happens one interval after the previous one.
  const sweep = async () => {
    now += INTERVAL;
    await live.sweep();
  };
  return { live, dead, sweep };
}

describe("agent liveness sweep", () => {
  test("an agent that answers is never counted; one heard within the interval is not even pinged", async () => {
    const ok = new FakeVm("sb_ok");
    const chatty = new FakeVm("sb_chatty");
    const { live, dead, sweep } = setup([ok, chatty]);
    for (let i = 0; i < 5; i++) {
      chatty.heard = Date.now() + 1e12; // spoke just now (exec output)
      await sweep();
    }
    assert.equal(ok.pings, 5);
    assert.equal(chatty.pings, 0, "recent traffic proves life");
    assert.equal(live.missesOf("sb_ok"), 0);
    assert.deepEqual(dead, []);
  });

  test("a silent agent on a running QEMU is reported dead after N misses, once", async () => {
    const vm = new FakeVm("sb_hung");
    const other = new FakeVm("sb_fine");
    vm.answers = false;
    const { live, dead, sweep } = setup([vm, other], 3);
    await sweep();
    await sweep();
    assert.equal(live.missesOf(vm.id), 2);
    assert.equal(dead.length, 0, "not before the third miss");
    await sweep();
    assert.equal(dead.length, 1);
    assert.equal(dead[0]!.id, "sb_hung");
    assert.match(dead[0]!.reason, /3 pings missed.*VM running/);
    assert.equal(live.missesOf("sb_fine"), 0);
  });

  test("a miss followed by an answer starts the count again", async () => {
    const vm = new FakeVm("sb_slow");
    const { live, dead, sweep } = setup([vm], 3);
    vm.answers = false;
    await sweep();
    await sweep();
    vm.answers = true;
    await sweep();
    assert.equal(live.missesOf(vm.id), 0);
    vm.answers = false;
    await sweep();
    await sweep();
    assert.deepEqual(dead, [], "two misses, an answer, two misses: never three in a row");
  });

  test("a QEMU that holds its guest stopped on purpose (paused, io-error) is not a miss", async () => {
    for (const status of ["paused", "io-error", "postmigrate", "inmigrate", "finish-migrate"]) {
      const vm = new FakeVm(`sb_${status.replace("-", "")}`);
      vm.answers = false;
      vm.state = { running: false, status };
      const { live, dead, sweep } = setup([vm], 2);
      for (let i = 0; i < 4; i++) await sweep();
      assert.deepEqual(dead, [], status);
      assert.equal(live.missesOf(vm.id), 0, status);
      assert.equal(vm.statusCalls, 4, "asked each time the agent was silent");
    }
  });

  test("a guest stopped by a failure or by itself (internal-error, guest-panicked, suspended) counts", async () => {
    for (const status of ["internal-error", "guest-panicked", "suspended"]) {
      const vm = new FakeVm(`sb_${status.replace("-", "")}`);
      vm.answers = false;
      vm.state = { running: false, status };
      const { dead, sweep } = setup([vm], 2);
      await sweep();
      await sweep();
      assert.equal(dead.length, 1, status);
      assert.match(dead[0]!.reason, new RegExp(`VM ${status}`));
    }
  });

  test("a QMP that does not answer either counts as a miss (a stopped or wedged VMM)", async () => {
    const vm = new FakeVm("sb_sigstopped");
    vm.answers = false;
    vm.qmpDead = true;
    const { dead, sweep } = setup([vm], 3);
    for (let i = 0; i < 3; i++) await sweep();
    assert.equal(dead.length, 1);
    assert.match(dead[0]!.reason, /QMP: .*no answer/);
  });

  test("a VM being paused, destroyed or started is neither pinged nor counted", async () => {
    const vm = new FakeVm("sb_busy");
    vm.answers = false;
    const { live, dead, sweep } = setup([vm], 2);
    await sweep();
    assert.equal(live.missesOf(vm.id), 1);
    vm.isBusy = true;
    for (let i = 0; i < 3; i++) await sweep();
    assert.equal(vm.pings, 1, "busy: not pinged");
    assert.equal(live.missesOf(vm.id), 0, "busy resets the count");
    // Becomes busy while its ping is out (a pause stopped the guest): the silence says nothing.
    vm.isBusy = false;
    vm.duringPing = () => (vm.isBusy = true);
    for (let i = 0; i < 3; i++) {
      vm.isBusy = false;
      await sweep();
    }
    assert.deepEqual(dead, []);
  });

  test("a VM that left the runtime is forgotten", async () => {
    const vm = new FakeVm("sb_gone");
    vm.answers = false;
    const vms = [vm];
    const { live, sweep } = setup(vms, 3);
    await sweep();
    assert.equal(live.missesOf(vm.id), 1);
    vms.length = 0;
    await sweep();
    assert.equal(live.missesOf(vm.id), 0);
  });

  test("a sweep over 200 VMs keeps at most `concurrency` probes in flight", async () => {
    let inFlight = 0;
    let peak = 0;
    const vms = Array.from({ length: 200 }, (_, i) => {
      const vm = new FakeVm(`sb_${i}`);
      vm.ping = async () => {
        vm.pings++;
        peak = Math.max(peak, ++inFlight);
        await sleep(1);
        inFlight--;
      };
      return vm;
    });
    const live = new AgentLiveness<FakeVm>({
      intervalMs: INTERVAL, timeoutMs: 1000, misses: 3, concurrency: 8, log,
      targets: () => vms, onDead: () => assert.fail("nobody is dead"), now: () => 1e15,
    });
    await live.sweep();
    assert.equal(peak, 8);
    assert.ok(vms.every((v) => v.pings === 1), "each VM pinged once");
  });

  test("started, it sweeps on its own timer until stopped, and ends a dead VM in about misses × interval", async () => {
    const vm = new FakeVm("sb_timer");
    vm.answers = false;
    const t0 = Date.now();
    let deadAt = 0;
    const live = new AgentLiveness<FakeVm>({
      intervalMs: 40, timeoutMs: 10, misses: 3, log,
      targets: () => (deadAt ? [] : [vm]),
      onDead: () => void (deadAt = Date.now()),
    });
    live.start();
    live.start(); // idempotent: still one timer
    while (!deadAt && Date.now() - t0 < 5000) await sleep(10);
    await live.stop();
    assert.ok(deadAt > 0, "reported dead");
    // Three sweeps 40 ms apart (a loaded CI machine may be late, never early).
    assert.ok(deadAt - t0 >= 3 * 40 - 5, `after ${deadAt - t0} ms`);
    assert.equal(vm.pings, 3);
    const pings = vm.pings;
    await sleep(100);
    assert.equal(vm.pings, pings, "no sweep after stop");
  });

  test("invalid settings are refused", () => {
    for (const bad of [{ intervalMs: 0 }, { timeoutMs: -1 }, { misses: 1.5 }]) {
      assert.throws(
        () => new AgentLiveness({ intervalMs: 1000, timeoutMs: 1000, misses: 3, log, targets: () => [], onDead: () => {}, ...bad }),
        /invalid/,
      );
    }
  });

  test("config: defaults 10 s / 5 s / 3, HUTCH_AGENT_PING_* override, 0 or off disables, junk refused", () => {
    assert.deepEqual(loadConfig({}, {}).agentLiveness, { intervalMs: 10_000, timeoutMs: 5000, misses: 3 });
    const env = { HUTCH_AGENT_PING_INTERVAL_MS: "1000", HUTCH_AGENT_PING_TIMEOUT_MS: "1500", HUTCH_AGENT_PING_MISSES: "5" };
    assert.deepEqual(loadConfig({}, env).agentLiveness, { intervalMs: 1000, timeoutMs: 1500, misses: 5 });
    assert.equal(loadConfig({}, { HUTCH_AGENT_PING_INTERVAL_MS: "off" }).agentLiveness, undefined);
    assert.equal(loadConfig({}, { HUTCH_AGENT_PING_INTERVAL_MS: "0" }).agentLiveness, undefined);
    assert.throws(() => loadConfig({}, { HUTCH_AGENT_PING_MISSES: "-1" }), /HUTCH_AGENT_PING_MISSES must be a positive integer/);
  });
});
