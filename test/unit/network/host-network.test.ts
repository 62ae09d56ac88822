/**
 * HostNetwork against the real kernel (needs root): a private namespace with
 * its own names, torn down at the end. No traffic leaves the namespace.
 */
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { HostNetwork } from "../../../src/runtime/network/host-network.js";
import { runCommand } from "../../../src/runtime/network/run-command.js";
import { fallbackTapName, tapName } from "../../../src/runtime/network/tap-name.js";

const suffix = process.pid.toString(36).slice(-4);
const net = new HostNetwork({
  nsName: `hutch-ut${suffix}`,
  bridge: `hut${suffix}0`,
  hostVeth: `hut${suffix}-h`,
  linkCidr: "169.254.214.0/30",
  cidr: "10.214.0.0/24",
  hostForwarding: false, // leave the host's sysctl alone: nothing here goes out
});
const A = "sb_01JAAAAAAAAAAAAAQRSTVWXYZ0";
const B = "sb_01JBBBBBBBBBBBBBQRSTVWXYZ0"; // same last 10 chars as A

after(async () => {
  await net.teardown();
});

async function sh(cmd: string, args: string[]) {
  return runCommand(cmd, args, { allowFail: true });
}

test("ensure builds the namespace, bridge, veth and NAT, and is idempotent", async () => {
  await net.ensure();
  await net.ensure();
  assert.equal(net.gateway, "10.214.0.1");
  assert.equal(net.prefixLen, 24);
  const addr = await sh("ip", ["-n", net.netnsName, "-4", "-o", "addr", "show", "dev", net.bridge]);
  assert.match(addr.stdout, /inet 10\.214\.0\.1\/24/);
  assert.equal(addr.stdout.trim().split("\n").length, 1, "no duplicate address after a second ensure");
  const route = await sh("ip", ["-n", net.netnsName, "route", "show", "default"]);
  assert.match(route.stdout, /via 169\.254\.214\.1 dev uplink/);
  const nft = await sh("ip", ["netns", "exec", net.netnsName, "nft", "list", "ruleset"]);
  assert.match(nft.stdout, /ip saddr 10\.214\.0\.0\/24 masquerade/);
  const fwd = await sh("ip", ["netns", "exec", net.netnsName, "sysctl", "-n", "net.ipv4.ip_forward"]);
  assert.equal(fwd.stdout.trim(), "1");
  const hostRoutes = await sh("ip", ["route", "show", "10.214.0.0/24"]);
  assert.equal(hostRoutes.stdout.trim(), "", "the host has no route to the sandbox network");
});

test("taps: named after the id, on the bridge, clash falls back, delete is idempotent", async () => {
  const a = await net.createTap(A);
  assert.equal(a, tapName(A));
  assert.equal(await net.createTap(A), a, "same id reuses its tap");
  const b = await net.createTap(B);
  assert.equal(b, fallbackTapName(B), "a clash with another sandbox's tap uses the fallback");
  const show = await sh("ip", ["-n", net.netnsName, "-o", "link", "show", "dev", a]);
  assert.match(show.stdout, new RegExp(`master ${net.bridge}`));
  assert.match(show.stdout, /state (UP|DOWN|UNKNOWN)/);
  const list = await net.list();
  assert.deepEqual(
    list.sort((x, y) => x.name.localeCompare(y.name)),
    [
      { name: a, sandboxId: A },
      { name: b, sandboxId: B },
    ].sort((x, y) => x.name.localeCompare(y.name)),
  );
  await net.deleteTap(a);
  await net.deleteTap(a);
  assert.deepEqual((await net.list()).map((t) => t.name), [b]);
});

test("teardown removes everything and can run twice", async () => {
  await net.teardown();
  await net.teardown();
  const ns = await sh("ip", ["netns", "list"]);
  assert.ok(!ns.stdout.includes(net.netnsName));
  const veth = await sh("ip", ["link", "show", "dev", net.hostVeth]);
  assert.notEqual(veth.code, 0);
  const table = await sh("nft", ["list", "table", "ip", net.netnsName.replace(/[^A-Za-z0-9_]/g, "_")]);
  assert.notEqual(table.code, 0);
  assert.deepEqual(await net.list(), []);
});
