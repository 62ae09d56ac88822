/**
 * Black-box tests of hutch-agent across host reconnects and bad input: the
 * host may vanish mid-stream and come back; processes keep running, the old
 * connection's channels are dropped, and the agent resyncs on the magic.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";

import { AgentClient } from "../../src/runtime/agent/agent-client.js";
import { crc32, encodeFrame, FrameDecoder } from "../../src/runtime/agent/frame-codec.js";
import {
  HP_CONFIGURE,
  HP_CREDIT,
  HP_ERROR,
  HP_EXEC_START,
  HP_FILE_DATA,
  HP_FILE_END,
  HP_HEADER_SIZE,
  HP_KILL,
  HP_MAGIC,
  HP_MAX_PAYLOAD,
  HP_PING,
  HP_PONG,
  HP_STDIN,
  HP_STDIN_EOF,
  HP_TCP_DATA,
  HP_TCP_EOF,
} from "../../src/runtime/agent/protocol.js";
import { isRuntimeError } from "../../src/runtime/errors.js";
import { AgentHarness, run } from "./agent-harness.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("hutch-agent reconnects", () => {
  const h = new AgentHarness();
  before(() => h.start());
  after(() => h.stop());

  it("drops the old connection's channels, keeps processes, serves a new host", async () => {
    const first = await h.client();
    const marker = path.join(h.dir, "survived");
    const survivor = run(first, { cmd: "sh", args: ["-c", `sleep 0.5; echo yes > ${marker}`] });
    const chatty = run(first, { cmd: "sh", args: ["-c", "while :; do echo chatter; done"] });
    await sleep(100);
    first.close();
    await assert.rejects(survivor, (e) => isRuntimeError(e, "not_running"));
    await assert.rejects(chatty, (e) => isRuntimeError(e, "not_running"));
    assert.equal(await first.closed, undefined);

    // The agent reconnects by itself; a new host says HELLO and works at once.
    const second = await h.client();
    const r = await run(second, { cmd: "echo", args: ["again"] });
    assert.equal(r.stdout, "again\n");
    await sleep(800);
    assert.equal(readFileSync(marker, "utf8"), "yes\n", "process of the old connection kept running");
    // The chatty loop of the old connection is still running, its output
    // discarded; kill it through a new command.
    await run(second, { cmd: "pkill", args: ["-f", "while :; do echo chatter"] });
    second.close();
  });

  it("resyncs after garbage and a stale partial frame from a vanished host", async () => {
    const sock = await h.nextSocket();
    // A previous host died mid-frame: a valid header promising 200 KiB, then
    // a few bytes; plus random garbage. The agent must get back in sync.
    const stale = encodeFrame(HP_EXEC_START, 9, Buffer.alloc(200 * 1024)).subarray(0, HP_HEADER_SIZE + 100);
    sock.write(Buffer.concat([Buffer.from("garbage\x00\xff HTC"), stale]));
    const start = Date.now();
    const client = await AgentClient.fromSocket(sock, { timeoutMs: 5000 });
    assert.ok(Date.now() - start < 3000);
    assert.equal((await run(client, { cmd: "echo", args: ["synced"] })).stdout, "synced\n");
    client.close();
  });

  it("keeps a frame whose bytes pause mid-way for longer than its stall time (a starved host)", async () => {
    const sock = await h.nextSocket();
    const client = await AgentClient.fromSocket(sock, { timeoutMs: 5000 });
    const token = randomBytes(8);
    const pongs: Buffer[] = [];
    const dec = new FrameDecoder();
    sock.on("data", (c: Buffer) => {
      for (const f of dec.push(c)) if (f.channel === 4343 && f.type === HP_PONG) pongs.push(f.payload);
    });
    // One PING split in two with a pause past HP_STALL_MS (500 ms) between
    // the parts: it used to be dropped as a vanished host's leftover (and a
    // FILE_DATA frame with it, silently shortening a file).
    const ping = encodeFrame(HP_PING, 4343, token);
    sock.write(ping.subarray(0, HP_HEADER_SIZE + 3)); // the header and part of the payload
    await sleep(1200);
    sock.write(ping.subarray(HP_HEADER_SIZE + 3));
    await client.ping(3000);
    assert.deepEqual(pongs, [token]);
    client.close();
  });

  it("answers an oversize frame with ERROR and stays in sync", async () => {
    const sock = await h.nextSocket();
    const client = await AgentClient.fromSocket(sock, { timeoutMs: 5000 });
    const hdr = encodeFrame(HP_PING, 77, Buffer.alloc(0));
    hdr.writeUInt32BE(HP_MAX_PAYLOAD + 1, 4);
    // Re-sign the header so only the length is wrong.
    hdr.writeUInt32BE(crc32(hdr, 0, 16), 16);
    sock.write(hdr);
    await client.ping(2000);
    assert.equal((await run(client, { cmd: "echo", args: ["ok"] })).stdout, "ok\n");
    client.close();
  });

  it("rejects a malformed request payload with ERROR on its channel", async () => {
    const sock = await h.nextSocket();
    const client = await AgentClient.fromSocket(sock, { timeoutMs: 5000 });
    const seen: number[] = [];
    const dec = new FrameDecoder();
    sock.on("data", (c: Buffer) => {
      for (const f of dec.push(c)) if (f.channel === 4242) seen.push(f.type);
    });
    sock.write(encodeFrame(HP_EXEC_START, 4242, Buffer.from([0, 0, 0, 9, 1, 2])));
    await client.ping(2000);
    assert.deepEqual(seen, [HP_ERROR]);
    assert.equal(HP_MAGIC, 0x48544348);
    client.close();
  });

  it("survives a flood of garbage and random-payload frames", async () => {
    const sock = await h.nextSocket();
    const client = await AgentClient.fromSocket(sock, { timeoutMs: 5000 });
    // Types whose handlers parse untrusted payloads but cannot start anything.
    const types = [HP_PING, HP_CONFIGURE, HP_CREDIT, HP_FILE_DATA, HP_FILE_END, HP_STDIN, HP_STDIN_EOF, HP_KILL, HP_TCP_DATA, HP_TCP_EOF, 0x7777];
    const parts: Buffer[] = [];
    for (let i = 0; i < 3000; i++) {
      if (i % 10 === 0) parts.push(randomBytes(Math.floor(Math.random() * 300)));
      const payload = randomBytes(Math.floor(Math.random() * 200));
      parts.push(encodeFrame(types[i % types.length]!, 1000 + Math.floor(Math.random() * 50), payload));
    }
    sock.write(Buffer.concat(parts));
    // Garbage may eat the client's next frame header; the agent resyncs, so
    // retry the ping a few times rather than expect the very first to land.
    let ok = false;
    for (let i = 0; i < 5 && !ok; i++) ok = await client.ping(1000).then(() => true, () => false);
    assert.ok(ok, "agent answers after the flood");
    client.close();
  });

  it("exits from nothing: the agent process is still alive after all this", () => {
    assert.equal(h.proc?.exitCode, null);
    assert.ok(existsSync(h.sockPath));
  });
});
