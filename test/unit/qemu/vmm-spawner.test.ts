/**
 * hutch-spawn (jailer/spawn.c) through VmmSpawner: the real helper binary,
 * real processes. What a VMM launch relies on: its own session, cwd, only
 * the given environment, stdio into the log, fd 3 from a file, exit codes
 * and signals reported, and children that outlive the helper.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { isAlive } from "../../../src/runtime/qemu/vm-process.js";
import { launchDetached, VmmSpawner, type VmmChild } from "../../../src/runtime/qemu/vmm-spawner.js";

const warnings: string[] = [];
const log = { debug() {}, info() {}, warn(_o: object | string, msg?: string) { warnings.push(msg ?? ""); }, error() {} };
const PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
let dir: string;
let spawner: VmmSpawner;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "hutch-spawn-"));
  const s = await VmmSpawner.create(log);
  assert.ok(s, `hutch-spawn must build: ${warnings.join("; ")}`);
  spawner = s;
});

after(async () => {
  spawner?.close();
  await rm(dir, { recursive: true, force: true });
});

/** Its exit; a timer keeps the test alive meanwhile (the child, like a detached one, does not). */
function exited(child: VmmChild): Promise<[number | null, NodeJS.Signals | null]> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve([child.exitCode, child.signalCode]);
  const keep = setTimeout(() => {}, 20_000);
  return new Promise((resolve) => child.once("exit", (code, sig) => {
    clearTimeout(keep);
    resolve([code, sig]);
  }));
}

/** Pids of this test process's hutch-spawn helpers. */
function helpers(): number[] {
  try {
    return execFileSync("pgrep", ["-P", String(process.pid), "-x", "hutch-spawn"], { encoding: "utf8" }).trim().split("\n").map(Number);
  } catch {
    return [];
  }
}

test("a child gets its cwd, only the given env, the log as stdout/stderr, fd 3 and a session of its own", async () => {
  const logFile = path.join(dir, "a.log");
  await writeFile(path.join(dir, "input"), "from fd 3\n");
  const script = [
    "echo out", "echo err >&2", "pwd", 'echo "foo=$FOO home=${HOME-unset}"', "cat <&3",
    'read -r pid comm st pp pg sid rest < /proc/$$/stat; [ "$sid" = "$$" ] && echo own-session', "exit 3",
  ].join("; ");
  const child = await spawner.spawn({ argv: ["sh", "-c", script], cwd: dir, logFile, env: { PATH, FOO: "bar" }, inputFile: path.join(dir, "input") });
  assert.ok(child.pid && child.pid > 1);
  assert.deepEqual(await exited(child), [3, null]);
  assert.equal(await readFile(logFile, "utf8"), `out\nerr\n${dir}\nfoo=bar home=unset\nfrom fd 3\nown-session\n`);
});

test("an exit reported in the same read as the start reaches listeners attached right after the spawn", async () => {
  // A stand-in helper that answers the first request with both lines at once,
  // as the real one's may arrive when the child exits at once.
  const fake = path.join(dir, "fake-helper");
  await writeFile(fake, "#!/bin/sh\nprintf 'started 1 4242\\nexited 4242 7 0\\n'\nexec cat >/dev/null\n", { mode: 0o755 });
  const s = VmmSpawner.at(fake, log);
  try {
    const child = await s.spawn({ argv: ["true"], cwd: dir, logFile: path.join(dir, "r.log"), env: { PATH } });
    assert.equal(child.pid, 4242);
    assert.equal(child.exitCode, null, "exitCode changes with the event, not before");
    assert.deepEqual(await exited(child), [7, null]);
  } finally {
    s.close();
  }
});

test("a signal is reported as the exit's signal", async () => {
  const child = await spawner.spawn({ argv: ["sleep", "30"], cwd: dir, logFile: path.join(dir, "b.log"), env: { PATH } });
  process.kill(child.pid!, "SIGKILL");
  assert.deepEqual(await exited(child), [null, "SIGKILL"]);
});

test("a program that cannot run rejects the spawn, with execve's errno", async () => {
  await assert.rejects(spawner.spawn({ argv: ["no-such-program-here"], cwd: dir, logFile: path.join(dir, "c.log"), env: { PATH } }), (e: Error & { errno?: number }) => e.errno === 2);
  await assert.rejects(spawner.spawn({ argv: ["sh"], cwd: path.join(dir, "missing"), logFile: path.join(dir, "c.log"), env: { PATH } }), (e: Error & { errno?: number }) => e.errno === 2);
  // The helper serves on after a failure.
  assert.deepEqual(await exited(await spawner.spawn({ argv: ["true"], cwd: dir, logFile: path.join(dir, "c.log"), env: { PATH } })), [0, null]);
});

test("children run on when the helper dies; their exit is still noticed, and the next spawn starts a new helper", async () => {
  const child = await spawner.spawn({ argv: ["sleep", "1.5"], cwd: dir, logFile: path.join(dir, "d.log"), env: { PATH } });
  const [helper] = helpers();
  assert.ok(helper, "a helper runs");
  process.kill(helper, "SIGKILL");
  await sleep(300);
  assert.equal(await isAlive(child.pid!), true, "the child outlived its helper");
  const t0 = Date.now();
  assert.deepEqual(await exited(child), [null, null]);
  assert.ok(Date.now() - t0 < 3000, "noticed by polling");
  assert.ok(warnings.some((w) => w.includes("hutch-spawn ended")));
  const next = await spawner.spawn({ argv: ["true"], cwd: dir, logFile: path.join(dir, "d.log"), env: { PATH } });
  assert.deepEqual(await exited(next), [0, null]);
  assert.equal(helpers().length, 1);
});

test("close ends the helper and leaves its children running", async () => {
  const s = VmmSpawner.at(spawner.binary, log);
  const child = await s.spawn({ argv: ["sleep", "30"], cwd: dir, logFile: path.join(dir, "e.log"), env: { PATH } });
  const before = helpers();
  s.close();
  for (let i = 0; i < 50 && helpers().length >= before.length; i++) await sleep(20);
  assert.equal(helpers().length, before.length - 1, "the helper exited on stdin's end");
  assert.equal(await isAlive(child.pid!), true);
  process.kill(child.pid!, "SIGKILL");
  await assert.rejects(s.spawn({ argv: ["true"], cwd: dir, logFile: path.join(dir, "e.log"), env: { PATH } }), /closed/);
});

test("launchDetached without a spawner forks the server, with the same stdio and fd 3", async () => {
  const logFile = path.join(dir, "f.log");
  await writeFile(path.join(dir, "input2"), "three\n");
  const child = await launchDetached(undefined, { argv: ["sh", "-c", "cat <&3; exit 5"], cwd: dir, logFile, inputFile: path.join(dir, "input2") });
  assert.deepEqual(await exited(child), [5, null]);
  assert.equal(await readFile(logFile, "utf8"), "three\n");
});
