/**
 * A streaming exec has backpressure: the route tells the runtime it is behind
 * (`ExecOutput.ready`) while the HTTP response has not drained, so a client
 * that stops reading holds the command instead of growing the server's
 * memory, and then gets every byte, nothing killed. (The runtime turns this
 * into agent credit: test/agent/exec-credit.test.ts; with real VMs:
 * test/e2e/floods.test.ts.)
 */
import assert from "node:assert/strict";
import { request, type IncomingMessage } from "node:http";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { FakeExec } from "../../support/fake-runtime.js";
import { startTestServer, type TestServer } from "../../support/test-server.js";

const CHUNK = Buffer.alloc(64 * 1024, "y\n");

/** Prints `total` bytes in 64 KiB chunks, each only once the consumer is ready for more. */
function politePrinter(total: number) {
  const state = { produced: 0, waits: 0, ended: false };
  const exec: FakeExec = async (_req, out, signal) => {
    while (state.produced < total) {
      if (signal?.aborted) {
        state.ended = true;
        return { exitCode: 137, signal: 9 };
      }
      out.onStdout(CHUNK);
      state.produced += CHUNK.length;
      const behind = out.ready?.();
      if (behind) state.waits++;
      await (behind ?? new Promise((r) => setImmediate(r)));
    }
    return { exitCode: 0 };
  };
  return { exec, state };
}

describe("streaming exec backpressure", () => {
  let s: TestServer;
  let id: string;
  before(async () => {
    s = await startTestServer();
    id = (await s.api("POST", "/v1/sandboxes", { shape: "s-1vcpu-256mb" })).json.data.id;
  });
  after(() => s.dispose());

  test("a client that stops reading holds the command; reading again, it gets every byte and exit 0", async () => {
    const total = 512 * CHUNK.length; // 32 MiB, four times the safety net's backlog bound
    const p = politePrinter(total);
    s.runtime.execHandler = p.exec;
    const n = s.runtime.execs.length;
    const url = new URL(`${s.url}/v1/sandboxes/${id}/exec?stream=true`);
    const req = request(url, { method: "POST", headers: { "x-api-key": s.apiKey, "content-type": "application/json" } });
    req.end(JSON.stringify({ cmd: "yes" }));
    const res = await new Promise<IncomingMessage>((resolve) => req.once("response", resolve));
    res.pause(); // reads nothing for a while
    // The command runs until the sockets' buffers are full, then waits for the client.
    let last = -1;
    while (p.state.produced !== last) {
      last = p.state.produced;
      await sleep(300);
    }
    const whilePaused = p.state.produced;
    assert.ok(whilePaused < total / 2, `${whilePaused} bytes printed while the client read nothing`);
    assert.ok(p.state.waits > 0);
    assert.equal(s.runtime.execs[n]!.aborted, false, "not killed");
    await sleep(500);
    assert.equal(p.state.produced, whilePaused, "still held");
    let text = "";
    res.setEncoding("utf8");
    res.on("data", (c: string) => (text += c));
    res.resume();
    await new Promise((r) => res.once("end", r));
    const lines = text.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(lines.at(-1), { exit_code: 0 });
    assert.ok(!lines.some((l) => "error" in l), "no error");
    const printed = lines.reduce((sum, l) => sum + (typeof l.stdout === "string" ? l.stdout.length : 0), 0);
    assert.equal(printed, total);
    assert.equal(s.runtime.execs[n]!.aborted, false);
  });

  test("a client that goes away while the command is held kills it; the held call is released", async () => {
    const p = politePrinter(Infinity);
    s.runtime.execHandler = p.exec;
    const n = s.runtime.execs.length;
    const url = new URL(`${s.url}/v1/sandboxes/${id}/exec?stream=true`);
    const req = request(url, { method: "POST", headers: { "x-api-key": s.apiKey, "content-type": "application/json" } });
    req.on("error", () => {});
    req.end(JSON.stringify({ cmd: "yes" }));
    const res = await new Promise<IncomingMessage>((resolve) => req.once("response", resolve));
    res.pause();
    res.on("error", () => {});
    let last = -1;
    while (p.state.produced !== last) {
      last = p.state.produced;
      await sleep(200);
    }
    res.destroy();
    for (let i = 0; i < 200 && !s.runtime.execs[n]!.aborted; i++) await sleep(10);
    assert.equal(s.runtime.execs[n]!.aborted, true);
    // The printer's pending ready() settles (the stream closed), so it sees the abort and ends.
    for (let i = 0; i < 200 && !p.state.ended; i++) await sleep(10);
    assert.equal(p.state.ended, true, "the held command was not left hanging");
  });
});
