/**
 * The server is not the VMs' parent: it can crash (SIGKILL) or stop and come
 * back, and finds its sandboxes as they really are.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { api, pidsMentioning, startServer, type TestServer } from "./support/server.js";

let server: TestServer;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.dispose();
});

test("a SIGKILLed server comes back to running VMs, intact rows and no stray VMM", async () => {
  const keep = await server.client.createSandbox({ shape: "s-1vcpu-256mb", rootfs: "minimal:1", name: "survivor" });
  await keep.sh("echo before > /root/mark");
  const gone = await server.client.createSandbox({ shape: "s-1vcpu-256mb", rootfs: "minimal:1" });
  await gone.destroy();
  await gone.waitUntilDestroyed({ timeoutMs: 30_000 });

  await server.kill();
  // The VM outlives its server.
  assert.ok((await pidsMentioning(keep.id)).length > 0, "VMM still running without the server");

  await server.restart();
  const again = await server.client.getSandbox(keep.id);
  assert.equal(again.status, "running");
  assert.equal(again.name, "survivor");
  assert.equal(again.ip, keep.ip);
  assert.equal((await again.sh("cat /root/mark")).result.stdout, "before\n", "same VM, same disk");
  const old = await server.client.getSandbox(gone.id);
  assert.equal(old.status, "destroyed", "destroyed rows stay readable");

  const list = await api(server, "GET", "/v1/sandboxes?limit=500");
  const transient = list.json.data.data.filter((s: any) => ["creating", "destroying", "pausing", "resuming", "forking"].includes(s.status));
  assert.deepEqual(transient, []);
});

test("a VM killed while the server is down is failed and cleaned up at start-up", async () => {
  const sb = await server.client.createSandbox({ shape: "s-1vcpu-256mb", rootfs: "minimal:1" });
  await server.kill();
  for (const pid of await pidsMentioning(sb.id)) process.kill(pid, "SIGKILL");
  await server.restart();
  const view = await server.client.getSandbox(sb.id);
  assert.equal(view.status, "failed");
  assert.deepEqual(await pidsMentioning(sb.id), []);
  assert.equal(existsSync(join(server.dataDir, "sandboxes", sb.id)), false);
  // Its name and IP are free again.
  const reuse = await server.client.createSandbox({ shape: "s-1vcpu-256mb", rootfs: "minimal:1", name: sb.name });
  assert.equal(reuse.name, sb.name);
});
