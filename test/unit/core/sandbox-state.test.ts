import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  assertTransition,
  canTransition,
  InvalidTransitionError,
  isSandboxStatus,
  isTerminal,
  SANDBOX_STATUSES,
  type SandboxStatus,
} from "../../../src/core/sandbox-state.js";

/** The allowed moves, written out independently of the implementation. */
const ALLOWED = new Set<string>([
  "creating>running", "creating>failed", "creating>destroying",
  "running>pausing", "running>destroying", "running>failed", "running>error",
  "pausing>paused", "pausing>running", "pausing>error", "pausing>failed", "pausing>destroying",
  "paused>resuming", "paused>forking", "paused>destroying", "paused>failed",
  "resuming>running", "resuming>paused", "resuming>error", "resuming>failed", "resuming>destroying",
  "forking>paused", "forking>error", "forking>failed",
  "error>resuming", "error>destroying", "error>failed",
  "destroying>destroyed", "destroying>failed",
  "failed>destroyed",
]);

describe("sandbox-state", () => {
  test("has the ten statuses of the seed", () => {
    assert.deepEqual([...SANDBOX_STATUSES].sort(), [
      "creating", "destroyed", "destroying", "error", "failed", "forking", "paused", "pausing", "resuming", "running",
    ]);
    assert.ok(isSandboxStatus("running"));
    assert.ok(!isSandboxStatus("stopped"));
    assert.ok(!isSandboxStatus(3));
    assert.ok(isTerminal("destroyed") && isTerminal("failed") && !isTerminal("destroying"));
  });

  for (const from of SANDBOX_STATUSES) {
    for (const to of SANDBOX_STATUSES) {
      const allowed = ALLOWED.has(`${from}>${to}`);
      test(`${from} → ${to}: ${allowed ? "allowed" : "rejected"}`, () => {
        assert.equal(canTransition(from, to), allowed);
        if (allowed) assert.doesNotThrow(() => assertTransition(from, to));
        else assert.throws(() => assertTransition(from as SandboxStatus, to), InvalidTransitionError);
      });
    }
  }

  test("destroyed is final", () => {
    for (const to of SANDBOX_STATUSES) assert.equal(canTransition("destroyed", to), false);
  });
});
