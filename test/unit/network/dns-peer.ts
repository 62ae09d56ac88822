/**
 * Both ends around the DNS forwarder, for dns-forwarder.test.ts: run inside
 * the test's network namespace, it is the upstream resolver (UDP and TCP on
 * 127.0.0.1:53, A records for a few names, a CNAME chain) and a client that
 * sends what the test asks (JSON lines on stdin:
 * `{"id", "proto": "udp"|"tcp", "hex", "from", "to", "port"}`) and answers
 * `{"id", "hex"}` (null when nothing came back within 1.5 s).
 */
import { createSocket } from "node:dgram";
import { createConnection, createServer } from "node:net";
import { createInterface } from "node:readline";
import { parseDnsMessage } from "../../../src/runtime/network/dns-message.js";
import { answer, type Rec } from "./dns-packets.js";

const ZONE: Record<string, Rec[]> = {
  "a.example.com": [{ name: 12, type: "A", ttl: 5, data: "10.1.0.1" }],
  "x.y.example.com": [
    { name: 12, type: "CNAME", ttl: 5, data: "edge.cdn.net" },
    { name: "edge.cdn.net", type: "A", ttl: 120, data: "10.1.0.2" },
  ],
  "other.net": [{ name: 12, type: "A", data: "10.1.0.3" }],
  "svc.example.org": [{ name: 12, type: "A", data: "10.1.0.4" }],
  "b.svc.example.org": [{ name: 12, type: "A", data: "10.1.0.5" }],
};

/** The upstream's answer to `q`, echoing its question (as a resolver would). */
function reply(q: Buffer): Buffer | undefined {
  const m = parseDnsMessage(q);
  const name = m?.questions[0]?.text;
  if (!m || !name) return undefined;
  const recs = m.questions[0]!.type === 1 ? ZONE[name] ?? [] : [];
  const a = answer(m.id, m.questions[0]!.labels, recs, ZONE[name] ? 0 : 3);
  // Echo the question as asked, letter case included (the test's queries
  // hold only the question, of the same length as the lower-cased one).
  return Buffer.concat([a.subarray(0, 12), q.subarray(12), a.subarray(q.length)]);
}

const up = createSocket("udp4");
up.on("message", (q, r) => {
  const a = reply(q);
  if (a) up.send(a, r.port, r.address);
});
up.bind(53, "127.0.0.1");
createServer((s) => {
  let buf = Buffer.alloc(0);
  s.on("data", (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    if (buf.length < 2 || buf.length < 2 + buf.readUInt16BE(0)) return;
    const a = reply(buf.subarray(2, 2 + buf.readUInt16BE(0)));
    if (!a) return void s.destroy();
    const len = Buffer.alloc(2);
    len.writeUInt16BE(a.length);
    s.end(Buffer.concat([len, a]));
  });
  s.on("error", () => s.destroy());
}).listen(53, "127.0.0.1", () => process.stdout.write(JSON.stringify({ ready: true }) + "\n"));

interface Ask {
  id: number;
  proto: "udp" | "tcp";
  hex: string;
  from: string;
  to: string;
  port: number;
}

function ask(a: Ask): Promise<string | null> {
  const q = Buffer.from(a.hex, "hex");
  return new Promise((resolve) => {
    let done = false;
    const finish = (hex: string | null) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      close();
      resolve(hex);
    };
    const timer = setTimeout(() => finish(null), 1500);
    let close = () => {};
    if (a.proto === "udp") {
      const s = createSocket("udp4");
      close = () => s.close();
      s.on("message", (m) => finish(m.toString("hex")));
      s.on("error", () => finish(null));
      s.bind(0, a.from, () => s.send(q, a.port, a.to));
    } else {
      const s = createConnection({ host: a.to, port: a.port, localAddress: a.from });
      close = () => s.destroy();
      let buf = Buffer.alloc(0);
      const len = Buffer.alloc(2);
      len.writeUInt16BE(q.length);
      s.on("connect", () => s.write(Buffer.concat([len, q])));
      s.on("data", (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) finish(buf.subarray(2, 2 + buf.readUInt16BE(0)).toString("hex"));
      });
      s.on("error", () => finish(null));
      s.on("close", () => finish(null));
    }
  });
}

createInterface({ input: process.stdin }).on("line", (line) => {
  const a = JSON.parse(line) as Ask;
  void ask(a).then((hex) => process.stdout.write(JSON.stringify({ id: a.id, hex }) + "\n"));
});
process.stdin.on("end", () => process.exit(0));
