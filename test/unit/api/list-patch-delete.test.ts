/** List paging/filter/order, PATCH semantics, DELETE idempotency and the views' fields. */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { FakeRuntime } from "../../support/fake-runtime.js";
import { sshKey, startTestServer, type TestServer } from "../../support/test-server.js";

const SHAPE = "s-1vcpu-256mb";
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

describe("views", () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer();
  });
  after(() => s.dispose());

  test("create returns exactly the seed's create fields (+ ingress template when on)", async () => {
    const r = await s.api("POST", "/v1/sandboxes", { shape: "s-1vcpu-1gb", egress: ["pypi.org"], ingress_enabled: true });
    assert.deepEqual(Object.keys(r.json.data).sort(), [
      "bandwidth_quota_bytes", "disk_mib", "egress", "id", "ingress_url_template", "ip", "mem_mib", "name", "rootfs", "shape", "spawn_ms", "vcpu",
    ]);
    const d = r.json.data;
    assert.match(d.id, /^sb_[0-9A-HJKMNP-TV-Z]{26}$/);
    assert.equal(d.bandwidth_quota_bytes, 5368709120);
    assert.equal(d.vcpu, 1);
    assert.equal(d.mem_mib, 1024);
    assert.equal(d.rootfs, "devbox:1");
    assert.deepEqual(d.egress, ["pypi.org"]);
    assert.equal(typeof d.spawn_ms, "number");
    assert.equal(d.ingress_url_template, `http://${d.id.slice(3).toLowerCase()}-<port>.sb.test`);
    const off = await s.api("POST", "/v1/sandboxes", { shape: SHAPE });
    assert.equal(off.json.data.ingress_url_template, undefined);
  });

  test("GET returns the SandboxView fields; envs are key names only", async () => {
    const c = await s.api("POST", "/v1/sandboxes", { shape: SHAPE, envs: { TOKEN: "v1", OTHER: "v2" }, ssh_pubkeys: [sshKey()], auto_pause_after_seconds: 600 });
    const r = await s.api("GET", `/v1/sandboxes/${c.json.data.id}`);
    const v = r.json.data;
    for (const k of ["id", "name", "status", "ip", "vcpu", "mem_mib", "disk_mib", "shape", "rootfs", "region", "ingress_enabled", "bandwidth_ingress_bytes", "auto_pause_after_seconds", "envs", "ssh_pubkeys", "egress", "created_at", "running_at", "spawn_ms", "bandwidth_quota_bytes"]) {
      assert.ok(k in v, `missing ${k}`);
    }
    assert.equal(v.paused_at, null);
    assert.equal(v.last_resumed_at, null);
    assert.equal(v.forked_from, null);
    assert.equal(v.status, "running");
    assert.equal(v.region, "local");
    assert.deepEqual(v.envs.sort(), ["OTHER", "TOKEN"]);
    assert.ok(!r.text.includes("v1") || !r.text.includes('"v1"'));
    assert.match(v.created_at, RFC3339);
    assert.match(v.running_at, RFC3339);
    assert.ok(!("destroyed_at" in v));
    assert.ok(!("ingress_url_template" in v));
  });

  test("auto_pause_after_seconds is omitted when null", async () => {
    const c = await s.api("POST", "/v1/sandboxes", { shape: SHAPE });
    const r = await s.api("GET", `/v1/sandboxes/${c.json.data.id}`);
    assert.ok(!("auto_pause_after_seconds" in r.json.data));
  });
});

describe("list", () => {
  let s: TestServer;
  const ids: string[] = [];
  before(async () => {
    s = await startTestServer({ runtime: new FakeRuntime() });
    for (let i = 0; i < 7; i++) ids.push((await s.api("POST", "/v1/sandboxes", { shape: SHAPE })).json.data.id);
    s.runtime.failCreate = new Error("boom");
    await s.api("POST", "/v1/sandboxes", { shape: SHAPE });
    s.runtime.failCreate = undefined;
  });
  after(() => s.dispose());

  test("newest first with pagination {total, limit, offset, count}", async () => {
    const r = await s.api("GET", "/v1/sandboxes?limit=3&offset=1");
    assert.deepEqual(r.json.data.pagination, { total: 8, limit: 3, offset: 1, count: 3 });
    const got = r.json.data.data.map((x: { id: string }) => x.id);
    assert.deepEqual(got, [...ids].reverse().slice(0, 3));
    const keys = Object.keys(r.json.data.data[0]).sort();
    assert.deepEqual(keys, ["created_at", "disk_mib", "id", "ingress_enabled", "ip", "mem_mib", "name", "region", "rootfs", "shape", "status", "vcpu"]);
  });

  test("default limit 50; larger limits clamp to 500", async () => {
    assert.equal((await s.api("GET", "/v1/sandboxes")).json.data.pagination.limit, 50);
    assert.equal((await s.api("GET", "/v1/sandboxes?limit=100000")).json.data.pagination.limit, 500);
  });

  test("bad limit/offset → 400 naming it", async () => {
    for (const q of ["limit=-1", "limit=abc", "limit=1.5", "limit=", "limit=1e2", "offset=-2", "offset=x", "offset=0.5"]) {
      const r = await s.api("GET", `/v1/sandboxes?${q}`);
      assert.equal(r.status, 400, q);
      assert.ok(q.split("=")[0]! in r.json.data, r.text);
    }
  });

  test("status filter: running, failed; unknown → 400 naming status", async () => {
    const running = await s.api("GET", "/v1/sandboxes?status=running");
    assert.equal(running.json.data.pagination.total, 7);
    const failed = await s.api("GET", "/v1/sandboxes?status=failed");
    assert.equal(failed.json.data.pagination.total, 1);
    assert.equal(failed.json.data.data[0].status, "failed");
    assert.equal((await s.api("GET", "/v1/sandboxes?status=creating")).json.data.pagination.total, 0);
    const bad = await s.api("GET", "/v1/sandboxes?status=paused");
    assert.equal(bad.status, 400);
    assert.ok("status" in bad.json.data);
  });

  test("offset past the end → empty page", async () => {
    const r = await s.api("GET", "/v1/sandboxes?offset=100");
    assert.deepEqual(r.json.data.pagination, { total: 8, limit: 50, offset: 100, count: 0 });
  });
});

describe("patch and delete", () => {
  let s: TestServer;
  let id: string;
  before(async () => {
    s = await startTestServer({ runtime: new FakeRuntime({ destroyDelayMs: 50 }) });
    id = (await s.api("POST", "/v1/sandboxes", { shape: SHAPE, auto_pause_after_seconds: 300 })).json.data.id;
  });
  after(() => s.dispose());

  test("only sent fields change; returns the full view", async () => {
    const r = await s.api("PATCH", `/v1/sandboxes/${id}`, { ingress_enabled: true });
    assert.equal(r.status, 200);
    assert.equal(r.json.data.ingress_enabled, true);
    assert.equal(r.json.data.auto_pause_after_seconds, 300);
    assert.equal(r.json.data.ingress_url_template, `http://${id.slice(3).toLowerCase()}-<port>.sb.test`);
    const r2 = await s.api("PATCH", `/v1/sandboxes/${id}`, { auto_pause_after_seconds: 1800 });
    assert.equal(r2.json.data.ingress_enabled, true);
    assert.equal(r2.json.data.auto_pause_after_seconds, 1800);
    const g = await s.api("GET", `/v1/sandboxes/${id}`);
    assert.equal(g.json.data.auto_pause_after_seconds, 1800);
  });

  test("disable_auto_pause beats auto_pause_after_seconds", async () => {
    const r = await s.api("PATCH", `/v1/sandboxes/${id}`, { auto_pause_after_seconds: 900, disable_auto_pause: true });
    assert.equal(r.status, 200);
    assert.ok(!("auto_pause_after_seconds" in r.json.data));
  });

  test("ranges and types are validated; unknown id → 404", async () => {
    const r = await s.api("PATCH", `/v1/sandboxes/${id}`, { auto_pause_after_seconds: 10 });
    assert.equal(r.status, 400);
    assert.ok("auto_pause_after_seconds" in r.json.data);
    const t = await s.api("PATCH", `/v1/sandboxes/${id}`, { ingress_enabled: "yes" });
    assert.equal(t.status, 400);
    assert.ok("ingress_enabled" in t.json.data);
    assert.equal((await s.api("PATCH", "/v1/sandboxes/sb_01J000000000000000000000AA", { ingress_enabled: true })).status, 404);
  });

  test("delete answers destroying at once, then destroyed; idempotent; stays readable", async () => {
    const d = await s.api("DELETE", `/v1/sandboxes/${id}`);
    assert.deepEqual(d.json, { status: "success", data: { id, status: "destroying" } });
    const during = await s.api("GET", `/v1/sandboxes/${id}`);
    assert.equal(during.json.data.status, "destroying");
    assert.deepEqual((await s.api("DELETE", `/v1/sandboxes/${id}`)).json.data, { id, status: "destroying" });
    await s.services.sandboxes.close();
    const g = await s.api("GET", `/v1/sandboxes/${id}`);
    assert.equal(g.json.data.status, "destroyed");
    assert.match(g.json.data.destroyed_at, RFC3339);
    assert.ok(s.runtime.destroyed.includes(id));
    assert.deepEqual((await s.api("DELETE", `/v1/sandboxes/${id}`)).json.data, { id, status: "destroyed" });
    const list = await s.api("GET", "/v1/sandboxes?status=destroyed");
    assert.equal(list.json.data.data[0].id, id);
    assert.equal((await s.api("DELETE", "/v1/sandboxes/sb_01J000000000000000000000AA")).status, 404);
  });

  test("deleting a failed sandbox ends it destroyed", async () => {
    s.runtime.failCreate = new Error("boom");
    await s.api("POST", "/v1/sandboxes", { shape: SHAPE });
    s.runtime.failCreate = undefined;
    const failed = (await s.api("GET", "/v1/sandboxes?status=failed")).json.data.data[0];
    const d = await s.api("DELETE", `/v1/sandboxes/${failed.id}`);
    assert.deepEqual(d.json.data, { id: failed.id, status: "destroyed" });
  });
});
