/** Restart recovery (rows intact, transient statuses resolved) and VM crashes. */
import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import { describe, test } from "node:test";
import { FakeRuntime } from "../../support/fake-runtime.js";
import { startTestServer } from "../../support/test-server.js";

const SHAPE = "s-1vcpu-256mb";

describe("recovery", () => {
  test("after a restart rows are intact and nothing stays transient", async () => {
    const runtime = new FakeRuntime();
    const s1 = await startTestServer({ runtime });
    const keep = (await s1.api("POST", "/v1/sandboxes", { shape: SHAPE, name: "keep", envs: { K: "v" } })).json.data;
    const lost = (await s1.api("POST", "/v1/sandboxes", { shape: SHAPE, name: "lost" })).json.data;
    const dying = (await s1.api("POST", "/v1/sandboxes", { shape: SHAPE, name: "dying" })).json.data;
    const creating = (await s1.api("POST", "/v1/sandboxes", { shape: SHAPE, name: "half" })).json.data;
    await s1.close();
    // Simulate a crash mid-way: one row stuck destroying, one stuck creating.
    const { openDatabase } = await import("../../../src/store/open-database.js");
    const { db } = await openDatabase({ dataDir: s1.dataDir, databaseUrl: process.env.HUTCH_TEST_DATABASE_URL });
    await db.updateTable("sandboxes").set({ status: "destroying" }).where("id", "=", dying.id).execute();
    await db.updateTable("sandboxes").set({ status: "creating" }).where("id", "=", creating.id).execute();
    await db.destroy();
    runtime.machines.delete(lost.id); // its VM died while the server was down

    const s2 = await startTestServer({ dataDir: s1.dataDir, runtime });
    try {
      const get = async (id: string) => (await s2.api("GET", `/v1/sandboxes/${id}`)).json.data;
      const k = await get(keep.id);
      assert.equal(k.status, "running");
      assert.equal(k.name, "keep");
      assert.equal(k.ip, keep.ip);
      assert.deepEqual(k.envs, ["K"]);
      assert.equal((await get(lost.id)).status, "failed");
      const d = await get(dying.id);
      assert.equal(d.status, "destroyed");
      assert.ok(d.destroyed_at);
      assert.equal((await get(creating.id)).status, "failed");
      assert.ok(runtime.destroyed.includes(creating.id), "a half-created VM is cleaned up");
      // Envs still decrypt after the restart (same secret.key).
      const r = await s2.api("POST", `/v1/sandboxes/${keep.id}/exec`, { cmd: "env" });
      assert.equal(r.json.data.result.stdout, "K=v\n");
      const all = await s2.api("GET", "/v1/sandboxes");
      assert.equal(all.json.data.pagination.total, 4);
      for (const row of all.json.data.data) assert.ok(["running", "failed", "destroyed"].includes(row.status));
    } finally {
      await s2.close();
      await rm(s1.dataDir, { recursive: true, force: true });
    }
  });

  test("a VM that dies on its own → failed, its IP and name released", async () => {
    const s = await startTestServer();
    try {
      const a = (await s.api("POST", "/v1/sandboxes", { shape: SHAPE, name: "crashy" })).json.data;
      s.runtime.crash(a.id);
      await s.services.sandboxes.close();
      assert.equal((await s.api("GET", `/v1/sandboxes/${a.id}`)).json.data.status, "failed");
      const b = (await s.api("POST", "/v1/sandboxes", { shape: SHAPE, name: "crashy" })).json.data;
      assert.equal(b.ip, a.ip);
    } finally {
      await s.dispose();
    }
  });
});
