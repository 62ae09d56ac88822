import assert from "node:assert/strict";
import { test } from "node:test";
import { chooseAccel, memBudgetMib } from "../../../src/runtime/host-info.js";

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
