/**
 * Black-box tests of hutch-agent's CONFIGURE in --no-init mode (system
 * changes are skipped there; the envs every exec gets are not): the keep
 * flags of protocol 3, and an older host's CONFIGURE without them.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import type net from "node:net";
import { after, before, describe, it } from "node:test";

import type { AgentClient } from "../../src/runtime/agent/agent-client.js";
import { encodeFrame, FrameDecoder, type Frame } from "../../src/runtime/agent/frame-codec.js";
import { decodeError, decodeExit, decodeHelloReply, encodeConfigure, encodeExecStart, encodeHello, type ConfigurePayload } from "../../src/runtime/agent/messages.js";
import { HP_CONFIGURE, HP_ERROR, HP_EXEC_START, HP_EXIT, HP_HELLO, HP_OK, HP_STDIN_EOF, HP_STDOUT, HP_VERSION_CONFIGURE_KEEP } from "../../src/runtime/agent/protocol.js";
import { AgentHarness, run } from "./agent-harness.js";

const identity = (envs: Record<string, string>): ConfigurePayload => ({
  hostname: "cfg-box", envs, sshPubkeys: [], rngSeed: randomBytes(32), wallClockMs: Date.now(),
});

async function envOf(client: AgentClient): Promise<Map<string, string>> {
  const r = await run(client, { cmd: "env" });
  return new Map(r.stdout.trim().split("\n").map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]));
}

describe("hutch-agent CONFIGURE (protocol 3)", () => {
  const h = new AgentHarness();
  let client: AgentClient;
  before(async () => {
    await h.start();
    client = await h.client();
  });
  after(async () => {
    client?.close();
    await h.stop();
  });

  it("keeps the envs it has when told to, replaces them otherwise", async () => {
    assert.ok(client.protocolVersion >= HP_VERSION_CONFIGURE_KEEP);
    await client.configure(identity({ FIRST: "1", SHARED: "a" }));
    assert.equal((await envOf(client)).get("FIRST"), "1");
    // Kept: nothing of these envs is sent, the agent's stay.
    await client.configure({ ...identity({ IGNORED: "x" }), keep: { envs: true, keys: true } });
    let env = await envOf(client);
    assert.equal(env.get("FIRST"), "1");
    assert.equal(env.get("SHARED"), "a");
    assert.equal(env.has("IGNORED"), false);
    await client.configure(identity({ SECOND: "2" }));
    env = await envOf(client);
    assert.equal(env.has("FIRST"), false);
    assert.equal(env.get("SECOND"), "2");
  });
});

/** A raw host: frames in and out of the agent's socket. */
function rawHost(sock: net.Socket) {
  const dec = new FrameDecoder();
  const frames: Frame[] = [];
  let wake: (() => void) | null = null;
  sock.on("data", (c: Buffer) => {
    frames.push(...dec.push(c));
    wake?.();
  });
  return {
    frames,
    send: (type: number, channel: number, payload?: Buffer) => sock.write(encodeFrame(type, channel, payload)),
    async next(pred: (f: Frame) => boolean): Promise<Frame> {
      for (;;) {
        const i = frames.findIndex(pred);
        if (i >= 0) return frames.splice(i, 1)[0]!;
        await new Promise<void>((r) => (wake = r));
      }
    },
    async hello(version: number): Promise<number> {
      const nonce = randomBytes(16);
      this.send(HP_HELLO, 0, encodeHello(nonce, version));
      return decodeHelloReply((await this.next((f) => f.type === HP_HELLO)).payload).version;
    },
  };
}

describe("hutch-agent CONFIGURE on the wire", () => {
  const h = new AgentHarness();
  before(() => h.start());
  after(() => h.stop());

  it("refuses a protocol 3 CONFIGURE without its keep flags", async () => {
    const sock = await h.nextSocket();
    const host = rawHost(sock);
    assert.equal(await host.hello(3), 3);
    host.send(HP_CONFIGURE, 3, encodeConfigure(identity({}), 2));
    const answer = await host.next((f) => f.channel === 3);
    assert.equal(answer.type, HP_ERROR);
    assert.match(decodeError(answer.payload).message, /bad CONFIGURE/);
    sock.destroy();
  });
});

describe("hutch-agent CONFIGURE from an older host (protocol 2)", () => {
  const h = new AgentHarness();
  before(() => h.start());
  after(() => h.stop());

  it("takes the protocol 2 payload (no keep flags) and applies its envs", async () => {
    const sock = await h.nextSocket();
    const host = rawHost(sock);
    assert.equal(await host.hello(2), 2);
    // Even when asked to keep, a protocol 2 payload carries everything.
    host.send(HP_CONFIGURE, 3, encodeConfigure({ ...identity({ OLD_HOST: "yes" }), keep: { envs: true } }, 2));
    const answer = await host.next((f) => f.channel === 3);
    assert.equal(answer.type, HP_OK, answer.type === HP_ERROR ? decodeError(answer.payload).message : "");
    host.send(HP_EXEC_START, 4, encodeExecStart(["env"], {}, ""));
    host.send(HP_STDIN_EOF, 4);
    const exit = decodeExit((await host.next((f) => f.type === HP_EXIT && f.channel === 4)).payload);
    assert.equal(exit.exitCode, 0);
    // EXIT comes after all of the command's output.
    const out = Buffer.concat(host.frames.filter((f) => f.type === HP_STDOUT && f.channel === 4).map((f) => f.payload)).toString();
    assert.match(out, /^OLD_HOST=yes$/m);
    sock.destroy();
  });
});
