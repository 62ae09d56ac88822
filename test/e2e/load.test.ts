/**
 * Load, the suite's short version (issue 7; the long run is bench/load.ts):
 * creates and destroys driven concurrently through the SDK leave no error
 * and nothing behind, and 50 exec streams at once on one sandbox all end
 * with exactly their own output.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { concurrentExecStreams, createDestroyLoad, leftovers } from "./support/load.js";
import { startServer, templateBuilt, type TestServer } from "./support/server.js";

const SHAPE = "s-1vcpu-256mb";
const ROOTFS = "minimal:1";

describe("load (minimal:1, template restores)", () => {
  let server: TestServer;

  before(async () => {
    server = await startServer({ HUTCH_TEMPLATES: "on", HUTCH_POOL_ROOTFS: ROOTFS, HUTCH_POOL_SIZE: "0", HUTCH_USER_CREATES_PER_MINUTE: "off" });
    await templateBuilt(server.dataDir, "minimal-1_1c256m10240d");
  });
  after(async () => {
    await server?.dispose();
  });

  test("16 creates and destroys, 4 at a time: no error, nothing left", async () => {
    const r = await createDestroyLoad(server, { total: 16, concurrency: 4, shape: SHAPE, rootfs: ROOTFS });
    assert.deepEqual(r.errors, []);
    assert.equal(r.createMs.length, 16);
    assert.equal(r.destroyMs.length, 16);
    const left = await leftovers(server);
    assert.deepEqual(left, { live: [], qemus: [], dirs: [], taps: [] });
  });

  test("50 concurrent exec streams on one sandbox all finish with their own output", async () => {
    const sb = await server.client.createSandbox({ shape: SHAPE, rootfs: ROOTFS });
    try {
      assert.deepEqual(await concurrentExecStreams(sb, 50, 200), []);
      // The sandbox is still fine afterwards.
      assert.equal((await sb.runCommand("echo", ["ok"])).result.stdout, "ok\n");
    } finally {
      await sb.destroy();
    }
  });
});
