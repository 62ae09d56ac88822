/** Names, IPs, MACs, by-ip and admission (503 when the host is full). */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { FakeRuntime } from "../../support/fake-runtime.js";
import { startTestServer, type TestServer } from "../../support/test-server.js";

const SHAPE = "s-1vcpu-256mb";

async function waitDestroyed(s: TestServer, id: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const r = await s.api("GET", `/v1/sandboxes/${id}`);
    if (r.json.data.status === "destroyed") return;
    await new Promise((res) => setTimeout(res, 20));
  }
  throw new Error("not destroyed in time");
}

describe("names and IPs", () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ runtime: new FakeRuntime({ createDelayMs: 20 }) });
  });
  after(() => s.dispose());

  test("two concurrent creates of one name: exactly one wins, the other 409 naming name", async () => {
    const rs = await Promise.all([1, 2, 3].map(() => s.api("POST", "/v1/sandboxes", { shape: SHAPE, name: "dup" })));
    const codes = rs.map((r) => r.status).sort();
    assert.deepEqual(codes, [200, 409, 409]);
    for (const r of rs.filter((x) => x.status === 409)) {
      assert.equal(r.json.status, "fail");
      assert.equal(typeof r.json.data.name, "string");
    }
  });

  test("a name is free again once destroyed", async () => {
    const first = await s.api("POST", "/v1/sandboxes", { shape: SHAPE, name: "reuse" });
    assert.equal((await s.api("POST", "/v1/sandboxes", { shape: SHAPE, name: "reuse" })).status, 409);
    await s.api("DELETE", `/v1/sandboxes/${first.json.data.id}`);
    await waitDestroyed(s, first.json.data.id);
    const again = await s.api("POST", "/v1/sandboxes", { shape: SHAPE, name: "reuse" });
    assert.equal(again.status, 200, again.text);
    assert.notEqual(again.json.data.id, first.json.data.id);
  });

  test("a name is free again once failed", async () => {
    s.runtime.failCreate = new Error("boom");
    const r = await s.api("POST", "/v1/sandboxes", { shape: SHAPE, name: "flaky" });
    s.runtime.failCreate = undefined;
    assert.equal(r.status, 500);
    assert.equal((await s.api("POST", "/v1/sandboxes", { shape: SHAPE, name: "flaky" })).status, 200);
  });

  test("generated names are adjective-animal and unique among live sandboxes", async () => {
    const rs = await Promise.all(Array.from({ length: 12 }, () => s.api("POST", "/v1/sandboxes", { shape: SHAPE })));
    const names = rs.map((r) => r.json.data.name as string);
    for (const n of names) assert.match(n, /^[a-z]+-[a-z]+(-[0-9a-f]{4})?$/);
    assert.equal(new Set(names).size, names.length);
  });

  test("IPs are unique among live sandboxes, MAC derives from IP, gateway and network skipped", async () => {
    const list = await s.api("GET", "/v1/sandboxes?limit=500");
    const live = list.json.data.data.filter((x: { status: string }) => x.status === "running");
    const ips = live.map((x: { ip: string }) => x.ip);
    assert.equal(new Set(ips).size, ips.length);
    assert.ok(!ips.includes("192.168.0.0") && !ips.includes("192.168.0.1"));
    const one = live[0];
    const spec = s.runtime.created.find((c) => c.id === one.id)!;
    const hex = one.ip.split(".").map((b: string) => Number(b).toString(16).padStart(2, "0")).join(":");
    assert.equal(spec.net.mac, `02:fc:${hex}`);
    assert.equal(spec.net.gateway, "192.168.0.1");
    assert.equal(spec.net.prefixLen, 16);
  });

  test("an IP is released when destroyed and kept on the row; by-ip prefers the live sandbox", async () => {
    const a = await s.api("POST", "/v1/sandboxes", { shape: SHAPE });
    const ip = a.json.data.ip;
    await s.api("DELETE", `/v1/sandboxes/${a.json.data.id}`);
    await waitDestroyed(s, a.json.data.id);
    const old = await s.api("GET", `/v1/sandboxes/${a.json.data.id}`);
    assert.equal(old.json.data.ip, ip);
    const byIpOld = await s.api("GET", `/v1/sandboxes/by-ip/${ip}`);
    assert.equal(byIpOld.json.data.id, a.json.data.id);
    const b = await s.api("POST", "/v1/sandboxes", { shape: SHAPE });
    assert.equal(b.json.data.ip, ip, "lowest free IP is reused");
    const byIp = await s.api("GET", `/v1/sandboxes/by-ip/${ip}`);
    assert.equal(byIp.json.data.id, b.json.data.id);
    assert.equal((await s.api("GET", "/v1/sandboxes/by-ip/10.9.9.9")).status, 404);
  });
});

describe("capacity", () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ runtime: new FakeRuntime({ capacity: { memMib: 1024, vcpus: 4 }, createDelayMs: 10 }) });
  });
  after(() => s.dispose());

  test("a VM bigger than the host → 503 no host capacity", async () => {
    const r = await s.api("POST", "/v1/sandboxes", { shape: "s-2vcpu-2gb" });
    assert.equal(r.status, 503);
    assert.deepEqual(r.json, { status: "error", message: "no host capacity", code: 503 });
  });

  test("concurrent creates fill the host exactly; the rest get 503", async () => {
    const rs = await Promise.all(Array.from({ length: 6 }, () => s.api("POST", "/v1/sandboxes", { shape: SHAPE })));
    assert.equal(rs.filter((r) => r.status === 200).length, 4);
    assert.equal(rs.filter((r) => r.status === 503).length, 2);
    const hosts = await s.api("GET", "/v1/hosts");
    assert.equal(hosts.json.data.data[0].free_mib, 0);
    assert.equal(hosts.json.data.data[0].vm_count, 4);
  });

  test("memory is returned once a sandbox is destroyed", async () => {
    const list = await s.api("GET", "/v1/sandboxes?status=running");
    const id = list.json.data.data[0].id;
    await s.api("DELETE", `/v1/sandboxes/${id}`);
    await waitDestroyed(s, id);
    assert.equal((await s.api("POST", "/v1/sandboxes", { shape: SHAPE })).status, 200);
  });
});
