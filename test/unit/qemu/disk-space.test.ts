/** The data dir's free-space admission and its reserve file (src/runtime/disk-space.ts). */
import assert from "node:assert/strict";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { DiskSpace, RESERVE_FILE } from "../../../src/runtime/disk-space.js";
import { isRuntimeError } from "../../../src/runtime/errors.js";

const MIB = 1024 * 1024;

test("admit: refuses what would leave less than the floor, with a readable disk_full", () => {
  let free = 300;
  const d = new DiskSpace({ dir: "/x", minFreeMib: 100, reserveMib: 0, freeBytes: () => free * MIB + 5 });
  assert.equal(d.freeMib(), 300);
  assert.ok(d.hasRoom(200));
  assert.ok(!d.hasRoom(201));
  assert.doesNotThrow(() => d.admit(200, "a pause"));
  assert.throws(
    () => d.admit(256 + 32, "a pause"),
    (err: unknown) =>
      isRuntimeError(err, "disk_full") &&
      err.message === "not enough free disk space for a pause: 300 MiB free in the data dir, 288 MiB needed plus 100 MiB kept free",
  );
  free = 50; // already under the floor: even nothing more is refused
  assert.throws(() => d.admit(0, "a new sandbox"), (err: unknown) => isRuntimeError(err, "disk_full"));
});

test("the real statfs of a directory gives a plausible free size", () => {
  const d = new DiskSpace({ dir: tmpdir(), minFreeMib: 0, reserveMib: 0 });
  assert.ok(d.freeMib() > 0);
});

test("reserve: created with real blocks, released on demand, put back once the space returns", async () => {
  const dir = await mkdtemp(join(tmpdir(), "hutch-disk-"));
  let free = 1000;
  const d = new DiskSpace({ dir, minFreeMib: 100, reserveMib: 2, freeBytes: () => free * MIB });
  try {
    await d.ensureReserve();
    const st = await stat(join(dir, RESERVE_FILE));
    assert.equal(st.size, 2 * MIB);
    assert.ok(st.blocks * 512 >= 2 * MIB, "not sparse: its blocks are held");
    assert.ok(d.reserveHeld);
    assert.equal(await d.releaseReserve("test"), true);
    assert.equal(await d.releaseReserve("again"), false);
    await assert.rejects(stat(join(dir, RESERVE_FILE)));
    // Not while the disk is short: it would only fill it again.
    free = 101;
    d.start(10);
    await new Promise((r) => setTimeout(r, 60));
    assert.ok(!d.reserveHeld);
    free = 1000;
    for (let i = 0; i < 100 && !d.reserveHeld; i++) await new Promise((r) => setTimeout(r, 10));
    assert.ok(d.reserveHeld);
    assert.equal((await stat(join(dir, RESERVE_FILE))).size, 2 * MIB);
    await d.stop();
    // A restart finds it in place.
    const again = new DiskSpace({ dir, minFreeMib: 100, reserveMib: 2, freeBytes: () => 0 });
    await again.ensureReserve();
    assert.ok(again.reserveHeld);
  } finally {
    await d.stop();
    await rm(dir, { recursive: true, force: true });
  }
});

test("reserve: not created when it would eat into the floor; holdReserve says so", async () => {
  const dir = await mkdtemp(join(tmpdir(), "hutch-disk-"));
  try {
    let free = 105;
    const d = new DiskSpace({ dir, minFreeMib: 100, reserveMib: 8, freeBytes: () => free * MIB });
    await d.ensureReserve();
    assert.ok(!d.reserveHeld);
    assert.equal(await d.holdReserve(), false);
    await assert.rejects(stat(join(dir, RESERVE_FILE)));
    free = 108;
    assert.equal(await d.holdReserve(), true);
    assert.equal((await stat(join(dir, RESERVE_FILE))).size, 8 * MIB);
    assert.equal(await new DiskSpace({ dir, minFreeMib: 0, reserveMib: 0, freeBytes: () => 0 }).holdReserve(), true, "none configured");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
