/**
 * Turns Debian's bzImage into the ELF `vmlinux` that QEMU microvm boots via
 * PVH. The bzImage itself stalls in real mode under microvm (RUNTIME-NOTES),
 * so we unpack its compressed payload ourselves.
 */
import { open, readFile, rm, writeFile } from "node:fs/promises";
import { runCommand } from "../run-command.js";

/** Offset of `setup_sects` (u8) in the boot sector. */
const SETUP_SECTS_OFFSET = 0x1f1;
/** Offset of the "HdrS" magic of the boot protocol header. */
const HEADER_MAGIC_OFFSET = 0x202;
/** Offsets of `payload_offset` / `payload_length` (u32 LE), boot protocol >= 2.08. */
const PAYLOAD_OFFSET_OFFSET = 0x248;
const PAYLOAD_LENGTH_OFFSET = 0x24c;
/** LZ4 legacy frame magic (what the kernel's lz4 compressor writes). */
export const LZ4_LEGACY_MAGIC = Buffer.from([0x02, 0x21, 0x4c, 0x18]);
/** The kernel build appends the uncompressed size (u32) after the stream. */
const SIZE_TRAILER_BYTES = 4;

/**
 * Returns the LZ4 legacy stream embedded in a bzImage, without the 4-byte
 * size trailer, ready for `lz4 -d`. Throws if the header is not a bzImage
 * or the payload is not LZ4 (another compressor would need another tool).
 */
export function lz4PayloadOf(bzImage: Buffer): Buffer {
  if (bzImage.length < PAYLOAD_LENGTH_OFFSET + 4) throw new Error("bzImage too short");
  if (bzImage.toString("latin1", HEADER_MAGIC_OFFSET, HEADER_MAGIC_OFFSET + 4) !== "HdrS") {
    throw new Error("not a bzImage: no HdrS boot header");
  }
  // setup_sects 0 means 4 for historical reasons (boot protocol docs).
  const setupSects = bzImage.readUInt8(SETUP_SECTS_OFFSET) || 4;
  const payloadOffset = bzImage.readUInt32LE(PAYLOAD_OFFSET_OFFSET);
  const payloadLength = bzImage.readUInt32LE(PAYLOAD_LENGTH_OFFSET);
  const start = (setupSects + 1) * 512 + payloadOffset;
  const end = start + payloadLength;
  if (payloadLength <= SIZE_TRAILER_BYTES || end > bzImage.length) {
    throw new Error(`bzImage payload out of bounds (start ${start}, length ${payloadLength}, file ${bzImage.length})`);
  }
  const payload = bzImage.subarray(start, end - SIZE_TRAILER_BYTES);
  if (!payload.subarray(0, 4).equals(LZ4_LEGACY_MAGIC)) {
    throw new Error(`bzImage payload is not LZ4 (magic ${payload.subarray(0, 4).toString("hex")})`);
  }
  return payload;
}

/** Extracts the ELF vmlinux from the bzImage at `bzImagePath` into `outPath`. */
export async function extractVmlinux(bzImagePath: string, outPath: string): Promise<void> {
  const payloadPath = `${outPath}.lz4`;
  await writeFile(payloadPath, lz4PayloadOf(await readFile(bzImagePath)));
  await runCommand("lz4", ["-d", "-f", "-q", payloadPath, outPath]);
  const head = Buffer.alloc(4);
  const fh = await open(outPath, "r");
  try {
    await fh.read(head, 0, 4, 0);
  } finally {
    await fh.close();
  }
  if (head.toString("latin1") !== "\x7fELF") throw new Error("decompressed kernel is not an ELF file");
  await rm(payloadPath, { force: true });
}
