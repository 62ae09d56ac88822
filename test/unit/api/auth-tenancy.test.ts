/** 401s, the accepted auth headers, tenant isolation (404s) and `keys create`. */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { createKeyCommand } from "../../../src/cli/commands/keys.js";
import { startTestServer, type TestServer } from "../../support/test-server.js";

describe("auth and tenancy", () => {
  let s: TestServer;
  let bobKey: string;
  let aliceId: string;
  before(async () => {
    s = await startTestServer();
    bobKey = await s.newUser("bob");
    const r = await s.api("POST", "/v1/sandboxes", { shape: "s-1vcpu-256mb", name: "alice-box" });
    aliceId = r.json.data.id;
  });
  after(() => s.dispose());

  test("missing or wrong key → 401 JSend fail", async () => {
    for (const key of [null, "wrong", ""]) {
      const r = await s.api("GET", "/v1/sandboxes", undefined, { key });
      assert.equal(r.status, 401);
      assert.equal(r.json.status, "fail");
      assert.match(r.headers.get("content-type") ?? "", /application\/json/);
    }
    const r = await s.api("POST", "/v1/sandboxes", { shape: "s-1vcpu-256mb" }, { key: "nope" });
    assert.equal(r.status, 401);
  });

  test("X-Auth-Token, X-Access-Token and Bearer are accepted", async () => {
    for (const h of ["x-auth-token", "x-access-token"]) {
      const r = await s.api("GET", "/v1/whoami", undefined, { key: null, headers: { [h]: s.apiKey } });
      assert.equal(r.status, 200, h);
    }
    const r = await s.api("GET", "/v1/whoami", undefined, { key: null, headers: { authorization: `Bearer ${s.apiKey}` } });
    assert.equal(r.status, 200);
  });

  test("health, readiness, shapes and rootfs need no key; hosts and whoami do", async () => {
    for (const p of ["/healthz", "/readyz", "/v1/shapes", "/v1/rootfs"]) {
      assert.equal((await s.api("GET", p, undefined, { key: null })).status, 200, p);
    }
    for (const p of ["/v1/hosts", "/v1/whoami"]) {
      assert.equal((await s.api("GET", p, undefined, { key: null })).status, 401, p);
    }
  });

  test("another tenant's sandbox is 404 everywhere", async () => {
    const o = { key: bobKey };
    assert.equal((await s.api("GET", `/v1/sandboxes/${aliceId}`, undefined, o)).status, 404);
    assert.equal((await s.api("PATCH", `/v1/sandboxes/${aliceId}`, { ingress_enabled: true }, o)).status, 404);
    assert.equal((await s.api("DELETE", `/v1/sandboxes/${aliceId}`, undefined, o)).status, 404);
    assert.equal((await s.api("POST", `/v1/sandboxes/${aliceId}/exec`, { cmd: "echo" }, o)).status, 404);
    assert.equal((await s.api("GET", `/v1/sandboxes/${aliceId}/files?path=/etc/hosts`, undefined, o)).status, 404);
    const alice = await s.api("GET", `/v1/sandboxes/${aliceId}`);
    assert.equal((await s.api("GET", `/v1/sandboxes/by-ip/${alice.json.data.ip}`, undefined, o)).status, 404);
    const list = await s.api("GET", "/v1/sandboxes", undefined, o);
    assert.equal(list.json.data.pagination.total, 0);
    // Alice's sandbox is untouched.
    assert.equal(alice.json.data.status, "running");
  });

  test("names are per user: bob may use alice's name", async () => {
    const r = await s.api("POST", "/v1/sandboxes", { shape: "s-1vcpu-256mb", name: "alice-box" }, { key: bobKey });
    assert.equal(r.status, 200, r.text);
  });

  test("whoami reports the caller and counts", async () => {
    const r = await s.api("GET", "/v1/whoami", undefined, { key: bobKey });
    assert.match(r.json.data.user_id, /^usr_/);
    assert.deepEqual(r.json.data.stats, { running: 1, paused: 0, other: 0, total: 1 });
  });

  test("keys create against the running server's data dir works at once", async () => {
    // Prime the auth path with a miss for the key-to-be: misses must not be cached.
    const lines: string[] = [];
    const key = await createKeyCommand({ user: "carol", dataDir: s.dataDir },
      { HUTCH_HOST_ID: "local", ...(process.env.HUTCH_TEST_DATABASE_URL ? { HUTCH_DATABASE_URL: process.env.HUTCH_TEST_DATABASE_URL } : {}) },
      (l) => lines.push(l),
    );
    assert.equal(lines.at(-1), key);
    const r = await s.api("GET", "/v1/whoami", undefined, { key });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.data.stats.total, 0);
    // Keys are stored hashed.
    const rows = await s.db.selectFrom("api_keys").select("key_hash").execute();
    assert.ok(rows.every((row) => row.key_hash !== key && /^[0-9a-f]{64}$/.test(row.key_hash)));
  });
});
