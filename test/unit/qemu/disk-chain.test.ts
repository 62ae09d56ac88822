/**
 * createOverlay: the second overlay on the same backing is a copy of the
 * first one's bytes, and qemu-img reads it as the same overlay.
 */
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { runCommand } from "../../../src/runtime/run-command.js";
import { createOverlay, diskChain } from "../../../src/runtime/snapshot/disk-chain.js";

const dir = await mkdtemp(path.join(tmpdir(), "hutch-overlay-"));
after(() => rm(dir, { recursive: true, force: true }));

async function info(file: string): Promise<{ "virtual-size": number; "backing-filename": string; "backing-filename-format": string }> {
  return JSON.parse((await runCommand("qemu-img", ["info", "--output=json", file])).stdout);
}

test("overlays of one backing are byte-identical and name that backing", async () => {
  const base = path.join(dir, "base.img");
  await writeFile(base, "");
  await truncate(base, 64 * 1048576);
  const a = path.join(dir, "a.qcow2");
  const b = path.join(dir, "b.qcow2");
  await createOverlay(a, base, "raw");
  await createOverlay(b, base, "raw");
  assert.deepEqual(await readFile(b), await readFile(a));
  const i = await info(b);
  assert.equal(i["virtual-size"], 64 * 1048576);
  assert.equal(i["backing-filename"], base);
  assert.equal(i["backing-filename-format"], "raw");
  // Relative names over a qcow2 layer; another size is another overlay.
  await createOverlay(path.join(dir, "layer-1.qcow2"), "b.qcow2", "qcow2");
  await createOverlay(path.join(dir, "c.qcow2"), "layer-1.qcow2", "qcow2");
  const chain = await diskChain(path.join(dir, "c.qcow2"));
  assert.deepEqual(chain.map((l) => path.basename(l.filename)), ["c.qcow2", "layer-1.qcow2", "b.qcow2", "base.img"]);
  const other = path.join(dir, "other.img");
  await writeFile(other, "");
  await truncate(other, 32 * 1048576);
  await createOverlay(path.join(dir, "d.qcow2"), other, "raw");
  assert.equal((await info(path.join(dir, "d.qcow2")))["virtual-size"], 32 * 1048576);
});
