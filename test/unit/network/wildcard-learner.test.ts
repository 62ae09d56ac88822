/**
 * The wildcard matcher and what an answer makes the forwarder write: which
 * names match (case, depth, the suffix itself, look-alikes), CNAME chains,
 * timeouts, per-port sets, and that nothing is rewritten needlessly.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { parseDnsMessage } from "../../../src/runtime/network/dns-message.js";
import { chainAddresses, matchesWildcard, MIN_TIMEOUT_S, WildcardLearner, type WildcardClient } from "../../../src/runtime/network/wildcard-learner.js";
import { answer, type Rec } from "./dns-packets.js";

const msg = (name: string | string[], recs: Rec[], rcode = 0) => parseDnsMessage(answer(1, name, recs, rcode))!;

test("matchesWildcard: proper subdomains only, label by label, case-insensitive", () => {
  const labels = (n: string) => parseDnsMessage(answer(1, n, []))!.questions[0]!.labels;
  assert.equal(matchesWildcard(labels("a.example.com"), "example.com"), true);
  assert.equal(matchesWildcard(labels("x.y.example.com"), "example.com"), true);
  assert.equal(matchesWildcard(labels("API.Example.COM"), "example.com"), true);
  assert.equal(matchesWildcard(labels("api.example.com"), "Example.Com"), true);
  assert.equal(matchesWildcard(labels("example.com"), "example.com"), false, "the suffix itself");
  assert.equal(matchesWildcard(labels("notexample.com"), "example.com"), false);
  assert.equal(matchesWildcard(labels("example.com.evil.net"), "example.com"), false);
  assert.equal(matchesWildcard(labels("com"), "example.com"), false);
  const dotted = parseDnsMessage(answer(1, ["evil", "x.example", "com"], []))!.questions[0]!.labels;
  assert.equal(matchesWildcard(dotted, "example.com"), false, "a label holding a dot is one label");
});

test("chainAddresses follows CNAMEs from the question, ignores strays", () => {
  const m = msg("api.example.com", [
    { name: "api.example.com", type: "CNAME", data: "lb.example.net" },
    { name: "lb.example.net", type: "CNAME", data: "edge.cdn.org" },
    { name: "edge.cdn.org", type: "A", ttl: 20, data: "10.0.0.1" },
    { name: "edge.cdn.org", type: "A", ttl: 90, data: "10.0.0.2" },
    { name: "unrelated.org", type: "A", data: "10.6.6.6" },
  ]);
  assert.deepEqual(chainAddresses(m.questions[0]!, m.answers!), [
    { address: "10.0.0.1", ttl: 20 },
    { address: "10.0.0.2", ttl: 90 },
  ]);
  // A CNAME loop ends.
  const loop = msg("a.example.com", [
    { name: "a.example.com", type: "CNAME", data: "b.example.com" },
    { name: "b.example.com", type: "CNAME", data: "a.example.com" },
  ]);
  assert.deepEqual(chainAddresses(loop.questions[0]!, loop.answers!), []);
});

const client: WildcardClient = { set: "w_k", portSet: "wp_k", suffixes: ["example.com"], portSuffixes: [{ suffix: "svc.test", port: 443 }] };

test("an answer under a wildcard becomes set elements with max(TTL, 60 s) timeouts", () => {
  const l = new WildcardLearner("t_fw", () => 1_000_000);
  l.setClients({ "192.168.0.5": client });
  const got = l.learn("192.168.0.5", msg("API.Example.COM", [
    { name: 12, type: "A", ttl: 5, data: "10.0.0.1" },
    { name: 12, type: "A", ttl: 3600, data: "10.0.0.2" },
  ]))!;
  assert.deepEqual(got.addresses, ["10.0.0.1", "10.0.0.2"]);
  assert.equal(
    got.cmd,
    [
      `add element ip t_fw w_k { 10.0.0.1 timeout ${MIN_TIMEOUT_S}s }`,
      "delete element ip t_fw w_k { 10.0.0.1 }",
      `add element ip t_fw w_k { 10.0.0.1 timeout ${MIN_TIMEOUT_S}s }`,
      "add element ip t_fw w_k { 10.0.0.2 timeout 3600s }",
      "delete element ip t_fw w_k { 10.0.0.2 }",
      "add element ip t_fw w_k { 10.0.0.2 timeout 3600s }",
      "",
    ].join("\n"),
  );
});

test("port wildcards go to the address.port set; other clients and names learn nothing", () => {
  const l = new WildcardLearner("t_fw");
  l.setClients({ "192.168.0.5": client });
  const a = [{ name: 12, type: "A" as const, data: "10.0.0.3" }];
  const got = l.learn("192.168.0.5", msg("x.y.svc.test", a))!;
  assert.match(got.cmd, /^add element ip t_fw wp_k \{ 10\.0\.0\.3 \. 443 timeout 300s \}$/m);
  assert.doesNotMatch(got.cmd, / w_k /);
  assert.equal(l.learn("192.168.0.6", msg("a.example.com", a)), undefined, "a sandbox without rules");
  assert.equal(l.learn("192.168.0.5", msg("example.com", a)), undefined, "the suffix itself");
  assert.equal(l.learn("192.168.0.5", msg("a.other.com", a)), undefined, "another domain");
  assert.equal(l.learn("192.168.0.5", msg("a.example.com", a, 3)), undefined, "an error answer");
  assert.equal(l.learn("192.168.0.5", msg("a.example.com", [])), undefined, "no addresses");
});

test("elements are rewritten only once they would expire sooner than the new answer says", () => {
  let now = 0;
  const l = new WildcardLearner("t", () => now);
  l.setClients({ "192.168.0.5": client });
  const a = (ttl: number) => msg("a.example.com", [{ name: 12, type: "A", ttl, data: "10.0.0.1" }]);
  const first = l.learn("192.168.0.5", a(300))!;
  assert.ok(l.learn("192.168.0.5", a(300)), "not committed yet (nft failed or pending): written again");
  first.commit();
  assert.equal(l.learn("192.168.0.5", a(300)), undefined, "just written");
  now = 2000;
  assert.equal(l.learn("192.168.0.5", a(300)), undefined, "a few seconds later");
  now = 60_000;
  assert.ok(l.learn("192.168.0.5", a(300)), "a minute later: extended");
  assert.ok(l.learn("192.168.0.5", a(3600)), "a longer TTL: extended");
  // Changed rules forget what was written (the firewall flushed the sets).
  l.learn("192.168.0.5", a(3600))!.commit();
  l.setClients({ "192.168.0.5": { ...client, suffixes: ["example.com", "more.org"] } });
  assert.ok(l.learn("192.168.0.5", a(3600)));
  l.setClients({});
  assert.equal(l.learn("192.168.0.5", a(3600)), undefined);
});
