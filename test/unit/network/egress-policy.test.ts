/**
 * Compiling allowlists: which entries are addresses, which are names, and
 * which `*.host` entries the DNS forwarder learns subdomains for.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { compileEgress, namesToResolve, wildcardsOf } from "../../../src/runtime/network/egress-policy.js";

test("addresses, CIDRs and names, with and without ports; IPv6 dropped; * allows all", () => {
  const p = compileEgress(["10.0.0.1", "10.0.0.0/8:80", "PyPI.org", "*.Example.com:443", "[2001:db8::1]:80", "2001:db8::/32"]);
  assert.equal(p.allowAll, false);
  assert.deepEqual(p.nets, ["10.0.0.1"]);
  assert.deepEqual(p.netPorts, [{ net: "10.0.0.0/8", port: 80 }]);
  assert.deepEqual(p.hosts, ["pypi.org"]);
  assert.deepEqual(p.hostPorts, [{ host: "*.example.com", port: 443 }]);
  for (const all of [null, [], ["*"], ["10.0.0.1", "*"]]) assert.equal(compileEgress(all).allowAll, true);
});

test("wildcardsOf: the `*.` entries as suffixes, per port, once each", () => {
  const w = wildcardsOf(compileEgress(["*.b.test", "a.test", "*.a.test", "*.a.test", "*.c.test:443", "*.c.test:80", "*.c.test:443", "d.test:22"]));
  assert.deepEqual(w.suffixes, ["a.test", "b.test"]);
  assert.deepEqual(w.portSuffixes, [
    { suffix: "c.test", port: 80 },
    { suffix: "c.test", port: 443 },
  ]);
  assert.deepEqual(wildcardsOf(compileEgress(["a.test", "10.0.0.1"])), { suffixes: [], portSuffixes: [] });
});

test("namesToResolve: a wildcard's own name and www are resolved ahead", () => {
  assert.deepEqual(namesToResolve("*.example.com"), ["example.com", "www.example.com"]);
  assert.deepEqual(namesToResolve("pypi.org"), ["pypi.org"]);
});
