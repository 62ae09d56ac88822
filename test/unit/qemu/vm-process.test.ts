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

test("console rotation: console.log.1 keeps only the last maxBytes; a fast-growing console is rotated before it passes the bound", async () => {
  const p = vmPaths(dataDir, "sb_01JABCDEFGHJKMNPQRSTVWXYZ1");
  await mkdir(p.dir, { recursive: true });
  await writeFile(p.console, "x".repeat(50_000) + "the newest bytes\n");
  assert.equal(await rotateConsole(p, 1000), 0);
  const old = await readFile(p.consoleOld, "utf8");
  assert.equal(old.length, 1000, "a flood past the bound does not all land in console.log.1");
  assert.match(old, /the newest bytes\n$/);
  // 600 bytes since the last call (at 0): at that pace the next call would find 1200 > 1000.
  await writeFile(p.console, "y".repeat(600));
  assert.equal(await rotateConsole(p, 1000, 0), 0, "rotated ahead of the bound");
  // A slow writer is left alone until it nears the bound.
  await writeFile(p.console, "z".repeat(300));
  assert.equal(await rotateConsole(p, 1000, 200), 300);
  assert.equal(await rotateConsole(p, 1000, undefined), 300);
  await rm(p.dir, { recursive: true });
  assert.equal(await rotateConsole(p, 1000, 300), 0, "a VM going away");
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
