import { test } from "node:test";
import assert from "node:assert/strict";
import { Refill } from "../../../src/runtime/qemu/refill.js";

test("one pass at a time; requests during a pass make exactly one more; none after close", async () => {
  let closed = false;
  let passes = 0;
  let running = 0;
  let release!: () => void;
  const refill = new Refill(async () => {
    passes++;
    running++;
    assert.equal(running, 1, "never two passes at once");
    await new Promise<void>((r) => (release = r));
    running--;
  }, () => closed);
  refill.request();
  refill.request();
  refill.request();
  assert.equal(passes, 1);
  release();
  await new Promise((r) => setImmediate(r));
  assert.equal(passes, 2, "the requests during the first pass made one more");
  closed = true;
  refill.request();
  release();
  await refill.settled();
  assert.equal(passes, 2, "nothing after close");
});
