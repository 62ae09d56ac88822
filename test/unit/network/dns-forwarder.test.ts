/**
 * The DNS forwarder process against the real kernel (needs root), in a
 * network namespace of its own with an upstream resolver and a client
 * (dns-peer.ts) inside: answers are relayed byte for byte over UDP and TCP;
 * names under a client's wildcard put their addresses (CNAME targets'
 * included) into its nft sets with a timeout, before the answer is relayed;
 * other names teach nothing and sandboxes not in the table get no answer;
 * malformed queries get no answer and do no harm; a forwarder that dies is
 * restarted with its table.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { after, before, test } from "node:test";
import { DnsForwarder } from "../../../src/runtime/network/dns-forwarder.js";
import { runCommand } from "../../../src/runtime/network/run-command.js";
import type { WildcardClients } from "../../../src/runtime/network/wildcard-learner.js";
import { header, query } from "./dns-packets.js";

const NS = `hutch-dnsf${process.pid.toString(36).slice(-4)}`;
const T = "tfw";
const GW = "10.77.0.1";
const CLIENT = "10.77.0.2";
const STRANGER = "10.77.0.3";
const PORT = 10053;

let fwd: DnsForwarder;
let peer: ChildProcess;
const waiting = new Map<number, (hex: string | null) => void>();
let nextId = 0;

const clients: WildcardClients = {
  [CLIENT]: { set: "w_k", portSet: "wp_k", suffixes: ["example.com"], portSuffixes: [{ suffix: "svc.example.org", port: 443 }] },
};

async function inNs(...args: string[]): Promise<string> {
  return (await runCommand("ip", ["netns", "exec", NS, ...args])).stdout;
}

/** Sends `q` to the forwarder from `from` (the client unless told); the answer, or null. */
function ask(q: Buffer, proto: "udp" | "tcp" = "udp", from = CLIENT): Promise<Buffer | null> {
  const id = ++nextId;
  return new Promise((resolve) => {
    waiting.set(id, (hex) => resolve(hex === null ? null : Buffer.from(hex, "hex")));
    peer.stdin!.write(JSON.stringify({ id, proto, hex: q.toString("hex"), from, to: GW, port: PORT }) + "\n");
  });
}

/** What the upstream itself answers (asked directly, not through the forwarder). */
function direct(q: Buffer): Promise<Buffer | null> {
  const id = ++nextId;
  return new Promise((resolve) => {
    waiting.set(id, (hex) => resolve(hex === null ? null : Buffer.from(hex, "hex")));
    peer.stdin!.write(JSON.stringify({ id, proto: "udp", hex: q.toString("hex"), from: "127.0.0.1", to: "127.0.0.1", port: 53 }) + "\n");
  });
}

const setOf = (name: string) => inNs("nft", "list", "set", "ip", T, name);

before(async () => {
  await runCommand("ip", ["netns", "add", NS]);
  await runCommand("ip", ["-n", NS, "-batch", "-"], {
    input: ["link set lo up", "link add d0 type bridge", `addr add ${GW}/24 dev d0`, `addr add ${CLIENT}/24 dev d0`, `addr add ${STRANGER}/24 dev d0`, "link set d0 up", ""].join("\n"),
  });
  await runCommand("ip", ["netns", "exec", NS, "nft", "-f", "-"], {
    input: [
      `table ip ${T} {`,
      "  set wild_dns { type ipv4_addr; }",
      "  set w_k { type ipv4_addr; flags timeout; }",
      "  set wp_k { type ipv4_addr . inet_service; flags timeout; }",
      "}",
      "",
    ].join("\n"),
  });
  const peerTs = fileURLToPath(new URL("./dns-peer.ts", import.meta.url));
  peer = spawn("ip", ["netns", "exec", NS, process.execPath, "--import", "tsx", peerTs], { stdio: ["pipe", "pipe", "inherit"] });
  await new Promise<void>((resolve) => {
    createInterface({ input: peer.stdout! }).on("line", (line) => {
      const m = JSON.parse(line) as { ready?: boolean; id?: number; hex?: string | null };
      if (m.ready) resolve();
      else if (m.id !== undefined) waiting.get(m.id)?.(m.hex ?? null);
    });
  });
  fwd = new DnsForwarder({ netns: NS, table: T, listenIp: GW, port: PORT, cidr: "10.77.0.0/24", resolvers: ["127.0.0.1"] });
});

after(async () => {
  fwd?.close();
  peer?.kill();
  await runCommand("ip", ["netns", "del", NS], { allowFail: true });
});

/** Pids of forwarder processes of this test's namespace. */
async function forwarderPids(): Promise<number[]> {
  const r = await runCommand("pgrep", ["-f", `dns-forwarder-main.ts ${NS} `], { allowFail: true });
  return r.stdout.split("\n").filter(Boolean).map(Number);
}

test("an empty table starts nothing; the first client starts the forwarder", async () => {
  assert.equal(await fwd.setClients({}), true);
  assert.deepEqual(await forwarderPids(), []);
  assert.equal(await fwd.setClients(clients), true);
  assert.equal((await forwarderPids()).length, 1);
});

test("UDP: the answer is relayed byte for byte; a wildcard name's address is in the set first", async () => {
  const q = query(0x4242, "A.Example.COM");
  const want = await direct(q);
  assert.ok(want, "the upstream answers");
  const got = await ask(q);
  assert.deepEqual(got, want);
  // The answer was only relayed once the element was written.
  assert.match(await setOf("w_k"), /10\.1\.0\.1 timeout 1m expires/, "TTL 5 s: kept 60 s");
  assert.doesNotMatch(await setOf("wp_k"), /10\.1\.0\.1/);
});

test("a CNAME chain: the address it ends at is learned, with its own TTL", async () => {
  assert.ok(await ask(query(7, "x.y.example.com")));
  assert.match(await setOf("w_k"), /10\.1\.0\.2 timeout 2m expires/);
});

test("TCP: relayed and learned too; port wildcards fill the address.port set", async () => {
  const q = query(8, "b.svc.example.org");
  assert.deepEqual(await ask(q, "tcp"), await direct(q));
  assert.match(await setOf("wp_k"), /10\.1\.0\.5 \. 443 timeout/);
  assert.doesNotMatch(await setOf("w_k"), /10\.1\.0\.5/);
});

test("other names and the suffix itself teach nothing; other sandboxes are not answered", async () => {
  assert.ok(await ask(query(9, "other.net")));
  assert.ok(await ask(query(10, "svc.example.org")), "the suffix of a port wildcard itself");
  assert.equal(await ask(query(11, "a.example.com"), "udp", STRANGER), null, "a sandbox not in the table is not answered");
  assert.equal(await ask(query(11, "a.example.com"), "tcp", STRANGER), null, "nor over TCP");
  const all = (await setOf("w_k")) + (await setOf("wp_k"));
  assert.doesNotMatch(all, /10\.1\.0\.3|10\.1\.0\.4/);
  // NXDOMAIN is relayed as it is.
  const nx = await ask(query(12, "nope.example.com"));
  assert.equal(nx![3]! & 0xf, 3);
});

test("malformed queries get no answer and leave the forwarder working", async () => {
  const loop = Buffer.concat([header(1, 0x0100, 1, 0), Buffer.from([0xc0, 12, 0, 1, 0, 1])]);
  const asResponse = query(2, "a.example.com");
  asResponse[2]! |= 0x80;
  const two = query(3, "a.example.com");
  two.writeUInt16BE(2, 4);
  for (const bad of [Buffer.from("hello"), loop, asResponse, two, Buffer.alloc(0)]) {
    assert.equal(await ask(bad), null, bad.toString("hex"));
  }
  assert.equal(await ask(loop, "tcp"), null, "TCP: the connection is closed");
  assert.ok(await ask(query(4, "a.example.com")), "still answering");
  assert.equal((await forwarderPids()).length, 1);
});

test("a forwarder that dies is restarted and told its table again", async () => {
  const [pid] = await forwarderPids();
  await inNs("nft", "flush", "set", "ip", T, "w_k");
  process.kill(pid!, "SIGKILL");
  let answer: Buffer | null = null;
  for (let i = 0; i < 20 && !answer; i++) {
    await new Promise((r) => setTimeout(r, 500));
    answer = await ask(query(5, "a.example.com"));
  }
  assert.ok(answer, "answering again");
  assert.notEqual((await forwarderPids())[0], pid);
  assert.match(await setOf("w_k"), /10\.1\.0\.1 timeout/, "and learning for its clients");
});

test("a client whose wildcards go learns nothing more; close stops the process", async () => {
  assert.equal(await fwd.setClients({ [CLIENT]: { ...clients[CLIENT]!, suffixes: [] } }), true);
  await inNs("nft", "flush", "set", "ip", T, "w_k");
  assert.ok(await ask(query(6, "a.example.com")));
  assert.doesNotMatch(await setOf("w_k"), /10\.1\.0\.1/);
  fwd.close();
  for (let i = 0; i < 20 && (await forwarderPids()).length; i++) await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(await forwarderPids(), []);
  assert.equal(await fwd.setClients(clients), false, "closed for good");
});
