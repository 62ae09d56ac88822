/**
 * The DNS reader on good packets (compression, CNAME, case) and on bad
 * ones from guests or upstream: cut short, pointer loops and forward
 * pointers, over-long names and labels, reserved label types, bad A
 * records, and random bytes. It must never throw.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { MAX_POINTERS, parseDnsMessage, readName } from "../../../src/runtime/network/dns-message.js";
import { answer, header, query, wireName } from "./dns-packets.js";

test("a query: header and question, names lower-cased", () => {
  const m = parseDnsMessage(query(0x1234, "API.Example.COM", 28))!;
  assert.equal(m.id, 0x1234);
  assert.equal(m.response, false);
  assert.equal(m.opcode, 0);
  assert.deepEqual(m.answers, []);
  assert.equal(m.questions.length, 1);
  assert.deepEqual(m.questions[0], { labels: ["api", "example", "com"], text: "api.example.com", type: 28, klass: 1 });
});

test("an answer: compressed owner names, A and CNAME records, TTLs", () => {
  const buf = answer(7, "www.example.com", [
    { name: 12, type: "CNAME", ttl: 30, data: "edge.cdn.net" },
    // Owner: a pointer to the CNAME's target (right after the first record's fixed part).
    { name: 12 + 21 + 12, type: "A", ttl: 0x80000001, data: "10.1.2.3" },
    { name: "Other.NET", type: "A", ttl: 9, data: "10.9.9.9" },
    { name: 12, type: 16, data: Buffer.from("\x05hello", "latin1") },
  ]);
  const m = parseDnsMessage(buf)!;
  assert.equal(m.response, true);
  assert.equal(m.rcode, 0);
  const [cname, a, other, txt] = m.answers!;
  assert.equal(cname!.text, "www.example.com");
  assert.equal(cname!.target!.text, "edge.cdn.net");
  assert.equal(cname!.ttl, 30);
  assert.equal(a!.text, "edge.cdn.net");
  assert.equal(a!.address, "10.1.2.3");
  assert.equal(a!.ttl, 0, "a TTL with the top bit set reads as 0");
  assert.equal(other!.text, "other.net");
  assert.equal(txt!.type, 16);
  assert.equal(txt!.address, undefined);
});

test("header or question cut short: undefined; answers cut short: null", () => {
  const good = answer(1, "a.example.com", [{ name: 12, type: "A", data: "10.0.0.1" }]);
  assert.ok(parseDnsMessage(good)!.answers!.length === 1);
  assert.equal(parseDnsMessage(good.subarray(0, 11)), undefined);
  const qEnd = 12 + wireName("a.example.com").length + 4;
  for (let n = 12; n < qEnd; n++) assert.equal(parseDnsMessage(good.subarray(0, n)), undefined, `cut at ${n}`);
  for (let n = qEnd + 1; n < good.length; n++) assert.equal(parseDnsMessage(good.subarray(0, n))!.answers, null, `cut at ${n}`);
  // Counts larger than the packet holds.
  const lying = Buffer.from(good);
  lying.writeUInt16BE(500, 6);
  assert.equal(parseDnsMessage(lying)!.answers, null);
  lying.writeUInt16BE(65535, 4);
  assert.equal(parseDnsMessage(lying), undefined);
});

test("compression pointers: loops, self and forward pointers, pointers into the header are refused", () => {
  const h = header(1, 0x0100, 1, 0);
  const tail = Buffer.from([0, 1, 0, 1]);
  // Self: a pointer at 12 to 12.
  assert.equal(parseDnsMessage(Buffer.concat([h, Buffer.from([0xc0, 12]), tail])), undefined);
  // Two pointers pointing at each other: 12 → 14 (forward) and 14 → 12.
  assert.equal(parseDnsMessage(Buffer.concat([h, Buffer.from([0xc0, 14, 0xc0, 12]), tail])), undefined);
  // A pointer into the header.
  assert.equal(parseDnsMessage(Buffer.concat([h, Buffer.from([0xc0, 2]), tail])), undefined);
  // A pointer past the end, and one cut in half.
  assert.equal(parseDnsMessage(Buffer.concat([h, Buffer.from([0xc3, 0xff]), tail])), undefined);
  assert.equal(readName(Buffer.concat([h, Buffer.from([0xc0])]), 12), undefined);
  // A backward chain longer than allowed: each pointer points at the one before.
  const chain = [1, 0x61, 0]; // "a" at 12
  for (let i = 0; i <= MAX_POINTERS + 1; i++) chain.push(0xc0, i === 0 ? 12 : 12 + 3 + (i - 1) * 2);
  const buf = Buffer.concat([h, Buffer.from(chain)]);
  assert.deepEqual(readName(buf, 12 + 3 + (MAX_POINTERS - 1) * 2)?.name.labels, ["a"], "32 pointers: fine");
  assert.equal(readName(buf, 12 + 3 + (MAX_POINTERS + 1) * 2), undefined, "34 pointers: refused");
});

test("names over 255 bytes, reserved label types and bad A records are refused", () => {
  const long = Array.from({ length: 4 }, () => "x".repeat(63)); // 4 × 64 + 1 = 257 bytes
  assert.equal(parseDnsMessage(query(1, long)), undefined);
  const fits = [...Array.from({ length: 3 }, () => "x".repeat(63)), "x".repeat(61)]; // 255 bytes
  assert.equal(parseDnsMessage(query(1, fits))!.questions[0]!.labels.length, 4);
  // Label length 0x40..0xbf: extended label types.
  const ext = query(1, "a.example.com");
  ext[12] = 0x41;
  assert.equal(parseDnsMessage(ext), undefined);
  ext[12] = 0x81;
  assert.equal(parseDnsMessage(ext), undefined);
  // An A record of 5 bytes, and a CNAME whose name runs past its rdata.
  const badA = answer(1, "a.example.com", [{ name: 12, type: "A", data: Buffer.from([1, 2, 3, 4, 5]) }]);
  assert.equal(parseDnsMessage(badA)!.answers, null);
  const badCname = answer(1, "a.example.com", [{ name: 12, type: "CNAME", data: Buffer.from([3, 0x61, 0x62]) }, { name: 12, type: "A", data: "1.2.3.4" }]);
  assert.equal(parseDnsMessage(badCname)!.answers, null);
});

test("a dot inside a label stays inside that label", () => {
  const m = parseDnsMessage(query(1, ["evil", "x.example", "com"]))!;
  assert.deepEqual(m.questions[0]!.labels, ["evil", "x.example", "com"]);
  assert.equal(m.questions[0]!.text, "evil.x\\.example.com");
});

test("random bytes and mutated packets never throw", () => {
  let seed = 12345;
  const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) & 0xff;
  const base = answer(9, "a.b.example.com", [
    { name: 12, type: "CNAME", data: "c.example.com" },
    { name: "c.example.com", type: "A", data: "10.0.0.7" },
  ]);
  for (let i = 0; i < 20_000; i++) {
    let buf: Buffer;
    if (i % 2) {
      buf = Buffer.from(base);
      for (let j = 0; j < 1 + (i % 5); j++) buf[rand() % buf.length] = rand();
      if (i % 7 === 0) buf = buf.subarray(0, rand() % buf.length);
    } else {
      buf = Buffer.from(Array.from({ length: rand() % 80 }, rand));
    }
    const m = parseDnsMessage(buf);
    if (m) for (const r of m.answers ?? []) assert.ok(r.labels.join(".").length <= 255);
  }
});
