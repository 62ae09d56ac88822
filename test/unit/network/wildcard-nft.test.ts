/**
 * The nft commands of `*.host` rules against the real kernel (needs root),
 * in a namespace of its own: each applies in one transaction whatever was
 * there before (nothing, the sets, the sets in use by the chain), learned
 * elements survive a re-apply, and removal leaves nothing.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { NftSession } from "../../../src/runtime/network/nft-session.js";
import { runCommand } from "../../../src/runtime/network/run-command.js";
import { wildcardApplyScript, wildcardEgressRules, wildcardFlushScript, wildcardRemoveScript, wildcardTableScript } from "../../../src/runtime/network/wildcard-nft.js";

const NS = `hutch-wnft${process.pid.toString(36).slice(-4)}`;
const T = "t_fw";
const K = "01abc";
const IP = "192.168.0.9";
let s: NftSession;

before(async () => {
  await runCommand("ip", ["netns", "add", NS]);
  s = new NftSession(NS);
  await run([`add table ip ${T}`]);
});

after(async () => {
  s.close();
  await runCommand("ip", ["netns", "del", NS], { allowFail: true });
});

async function run(lines: string[]): Promise<void> {
  const r = await s.run(lines.join("\n") + "\n");
  assert.equal(r.code, 0, r.stderr);
}

const table = async () => (await runCommand("ip", ["netns", "exec", NS, "nft", "list", "table", "ip", T])).stdout;

/** What the firewall's applyScript writes around the egress chain. */
function apply(o: { wild: boolean; dnat: boolean }): string[] {
  const w = wildcardApplyScript(T, K, IP, o);
  const rules = [...(o.wild ? wildcardEgressRules(K) : []), "drop"];
  return [...w.before, `add chain ip ${T} e_${K}`, `flush chain ip ${T} e_${K}`, ...rules.map((r) => `add rule ip ${T} e_${K} ${r}`), ...w.after];
}

test("the table script is idempotent and DNATs the set's DNS to the forwarder", async () => {
  await run(wildcardTableScript(T, "192.168.0.1", 10053));
  await run(wildcardTableScript(T, "192.168.0.1", 10053));
  const t = await table();
  assert.equal(t.match(/dnat to 192\.168\.0\.1:10053/g)?.length, 2, "udp and tcp, once each");
});

test("from nothing to wildcard, re-applied, then without: sets, elements and DNAT follow", async () => {
  await run(apply({ wild: false, dnat: false }));
  assert.doesNotMatch(await table(), /set w_|192\.168\.0\.9/, "no wildcard: nothing of it");
  await run(apply({ wild: true, dnat: true }));
  await run([`add element ip ${T} w_${K} { 10.1.0.1 timeout 60s }`, `add element ip ${T} wp_${K} { 10.1.0.2 . 443 timeout 60s }`]);
  await run(apply({ wild: true, dnat: true }));
  let t = await table();
  assert.match(t, /10\.1\.0\.1 timeout/, "learned elements survive a re-apply");
  assert.match(t, /10\.1\.0\.2 \. 443 timeout/);
  assert.match(t, new RegExp(`ip daddr @w_${K} return`));
  assert.match(t, /set wild_dns \{[^}]*192\.168\.0\.9/);
  await run(wildcardFlushScript(T, K));
  assert.doesNotMatch(await table(), /10\.1\.0\.1/, "flushed");
  await run(apply({ wild: true, dnat: false }));
  assert.doesNotMatch(await table(), /set wild_dns \{[^}]*192\.168\.0\.9/, "capped: no DNAT");
  // Sets in use by the chain's rules, then a policy without wildcards.
  await run(apply({ wild: false, dnat: false }));
  t = await table();
  assert.doesNotMatch(t, /set w_|set wp_|@w_/);
});

test("removal works whether or not the sandbox had wildcard rules, and leaves nothing", async () => {
  await run(apply({ wild: true, dnat: true }));
  await run([`delete chain ip ${T} e_${K}`, ...wildcardRemoveScript(T, K, IP)]);
  await run([...wildcardRemoveScript(T, K, IP)]);
  for (const line of wildcardRemoveScript(T, K, IP)) await run([line]);
  const t = await table();
  assert.doesNotMatch(t, /set w_|set wp_|192\.168\.0\.9/);
});
