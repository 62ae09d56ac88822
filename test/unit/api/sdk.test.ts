/** The official SDK, unmodified, against a Hutch server with the fake runtime. */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  CreateosSandboxAuthError,
  CreateosSandboxClient,
  CreateosSandboxNotFoundError,
  CreateosSandboxServerError,
  CreateosSandboxValidationError,
  Sandbox,
} from "@nodeops-createos/sandbox";
import { FakeRuntime } from "../../support/fake-runtime.js";
import { startTestServer, type TestServer } from "../../support/test-server.js";

describe("official SDK", () => {
  let s: TestServer;
  let client: CreateosSandboxClient;
  before(async () => {
    s = await startTestServer({ runtime: new FakeRuntime({ destroyDelayMs: 100 }) });
    client = new CreateosSandboxClient({ apiKey: s.apiKey, baseUrl: s.url, retry: false });
  });
  after(() => s.dispose());

  test("health, readiness, catalogs, whoami", async () => {
    assert.deepEqual(await client.healthz(), { up: true });
    assert.equal((await client.readyz()).ready, true);
    const shapes = await client.listShapes();
    assert.ok(shapes.some((x) => x.id === "s-1vcpu-256mb" && x.mem_mib === 256));
    const rootfs = await client.listRootfs();
    assert.equal(rootfs.default, "devbox:1");
    const hosts = await client.listHosts();
    assert.equal(hosts[0]!.id, "local");
    const me = await client.whoami();
    assert.match(me.user_id, /^usr_/);
  });

  test("create, get, by-ip, list, exec, files", async () => {
    const sb = await client.createSandbox({ shape: "s-1vcpu-256mb", name: "sdk-box", envs: { A: "1" } });
    assert.equal(sb.status, "running");
    assert.equal(sb.name, "sdk-box");
    const got = await client.getSandbox(sb.id);
    assert.equal(got.ip, sb.ip);
    assert.deepEqual(got.data.envs, ["A"]);
    const byIp = await client.getSandboxByIP(sb.ip!);
    assert.equal(byIp.id, sb.id);
    const list = await client.listSandboxes({ status: "running" });
    assert.ok(list.some((x) => x.id === sb.id));
    const out = await sb.runCommand("echo", ["sdk"]);
    assert.equal(out.result.stdout, "sdk\n");
    const events = [];
    for await (const e of sb.streamCommand("echo", ["streamed"])) events.push(e);
    assert.deepEqual(events, [{ type: "stdout", data: "streamed\n" }, { type: "exit", exitCode: 0 }]);
    await sb.files.upload("/root/f.txt", "file body");
    assert.equal(new TextDecoder().decode(await sb.files.download("/root/f.txt")), "file body");
    await assert.rejects(sb.files.download("/root/missing"), CreateosSandboxNotFoundError);
  });

  test("listSandboxes pages through more than one page", async () => {
    for (let i = 0; i < 3; i++) await client.createSandbox({ shape: "s-1vcpu-256mb" });
    const all = await client.listSandboxes();
    const direct = await s.api("GET", "/v1/sandboxes");
    assert.equal(all.length, direct.json.data.pagination.total);
    const capped = await client.listSandboxes({ limit: 2 });
    assert.equal(capped.length, 2);
  });

  test("setIngress and setAutoPause update the handle", async () => {
    const sb = await client.createSandbox({ shape: "s-1vcpu-256mb" });
    await sb.setIngress(true);
    assert.equal(sb.data.ingress_enabled, true);
    assert.equal(sb.data.ingress_url_template, `http://${sb.id.slice(3).toLowerCase()}-<port>.sb.test`);
    await sb.setIngress(false);
    assert.equal(sb.data.ingress_url_template, undefined);
    await sb.setAutoPause(600);
    assert.equal(sb.data.auto_pause_after_seconds, 600);
    await sb.setAutoPause(null);
    assert.equal(sb.data.auto_pause_after_seconds, undefined);
    await assert.rejects(sb.setAutoPause(5), CreateosSandboxValidationError);
  });

  test("destroy and waitUntilDestroyed; destroyed stays readable", async () => {
    const sb = await client.createSandbox({ shape: "s-1vcpu-256mb" });
    const res = await sb.destroy();
    assert.deepEqual(res, { id: sb.id, status: "destroying" });
    await sb.waitUntilDestroyed({ timeoutMs: 10_000 });
    assert.equal(sb.status, "destroyed");
    assert.ok(sb.data.destroyed_at);
    assert.equal((await sb.destroy()).status, "destroyed");
    assert.equal((await client.getSandbox(sb.id)).status, "destroyed");
  });

  test("errors map to the SDK's classes", async () => {
    await assert.rejects(client.getSandbox("sb_01J000000000000000000000AA"), CreateosSandboxNotFoundError);
    await assert.rejects(client.createSandbox({ shape: "nope" }), (err: unknown) => {
      assert.ok(err instanceof CreateosSandboxValidationError);
      return true;
    });
    const anon = new CreateosSandboxClient({ apiKey: "wrong", baseUrl: s.url, retry: false });
    await assert.rejects(anon.whoami(), CreateosSandboxAuthError);
    s.runtime.failCreate = new Error("boom");
    try {
      await assert.rejects(client.createSandbox({ shape: "s-1vcpu-256mb" }), CreateosSandboxServerError);
    } finally {
      s.runtime.failCreate = undefined;
    }
  });

  test("Sandbox.create static factory", async () => {
    const sb = await Sandbox.create({ shape: "s-1vcpu-256mb" }, { apiKey: s.apiKey, baseUrl: s.url, retry: false });
    assert.equal(sb.status, "running");
  });
});
