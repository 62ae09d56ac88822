/**
 * Black-box tests of hutch-agent's interactive shells: the agent runs on the
 * host (--no-init), so the shell is the host's bash -l (or sh -l) on a real
 * pseudo-terminal it allocates.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";

import type { AgentClient } from "../../src/runtime/agent/agent-client.js";
import type { ShellSession } from "../../src/runtime/runtime.js";
import { Screen } from "../support/upgrade-client.js";
import { AgentHarness } from "./agent-harness.js";

/** Collects a session's output and waits for a pattern in it. */
/** A shell's screen, with typing; waits default to 10 s. */
class ShellScreen extends Screen {
  constructor(readonly s: ShellSession) {
    super(s.stream);
  }
  override waitFor(re: RegExp, timeoutMs = 10_000): Promise<RegExpMatchArray> {
    return super.waitFor(re, timeoutMs);
  }
  type(line: string): void {
    this.s.stream.write(`${line}\n`);
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("hutch-agent PTY", () => {
  const h = new AgentHarness();
  let client: AgentClient;

  before(async () => {
    await h.start();
    client = await h.client();
  });
  after(async () => {
    client?.close();
    await h.stop();
  });

  it("runs a login shell on a terminal of the asked size, with TERM and the request env", async () => {
    const s = await client.openShell({ rows: 30, cols: 100, env: { HUTCH_T: "pty-ok" } });
    const scr = new ShellScreen(s);
    // The marker is split so the echoed command line does not match it.
    scr.type('stty size; tty; echo "T=$TERM E=$HUTCH_T H=$HOME W=$(pwd)" "E""ND"');
    const m = await scr.waitFor(/(\d+) (\d+)\r?\n(\/dev\/pts\/\d+)\r?\nT=(\S+) E=(\S+) H=(\S+) W=(\S+) END/);
    assert.equal(m[1], "30");
    assert.equal(m[2], "100");
    assert.equal(m[4], "xterm-256color");
    assert.equal(m[5], "pty-ok");
    assert.equal(m[6], "/root");
    assert.equal(m[7], "/root");
    scr.type("exit 3");
    assert.equal(await s.exit, 3);
  });

  it("resizes: stty size shows the new size; the stream ends when the shell exits", async () => {
    const s = await client.openShell({ rows: 24, cols: 80 });
    const scr = new ShellScreen(s);
    const ended = new Promise<void>((r) => s.stream.once("end", r));
    scr.type('stty size; echo "S""1"');
    await scr.waitFor(/24 80\r?\nS1/);
    s.resize(50, 132);
    await sleep(100);
    scr.type('stty size; echo "S""2"');
    await scr.waitFor(/50 132\r?\nS2/);
    scr.type("exit");
    assert.equal(await s.exit, 0);
    await ended;
  });

  it("carries large output and input within the credit windows", async () => {
    const s = await client.openShell({ rows: 24, cols: 80 });
    const scr = new ShellScreen(s);
    // 2 MiB of output through the terminal (beyond several credit windows).
    scr.type('head -c 2000000 /dev/zero | tr "\\0" x; echo; echo "B""IG"');
    await scr.waitFor(/BIG/, 30_000);
    assert.ok((scr.text.match(/x/g) ?? []).length >= 2_000_000);
    // 600 kB typed in raw mode (no line-length cap), counted in the guest.
    scr.type('stty raw -echo; echo "R""DY"; head -c 600000 | wc -c; echo "W""C"; stty sane');
    await scr.waitFor(/RDY/);
    s.stream.write(Buffer.alloc(600_000, "y"));
    await scr.waitFor(/600000\s+WC/, 30_000);
    s.stream.destroy();
    assert.equal(await s.exit, -1);
  });

  it("hangs up: destroying the stream ends the shell and its jobs", async () => {
    const s = await client.openShell({ rows: 24, cols: 80 });
    const scr = new ShellScreen(s);
    scr.type('sleep 300 & echo "P=$$ J=$!" "E""ND"');
    const m = await scr.waitFor(/P=(\d+) J=(\d+) END/);
    const shell = Number(m[1]);
    const job = Number(m[2]);
    assert.ok(alive(shell) && alive(job));
    s.stream.destroy();
    assert.equal(await s.exit, -1);
    const deadline = Date.now() + 5000;
    while ((alive(shell) || alive(job)) && Date.now() < deadline) await sleep(50);
    assert.equal(alive(shell), false, "shell still running after hang-up");
    assert.equal(alive(job), false, "background job still running after hang-up");
  });

  it("several shells at once stay separate", async () => {
    const sessions = await Promise.all([1, 2, 3].map((i) => client.openShell({ rows: 10 + i, cols: 40 + i })));
    const screens = sessions.map((s) => new ShellScreen(s));
    screens.forEach((scr) => scr.type('stty size; echo "D""ONE"'));
    for (const [i, scr] of screens.entries()) await scr.waitFor(new RegExp(`${11 + i} ${41 + i}\\r?\\nDONE`));
    screens.forEach((scr, i) => scr.type(`exit ${i + 10}`));
    assert.deepEqual(await Promise.all(sessions.map((s) => s.exit)), [10, 11, 12]);
  });
});
