/**
 * NftSession against the real kernel (needs root): a namespace of its own,
 * deleted at the end. Shows that commands run as nft transactions, errors
 * come back as nft words them, JSON output works, and a helper that dies is
 * replaced.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { NftSession } from "../../../src/runtime/network/nft-session.js";
import { runCommand } from "../../../src/runtime/network/run-command.js";

const NS = `hutch-nft${process.pid.toString(36).slice(-4)}`;
let s: NftSession;

before(async () => {
  await runCommand("ip", ["netns", "add", NS]);
  s = new NftSession(NS);
});

after(async () => {
  s.close();
  await runCommand("ip", ["netns", "del", NS], { allowFail: true });
});

/** The ruleset as the `nft` tool sees it in the namespace. */
async function ruleset(): Promise<string> {
  return (await runCommand("ip", ["netns", "exec", NS, "nft", "list", "ruleset"])).stdout;
}

test("a command buffer is applied, in the namespace only", async () => {
  const r = await s.run("add table ip t\nadd chain ip t c\nadd rule ip t c ip daddr 10.9.9.9 counter drop\nadd counter ip t k\n");
  assert.deepEqual(r, { code: 0, stdout: "", stderr: "" });
  assert.match(await ruleset(), /ip daddr 10\.9\.9\.9 counter packets 0 bytes 0 drop/);
  const host = await runCommand("nft", ["list", "tables"]);
  assert.doesNotMatch(host.stdout, /table ip t$/m, "nothing lands in the host's namespace");
});

test("a failing buffer reports nft's error and changes nothing (one transaction)", async () => {
  const r = await s.run("add chain ip t other\nadd rule ip t nochain drop\n");
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /No such file or directory/);
  assert.doesNotMatch(await ruleset(), /chain other/, "the first line was rolled back with the second");
});

test("JSON output on request, plain otherwise", async () => {
  const j = await s.run("list counter ip t k", { json: true });
  assert.equal(j.code, 0);
  const doc = JSON.parse(j.stdout) as { nftables: Array<{ counter?: { name: string; bytes: number } }> };
  assert.deepEqual(doc.nftables.find((x) => x.counter)?.counter?.name, "k");
  const p = await s.run("list counter ip t k");
  assert.match(p.stdout, /counter k \{/);
});

test("commands sent together are answered in order", async () => {
  const rs = await Promise.all(Array.from({ length: 30 }, (_, i) => s.run(`add element ip t s${i % 2 ? "x" : ""} { 10.0.0.${i} }`)));
  // No such sets: every answer is an error naming its own command.
  rs.forEach((r, i) => assert.match(r.stderr, new RegExp(`10\\.0\\.0\\.${i} `), `answer ${i}`));
});

test("a helper that dies is replaced by the next command", async () => {
  const before = await runCommand("pgrep", ["-f", "nft_run_cmd_from_buffer"], { allowFail: true });
  const pids = before.stdout.trim().split("\n").filter(Boolean);
  assert.ok(pids.length >= 1, "a helper runs");
  for (const pid of pids) process.kill(Number(pid), "SIGKILL");
  await new Promise((r) => setTimeout(r, 100));
  const r = await s.run("add counter ip t k2");
  assert.equal(r.code, 0);
  assert.match(await ruleset(), /counter k2/);
});

test("a counter reset answers the counts, and the next one zero (no stale cache)", async () => {
  await runCommand("ip", ["netns", "exec", NS, "ip", "link", "set", "lo", "up"]);
  const setup = await s.run("add counter ip t lo_out\nadd chain ip t out { type filter hook output priority 0; }\nadd rule ip t out oifname lo counter name lo_out\n");
  assert.equal(setup.code, 0, setup.stderr);
  await runCommand("ip", ["netns", "exec", NS, "ping", "-c", "2", "-i", "0.2", "-q", "127.0.0.1"]);
  const bytes = async () => {
    const r = await s.run("reset counters table ip t", { json: true });
    const doc = JSON.parse(r.stdout) as { nftables: Array<{ counter?: { name: string; bytes: number } }> };
    return doc.nftables.find((x) => x.counter?.name === "lo_out")?.counter?.bytes;
  };
  assert.ok((await bytes())! > 0, "the pings were counted");
  assert.equal(await bytes(), 0, "the reset zeroed them");
});
