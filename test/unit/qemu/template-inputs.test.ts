/**
 * Template keys carry a fingerprint of what the template is built from, and
 * outdated templates go once no sandbox descends from them. The image store
 * is a test double (files in a temp dir): what matters here is the files.
 */
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import type { SnapshotDeps } from "../../../src/runtime/snapshot/snapshot-vm.js";
import { templateKey } from "../../../src/runtime/snapshot/snapshot-paths.js";
import { removeStaleTemplates, templateInputs } from "../../../src/runtime/snapshot/template-inputs.js";

let dir: string;
let d: SnapshotDeps;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "hutch-tplin-"));
  for (const f of ["vmlinux", "initrd", "minimal.ext4", "qemu"]) await writeFile(path.join(dir, f), f);
  const images = {
    kernel: () => ({ vmlinux: path.join(dir, "vmlinux"), initrd: path.join(dir, "initrd"), cmdline: "console=ttyS0" }),
    rootfs: (name: string) => {
      if (name !== "minimal:1") throw new Error(`unknown image ${name}`);
      return { path: path.join(dir, "minimal.ext4") };
    },
  };
  d = { dataDir: path.join(dir, "data"), images: images as never, network: {} as never, accel: "tcg", binary: path.join(dir, "qemu") };
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function touch(file: string, content: string): Promise<void> {
  await writeFile(file, content);
  const t = new Date(Date.now() + 5000);
  await utimes(file, t, t);
}

test("the fingerprint is stable, and changes with the image, the kernel or QEMU", async () => {
  const a = templateInputs(d, "minimal:1");
  assert.match(a, /^[0-9a-f]{10}$/);
  assert.equal(templateInputs(d, "minimal:1"), a);
  await touch(path.join(dir, "minimal.ext4"), "rebuilt image");
  const b = templateInputs(d, "minimal:1");
  assert.notEqual(b, a, "a rebuilt image");
  await touch(path.join(dir, "vmlinux"), "new kernel");
  const c = templateInputs(d, "minimal:1");
  assert.notEqual(c, b, "a new kernel");
  await touch(path.join(dir, "qemu"), "upgraded qemu");
  assert.notEqual(templateInputs(d, "minimal:1"), c, "an upgraded QEMU");
  assert.notEqual(templateInputs({ ...d, accel: "kvm" }, "minimal:1"), templateInputs(d, "minimal:1"), "another accelerator");
});

test("outdated templates are removed unless a sandbox descends from them; current ones stay", async () => {
  const tdir = path.join(d.dataDir, "templates");
  const make = async (name: string) => {
    await mkdir(path.join(tdir, name), { recursive: true });
    await writeFile(path.join(tdir, name, "meta.json"), JSON.stringify({ rootfs: "minimal:1" }));
  };
  const current = templateKey("minimal:1", 1, 256, 1024, templateInputs(d, "minimal:1"));
  const oldUnused = templateKey("minimal:1", 1, 256, 1024, "0000000000");
  const oldRunning = templateKey("minimal:1", 1, 1024, 1024, "1111111111");
  const oldPaused = templateKey("minimal:1", 1, 512, 1024, "2222222222");
  for (const n of [current, oldUnused, oldRunning, oldPaused, "minimal-1_1c256m1024d"]) await make(n);
  await mkdir(path.join(tdir, ".minimal-1_1c256m1024d-x.tmp-ab12"), { recursive: true }); // a build in progress: not ours
  const sb = path.join(d.dataDir, "sandboxes");
  await mkdir(path.join(sb, "sb_A"), { recursive: true });
  await writeFile(path.join(sb, "sb_A", "snap.json"), JSON.stringify({ template: oldRunning }));
  await mkdir(path.join(sb, "sb_B"), { recursive: true });
  await writeFile(path.join(sb, "sb_B", "bundle.json"), JSON.stringify({ template: oldPaused }));

  const removed = await removeStaleTemplates(d);
  assert.deepEqual(removed.sort(), [oldUnused, "minimal-1_1c256m1024d"].sort());
  assert.deepEqual((await readdir(tdir)).sort(), [".minimal-1_1c256m1024d-x.tmp-ab12", current, oldPaused, oldRunning].sort());

  // Once its last sandbox is gone, an outdated template goes too.
  await rm(path.join(sb, "sb_A"), { recursive: true });
  assert.deepEqual(await removeStaleTemplates(d), [oldRunning]);
});
