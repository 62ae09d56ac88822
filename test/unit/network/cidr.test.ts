import assert from "node:assert/strict";
import { test } from "node:test";
import { cidrContains, cidrInfo, intToIp, ipToInt, macForIp } from "../../../src/runtime/network/cidr.js";

test("ipToInt / intToIp round trip, including the high bit", () => {
  assert.equal(ipToInt("192.168.0.1"), 3232235521);
  assert.equal(intToIp(3232235521), "192.168.0.1");
  assert.equal(intToIp(ipToInt("255.255.255.255")), "255.255.255.255");
  assert.equal(intToIp(0), "0.0.0.0");
  for (const bad of ["1.2.3", "1.2.3.256", "a.b.c.d", "1.2.3.4.5", ""]) assert.throws(() => ipToInt(bad), bad);
});

test("cidrInfo of the default network", () => {
  assert.deepEqual(cidrInfo("192.168.0.0/16"), {
    network: "192.168.0.0",
    prefixLen: 16,
    gateway: "192.168.0.1",
    firstHost: "192.168.0.1",
    lastHost: "192.168.255.254",
  });
});

test("cidrInfo clears host bits and handles small and large prefixes", () => {
  assert.equal(cidrInfo("10.1.2.3/8").network, "10.0.0.0");
  assert.equal(cidrInfo("10.1.2.3/8").lastHost, "10.255.255.254");
  const s = cidrInfo("172.16.5.9/30");
  assert.deepEqual([s.network, s.gateway, s.lastHost], ["172.16.5.8", "172.16.5.9", "172.16.5.10"]);
  assert.throws(() => cidrInfo("10.0.0.0/31"), /prefix/);
  assert.throws(() => cidrInfo("10.0.0.0"), /invalid CIDR/);
});

test("cidrContains", () => {
  assert.ok(cidrContains("192.168.0.0/16", "192.168.255.255"));
  assert.ok(!cidrContains("192.168.0.0/16", "192.169.0.1"));
});

test("macForIp: 02:fc + the address bytes", () => {
  assert.equal(macForIp("192.168.0.12"), "02:fc:c0:a8:00:0c");
  assert.equal(macForIp("10.0.255.1"), "02:fc:0a:00:ff:01");
});
