import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import zlib from "node:zlib";

import { crc32, encodeFrame, FrameDecoder, FrameError, PayloadReader, PayloadWriter, type Frame } from "../../../src/runtime/agent/frame-codec.js";
import { decodeExit, decodeHelloReply, encodeConfigure } from "../../../src/runtime/agent/messages.js";
import { HP_HEADER_SIZE, HP_HELLO, HP_MAX_PAYLOAD, HP_PING, HP_STDOUT } from "../../../src/runtime/agent/protocol.js";
import { GOLDEN_FRAMES } from "./golden-frames.js";

const isFrameError = (code?: string) => (e: unknown) => e instanceof FrameError && (code === undefined || e.code === code);

function decodeAll(bytes: Buffer, chunkSizes: () => number): Frame[] {
  const dec = new FrameDecoder();
  const out: Frame[] = [];
  for (let off = 0; off < bytes.length; ) {
    const n = Math.max(1, chunkSizes());
    out.push(...dec.push(bytes.subarray(off, off + n)));
    off += n;
  }
  assert.equal(dec.buffered, 0);
  return out;
}

describe("frame codec", () => {
  it("crc32 matches zlib", () => {
    const b = randomBytes(1000);
    if (typeof zlib.crc32 === "function") assert.equal(crc32(b), zlib.crc32(b));
    assert.equal(crc32(Buffer.from("123456789")), 0xcbf43926);
  });

  for (const g of GOLDEN_FRAMES) {
    it(`encodes and decodes the golden frame: ${g.name}`, () => {
      const bytes = Buffer.from(g.hex, "hex");
      assert.equal(encodeFrame(g.type, g.channel, Buffer.from(g.payloadHex, "hex")).toString("hex"), g.hex);
      const frames = new FrameDecoder().push(bytes);
      assert.equal(frames.length, 1);
      assert.equal(frames[0]!.type, g.type);
      assert.equal(frames[0]!.channel, g.channel);
      assert.equal(frames[0]!.payload.toString("hex"), g.payloadHex);
    });
  }

  it("decodes the golden EXIT payload", () => {
    const exit = GOLDEN_FRAMES[2];
    assert.deepEqual(decodeExit(Buffer.from(exit.payloadHex, "hex")), { exitCode: 127, signal: 0, error: "no" });
  });

  it("waits for truncated frames at every cut", () => {
    const all = Buffer.concat(GOLDEN_FRAMES.map((g) => Buffer.from(g.hex, "hex")));
    for (let cut = 0; cut < all.length; cut++) {
      const dec = new FrameDecoder();
      const first = dec.push(all.subarray(0, cut));
      const rest = dec.push(all.subarray(cut));
      assert.equal(first.length + rest.length, GOLDEN_FRAMES.length, `cut at ${cut}`);
    }
  });

  it("decodes across random chunk boundaries", () => {
    const frames = Array.from({ length: 200 }, (_, i) => encodeFrame(HP_STDOUT, i, randomBytes(Math.floor(Math.random() * 3000))));
    const bytes = Buffer.concat(frames);
    for (const max of [1, 7, 64, 4096, 100_000]) {
      const got = decodeAll(bytes, () => Math.floor(Math.random() * max) + 1);
      assert.equal(got.length, 200);
      got.forEach((f, i) => assert.ok(encodeFrame(f.type, f.channel, f.payload).equals(frames[i]!)));
    }
  });

  it("rejects an oversize length before buffering it", () => {
    const hdr = encodeFrame(HP_PING, 1);
    hdr.writeUInt32BE(HP_MAX_PAYLOAD + 1, 4);
    hdr.writeUInt32BE(crc32(hdr, 0, 16), 16);
    assert.throws(() => new FrameDecoder().push(hdr), isFrameError("oversize"));
    assert.throws(() => encodeFrame(HP_PING, 1, Buffer.alloc(HP_MAX_PAYLOAD + 1)), isFrameError("oversize"));
    // The maximum itself is fine.
    assert.equal(new FrameDecoder().push(encodeFrame(HP_PING, 1, Buffer.alloc(HP_MAX_PAYLOAD))).length, 1);
  });

  it("rejects garbage and a corrupted header in strict mode", () => {
    assert.throws(() => new FrameDecoder().push(Buffer.from("x")), isFrameError("bad_header"));
    const f = encodeFrame(HP_PING, 1, Buffer.from("abc"));
    f.writeUInt8(f.readUInt8(13) ^ 1, 13); // channel bit flip: checksum fails
    assert.throws(() => new FrameDecoder().push(f), isFrameError("bad_header"));
  });

  it("finds the wanted frame after garbage in resync mode, at any chunking", () => {
    const stale = encodeFrame(HP_STDOUT, 3, Buffer.alloc(50_000)).subarray(0, 1000); // never completes
    const junk = Buffer.concat([randomBytes(5000), Buffer.from("HTCH"), stale, encodeFrame(HP_PING, 2)]);
    const hello = encodeFrame(HP_HELLO, 0, Buffer.from("x"));
    const after = encodeFrame(HP_STDOUT, 9, Buffer.from("next"));
    const bytes = Buffer.concat([junk, hello, after]);
    for (const max of [1, 13, 333, 100_000]) {
      const dec = new FrameDecoder();
      dec.resyncUntil((f) => f.type === HP_HELLO);
      const got: Frame[] = [];
      for (let off = 0; off < bytes.length; ) {
        const n = Math.floor(Math.random() * max) + 1;
        got.push(...dec.push(bytes.subarray(off, off + n)));
        off += n;
      }
      assert.deepEqual(got.map((f) => f.type), [HP_HELLO, HP_STDOUT], `chunks up to ${max}`);
      assert.equal(got[1]!.payload.toString(), "next");
      assert.equal(dec.resyncing, false);
    }
  });

  it("payload reader checks every length", () => {
    const p = new PayloadWriter().u32(5).str("hello").strList(["a", "b"]).u64(42n).toBuffer();
    const r = new PayloadReader(p);
    assert.equal(r.u32(), 5);
    assert.equal(r.str(), "hello");
    assert.deepEqual(r.strList(), ["a", "b"]);
    assert.equal(r.u64(), 42n);
    r.end();
    const lying = new PayloadWriter().u32(0xffffffff).toBuffer();
    assert.throws(() => new PayloadReader(lying).bytes(), isFrameError("bad_payload"));
    assert.throws(() => new PayloadReader(lying).strList(), isFrameError("bad_payload"));
    assert.throws(() => new PayloadReader(Buffer.alloc(3)).u32(), isFrameError("bad_payload"));
    const trailing = new PayloadReader(Buffer.alloc(5));
    trailing.u32();
    assert.throws(() => trailing.end(), isFrameError("bad_payload"));
    assert.throws(() => decodeHelloReply(Buffer.alloc(2)), isFrameError("bad_payload"));
  });

  it("encodes CONFIGURE with and without a network", () => {
    const base = { hostname: "h", envs: { A: "1" }, sshPubkeys: ["ssh-ed25519 AAA"], rngSeed: Buffer.alloc(32, 1), wallClockMs: 1000 };
    const r = new PayloadReader(encodeConfigure(base));
    assert.equal(r.str(), "h");
    assert.equal(r.u8(), 0);
    const withNet = new PayloadReader(encodeConfigure({ ...base, net: { ip: "10.0.0.2", prefixLen: 24, gateway: "10.0.0.1", mac: "02:00:00:00:00:01", dns: ["1.1.1.1"] } }));
    withNet.str();
    assert.equal(withNet.u8(), 1);
    assert.equal(withNet.str(), "10.0.0.2");
    assert.equal(withNet.u8(), 24);
  });

  it("encodes CONFIGURE's keep flags from protocol 3 on, everything before", () => {
    const base = { hostname: "", envs: { A: "1" }, sshPubkeys: ["ssh-ed25519 AAA"], rngSeed: Buffer.alloc(32, 1), wallClockMs: 1000 };
    const read = (buf: Buffer, flagged: boolean) => {
      const r = new PayloadReader(buf);
      r.str();
      assert.equal(r.u8(), 0);
      const envs: Record<string, string> = {};
      for (let n = r.u32(); n > 0; n--) envs[r.str()] = r.str();
      const out = { envs, keys: r.strList(), seed: r.bytes().length, clock: Number(r.u64()), keep: flagged ? r.u8() : -1 };
      r.end();
      return out;
    };
    assert.deepEqual(read(encodeConfigure({ ...base, keep: { envs: true, keys: true } }, 3), true), { envs: {}, keys: [], seed: 32, clock: 1000, keep: 3 });
    assert.deepEqual(read(encodeConfigure({ ...base, keep: { keys: true } }, 3), true), { envs: { A: "1" }, keys: [], seed: 32, clock: 1000, keep: 2 });
    assert.deepEqual(read(encodeConfigure(base, 3), true), { envs: { A: "1" }, keys: ["ssh-ed25519 AAA"], seed: 32, clock: 1000, keep: 0 });
    // An agent of protocol 2 has no flags: it gets everything, whatever keep says.
    assert.deepEqual(read(encodeConfigure({ ...base, keep: { envs: true, keys: true } }, 2), false), { envs: { A: "1" }, keys: ["ssh-ed25519 AAA"], seed: 32, clock: 1000, keep: -1 });
  });

  it("fuzz: random and mutated input only ever throws FrameError", () => {
    const valid = Buffer.concat([
      ...GOLDEN_FRAMES.map((g) => Buffer.from(g.hex, "hex")),
      encodeFrame(HP_STDOUT, 5, randomBytes(2000)),
    ]);
    const deadline = Date.now() + 1500;
    let runs = 0;
    while (Date.now() < deadline) {
      runs++;
      const input = Buffer.from(valid);
      const mode = runs % 3;
      if (mode === 0) randomBytes(input.length).copy(input);
      else for (let k = 0; k < 1 + (runs % 5); k++) input[Math.floor(Math.random() * input.length)] = Math.floor(Math.random() * 256);
      if (mode === 2) input.writeUInt32BE(Math.floor(Math.random() * 2 ** 32), 4); // hostile length (checksum now fails)
      for (const dec of [new FrameDecoder(), Object.assign(new FrameDecoder(), {})]) {
        if (runs % 2) dec.resyncUntil((f) => f.type === HP_HELLO);
        try {
          for (let off = 0; off < input.length; off += 97) {
            for (const f of dec.push(input.subarray(off, off + 97))) {
              assert.ok(f.payload.length <= HP_MAX_PAYLOAD);
              try {
                decodeExit(f.payload);
              } catch (e) {
                assert.ok(e instanceof FrameError, String(e));
              }
            }
          }
        } catch (e) {
          assert.ok(e instanceof FrameError, String(e));
        }
        assert.ok(dec.buffered <= HP_HEADER_SIZE + HP_MAX_PAYLOAD);
      }
    }
    assert.ok(runs > 100);
  });
});
