import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { writeCpioNewc } from "../../../src/runtime/images/cpio-newc.js";
import { defaultRecipeDir } from "../../../src/runtime/images/image-store.js";
import { InitramfsArtifact } from "../../../src/runtime/images/initramfs-artifact.js";

const dir = mkdtempSync(join(tmpdir(), "hutch-initramfs-"));
after(() => rmSync(dir, { recursive: true, force: true }));

describe("InitramfsArtifact", () => {
  const modulesCpio = join(dir, "modules.cpio");
  writeFileSync(
    modulesCpio,
    writeCpioNewc([
      { type: "dir", path: "lib" },
      { type: "dir", path: "lib/modules" },
      { type: "file", path: "lib/modules/virtio.ko", data: Buffer.from("ko") },
      { type: "dir", path: "hutch" },
      { type: "file", path: "hutch/modules", data: Buffer.from("virtio\n") },
    ]),
  );
  // Any static binary will do as the agent here.
  let agent = "/bin/busybox";
  const art = new InitramfsArtifact(join(dir, "kernel"), {
    initScript: join(defaultRecipeDir(), "init.sh"),
    modulesCpio,
    agentBinary: async () => agent,
  });

  it("packs /init, busybox, the agent, /dev/console, then the module fragment", async () => {
    const tmpDir = join(dir, "build");
    mkdirSync(tmpDir);
    await art.build({ tmpDir, step: () => undefined, message: () => undefined });
    const img = readFileSync(join(tmpDir, "initrd.img"));
    // The kernel reads concatenated archives; cpio -i reads the first, so unpack each in turn.
    const unpack = join(dir, "unpacked");
    mkdirSync(unpack);
    execFileSync("sh", ["-c", `cd ${unpack} && (cpio -id --quiet; cpio -id --quiet) < ${join(tmpDir, "initrd.img")}`]);
    assert.equal(readFileSync(join(unpack, "init"), "utf8"), readFileSync(join(defaultRecipeDir(), "init.sh"), "utf8"));
    assert.deepEqual(readFileSync(join(unpack, "hutch/agent")), readFileSync("/bin/busybox"));
    assert.equal(readFileSync(join(unpack, "hutch/modules"), "utf8"), "virtio\n");
    const list = execFileSync("cpio", ["-itv", "--quiet"], { input: img }).toString();
    assert.match(list, /^-rwxr-xr-x .* init$/m);
    assert.match(list, /^crw------- .* 5,\s+1 .* dev\/console$/m);
    assert.match(list, /^lrwxrwxrwx .* bin\/findfs -> busybox$/m);
    assert.match(list, /^lrwxrwxrwx .* bin\/switch_root -> busybox$/m);
  });

  it("its recipe changes with the agent binary", async () => {
    const before = await art.inputs();
    agent = join(dir, "other-agent");
    writeFileSync(agent, "different");
    const afterChange = await art.inputs();
    assert.notEqual(afterChange.agent, before.agent);
    assert.equal(afterChange.init, before.init);
    agent = "/bin/busybox";
  });

  it("refuses a dynamically linked agent", async () => {
    agent = "/bin/bash";
    const tmpDir = join(dir, "build2");
    mkdirSync(tmpDir);
    await assert.rejects(art.build({ tmpDir, step: () => undefined, message: () => undefined }), /dynamically linked/);
    agent = "/bin/busybox";
  });
});
