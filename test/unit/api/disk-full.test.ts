/**
 * A full data disk over HTTP with a FakeRuntime: a VM stalled on it moves
 * `running → error` (exec/files 409), resume continues it (or it ends
 * `error` again while the disk is full), a restart keeps it `error`; creates,
 * pauses, forks and resumes are refused with a 503 before anything changes
 * when the free space is short; a store write that finds the disk full is a
 * JSend 503, not a crash.
 */
import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import { describe, test } from "node:test";
import { DiskSpace } from "../../../src/runtime/disk-space.js";
import { FakeRuntime } from "../../support/fake-runtime.js";
import { startTestServer, type TestServer } from "../../support/test-server.js";

const SHAPE = "s-1vcpu-256mb";
const MIB = 1024 * 1024;
const DISK_MESSAGE = "no host capacity: not enough free disk space on the host";

async function waitStatus(s: TestServer, id: string, want: string): Promise<any> {
  for (let i = 0; i < 300; i++) {
    const v = (await s.api("GET", `/v1/sandboxes/${id}`)).json.data;
    if (v.status === want) return v;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`${id} never ${want}`);
}

describe("full data disk", () => {
  test("a stalled VM: running → error with the reason logged, 409 on exec/files, resume continues it", async () => {
    const runtime = new FakeRuntime();
    const s = await startTestServer({ runtime });
    try {
      const a = (await s.api("POST", "/v1/sandboxes", { shape: SHAPE, name: "fills" })).json.data;
      const b = (await s.api("POST", "/v1/sandboxes", { shape: SHAPE, name: "bystander" })).json.data;
      runtime.stall(a.id, "the host's data disk is full");
      await waitStatus(s, a.id, "error");
      assert.match(s.logs(), /the host's data disk is full/);
      const ex = await s.api("POST", `/v1/sandboxes/${a.id}/exec`, { cmd: "echo", args: ["hi"] });
      assert.equal(ex.status, 409);
      assert.equal(ex.json.status, "fail");
      assert.match(JSON.stringify(ex.json.data), /error/);
      assert.equal((await s.api("GET", `/v1/sandboxes/${a.id}/files?path=/etc/hostname`)).status, 409);
      // Everything else untouched.
      const ok = await s.api("POST", `/v1/sandboxes/${b.id}/exec`, { cmd: "echo", args: ["still"] });
      assert.equal(ok.json.data.result.stdout, "still\n");
      assert.equal((await s.api("GET", `/v1/sandboxes/${b.id}`)).json.data.status, "running");

      // Disk still full: the continue stalls again, no retries, `error` again.
      runtime.diskFull = true;
      const r1 = await s.api("POST", `/v1/sandboxes/${a.id}/resume`);
      assert.equal(r1.status, 202);
      await waitStatus(s, a.id, "error");
      assert.ok(runtime.stalled.has(a.id));
      // Space back: resume continues the same VM (no bundle involved).
      runtime.diskFull = false;
      assert.equal((await s.api("POST", `/v1/sandboxes/${a.id}/resume`)).status, 202);
      await waitStatus(s, a.id, "running");
      const after = await s.api("POST", `/v1/sandboxes/${a.id}/exec`, { cmd: "echo", args: ["back"] });
      assert.equal(after.json.data.result.stdout, "back\n");
      // A second stall is reported again.
      runtime.stall(a.id);
      await waitStatus(s, a.id, "error");
      assert.equal((await s.api("DELETE", `/v1/sandboxes/${a.id}`)).status, 200);
      await waitStatus(s, a.id, "destroyed");
      assert.ok(!runtime.stalled.has(a.id));
    } finally {
      await s.dispose();
    }
  });

  test("a stalled VM that then dies: error → failed", async () => {
    const runtime = new FakeRuntime();
    const s = await startTestServer({ runtime });
    try {
      const a = (await s.api("POST", "/v1/sandboxes", { shape: SHAPE })).json.data;
      runtime.stall(a.id);
      await waitStatus(s, a.id, "error");
      runtime.crash(a.id, "VMM killed by SIGKILL");
      await waitStatus(s, a.id, "failed");
    } finally {
      await s.dispose();
    }
  });

  test("a stall reported while resuming settles on error once the resume ends", async () => {
    const runtime = new FakeRuntime();
    const s = await startTestServer({ runtime });
    try {
      const a = (await s.api("POST", "/v1/sandboxes", { shape: SHAPE })).json.data;
      await s.api("POST", `/v1/sandboxes/${a.id}/pause`);
      await waitStatus(s, a.id, "paused");
      runtime.snapshotDelayMs = 100;
      assert.equal((await s.api("POST", `/v1/sandboxes/${a.id}/resume`)).status, 202);
      // The VM runs (the fake resumed it) but stalls before core marks it running.
      while (!runtime.machines.has(a.id)) await new Promise((r) => setTimeout(r, 5));
      runtime.stall(a.id);
      await waitStatus(s, a.id, "error");
    } finally {
      await s.dispose();
    }
  });

  test("after a restart a VM found stalled is error, and resume continues it", async () => {
    const runtime = new FakeRuntime();
    const s1 = await startTestServer({ runtime });
    const a = (await s1.api("POST", "/v1/sandboxes", { shape: SHAPE })).json.data;
    await s1.close();
    runtime.stalled.add(a.id); // it stalled while the server was down
    const s2 = await startTestServer({ dataDir: s1.dataDir, runtime });
    try {
      assert.equal((await s2.api("GET", `/v1/sandboxes/${a.id}`)).json.data.status, "error");
      assert.equal((await s2.api("POST", `/v1/sandboxes/${a.id}/resume`)).status, 202);
      await waitStatus(s2, a.id, "running");
      assert.ok(!runtime.stalled.has(a.id));
    } finally {
      await s2.close();
      await rm(s1.dataDir, { recursive: true, force: true });
    }
  });

  test("free-space admission: create, pause, fork and resume refused with a 503 before anything changes", async () => {
    let freeMib = 10_000;
    const disk = new DiskSpace({ dir: "/nonexistent", minFreeMib: 100, reserveMib: 0, freeBytes: () => freeMib * MIB });
    const runtime = new FakeRuntime();
    const s = await startTestServer({ runtime, disk });
    try {
      const a = (await s.api("POST", "/v1/sandboxes", { shape: SHAPE })).json.data;
      const src = (await s.api("POST", "/v1/sandboxes", { shape: SHAPE })).json.data;
      await s.api("POST", `/v1/sandboxes/${src.id}/pause`);
      await waitStatus(s, src.id, "paused");
      const total = (await s.api("GET", "/v1/sandboxes")).json.data.pagination.total;

      freeMib = 110; // above the floor, but not with a VM's files (32 MiB) on top
      const c = await s.api("POST", "/v1/sandboxes", { shape: SHAPE });
      assert.equal(c.status, 503);
      assert.deepEqual(c.json, { status: "error", message: DISK_MESSAGE, code: 503 });
      assert.equal((await s.api("GET", "/v1/sandboxes")).json.data.pagination.total, total, "no row for a refused create");
      assert.equal(runtime.created.length, 2);

      // A pause writes up to the guest's memory (256 MiB): refused, still running and usable.
      freeMib = 300;
      const p = await s.api("POST", `/v1/sandboxes/${a.id}/pause`);
      assert.equal(p.status, 503);
      assert.equal(p.json.message, DISK_MESSAGE);
      assert.equal((await s.api("GET", `/v1/sandboxes/${a.id}`)).json.data.status, "running");
      assert.equal((await s.api("POST", `/v1/sandboxes/${a.id}/exec`, { cmd: "echo", args: ["ok"] })).json.data.result.stdout, "ok\n");

      // A running fork child needs a RAM file; a paused one only overlays.
      const f = await s.api("POST", `/v1/sandboxes/${src.id}/fork`, {});
      assert.equal(f.status, 503);
      assert.equal(f.json.message, DISK_MESSAGE);
      assert.equal((await s.api("GET", `/v1/sandboxes/${src.id}`)).json.data.status, "paused");
      const fp = await s.api("POST", `/v1/sandboxes/${src.id}/fork`, { start_paused: true });
      assert.equal(fp.status, 200, fp.text);

      // A resume loads the memory into a file again.
      const r = await s.api("POST", `/v1/sandboxes/${src.id}/resume`);
      assert.equal(r.status, 503);
      assert.equal((await s.api("GET", `/v1/sandboxes/${src.id}`)).json.data.status, "paused");

      // A VM stalled on a full disk is continued only with the floor free.
      freeMib = 10_000;
      runtime.stall(a.id);
      await waitStatus(s, a.id, "error");
      freeMib = 99;
      const cont = await s.api("POST", `/v1/sandboxes/${a.id}/resume`);
      assert.equal(cont.status, 503);
      assert.equal(cont.json.message, DISK_MESSAGE);
      assert.equal((await s.api("GET", `/v1/sandboxes/${a.id}`)).json.data.status, "error");
      freeMib = 100;
      assert.equal((await s.api("POST", `/v1/sandboxes/${a.id}/resume`)).status, 202, "the floor is enough to try");
      await waitStatus(s, a.id, "running");

      // Space back: all of it works again.
      freeMib = 10_000;
      assert.equal((await s.api("POST", "/v1/sandboxes", { shape: SHAPE })).status, 200);
      assert.equal((await s.api("POST", `/v1/sandboxes/${src.id}/resume`)).status, 202);
      await waitStatus(s, src.id, "running");
    } finally {
      await s.dispose();
    }
  });

  test("a store write that finds the disk full answers a JSend 503, and the server goes on", async () => {
    const s = await startTestServer();
    try {
      const a = (await s.api("POST", "/v1/sandboxes", { shape: SHAPE })).json.data;
      const repo = s.services.repos.sandboxes;
      const orig = repo.updateSettings.bind(repo);
      repo.updateSettings = async () => {
        throw Object.assign(new Error("database or disk is full"), { code: "SQLITE_FULL" });
      };
      const r = await s.api("PATCH", `/v1/sandboxes/${a.id}`, { auto_pause_after_seconds: 60 });
      assert.equal(r.status, 503);
      assert.deepEqual(r.json, { status: "error", message: DISK_MESSAGE, code: 503 });
      repo.updateSettings = orig;
      assert.equal((await s.api("PATCH", `/v1/sandboxes/${a.id}`, { auto_pause_after_seconds: 60 })).status, 200);
    } finally {
      await s.dispose();
    }
  });
});
