import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import {
  INITRAMFS_MODULES,
  moduleDepends,
  orderModules,
  resolveModules,
} from "../../../src/runtime/images/kernel-modules.js";

/** A fake .ko with a modinfo section (NUL-separated key=value strings). */
function ko(depends: string, extra = ""): Buffer {
  return Buffer.from(`\x7fELF junk xdepends=bogus\0license=GPL\0${extra}depends=${depends}\0name=x\0`, "latin1");
}

describe("moduleDepends", () => {
  it("reads the depends= field, ignoring look-alikes inside other strings", () => {
    assert.deepEqual(moduleDepends(ko("virtio_ring,virtio")), ["virtio_ring", "virtio"]);
    assert.deepEqual(moduleDepends(ko("")), []);
    assert.deepEqual(moduleDepends(ko("net-failover")), ["net_failover"]);
    assert.deepEqual(moduleDepends(Buffer.from("no modinfo here")), []);
  });
});

describe("orderModules", () => {
  const deps: Record<string, string[]> = {
    virtio_ring: [],
    virtio: ["virtio_ring"],
    virtio_mmio: ["virtio", "virtio_ring"],
    virtio_net: ["virtio_ring", "virtio", "net_failover"],
    net_failover: ["failover"],
    failover: [],
  };
  it("puts dependencies first and adds missing ones", () => {
    assert.deepEqual(orderModules(["virtio_net", "virtio_mmio"], (n) => deps[n] ?? []), [
      "virtio_ring", "virtio", "failover", "net_failover", "virtio_net", "virtio_mmio",
    ]);
  });
  it("keeps the RUNTIME-NOTES order when it is already valid", () => {
    const order = ["virtio_ring", "virtio", "virtio_mmio", "failover", "net_failover", "virtio_net"];
    assert.deepEqual(orderModules(order, (n) => deps[n] ?? []), order);
  });
  it("detects cycles", () => {
    assert.throws(() => orderModules(["a"], (n) => (n === "a" ? ["b"] : ["a"])), /cycle/);
  });
  it("the initramfs list loads virtio before its users and overlay last", () => {
    assert.equal(INITRAMFS_MODULES[0], "virtio_ring");
    assert.ok(INITRAMFS_MODULES.indexOf("virtio_mmio") < INITRAMFS_MODULES.indexOf("virtio_blk"));
    assert.ok(INITRAMFS_MODULES.includes("overlay"));
  });
});

describe("resolveModules", () => {
  const dir = mkdtempSync(join(tmpdir(), "hutch-mods-"));
  after(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, "kernel/drivers/virtio"), { recursive: true });
  mkdirSync(join(dir, "kernel/net"), { recursive: true });
  writeFileSync(join(dir, "kernel/drivers/virtio/virtio_ring.ko"), ko(""));
  writeFileSync(join(dir, "kernel/drivers/virtio/virtio.ko"), ko("virtio_ring"));
  writeFileSync(join(dir, "kernel/net/virtio_blk.ko"), ko("virtio,virtio_ring"));

  it("finds files anywhere below the modules dir, pulls in dependencies, orders them", async () => {
    const mods = await resolveModules(dir, ["virtio_blk"]);
    assert.deepEqual(mods.map((m) => m.name), ["virtio_ring", "virtio", "virtio_blk"]);
    assert.deepEqual(moduleDepends(mods[2]?.data ?? Buffer.alloc(0)), ["virtio", "virtio_ring"]);
  });
  it("decompresses .ko.xz modules", async () => {
    writeFileSync(join(dir, "kernel/net/failover.ko"), ko(""));
    execFileSync("xz", ["-f", join(dir, "kernel/net/failover.ko")]);
    const mods = await resolveModules(dir, ["failover"]);
    assert.deepEqual(mods[0]?.data, ko(""));
  });
  it("names a missing module", async () => {
    await assert.rejects(resolveModules(dir, ["overlay"]), /overlay not found/);
  });
});
