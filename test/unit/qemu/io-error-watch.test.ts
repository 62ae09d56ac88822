/** Noticing a VM stopped on a full disk (QMP BLOCK_IO_ERROR) and continuing it. */
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { test } from "node:test";
import { isRuntimeError } from "../../../src/runtime/errors.js";
import { continueStalled, isIoErrorStatus, isNoSpaceStop, watchIoErrors } from "../../../src/runtime/qemu/io-error-watch.js";
import type { QmpClient, QmpEvent } from "../../../src/runtime/qemu/qmp-client.js";

const NOSPACE: QmpEvent = {
  event: "BLOCK_IO_ERROR",
  data: { device: "disk", "node-name": "#block123", operation: "write", action: "stop", nospace: true, reason: "No space left on device" },
};

/** A QmpClient stand-in: records commands, emits events on demand. */
class FakeQmp extends EventEmitter {
  readonly commands: string[] = [];
  onCont: (() => void) | undefined;
  async execute(cmd: string): Promise<unknown> {
    this.commands.push(cmd);
    if (cmd === "cont") setImmediate(() => this.onCont?.());
    return {};
  }
}

test("only a no-space write error that stops the VM is a stall", () => {
  assert.ok(isNoSpaceStop(NOSPACE));
  assert.ok(!isNoSpaceStop({ event: "BLOCK_IO_ERROR", data: { ...NOSPACE.data, nospace: false, action: "report" } }));
  assert.ok(!isNoSpaceStop({ event: "BLOCK_IO_ERROR", data: { ...NOSPACE.data, action: "report" } }));
  assert.ok(!isNoSpaceStop({ event: "STOP" }));
  assert.ok(isIoErrorStatus("io-error") && !isIoErrorStatus("paused") && !isIoErrorStatus(undefined));
});

test("watchIoErrors calls back on each stall until unsubscribed", () => {
  const qmp = new FakeQmp();
  const seen: QmpEvent[] = [];
  const off = watchIoErrors(qmp as unknown as QmpClient, (ev) => seen.push(ev));
  qmp.emit("event", { event: "STOP" });
  qmp.emit("event", NOSPACE);
  off();
  qmp.emit("event", NOSPACE);
  assert.equal(seen.length, 1);
  assert.equal(qmp.listenerCount("event"), 0);
});

test("continueStalled: cont, then the guest's answer", async () => {
  const qmp = new FakeQmp();
  const v = await continueStalled(qmp as unknown as QmpClient, async () => "answered", 1000);
  assert.equal(v, "answered");
  assert.deepEqual(qmp.commands, ["cont"]);
  assert.equal(qmp.listenerCount("event"), 0);
});

test("continueStalled: rejects disk_full when the VM stops again on a full disk", async () => {
  const qmp = new FakeQmp();
  qmp.onCont = () => qmp.emit("event", NOSPACE);
  await assert.rejects(
    continueStalled(qmp as unknown as QmpClient, () => new Promise(() => {}), 5000),
    (err: unknown) => isRuntimeError(err, "disk_full") && /disk is full/.test((err as Error).message),
  );
  assert.equal(qmp.listenerCount("event"), 0);
});

test("continueStalled: rejects when the guest does not answer in time", async () => {
  const qmp = new FakeQmp();
  await assert.rejects(
    continueStalled(qmp as unknown as QmpClient, () => new Promise(() => {}), 50),
    (err: unknown) => isRuntimeError(err, "agent_error"),
  );
});
