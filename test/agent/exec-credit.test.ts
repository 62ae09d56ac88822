/**
 * Black-box tests of exec output flow control in hutch-agent (protocol 2):
 * the agent sends at most HP_EXEC_WINDOW of STDOUT+STDERR before the host
 * credits it back, holding the command (blocked on its write) meanwhile; an
 * older host (protocol 1) gets the output without credit, as before.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, rmSync } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";

import type { AgentClient } from "../../src/runtime/agent/agent-client.js";
import { encodeFrame, FrameDecoder } from "../../src/runtime/agent/frame-codec.js";
import { decodeExit, decodeHelloReply, encodeExecStart, encodeHello } from "../../src/runtime/agent/messages.js";
import { HP_EXEC_START, HP_EXEC_WINDOW, HP_EXIT, HP_HELLO, HP_STDIN_EOF, HP_STDOUT, HP_VERSION } from "../../src/runtime/agent/protocol.js";
import type { ExecOutput } from "../../src/runtime/runtime.js";
import { AgentHarness } from "./agent-harness.js";

/** The consumer of one exec: it counts and hashes what it got, and is "behind" while the gate is shut. */
class HeldConsumer implements ExecOutput {
  stdout = createHash("sha256");
  stderr = createHash("sha256");
  outBytes = 0;
  errBytes = 0;
  #open: (() => void) | null = null;
  #gate: Promise<void> | null = new Promise((r) => (this.#open = r));

  onStdout(c: Buffer): void {
    this.stdout.update(c);
    this.outBytes += c.length;
  }
  onStderr(c: Buffer): void {
    this.stderr.update(c);
    this.errBytes += c.length;
  }
  ready(): Promise<void> | undefined {
    return this.#gate ?? undefined;
  }
  /** The consumer catches up: everything withheld is credited, and from now on at once. */
  release(): void {
    this.#gate = null;
    this.#open?.();
  }
  get total(): number {
    return this.outBytes + this.errBytes;
  }
}

/** Waits until `value()` stops changing for `quietMs` (fails after 15 s: output without end is not held). */
async function settled(value: () => number, quietMs = 400): Promise<number> {
  const deadline = Date.now() + 15_000;
  let last = -1;
  while (value() !== last) {
    if (Date.now() > deadline) throw new Error(`output never stopped (${value()} bytes): not held`);
    last = value();
    await sleep(quietMs);
  }
  return last;
}

function seqHash(n: number): string {
  const h = createHash("sha256");
  for (let i = 1; i <= n; i++) h.update(`${i}\n`);
  return h.digest("hex");
}

describe("hutch-agent exec credit", () => {
  const h = new AgentHarness();
  let client: AgentClient;
  const mark = path.join(h.dir, "done");

  before(async () => {
    await h.start();
    client = await h.client();
    await client.configure({ hostname: "credit-box", envs: {}, sshPubkeys: [], rngSeed: randomBytes(32), wallClockMs: Date.now() });
  });
  after(async () => {
    client?.close();
    await h.stop();
  });

  it("speaks protocol 3 with a current host", () => {
    assert.equal(client.protocolVersion, HP_VERSION);
    assert.equal(HP_VERSION, 3);
  });

  it("sends at most the window while the host grants nothing, holding the command; then all of it, in order", async () => {
    rmSync(mark, { force: true });
    const n = 3_000_000; // ~20.9 MB
    const c = new HeldConsumer();
    const run = client.exec({ cmd: "sh", args: ["-c", `seq 1 ${n}; touch ${mark}`] }, c);
    const held = await settled(() => c.total);
    assert.ok(held > 0, "some output arrived");
    assert.ok(held <= HP_EXEC_WINDOW, `${held} bytes arrived without credit (window ${HP_EXEC_WINDOW})`);
    assert.equal(existsSync(mark), false, "the command is blocked on its write, not finished");
    await client.ping(2000); // the connection itself is not held up
    c.release();
    const r = await run;
    assert.equal(r.exitCode, 0);
    assert.equal(existsSync(mark), true);
    assert.equal(c.stdout.digest("hex"), seqHash(n));
  });

  it("counts stdout and stderr in one window; both arrive whole", async () => {
    const n = 1_000_000; // ~6.9 MB each
    const c = new HeldConsumer();
    const run = client.exec({ cmd: "sh", args: ["-c", `seq 1 ${n} >&2 & seq 1 ${n}; wait`] }, c);
    const held = await settled(() => c.total);
    assert.ok(held <= HP_EXEC_WINDOW, `${held} bytes arrived without credit`);
    c.release();
    assert.equal((await run).exitCode, 0);
    assert.equal(c.outBytes, c.errBytes);
    assert.equal(c.stdout.digest("hex"), seqHash(n));
    assert.equal(c.stderr.digest("hex"), seqHash(n));
  });

  it("keeps what a command printed before it exited until credit comes, however long", async () => {
    // The window, then 32 KiB that wait in the pipe while the command exits.
    const size = HP_EXEC_WINDOW + 32 * 1024;
    const c = new HeldConsumer();
    const run = client.exec({ cmd: "sh", args: ["-c", `head -c ${size} /dev/zero; exit 3`] }, c);
    await settled(() => c.total);
    await sleep(1000); // ten times HP_EXIT_GRACE_MS
    assert.ok(c.total <= HP_EXEC_WINDOW);
    c.release();
    const r = await run;
    assert.equal(r.exitCode, 3);
    assert.equal(c.outBytes, size);
  });

  it("kills a held command at once on abort", async () => {
    const c = new HeldConsumer();
    const ac = new AbortController();
    const run = client.exec({ cmd: "yes", args: [] }, c, ac.signal);
    await settled(() => c.total, 200);
    const t0 = Date.now();
    ac.abort();
    const r = await run;
    assert.equal(r.exitCode, 137);
    assert.ok(Date.now() - t0 < 3000, `EXIT took ${Date.now() - t0} ms`);
    await client.ping(2000);
  });
});

describe("hutch-agent exec with an older host (protocol 1)", () => {
  const h = new AgentHarness();
  before(() => h.start());
  after(() => h.stop());

  it("answers HELLO 1 with 1 and sends exec output without any credit", async () => {
    const sock = await h.nextSocket();
    const dec = new FrameDecoder();
    const frames: { type: number; channel: number; payload: Buffer }[] = [];
    let wake: (() => void) | null = null;
    sock.on("data", (c: Buffer) => {
      frames.push(...dec.push(c));
      wake?.();
    });
    const next = async (pred: (f: { type: number; channel: number; payload: Buffer }) => boolean) => {
      for (;;) {
        const i = frames.findIndex(pred);
        if (i >= 0) return frames.splice(i, 1)[0]!;
        await new Promise<void>((r) => (wake = r));
      }
    };
    const nonce = randomBytes(16);
    sock.write(encodeFrame(HP_HELLO, 0, encodeHello(nonce, 1)));
    const hello = decodeHelloReply((await next((f) => f.type === HP_HELLO)).payload);
    assert.equal(hello.version, 1);
    assert.ok(hello.nonce.equals(nonce));
    const size = 4 * HP_EXEC_WINDOW;
    sock.write(Buffer.concat([encodeFrame(HP_EXEC_START, 5, encodeExecStart(["head", "-c", String(size), "/dev/zero"], {}, "")), encodeFrame(HP_STDIN_EOF, 5)]));
    const exit = decodeExit((await next((f) => f.type === HP_EXIT && f.channel === 5)).payload);
    assert.equal(exit.exitCode, 0);
    const got = frames.filter((f) => f.type === HP_STDOUT && f.channel === 5).reduce((s, f) => s + f.payload.length, 0);
    assert.equal(got, size);
    sock.destroy();
  });
});
