import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { validateEgressRule } from "../../../src/core/egress-rule.js";
import { IpPool, macForIp } from "../../../src/core/ip-pool.js";
import { generateName, isDnsLabel } from "../../../src/core/name-generator.js";
import { SecretBox } from "../../../src/core/secret-box.js";
import { isOpenSshPublicKey } from "../../../src/core/ssh-public-key.js";
import { randomBytes } from "node:crypto";
import { sshKey } from "../../support/test-server.js";

describe("egress rules", () => {
  const ok = ["*", "pypi.org", "pypi.org:443", "*.github.com", "*.github.com:22", "1.1.1.1", "1.1.1.1:53", "10.0.0.0/8", "10.0.0.0/8:443", "::1", "2001:db8::/32", "[2001:db8::1]:443", "[2001:db8::/32]:80", "localhost"];
  const bad = ["", "a..b", "-a.com", "pypi.org:0", "pypi.org:65536", "pypi.org:http", "1.1.1.1/33", "300.1.1.1", "10.0.0.0/8:99999", "*.", "**.a.com", "a.com:", "[::1", "[1.2.3.4]:80", "host name", "a.com/8", "2001:db8::/129"];
  for (const r of ok) test(`accepts ${JSON.stringify(r)}`, () => assert.equal(validateEgressRule(r), null));
  for (const r of bad) test(`rejects ${JSON.stringify(r)}`, () => assert.notEqual(validateEgressRule(r), null));
});

describe("ssh keys", () => {
  test("accepts a well-formed ed25519 key, with or without comment", () => {
    assert.ok(isOpenSshPublicKey(sshKey()));
    assert.ok(isOpenSshPublicKey(sshKey().split(" ").slice(0, 2).join(" ")));
  });
  test("rejects mismatched type, bad base64, unknown type, newlines", () => {
    const [, blob] = sshKey().split(" ");
    assert.ok(!isOpenSshPublicKey(`ssh-rsa ${blob}`));
    assert.ok(!isOpenSshPublicKey("ssh-ed25519 AAAA!!!"));
    assert.ok(!isOpenSshPublicKey(`ssh-dss ${blob}`));
    assert.ok(!isOpenSshPublicKey(`${sshKey()}\nssh-ed25519 ${blob}`));
    assert.ok(!isOpenSshPublicKey("not a key"));
  });
});

describe("names", () => {
  test("DNS labels", () => {
    for (const n of ["a", "my-box", "a1", "x".repeat(63)]) assert.ok(isDnsLabel(n), n);
    for (const n of ["", "-a", "a-", "My", "a_b", "a.b", "x".repeat(64)]) assert.ok(!isDnsLabel(n), n);
  });
  test("generated names are DNS labels of the form adjective-animal", () => {
    for (let i = 0; i < 200; i++) {
      const n = generateName(i % 2 === 0);
      assert.ok(isDnsLabel(n), n);
      assert.match(n, /^[a-z]+-[a-z]+(-[0-9a-f]{4})?$/);
    }
  });
});

describe("ip pool", () => {
  test("skips network and gateway, lowest free first, MAC from IP", () => {
    const pool = new IpPool("192.168.0.0/16");
    assert.equal(pool.gateway, "192.168.0.1");
    assert.equal(pool.prefixLen, 16);
    assert.equal(pool.allocate([]), "192.168.0.2");
    assert.equal(pool.allocate(["192.168.0.2", "192.168.0.4"]), "192.168.0.3");
    assert.equal(macForIp("192.168.0.12"), "02:fc:c0:a8:00:0c");
  });
  test("never hands out the broadcast address", () => {
    const pool = new IpPool("10.0.0.0/29"); // .0 net, .1 gw, .2-.6 usable, .7 broadcast
    const used = ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"];
    assert.equal(pool.allocate(used), "10.0.0.6");
    assert.equal(pool.allocate([...used, "10.0.0.6"]), undefined);
  });
  test("rejects invalid CIDRs", () => {
    assert.throws(() => new IpPool("192.168.0.0"));
    assert.throws(() => new IpPool("300.0.0.0/16"));
    assert.throws(() => new IpPool("10.0.0.0/31"));
  });
});

describe("secret box", () => {
  test("round trip; tampering is detected; output does not contain the text", () => {
    const box = new SecretBox(randomBytes(32));
    const sealed = box.seal('{"TOKEN":"hunter2"}');
    assert.ok(!sealed.includes("hunter2"));
    assert.equal(box.open(sealed), '{"TOKEN":"hunter2"}');
    const parts = sealed.split(".");
    parts[3] = Buffer.from("x").toString("base64url") + parts[3]!.slice(2);
    assert.throws(() => box.open(parts.join(".")));
    assert.throws(() => new SecretBox(randomBytes(32)).open(sealed));
  });
});
