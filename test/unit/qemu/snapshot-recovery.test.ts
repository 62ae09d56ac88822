/**
 * settlePaused after a server killed mid-fork: the parent's active disk,
 * hard-linked as a layer its bundle does not use yet, gets its single link
 * back (the VMM jail would make a hard-linked disk root's and read-only).
 * And after one killed while owning a paused VM's RAM (own-ram.ts): the
 * owning is finished past its commit and undone before it.
 */
import assert from "node:assert/strict";
import { link, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import type { HostNetwork } from "../../../src/runtime/network/host-network.js";
import { settlePaused } from "../../../src/runtime/qemu/snapshot-recovery.js";
import { BUNDLE_VERSION, writeBundle, type BundleMem } from "../../../src/runtime/snapshot/paused-bundle.js";
import { snapPaths } from "../../../src/runtime/snapshot/snapshot-paths.js";

const ID = "sb_01JABCDEFGHJKMNPQRSTVWXYZA";

test("a fork killed between freezing link and new overlay leaves no stray layer", async () => {
  const dataDir = await mkdtemp("/tmp/hsr-");
  try {
    const p = snapPaths(dataDir, ID);
    await mkdir(p.dir, { recursive: true });
    await writeFile(path.join(p.dir, "layer-1.qcow2"), "frozen by an earlier fork");
    await writeFile(p.overlay, "active");
    await link(p.overlay, path.join(p.dir, "layer-2.qcow2")); // freezeDisk's first step, then the kill
    await writeBundle(p.bundle, {
      version: BUNDLE_VERSION, id: ID, vcpu: 1, memMib: 256, rootfs: "minimal:1", mem: "owned", ramBlock: "mem",
      disk: { file: "disk.qcow2", format: "qcow2" }, pausedAt: new Date().toISOString(), stateBytes: 0,
    });
    const deleted: string[] = [];
    const network = { deleteTap: async (t: string) => void deleted.push(t) } as unknown as HostNetwork;
    assert.equal(await settlePaused(dataDir, ID, network), true);
    assert.deepEqual((await readdir(p.dir)).filter((f) => f.startsWith("layer-")), ["layer-1.qcow2"]);
    assert.equal((await stat(p.overlay)).nlink, 1);
    assert.deepEqual(deleted, [], "no meta.json: no tap named");
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
});

async function owningKilledAt(step: 1 | 2 | 3): Promise<{ files: string[]; state: string; mem: BundleMem }> {
  const dataDir = await mkdtemp("/tmp/hsr-");
  try {
    const p = snapPaths(dataDir, ID);
    await mkdir(p.dir, { recursive: true });
    await writeFile(p.overlay, "active");
    await writeFile(p.state, "stream");
    await writeFile(p.memOwning, "ram");
    await writeFile(p.stateOwned, "device state");
    const bundle = (mem: BundleMem) => writeBundle(p.bundle, {
      version: BUNDLE_VERSION, id: ID, vcpu: 1, memMib: 256, rootfs: "minimal:1", mem, ramBlock: "mem",
      disk: { file: "disk.qcow2", format: "qcow2" }, pausedAt: new Date().toISOString(), stateBytes: 6,
    });
    await bundle("stream");
    // The steps of ownStreamRam's commit, killed after `step` of them.
    if (step >= 2) await link(p.memOwning, p.mem).then(() => rm(p.memOwning));
    if (step >= 3) await bundle("owned");
    const network = { deleteTap: async () => {} } as unknown as HostNetwork;
    assert.equal(await settlePaused(dataDir, ID, network), true);
    const mem = JSON.parse(await readFile(p.bundle, "utf8")).mem as BundleMem;
    return { files: (await readdir(p.dir)).sort(), state: await readFile(p.state, "utf8"), mem };
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
}

test("an owning killed before its commit is undone: the stream bundle stays, its new files go", async () => {
  for (const step of [1, 2] as const) {
    assert.deepEqual(await owningKilledAt(step), { files: ["bundle.json", "disk.qcow2", "state"], state: "stream", mem: "stream" }, `killed after step ${step}`);
  }
});

test("an owning killed after its commit is finished: the device state replaces the stream", async () => {
  assert.deepEqual(await owningKilledAt(3), { files: ["bundle.json", "disk.qcow2", "mem", "state"], state: "device state", mem: "owned" });
});
