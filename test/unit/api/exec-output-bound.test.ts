/**
 * A command that prints without end cannot grow the server's memory: a
 * buffered exec is cut at the output bound, a stream whose client stops
 * reading is cut at the backlog bound; both kill the command and say so.
 * The `yes` here ignores `ExecOutput.ready`, like the agent of an older image
 * (no exec credit): the backlog bound is the safety net for that case; with
 * credit the command is held instead (exec-backpressure.test.ts).
 * (With real VMs: test/e2e/floods.test.ts.)
 */
import assert from "node:assert/strict";
import { request, type IncomingMessage } from "node:http";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { EXEC_MAX_OUTPUT_BYTES, EXEC_STREAM_BACKLOG_BYTES } from "../../../src/api/routes/sandboxes/exec.js";
import type { FakeExec } from "../../support/fake-runtime.js";
import { startTestServer, type TestServer } from "../../support/test-server.js";

const CHUNK = Buffer.alloc(64 * 1024, "y\n");

/** `yes`: 64 KiB chunks until killed (or `limit` bytes), one every `everyMs` (0: as fast as possible). */
function yes(limit = Infinity, everyMs = 0): FakeExec {
  return async (_req, out, signal) => {
    for (let sent = 0; sent < limit; sent += CHUNK.length) {
      if (signal?.aborted) return { exitCode: 137, signal: 9 };
      out.onStdout(CHUNK);
      await (everyMs ? sleep(everyMs) : new Promise((r) => setImmediate(r)));
    }
    return { exitCode: 0 };
  };
}

describe("exec output bounds", () => {
  let s: TestServer;
  let id: string;
  before(async () => {
    s = await startTestServer();
    id = (await s.api("POST", "/v1/sandboxes", { shape: "s-1vcpu-256mb" })).json.data.id;
  });
  after(() => s.dispose());

  test("buffered: a command printing without end is killed at the bound; the result is truncated and says so", async () => {
    s.runtime.execHandler = yes();
    const n = s.runtime.execs.length;
    const r = await s.api("POST", `/v1/sandboxes/${id}/exec`, { cmd: "yes" });
    assert.equal(r.status, 200);
    const { result } = r.json.data;
    assert.equal(result.stdout.length, EXEC_MAX_OUTPUT_BYTES);
    assert.equal(result.exit_code, 137);
    assert.match(result.error, /output larger than 16777216 bytes: truncated, command killed/);
    assert.equal(s.runtime.execs[n]!.aborted, true);
  });

  test("buffered: output up to the bound is returned whole", async () => {
    s.runtime.execHandler = yes(4 * CHUNK.length);
    const r = await s.api("POST", `/v1/sandboxes/${id}/exec`, { cmd: "yes" });
    assert.equal(r.json.data.result.stdout.length, 4 * CHUNK.length);
    assert.equal(r.json.data.result.exit_code, 0);
    assert.equal(r.json.data.result.error, undefined);
  });

  test("streaming: a client that stops reading gets its command killed once it is the backlog behind", async () => {
    s.runtime.execHandler = yes();
    const n = s.runtime.execs.length;
    const url = new URL(`${s.url}/v1/sandboxes/${id}/exec?stream=true`);
    const req = request(url, { method: "POST", headers: { "x-api-key": s.apiKey, "content-type": "application/json" } });
    req.end(JSON.stringify({ cmd: "yes" }));
    const res = await new Promise<IncomingMessage>((resolve) => req.once("response", resolve));
    res.pause(); // reads nothing
    for (let i = 0; i < 500 && !s.runtime.execs[n]?.aborted; i++) await sleep(10);
    assert.equal(s.runtime.execs[n]?.aborted, true, "killed while the client did not read");
    // Reading again, the client finds the output so far, then why it ended.
    let text = "";
    res.setEncoding("utf8");
    res.on("data", (c: string) => (text += c));
    res.resume();
    await new Promise((r) => res.once("end", r));
    const lines = text.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(lines.at(-1), { exit_code: 137 });
    assert.match(String(lines.at(-2)?.error), /output not read: the client fell more than 8388608 bytes behind; command killed/);
    // What was held for it: the backlog plus what the sockets buffer, never the endless output.
    assert.ok(text.length < EXEC_STREAM_BACKLOG_BYTES + 16 * 1024 * 1024, `${text.length} bytes`);
  });

  test("streaming: a client that keeps reading gets all of a large output", async () => {
    const total = 200 * CHUNK.length; // 12.5 MiB, more than the backlog bound
    s.runtime.execHandler = yes(total, 1);
    const r = await s.api("POST", `/v1/sandboxes/${id}/exec?stream=true`, { cmd: "yes" });
    const lines = r.text.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(lines.at(-1), { exit_code: 0 });
    const printed = lines.reduce((sum, l) => sum + (typeof l.stdout === "string" ? l.stdout.length : 0), 0);
    assert.equal(printed, total);
    assert.ok(!lines.some((l) => "error" in l));
  });
});
