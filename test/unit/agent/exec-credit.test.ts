/**
 * The host side of exec output credit, against a scripted fake agent: the
 * client credits a chunk back once its consumer took it (at once, or when
 * `ready()`'s promise resolves), pays everything on a kill, and sends no
 * credit at all to an agent of protocol 1 (an older image).
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";

import { AgentClient } from "../../../src/runtime/agent/agent-client.js";
import { encodeFrame, FrameDecoder, PayloadReader, PayloadWriter, type Frame } from "../../../src/runtime/agent/frame-codec.js";
import { HP_CREDIT, HP_EXEC_START, HP_EXIT, HP_HELLO, HP_KILL, HP_STDERR, HP_STDOUT } from "../../../src/runtime/agent/protocol.js";
import type { ExecOutput } from "../../../src/runtime/runtime.js";

const dir = mkdtempSync(path.join(tmpdir(), "hutch-exec-credit-"));
let n = 0;
const CHUNK = Buffer.alloc(64 * 1024, "x");
const exitFrame = (chan: number, code = 0) => encodeFrame(HP_EXIT, chan, new PayloadWriter().u32(code).u32(0).str("").toBuffer());

/**
 * A fake agent speaking `version`: on EXEC_START it sends `chunks` STDOUT
 * chunks (one STDERR every fourth), then waits for the test to end it.
 * Records every CREDIT and KILL it gets.
 */
async function fakeAgent(version: number, chunks: number) {
  const sockPath = path.join(dir, `a${n++}.sock`);
  const credits: number[] = [];
  const kills: number[] = [];
  let sock!: net.Socket;
  let execChan = 0;
  const server = net.createServer((s) => {
    sock = s;
    const dec = new FrameDecoder();
    s.on("error", () => {});
    s.on("data", (c: Buffer) => {
      for (const f of dec.push(c) as Frame[]) {
        if (f.type === HP_HELLO) {
          const r = new PayloadReader(f.payload);
          r.u32();
          s.write(encodeFrame(HP_HELLO, 0, new PayloadWriter().u32(version).bytes(r.bytes()).str("fake").toBuffer()));
        } else if (f.type === HP_EXEC_START) {
          execChan = f.channel;
          for (let i = 0; i < chunks; i++) s.write(encodeFrame(i % 4 === 3 ? HP_STDERR : HP_STDOUT, f.channel, CHUNK));
        } else if (f.type === HP_CREDIT) {
          credits.push(new PayloadReader(f.payload).u32());
        } else if (f.type === HP_KILL) {
          kills.push(f.channel);
        }
      }
    });
  });
  await new Promise<void>((r) => server.listen(sockPath, r));
  const client = await AgentClient.connect(sockPath, { timeoutMs: 2000 });
  return {
    client,
    credits,
    kills,
    credited: () => credits.reduce((a, b) => a + b, 0),
    exit: (code = 0) => sock.write(exitFrame(execChan, code)),
    close: () => {
      client.close();
      sock?.destroy();
      server.close();
    },
  };
}

/** A consumer that is behind until `release()`. */
function heldConsumer() {
  let open!: () => void;
  let gate: Promise<void> | null = new Promise((r) => (open = r));
  let got = 0;
  let asked = 0;
  const out: ExecOutput = {
    onStdout: (c) => void (got += c.length),
    onStderr: (c) => void (got += c.length),
    ready: () => {
      asked++;
      return gate ?? undefined;
    },
  };
  return {
    out,
    got: () => got,
    asked: () => asked,
    release: () => {
      gate = null;
      open();
    },
  };
}

async function until(cond: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("timed out");
    await sleep(5);
  }
}

describe("exec output credit (host side)", () => {
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("credits each chunk back at once to a consumer without ready()", async () => {
    const a = await fakeAgent(2, 8);
    assert.equal(a.client.protocolVersion, 2);
    let got = 0;
    const run = a.client.exec({ cmd: "x", args: [] }, { onStdout: (c) => void (got += c.length), onStderr: (c) => void (got += c.length) });
    await until(() => a.credited() === 8 * CHUNK.length);
    assert.equal(got, 8 * CHUNK.length);
    assert.deepEqual(a.credits, Array(8).fill(CHUNK.length));
    a.exit();
    assert.equal((await run).exitCode, 0);
    a.close();
  });

  it("withholds credit while the consumer is behind, pays it when it catches up", async () => {
    const a = await fakeAgent(2, 8);
    const c = heldConsumer();
    const run = a.client.exec({ cmd: "x", args: [] }, c.out);
    await until(() => c.got() === 8 * CHUNK.length);
    await sleep(50);
    assert.equal(a.credited(), 0, "no credit while behind");
    assert.equal(c.asked(), 8, "asked after every chunk, stderr included");
    c.release();
    await until(() => a.credited() === 8 * CHUNK.length);
    a.exit();
    assert.equal((await run).exitCode, 0);
    await sleep(20);
    assert.equal(a.credited(), 8 * CHUNK.length, "nothing credited twice, nothing after EXIT");
    a.close();
  });

  it("on abort, KILLs and pays what it withheld: the command's last output must still get out", async () => {
    const a = await fakeAgent(2, 4);
    const c = heldConsumer();
    const ac = new AbortController();
    const run = a.client.exec({ cmd: "x", args: [] }, c.out, ac.signal);
    await until(() => c.got() === 4 * CHUNK.length);
    ac.abort();
    await until(() => a.kills.length === 1 && a.credited() === 4 * CHUNK.length);
    c.release(); // late: must not be paid again
    a.exit(137);
    assert.equal((await run).exitCode, 137);
    await sleep(20);
    assert.equal(a.credited(), 4 * CHUNK.length);
    a.close();
  });

  it("sends no credit to an agent of protocol 1 and does not ask ready()", async () => {
    const a = await fakeAgent(1, 6);
    assert.equal(a.client.protocolVersion, 1);
    const c = heldConsumer();
    const run = a.client.exec({ cmd: "x", args: [] }, c.out);
    await until(() => c.got() === 6 * CHUNK.length);
    a.exit();
    assert.equal((await run).exitCode, 0);
    await sleep(20);
    assert.equal(a.credits.length, 0);
    assert.equal(c.asked(), 0);
    a.close();
  });
});
