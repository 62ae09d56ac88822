import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { appendFile, mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { vmPaths } from "../../../src/runtime/qemu/vm-paths.js";
import { consoleTail, isAlive, isVmmOf, killAndWait, rotateConsole } from "../../../src/runtime/qemu/vm-process.js";

let dataDir: string;
before(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), "vmproc-"));
});
after(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

test("console rotation keeps the file bounded and the tail readable", async () => {
  const p = vmPaths(dataDir, "sb_01JABCDEFGHJKMNPQRSTVWXYZ0");
  await mkdir(p.dir, { recursive: true });
  await writeFile(p.console, "a".repeat(5000) + "\nlast line before rotation\n");
  await rotateConsole(p, 1000);
  assert.equal((await stat(p.console)).size, 0);
  assert.match(await readFile(p.consoleOld, "utf8"), /last line before rotation/);
  await appendFile(p.console, "after rotation\n");
  await rotateConsole(p, 1000); // under the limit: untouched
  const tail = await consoleTail(p, 200);
  assert.match(tail, /after rotation$/);
  assert.ok(tail.length <= 200);
});

test("isAlive, isVmmOf and killAndWait on a real process", async () => {
  const marker = path.join(dataDir, "sandboxes", "sb_X");
  // A stand-in VMM: its argv names a file in the VM directory, as QEMU's does.
  const proc = spawn(process.execPath, ["-e", "setTimeout(() => {}, 30000)", `${marker}/qemu.pid`], { stdio: "ignore" });
  const pid = proc.pid!;
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(await isAlive(pid), true);
  assert.equal(await isVmmOf(pid, marker), true);
  assert.equal(await isVmmOf(pid, path.join(dataDir, "other")), false, "a recycled pid of something else is not ours");
  await killAndWait(pid, 200);
  assert.equal(await isAlive(pid), false, "gone (a zombie counts as gone)");
  assert.equal(await isAlive(2 ** 22 + 12345), false);
});
