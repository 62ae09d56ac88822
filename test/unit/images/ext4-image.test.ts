import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { BASE_LABEL, DISK_LABEL, baseImageSizeMib, createDisk, packBaseImage } from "../../../src/runtime/images/ext4-image.js";

const dir = mkdtempSync(join(tmpdir(), "hutch-ext4-"));
after(() => rmSync(dir, { recursive: true, force: true }));

/** `dumpe2fs -h` fields as a map. */
function superblock(path: string): Map<string, string> {
  const out = execFileSync("dumpe2fs", ["-h", path], { stdio: ["ignore", "pipe", "ignore"] }).toString();
  return new Map(
    out
      .split("\n")
      .map((l) => /^([^:]+):\s*(.*)$/.exec(l))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => [m[1] as string, m[2] as string]),
  );
}

describe("createDisk", () => {
  it("makes a sparse ext4 of the requested size labeled hutch-disk, quickly", async () => {
    const path = join(dir, "disk.img");
    const t0 = Date.now();
    await createDisk(path, 10240);
    const took = Date.now() - t0;
    const st = statSync(path);
    assert.equal(st.size, 10240 * 1048576);
    assert.ok(st.blocks * 512 < 200 * 1048576, `sparse: ${st.blocks * 512} bytes allocated`);
    const sb = superblock(path);
    assert.equal(sb.get("Filesystem volume name"), DISK_LABEL);
    assert.equal(Number(sb.get("Block count")) * Number(sb.get("Block size")), 10240 * 1048576);
    assert.match(sb.get("Filesystem features") ?? "", /has_journal/);
    assert.ok(took < 2000, `took ${took} ms`);
  });

  it("replaces an existing file and rejects silly sizes", async () => {
    const path = join(dir, "disk2.img");
    writeFileSync(path, "old");
    await createDisk(path, 64);
    assert.equal(statSync(path).size, 64 * 1048576);
    await assert.rejects(createDisk(path, 1), /integer >= 16/);
    await assert.rejects(createDisk(path, 20.5), /integer >= 16/);
  });
});

describe("packBaseImage", () => {
  it("packs a tree into an ext4 labeled hutch-base with the files, sized to content", async () => {
    const tree = join(dir, "tree");
    mkdirSync(join(tree, "etc"), { recursive: true });
    writeFileSync(join(tree, "etc", "hello"), "hello from the base\n");
    writeFileSync(join(tree, "big"), Buffer.alloc(3 * 1048576, 1));
    const out = join(dir, "base.ext4");
    await packBaseImage(tree, out);
    const sb = superblock(out);
    assert.equal(sb.get("Filesystem volume name"), BASE_LABEL);
    assert.doesNotMatch(sb.get("Filesystem features") ?? "", /has_journal/);
    const content = execFileSync("debugfs", ["-R", "cat /etc/hello", out], { stdio: ["ignore", "pipe", "ignore"] });
    assert.equal(content.toString(), "hello from the base\n");
    assert.ok(statSync(out).size < 20 * 1048576, `small: ${statSync(out).size}`);
  });

  it("sizes for content plus metadata plus slack", () => {
    assert.ok(baseImageSizeMib(100 * 1048576, 1000) >= 100 + 8);
    assert.ok(baseImageSizeMib(100 * 1048576, 1000) < 120);
  });
});
