import assert from "node:assert/strict";
import { test } from "node:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { chooseAccel, memBudgetMib, parseSysfsChoice, thpMode } from "../../../src/runtime/host-info.js";

test("KVM only with hardware virtualization and a usable /dev/kvm", () => {
  assert.equal(chooseAccel({ hardwareVirt: true, kvmDevice: true }), "kvm");
  // /dev/kvm from kvm_pvm (no kvm_intel/kvm_amd) hangs stock kernels.
  assert.equal(chooseAccel({ hardwareVirt: false, kvmDevice: true }), "tcg");
  assert.equal(chooseAccel({ hardwareVirt: true, kvmDevice: false }), "tcg");
});

test("HUTCH_ACCEL overrides detection; junk is rejected", () => {
  assert.equal(chooseAccel({ hardwareVirt: true, kvmDevice: true }, "tcg"), "tcg");
  assert.equal(chooseAccel({ hardwareVirt: false, kvmDevice: false }, "kvm"), "kvm");
  assert.equal(chooseAccel({ hardwareVirt: false, kvmDevice: false }, ""), "tcg");
  assert.throws(() => chooseAccel({ hardwareVirt: false, kvmDevice: false }, "hvf"), /HUTCH_ACCEL/);
});

test("memory budget: total minus max(1 GiB, 10%), or the override", () => {
  assert.equal(memBudgetMib(24576), 24576 - 2458);
  assert.equal(memBudgetMib(4096), 3072);
  assert.equal(memBudgetMib(512), 0);
  assert.equal(memBudgetMib(24576, 8192), 8192);
  assert.throws(() => memBudgetMib(24576, -1), /HUTCH_HOST_MEM_MIB/);
});

test("transparent huge pages: the bracketed choice, undefined when unreadable", async () => {
  assert.equal(parseSysfsChoice("always [madvise] never\n"), "madvise");
  assert.equal(parseSysfsChoice("[always] madvise never"), "always");
  assert.equal(parseSysfsChoice("always madvise never"), undefined);
  const dir = await mkdtemp(path.join(tmpdir(), "hutch-thp-"));
  try {
    await writeFile(path.join(dir, "enabled"), "always madvise [never]\n");
    assert.equal(thpMode(path.join(dir, "enabled")), "never");
    assert.equal(thpMode(path.join(dir, "missing")), undefined);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
