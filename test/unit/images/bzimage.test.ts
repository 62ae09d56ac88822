import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { LZ4_LEGACY_MAGIC, extractVmlinux, lz4PayloadOf } from "../../../src/runtime/images/bzimage.js";

const dir = mkdtempSync(join(tmpdir(), "hutch-bzimage-"));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A fake ELF: magic and recognisable filler. */
const elf = Buffer.concat([Buffer.from("\x7fELF", "latin1"), Buffer.alloc(70_000, "kernel!")]);

/** LZ4 legacy frame of `data`, as the kernel build makes it (lz4 -l). */
function lz4Legacy(data: Buffer): Buffer {
  writeFileSync(join(dir, "raw"), data);
  execFileSync("lz4", ["-l", "-f", "-q", join(dir, "raw"), join(dir, "raw.lz4")]);
  return readFileSync(join(dir, "raw.lz4"));
}

/** A bzImage-shaped buffer: boot sector + setup sectors, then payload + u32 size trailer. */
function fakeBzImage(payload: Buffer, setupSects = 3, payloadOffset = 0x3c0): Buffer {
  const setup = Buffer.alloc((setupSects + 1) * 512);
  setup.writeUInt8(setupSects, 0x1f1);
  setup.write("HdrS", 0x202, "latin1");
  setup.writeUInt32LE(payloadOffset, 0x248);
  setup.writeUInt32LE(payload.length + 4, 0x24c);
  const trailer = Buffer.alloc(4);
  trailer.writeUInt32LE(elf.length);
  // Bytes before the payload (decompressor stub) and after it (padding) must be ignored.
  return Buffer.concat([setup, Buffer.alloc(payloadOffset, 0xcc), payload, trailer, Buffer.alloc(100, 0xee)]);
}

describe("lz4PayloadOf", () => {
  it("finds the LZ4 stream from setup_sects and payload_offset, without the size trailer", () => {
    const frame = lz4Legacy(elf);
    assert.deepEqual(frame.subarray(0, 4), LZ4_LEGACY_MAGIC);
    assert.deepEqual(lz4PayloadOf(fakeBzImage(frame)), frame);
    assert.deepEqual(lz4PayloadOf(fakeBzImage(frame, 30, 16)), frame);
  });

  it("rejects a file without the HdrS header", () => {
    const img = fakeBzImage(lz4Legacy(elf));
    img.write("XXXX", 0x202, "latin1");
    assert.throws(() => lz4PayloadOf(img), /not a bzImage/);
  });

  it("rejects a payload that is not LZ4 (another compressor)", () => {
    const gzipLike = Buffer.concat([Buffer.from([0x1f, 0x8b, 0x08, 0x00]), Buffer.alloc(64)]);
    assert.throws(() => lz4PayloadOf(fakeBzImage(gzipLike)), /not LZ4/);
  });

  it("rejects a payload length past the end of the file", () => {
    const img = fakeBzImage(lz4Legacy(elf));
    img.writeUInt32LE(img.length, 0x24c);
    assert.throws(() => lz4PayloadOf(img), /out of bounds/);
  });
});

describe("extractVmlinux", () => {
  it("decompresses the payload into the original ELF", async () => {
    writeFileSync(join(dir, "vmlinuz"), fakeBzImage(lz4Legacy(elf)));
    await extractVmlinux(join(dir, "vmlinuz"), join(dir, "vmlinux"));
    assert.deepEqual(readFileSync(join(dir, "vmlinux")), elf);
  });

  it("fails when the result is not an ELF", async () => {
    writeFileSync(join(dir, "vmlinuz2"), fakeBzImage(lz4Legacy(Buffer.alloc(5000, "x"))));
    await assert.rejects(extractVmlinux(join(dir, "vmlinuz2"), join(dir, "vmlinux2")), /not an ELF/);
  });
});
