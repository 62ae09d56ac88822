/**
 * AgentClient against a scripted fake agent: everything the agent sends is
 * untrusted, so malformed input must close the connection with agent_error
 * and fail pending calls, never throw or hang.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";

import { AgentClient } from "../../../src/runtime/agent/agent-client.js";
import { crc32, encodeFrame, FrameDecoder, PayloadReader, PayloadWriter, type Frame } from "../../../src/runtime/agent/frame-codec.js";
import { HP_EXEC_START, HP_EXIT, HP_HELLO, HP_MAX_PAYLOAD, HP_STDOUT } from "../../../src/runtime/agent/protocol.js";
import { isRuntimeError, RuntimeError } from "../../../src/runtime/errors.js";

const dir = mkdtempSync(path.join(tmpdir(), "hutch-agent-client-"));
let n = 0;

/** A fake agent on a fresh socket path; `onFrame` scripts its answers. */
function fakeAgent(onFrame: (f: Frame, sock: net.Socket) => void, opts: { version?: number; preamble?: Buffer } = {}) {
  const sockPath = path.join(dir, `a${n++}.sock`);
  const sockets: net.Socket[] = [];
  const server = net.createServer((sock) => {
    sockets.push(sock);
    const dec = new FrameDecoder();
    sock.on("error", () => {});
    sock.on("data", (c: Buffer) => {
      for (const f of dec.push(c)) {
        if (f.type === HP_HELLO) {
          const r = new PayloadReader(f.payload);
          r.u32();
          const nonce = r.bytes();
          const reply = new PayloadWriter().u32(opts.version ?? 1).bytes(nonce).str("fake-1").toBuffer();
          sock.write(Buffer.concat([opts.preamble ?? Buffer.alloc(0), encodeFrame(HP_HELLO, f.channel, reply)]));
        } else {
          onFrame(f, sock);
        }
      }
    });
  });
  return {
    sockPath,
    listen: () => new Promise<void>((r) => server.listen(sockPath, r)),
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

const noOutput = { onStdout: () => {}, onStderr: () => {} };

describe("AgentClient", () => {
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("retries until the socket exists, skips garbage and foreign HELLOs", async () => {
    const foreign = encodeFrame(HP_HELLO, 0, new PayloadWriter().u32(1).bytes(Buffer.alloc(16, 9)).str("old").toBuffer());
    const fake = fakeAgent(() => {}, { preamble: Buffer.concat([Buffer.from("boot noise\r\n"), foreign]) });
    const connecting = AgentClient.connect(fake.sockPath, { timeoutMs: 3000 });
    setTimeout(() => void fake.listen(), 200);
    const client = await connecting;
    assert.equal(client.agentVersion, "fake-1");
    client.close();
    assert.equal(await client.closed, undefined);
    await assert.rejects(client.ping(), (e) => isRuntimeError(e, "not_running"));
    fake.close();
  });

  it("fails with boot_failed when nobody answers", async () => {
    await assert.rejects(AgentClient.connect(path.join(dir, "never.sock"), { timeoutMs: 300 }), (e) => isRuntimeError(e, "boot_failed"));
    const silent = net.createServer((s) => s.on("error", () => {}));
    const p = path.join(dir, "silent.sock");
    await new Promise<void>((r) => silent.listen(p, r));
    await assert.rejects(AgentClient.connect(p, { timeoutMs: 400 }), (e) => isRuntimeError(e, "boot_failed"));
    silent.close();
  });

  it("refuses another protocol version with agent_error", async () => {
    const fake = fakeAgent(() => {}, { version: 99 });
    await fake.listen();
    await assert.rejects(AgentClient.connect(fake.sockPath, { timeoutMs: 2000 }), (e) => isRuntimeError(e, "agent_error"));
    fake.close();
  });

  const hostile: [string, (chan: number) => Buffer][] = [
    ["garbage", () => Buffer.from("this is not a frame at all")],
    [
      "an oversize frame",
      (chan) => {
        const h = encodeFrame(HP_STDOUT, chan);
        h.writeUInt32BE(HP_MAX_PAYLOAD + 1, 4);
        h.writeUInt32BE(crc32(h, 0, 16), 16);
        return h;
      },
    ],
    ["a malformed EXIT payload", (chan) => encodeFrame(HP_EXIT, chan, Buffer.from([0, 0, 0]))],
    ["an EXIT whose string overruns", (chan) => encodeFrame(HP_EXIT, chan, new PayloadWriter().u32(0).u32(0).u32(1000).toBuffer())],
    ["an unexpected frame type", (chan) => encodeFrame(HP_HELLO + 0x60, chan)],
  ];
  for (const [name, bytes] of hostile) {
    it(`closes with agent_error on ${name} and fails pending calls`, async () => {
      const fake = fakeAgent((f, sock) => {
        if (f.type === HP_EXEC_START) sock.write(Buffer.concat([encodeFrame(HP_STDOUT, f.channel, Buffer.from("ok")), bytes(f.channel)]));
      });
      await fake.listen();
      const client = await AgentClient.connect(fake.sockPath, { timeoutMs: 2000 });
      const other = client.ping(10_000);
      await assert.rejects(client.exec({ cmd: "x", args: [] }, noOutput), (e) => isRuntimeError(e, "agent_error"));
      await assert.rejects(other, (e) => isRuntimeError(e, "agent_error"));
      const reason = await client.closed;
      assert.ok(reason instanceof RuntimeError && reason.code === "agent_error");
      fake.close();
    });
  }

  it("fails pending calls with not_running when the connection drops", async () => {
    const fake = fakeAgent((f, sock) => {
      if (f.type === HP_EXEC_START) setTimeout(() => sock.destroy(), 50);
    });
    await fake.listen();
    const client = await AgentClient.connect(fake.sockPath, { timeoutMs: 2000 });
    await assert.rejects(client.exec({ cmd: "x", args: [] }, noOutput), (e) => isRuntimeError(e, "not_running"));
    assert.ok((await client.closed) instanceof Error);
    await assert.rejects(client.exec({ cmd: "x", args: [] }, noOutput), (e) => isRuntimeError(e, "not_running"));
    fake.close();
  });

  it("ping times out with agent_error against a mute agent", async () => {
    const fake = fakeAgent(() => {});
    await fake.listen();
    const client = await AgentClient.connect(fake.sockPath, { timeoutMs: 2000 });
    await assert.rejects(client.ping(200), (e) => isRuntimeError(e, "agent_error"));
    client.close();
    fake.close();
  });
});
