/** JSend envelopes, content types, x-request-id, 404 routes, body limits, health and catalogs. */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { startTestServer, type TestServer } from "../../support/test-server.js";

describe("envelope", () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer();
  });
  after(() => s.dispose());

  test("every response carries x-request-id; a sane incoming one is kept, a bad one replaced", async () => {
    const a = await s.api("GET", "/healthz", undefined, { key: null });
    assert.ok(a.headers.get("x-request-id"));
    const b = await s.api("GET", "/v1/sandboxes", undefined, { headers: { "x-request-id": "req-123.abc" } });
    assert.equal(b.headers.get("x-request-id"), "req-123.abc");
    const c = await s.api("GET", "/v1/sandboxes", undefined, { headers: { "x-request-id": "bad id with spaces" } });
    assert.notEqual(c.headers.get("x-request-id"), "bad id with spaces");
    assert.ok(c.headers.get("x-request-id"));
    for (const r of [await s.api("GET", "/nope"), await s.api("GET", "/v1/sandboxes", undefined, { key: null })]) {
      assert.ok(r.headers.get("x-request-id"), "errors carry it too");
    }
  });

  test("JSON content type on successes and every kind of error", async () => {
    const responses = [
      await s.api("GET", "/v1/sandboxes"),
      await s.api("GET", "/v1/sandboxes", undefined, { key: null }),
      await s.api("POST", "/v1/sandboxes", "{nope"),
      await s.api("GET", "/v1/sandboxes/sb_01J000000000000000000000AA"),
      await s.api("GET", "/unknown/route"),
    ];
    for (const r of responses) {
      assert.match(r.headers.get("content-type") ?? "", /^application\/json/, r.text);
      assert.ok(["success", "fail", "error"].includes(r.json.status));
    }
  });

  test("unknown routes → 404 JSend fail", async () => {
    const r = await s.api("DELETE", "/v2/things");
    assert.equal(r.status, 404);
    assert.equal(r.json.status, "fail");
  });

  test("bodies over 1 MiB → 413 fail naming body", async () => {
    const r = await s.api("POST", "/v1/sandboxes", { shape: "s-1vcpu-256mb", name: "x".repeat(1024 * 1024 + 10) });
    assert.equal(r.status, 413);
    assert.equal(r.json.status, "fail");
    assert.ok("body" in r.json.data);
  });

  test("non-JSON bodies on a JSON route → 4xx fail naming body", async () => {
    const xml = await s.api("POST", "/v1/sandboxes", "<shape/>", { headers: { "content-type": "application/xml" } });
    assert.equal(xml.status, 415);
    assert.ok("body" in xml.json.data);
    const text = await s.api("POST", "/v1/sandboxes", "shape=x", { headers: { "content-type": "text/plain" } });
    assert.equal(text.status, 400);
    assert.ok("body" in text.json.data);
  });

  test("healthz and readyz", async () => {
    assert.deepEqual((await s.api("GET", "/healthz", undefined, { key: null })).json, { status: "success", data: { up: true } });
    assert.deepEqual((await s.api("GET", "/readyz", undefined, { key: null })).json, { status: "success", data: { ready: true } });
  });

  test("shapes are paginated; rootfs lists built images minus disabled ones", async () => {
    const shapes = await s.api("GET", "/v1/shapes?limit=2&offset=1", undefined, { key: null });
    assert.equal(shapes.json.data.pagination.count, 2);
    assert.equal(shapes.json.data.pagination.total, 7);
    assert.deepEqual(Object.keys(shapes.json.data.data[0]).sort(), ["default_disk_mib", "id", "mem_mib", "vcpu"]);
    const rootfs = await s.api("GET", "/v1/rootfs", undefined, { key: null });
    assert.deepEqual(rootfs.json.data.rootfs, ["devbox:1", "base:1"]);
    assert.equal(rootfs.json.data.default, "devbox:1");
    assert.equal(rootfs.json.data.entries[0].name, "devbox:1");
  });

  test("hosts: the local host with free memory and VM count", async () => {
    const r = await s.api("GET", "/v1/hosts");
    assert.equal(r.json.data.pagination.total, 1);
    const h = r.json.data.data[0];
    assert.equal(h.id, "local");
    assert.equal(h.status, "active");
    assert.equal(typeof h.free_mib, "number");
    assert.equal(h.vm_count, 0);
  });

  test("a runtime failure at create → 500 error envelope with a generic message", async () => {
    s.runtime.failCreate = new Error("qemu exploded at /secret/path");
    const r = await s.api("POST", "/v1/sandboxes", { shape: "s-1vcpu-256mb", name: "doomed" });
    s.runtime.failCreate = undefined;
    assert.equal(r.status, 500);
    assert.equal(r.json.status, "error");
    assert.equal(r.json.code, 500);
    assert.ok(!r.text.includes("exploded"));
    assert.ok(s.logs().includes("qemu exploded"), "the cause is logged");
    const list = await s.api("GET", "/v1/sandboxes?status=failed");
    assert.equal(list.json.data.data[0].name, "doomed");
  });
});
