/** QemuRuntime behaviour that needs no VM (the VM paths are in test/e2e/runtime.test.ts). */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { after, before, test } from "node:test";
import { isRuntimeError } from "../../../src/runtime/errors.js";
import type { ImageStore } from "../../../src/runtime/images/image-store.js";
import { HostNetwork } from "../../../src/runtime/network/host-network.js";
import { QemuRuntime } from "../../../src/runtime/qemu/qemu-runtime.js";
import { vmPaths } from "../../../src/runtime/qemu/vm-paths.js";

const log = { debug() {}, info() {}, warn() {}, error() {} };
const images = {
  catalog: () => [
    { name: "devbox:1", description: "Debian", built: false },
    { name: "minimal:1", description: "BusyBox", built: true },
  ],
  defaultImage: "devbox:1",
} as unknown as ImageStore;
// Never ensured: nothing here touches the host network.
const network = new HostNetwork({ nsName: "hutch-unit-none" });

let dataDir: string;
let rt: QemuRuntime;
before(async () => {
  dataDir = await mkdtemp("/tmp/hq-");
  rt = new QemuRuntime({ dataDir, images, network, log, accel: "tcg", memBudgetMib: 4096 });
});
after(async () => {
  await rt.close();
  await rm(dataDir, { recursive: true, force: true });
});

test("calls on unknown sandboxes are not_running; destroy of one resolves", async () => {
  const id = "sb_01JABCDEFGHJKMNPQRSTVWXYZ0";
  const out = { onStdout() {}, onStderr() {} };
  await assert.rejects(rt.exec(id, { cmd: "true", args: [] }, out), (e: unknown) => isRuntimeError(e, "not_running"));
  await assert.rejects(rt.writeFile(id, "/x", Readable.from([])), (e: unknown) => isRuntimeError(e, "not_running"));
  await assert.rejects(rt.readFile(id, "/x"), (e: unknown) => isRuntimeError(e, "not_running"));
  await rt.destroy(id);
  await rt.destroy(id);
});

test("ids that could escape the sandboxes directory are refused", async () => {
  for (const bad of ["..", "sb_../..", "sb_x/../../etc", "", "/"]) {
    await rt.destroy(bad); // resolves: such a VM cannot exist
  }
  assert.throws(() => vmPaths(dataDir, "sb_../../x"), /invalid sandbox id/);
  assert.ok(existsSync(dataDir));
});

test("capacity: the memory override and the host's CPUs", () => {
  assert.deepEqual(rt.capacity(), { memMib: 4096, vcpus: os.cpus().length });
});

test("images: only built ones, and the default", async () => {
  assert.deepEqual(await rt.images(), { images: [{ name: "minimal:1", description: "BusyBox" }], default: "devbox:1" });
});

test("a data dir too long for unix socket paths fails at construction", () => {
  assert.throws(
    () => new QemuRuntime({ dataDir: path.join("/tmp", "x".repeat(80)), images, network, log, accel: "tcg" }),
    /too long/,
  );
});

test("a create beyond the memory budget is no_capacity before anything is made", async () => {
  const spec = {
    id: "sb_01JABCDEFGHJKMNPQRSTVWXYZ1",
    name: "big",
    vcpu: 1,
    memMib: 8192,
    diskMib: 1024,
    rootfs: "minimal:1",
    net: { ip: "192.168.0.2", prefixLen: 16, gateway: "192.168.0.1", mac: "02:fc:c0:a8:00:02", dns: [] },
    envs: {},
    sshPubkeys: [],
  };
  await assert.rejects(rt.create(spec), (e: unknown) => isRuntimeError(e, "no_capacity"));
});
