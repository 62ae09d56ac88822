/** Exec (buffered and streaming) and file transfer over HTTP against the fake runtime. */
import assert from "node:assert/strict";
import { request } from "node:http";
import { after, before, describe, test } from "node:test";
import { startTestServer, type TestServer } from "../../support/test-server.js";

function frames(text: string): Array<Record<string, unknown>> {
  return text
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe("exec", () => {
  let s: TestServer;
  let id: string;
  before(async () => {
    s = await startTestServer({ execHeartbeatMs: 50, maxFileBytes: 1024 });
    id = (await s.api("POST", "/v1/sandboxes", { shape: "s-1vcpu-256mb", envs: { GREETING: "hello" } })).json.data.id;
  });
  after(() => s.dispose());

  test("buffered: stdout, stderr, exit_code, exec_ms", async () => {
    const r = await s.api("POST", `/v1/sandboxes/${id}/exec`, { cmd: "echo", args: ["a", "b"] });
    assert.equal(r.status, 200);
    assert.deepEqual(r.json.data.result, { stdout: "a b\n", stderr: "", exit_code: 0 });
    assert.equal(typeof r.json.data.exec_ms, "number");
    const f = await s.api("POST", `/v1/sandboxes/${id}/exec`, { cmd: "fail", args: ["3"] });
    assert.deepEqual(f.json.data.result, { stdout: "", stderr: "boom\n", exit_code: 3 });
  });

  test("buffered: error set when the command cannot start", async () => {
    const r = await s.api("POST", `/v1/sandboxes/${id}/exec`, { cmd: "nosuch" });
    assert.equal(r.json.data.result.exit_code, 127);
    assert.equal(r.json.data.result.error, "nosuch: not found");
  });

  test("sandbox envs and declared env overrides reach the command; stdin is passed", async () => {
    const r = await s.api("POST", `/v1/sandboxes/${id}/exec`, { cmd: "env" });
    assert.equal(r.json.data.result.stdout, "GREETING=hello\n");
    const o = await s.api("POST", `/v1/sandboxes/${id}/exec`, { cmd: "env", env: { GREETING: "bye" } });
    assert.equal(o.json.data.result.stdout, "GREETING=bye\n");
    const c = await s.api("POST", `/v1/sandboxes/${id}/exec`, { cmd: "cat", stdin: "piped\n" });
    assert.equal(c.json.data.result.stdout, "piped\n");
  });

  test("env keys not declared on the sandbox → 400 naming env", async () => {
    const r = await s.api("POST", `/v1/sandboxes/${id}/exec`, { cmd: "env", env: { OTHER: "x" } });
    assert.equal(r.status, 400);
    assert.ok("env" in r.json.data);
  });

  test("bad exec bodies → 400 naming the field", async () => {
    assert.ok("cmd" in (await s.api("POST", `/v1/sandboxes/${id}/exec`, {})).json.data);
    assert.ok("args" in (await s.api("POST", `/v1/sandboxes/${id}/exec`, { cmd: "echo", args: "x" })).json.data);
    assert.ok("stdin" in (await s.api("POST", `/v1/sandboxes/${id}/exec`, { cmd: "cat", stdin: 5 })).json.data);
  });

  test("streaming: NDJSON frames, heartbeats, exit_code last (query or body flag)", async () => {
    const q = await s.api("POST", `/v1/sandboxes/${id}/exec?stream=true`, { cmd: "echo", args: ["hi"] });
    assert.equal(q.status, 200);
    assert.match(q.headers.get("content-type") ?? "", /^application\/x-ndjson/);
    assert.deepEqual(frames(q.text), [{ stdout: "hi\n" }, { exit_code: 0 }]);
    const slow = await s.api("POST", `/v1/sandboxes/${id}/exec`, { cmd: "sleep", args: ["0.2"], stream: true });
    const f = frames(slow.text);
    assert.ok(f.some((x) => x.hb === true), "heartbeat frames while the command runs");
    assert.deepEqual(f.at(-1), { exit_code: 0 });
    const err = await s.api("POST", `/v1/sandboxes/${id}/exec?stream=true`, { cmd: "nosuch" });
    assert.deepEqual(frames(err.text), [{ error: "nosuch: not found" }, { exit_code: 127 }]);
  });

  test("closing the connection aborts the command", async () => {
    const before = s.runtime.execs.length;
    await new Promise<void>((resolve, reject) => {
      const url = new URL(`${s.url}/v1/sandboxes/${id}/exec?stream=true`);
      const req = request(url, { method: "POST", headers: { "x-api-key": s.apiKey, "content-type": "application/json" } }, (res) => {
        res.once("data", () => {
          req.destroy();
          resolve();
        });
      });
      req.on("error", () => undefined);
      req.end(JSON.stringify({ cmd: "sleep", args: ["30"] }));
      setTimeout(() => reject(new Error("no first frame")), 5000);
    });
    for (let i = 0; i < 100 && !s.runtime.execs[before]?.aborted; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(s.runtime.execs[before]?.aborted, true);
  });

  test("exec and files on a sandbox that is not running → 409", async () => {
    const other = (await s.api("POST", "/v1/sandboxes", { shape: "s-1vcpu-256mb" })).json.data.id;
    await s.api("DELETE", `/v1/sandboxes/${other}`);
    await s.services.sandboxes.close();
    assert.equal((await s.api("POST", `/v1/sandboxes/${other}/exec`, { cmd: "echo" })).status, 409);
    assert.equal((await s.api("POST", `/v1/sandboxes/${other}/exec?stream=true`, { cmd: "echo" })).status, 409);
    assert.equal((await s.api("GET", `/v1/sandboxes/${other}/files?path=/a`)).status, 409);
    assert.equal((await s.api("PUT", `/v1/sandboxes/${other}/files?path=/a`, "x")).status, 409);
  });
});

describe("files", () => {
  let s: TestServer;
  let id: string;
  before(async () => {
    s = await startTestServer({ maxFileBytes: 1024 });
    id = (await s.api("POST", "/v1/sandboxes", { shape: "s-1vcpu-256mb" })).json.data.id;
  });
  after(() => s.dispose());

  const put = (path: string, body: Uint8Array | string, type = "application/octet-stream") =>
    fetch(`${s.url}/v1/sandboxes/${id}/files?path=${encodeURIComponent(path)}`, {
      method: "PUT",
      headers: { "x-api-key": s.apiKey, "content-type": type },
      body: typeof body === "string" ? body : Buffer.from(body),
    });

  test("round trip of binary bytes", async () => {
    const data = new Uint8Array(Array.from({ length: 1000 }, (_, i) => (i * 7) & 255));
    const w = await put("/root/data.bin", data);
    assert.equal(w.status, 200);
    assert.equal(((await w.json()) as { data: { bytes: number } }).data.bytes, 1000);
    const r = await fetch(`${s.url}/v1/sandboxes/${id}/files?path=/root/data.bin`, { headers: { "x-api-key": s.apiKey } });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get("content-type"), "application/octet-stream");
    assert.deepEqual(new Uint8Array(await r.arrayBuffer()), data);
  });

  test("any content type is taken as raw bytes", async () => {
    assert.equal((await put("/root/x.json", '{"a":1}', "application/json")).status, 200);
    const r = await s.api("GET", `/v1/sandboxes/${id}/files?path=/root/x.json`);
    assert.equal(r.text, '{"a":1}');
  });

  test("missing file → 404; relative, '..' or missing path → 400; runtime invalid_path → 400", async () => {
    const missing = await s.api("GET", `/v1/sandboxes/${id}/files?path=/nope`);
    assert.equal(missing.status, 404);
    assert.equal(missing.json.status, "fail");
    for (const p of ["relative/x", "/root/../etc/passwd", ""]) {
      const r = await s.api("GET", `/v1/sandboxes/${id}/files?path=${encodeURIComponent(p)}`);
      assert.equal(r.status, 400, p);
      assert.ok("path" in r.json.data);
      assert.equal((await put(p, "x")).status, 400, p);
    }
    assert.equal((await s.api("GET", `/v1/sandboxes/${id}/files`)).status, 400);
    assert.equal((await s.api("GET", `/v1/sandboxes/${id}/files?path=/root/`)).status, 400);
  });

  test("over the size limit → 413, nothing written", async () => {
    const r = await put("/root/big", new Uint8Array(2048));
    assert.equal(r.status, 413);
    assert.equal((await s.api("GET", `/v1/sandboxes/${id}/files?path=/root/big`)).status, 404);
    // Chunked upload (no content-length) is limited too.
    const stream = new ReadableStream({
      start(c) {
        for (let i = 0; i < 4; i++) c.enqueue(new Uint8Array(512));
        c.close();
      },
    });
    const chunked = await fetch(`${s.url}/v1/sandboxes/${id}/files?path=/root/big2`, {
      method: "PUT",
      headers: { "x-api-key": s.apiKey, "content-type": "application/octet-stream" },
      body: stream,
      duplex: "half",
    } as RequestInit);
    assert.equal(chunked.status, 413);
  });
});
