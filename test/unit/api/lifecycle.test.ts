/** POST pause / resume / fork over HTTP with a FakeRuntime: codes, no-ops, capacity, overrides, recovery. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { FakeRuntime } from "../../support/fake-runtime.js";
import { startTestServer, type TestServer } from "../../support/test-server.js";

const SHAPE = "s-1vcpu-256mb";

async function waitStatus(s: TestServer, id: string, want: string): Promise<any> {
  for (let i = 0; i < 200; i++) {
    const v = (await s.api("GET", `/v1/sandboxes/${id}`)).json.data;
    if (v.status === want) return v;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`${id} never ${want}`);
}

describe("pause, resume, fork", () => {
  test("pause and resume: 202 with X-Poll-After, 200 no-ops, 409s, timestamps", async () => {
    const runtime = new FakeRuntime();
    runtime.snapshotDelayMs = 30;
    const s = await startTestServer({ runtime });
    try {
      const sb = (await s.api("POST", "/v1/sandboxes", { shape: SHAPE })).json.data;
      assert.equal((await s.api("POST", `/v1/sandboxes/${sb.id}/resume`)).status, 200);
      const p = await s.api("POST", `/v1/sandboxes/${sb.id}/pause`);
      assert.equal(p.status, 202);
      assert.deepEqual(p.json.data, { id: sb.id, status: "pausing" });
      assert.equal(p.headers.get("x-poll-after"), "1");
      assert.equal((await s.api("POST", `/v1/sandboxes/${sb.id}/exec`, { cmd: "echo" })).status, 409);
      const paused = await waitStatus(s, sb.id, "paused");
      assert.ok(paused.paused_at);
      const again = await s.api("POST", `/v1/sandboxes/${sb.id}/pause`);
      assert.equal(again.status, 200);
      assert.equal(again.json.data.status, "paused");
      assert.equal((await s.api("POST", `/v1/sandboxes/${sb.id}/exec`, { cmd: "echo" })).status, 409);
      assert.equal((await s.api("GET", `/v1/sandboxes/${sb.id}/files?path=/x`)).status, 409);
      const r = await s.api("POST", `/v1/sandboxes/${sb.id}/resume`);
      assert.equal(r.status, 202);
      assert.deepEqual(r.json.data, { id: sb.id, status: "resuming" });
      const running = await waitStatus(s, sb.id, "running");
      assert.ok(running.last_resumed_at);
      assert.equal(running.ip, sb.ip);
      assert.equal((await s.api("POST", `/v1/sandboxes/${sb.id}/exec`, { cmd: "echo", args: ["hi"] })).status, 200);
      assert.equal((await s.api("DELETE", `/v1/sandboxes/${sb.id}`)).status, 200);
      await waitStatus(s, sb.id, "destroyed");
      assert.equal((await s.api("POST", `/v1/sandboxes/${sb.id}/pause`)).status, 409);
      assert.equal((await s.api("POST", `/v1/sandboxes/${sb.id}/resume`)).status, 409);
    } finally {
      await s.dispose();
    }
  });

  test("a failing resume is retried, then error; a new resume tries again", async () => {
    const runtime = new FakeRuntime();
    const s = await startTestServer({ runtime });
    try {
      const sb = (await s.api("POST", "/v1/sandboxes", { shape: SHAPE })).json.data;
      await s.api("POST", `/v1/sandboxes/${sb.id}/pause`);
      await waitStatus(s, sb.id, "paused");
      runtime.failResume = new Error("restore broke");
      await s.api("POST", `/v1/sandboxes/${sb.id}/resume`);
      await waitStatus(s, sb.id, "error");
      runtime.failResume = undefined;
      assert.equal((await s.api("POST", `/v1/sandboxes/${sb.id}/resume`)).status, 202);
      await waitStatus(s, sb.id, "running");
    } finally {
      await s.dispose();
    }
  });

  test("paused sandboxes free memory; resume is admitted like a create (503 when full)", async () => {
    const runtime = new FakeRuntime({ capacity: { memMib: 512, vcpus: 4 } });
    const s = await startTestServer({ runtime });
    try {
      const a = (await s.api("POST", "/v1/sandboxes", { shape: SHAPE })).json.data;
      await s.api("POST", "/v1/sandboxes", { shape: SHAPE });
      assert.equal((await s.api("POST", "/v1/sandboxes", { shape: SHAPE })).status, 503);
      await s.api("POST", `/v1/sandboxes/${a.id}/pause`);
      await waitStatus(s, a.id, "paused");
      const c = await s.api("POST", "/v1/sandboxes", { shape: SHAPE });
      assert.equal(c.status, 200, "the paused one's memory is free");
      assert.equal((await s.api("POST", `/v1/sandboxes/${a.id}/resume`)).status, 503);
      assert.equal((await s.api("GET", `/v1/sandboxes/${a.id}`)).json.data.status, "paused");
    } finally {
      await s.dispose();
    }
  });

  test("fork: source must be paused; child gets overrides, inherits the rest, runs unless start_paused", async () => {
    const runtime = new FakeRuntime();
    const s = await startTestServer({ runtime });
    try {
      const src = (await s.api("POST", "/v1/sandboxes", { shape: SHAPE, envs: { A: "1", B: "2" }, egress: ["example.com"] })).json.data;
      assert.equal((await s.api("POST", `/v1/sandboxes/${src.id}/fork`, {})).status, 409);
      await s.api("POST", `/v1/sandboxes/${src.id}/pause`);
      await waitStatus(s, src.id, "paused");
      const bad = await s.api("POST", `/v1/sandboxes/${src.id}/fork`, { egress: ["not a rule!"] });
      assert.equal(bad.status, 400);
      const f = await s.api("POST", `/v1/sandboxes/${src.id}/fork`, { envs: { C: "3" }, bandwidth_quota_bytes: 1000 });
      assert.equal(f.status, 200);
      const child = f.json.data;
      assert.notEqual(child.id, src.id);
      assert.notEqual(child.ip, src.ip);
      assert.notEqual(child.name, src.name);
      assert.equal(child.forked_from, src.id);
      assert.equal(child.status, "running");
      assert.deepEqual(child.envs, ["C"]);
      assert.deepEqual(child.egress, ["example.com"]);
      assert.equal(child.bandwidth_quota_bytes, 1000);
      assert.deepEqual(runtime.machines.get(child.id)?.spec.envs, { C: "3" }, "env values re-sealed and delivered");
      assert.equal((await s.api("GET", `/v1/sandboxes/${src.id}`)).json.data.status, "paused");
      const p = (await s.api("POST", `/v1/sandboxes/${src.id}/fork`, { start_paused: true })).json.data;
      assert.equal(p.status, "paused");
      assert.deepEqual(p.envs, ["A", "B"]);
      assert.deepEqual(runtime.pausedMachines.get(p.id)?.envs, { A: "1", B: "2" });
    } finally {
      await s.dispose();
    }
  });

  test("recovery settles pausing, resuming and forking rows on what the runtime found", async () => {
    const runtime = new FakeRuntime();
    const s1 = await startTestServer({ runtime });
    const mk = async () => (await s1.api("POST", "/v1/sandboxes", { shape: SHAPE })).json.data;
    const [pausedOk, stillRunning, resumedOk, forkSrc, halfChild] = [await mk(), await mk(), await mk(), await mk(), await mk()];
    await s1.close();
    const { openDatabase } = await import("../../../src/store/open-database.js");
    const { db } = await openDatabase({ dataDir: s1.dataDir, databaseUrl: process.env.HUTCH_TEST_DATABASE_URL });
    const set = (id: string, status: string) => db.updateTable("sandboxes").set({ status }).where("id", "=", id).execute();
    await set(pausedOk.id, "pausing");
    await set(stillRunning.id, "pausing");
    await set(resumedOk.id, "resuming");
    await set(forkSrc.id, "forking");
    await set(halfChild.id, "forking");
    await db.destroy();
    // The runtime: pausedOk and forkSrc have a complete snapshot, halfChild has nothing.
    for (const id of [pausedOk.id, forkSrc.id]) {
      runtime.pausedMachines.set(id, runtime.machines.get(id)!.spec);
      runtime.machines.delete(id);
    }
    runtime.machines.delete(halfChild.id);
    const s2 = await startTestServer({ dataDir: s1.dataDir, runtime });
    try {
      const st = async (id: string) => (await s2.api("GET", `/v1/sandboxes/${id}`)).json.data.status;
      assert.equal(await st(pausedOk.id), "paused");
      assert.equal(await st(stillRunning.id), "running");
      assert.equal(await st(resumedOk.id), "running");
      assert.equal(await st(forkSrc.id), "paused");
      assert.equal(await st(halfChild.id), "failed");
    } finally {
      await s2.dispose();
    }
  });

  test("auto-pause pauses a sandbox idle past its timeout; activity postpones it", async () => {
    const runtime = new FakeRuntime();
    const s = await startTestServer({ runtime });
    try {
      const a = (await s.api("POST", "/v1/sandboxes", { shape: SHAPE, auto_pause_after_seconds: 60 })).json.data;
      const b = (await s.api("POST", "/v1/sandboxes", { shape: SHAPE })).json.data;
      const svc = s.services;
      // Pretend both ran 61 s ago; `b` gets the timeout by PATCH, then sees activity.
      const old = Date.now() - 61_000;
      svc.sandboxes.lastActivity.set(a.id, old);
      await s.api("PATCH", `/v1/sandboxes/${b.id}`, { auto_pause_after_seconds: 60 });
      const realNow = Date.now;
      Date.now = () => realNow() + 61_000;
      try {
        await s.api("POST", `/v1/sandboxes/${b.id}/exec`, { cmd: "echo" });
        await svc.snapshots.checkIdle();
      } finally {
        Date.now = realNow;
      }
      await waitStatus(s, a.id, "paused");
      assert.equal((await s.api("GET", `/v1/sandboxes/${b.id}`)).json.data.status, "running");
    } finally {
      await s.dispose();
    }
  });
});
