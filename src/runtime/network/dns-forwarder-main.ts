/**
 * The DNS forwarder process: runs inside Hutch's network namespace (started
 * with `ip netns exec` by `DnsForwarder`), listens on UDP and TCP at a port
 * of the bridge's gateway address, where the firewall DNATs the DNS queries
 * of sandboxes that have `*.host` egress rules. It forwards each query to
 * the configured resolvers and relays the answer unchanged; before relaying,
 * it adds the addresses an answer gives for a name under one of the
 * client's wildcards to that client's nft set, so the guest's connect right
 * after the lookup is allowed.
 *
 * Protocol with the server (JSON lines): stdin `{"seq": n, "clients": {...}}`
 * replaces the table of clients (see `WildcardClients`), answered on stdout
 * by `{"ack": n}` once nothing learned under the previous table is still
 * being written; stdout also carries `{"ready": true}` once both sockets
 * listen, `{"learned": {...}}` and `{"warn": "..."}`. Exits when stdin
 * closes (the server died): the server starts a new one with the table.
 *
 * Usage: node dns-forwarder-main.js <netns> <nft-table> <listen-ip> <port> <cidr> <resolver>[,<resolver>...]
 */
import { createSocket } from "node:dgram";
import { createConnection, createServer, isIPv4, type Socket } from "node:net";
import { createInterface } from "node:readline";
import { cidrInfo, ipToInt } from "./cidr.js";
import { parseDnsMessage, type DnsMessage } from "./dns-message.js";
import { NftSession } from "./nft-session.js";
import { WildcardLearner, type WildcardClients } from "./wildcard-learner.js";

const [netns, table, listenIp, portText, cidr, resolverText] = process.argv.slice(2);
if (!netns || !table || !listenIp || !portText || !cidr || !resolverText) {
  process.stderr.write("usage: dns-forwarder-main <netns> <nft-table> <listen-ip> <port> <cidr> <resolvers>\n");
  process.exit(2);
}
const port = Number(portText);
const resolvers = resolverText.split(",").filter((r) => isIPv4(r));
const net = cidrInfo(cidr);
const mask = net.prefixLen === 0 ? 0 : (0xffffffff << (32 - net.prefixLen)) >>> 0;
const netInt = ipToInt(net.network);

/** Per resolver, before the next one is asked. */
const UPSTREAM_TIMEOUT_MS = 2500;
/** Queries being answered at once, over UDP and TCP together; more are dropped. */
const MAX_INFLIGHT = 512;
const MAX_TCP_CONNECTIONS = 64;
const TCP_IDLE_MS = 10_000;

const nft = new NftSession(netns);
const learner = new WildcardLearner(table);
/** nft writes under way: an ack of a new table waits for them. */
const writing = new Set<Promise<unknown>>();
let inflight = 0;

function emit(obj: object): void {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

/**
 * Only sandboxes in the table are answered: the others' DNS goes straight
 * out (and a capped sandbox's not at all), so this port must not be a way
 * around that.
 */
function isClient(ip: string): boolean {
  return isIPv4(ip) && ((ipToInt(ip) & mask) >>> 0) === netInt && learner.client(ip) !== undefined;
}

/** True when `answer` is the upstream's answer to `query` (same id and question). */
function answers(query: DnsMessage, answer: DnsMessage): boolean {
  const q = query.questions[0]!;
  const a = answer.questions[0];
  return answer.response && answer.id === query.id && answer.questions.length === 1 && !!a && a.text === q.text && a.type === q.type && a.klass === q.klass;
}

type Ask = (query: Buffer, q: DnsMessage, resolver: string) => Promise<{ buf: Buffer; msg: DnsMessage } | undefined>;

/** One UDP exchange from a fresh socket (a random source port per query). */
const askUdp: Ask = (query, q, resolver) =>
  new Promise((resolve) => {
    const s = createSocket("udp4");
    let done = false;
    const finish = (r: { buf: Buffer; msg: DnsMessage } | undefined) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.close();
      resolve(r);
    };
    const timer = setTimeout(() => finish(undefined), UPSTREAM_TIMEOUT_MS);
    s.on("error", () => finish(undefined));
    s.on("message", (buf, rinfo) => {
      if (rinfo.address !== resolver || rinfo.port !== 53) return;
      const msg = parseDnsMessage(buf);
      // Not the answer to this query: keep waiting (a spoofed packet must
      // not end the exchange).
      if (msg && answers(q, msg)) finish({ buf, msg });
    });
    s.connect(53, resolver, () => s.send(query, (err) => err && finish(undefined)));
  });

/** One TCP exchange (RFC 7766 framing: a 2-byte length before each message). */
const askTcp: Ask = (query, q, resolver) =>
  new Promise((resolve) => {
    const s = createConnection({ host: resolver, port: 53 });
    let buf = Buffer.alloc(0);
    let done = false;
    const finish = (r: { buf: Buffer; msg: DnsMessage } | undefined) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => finish(undefined), UPSTREAM_TIMEOUT_MS);
    s.on("error", () => finish(undefined));
    s.on("close", () => finish(undefined));
    s.on("connect", () => s.write(frame(query)));
    s.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length < 2 || buf.length < 2 + buf.readUInt16BE(0)) return;
      const body = buf.subarray(2, 2 + buf.readUInt16BE(0));
      const msg = parseDnsMessage(body);
      finish(msg && answers(q, msg) ? { buf: Buffer.from(body), msg } : undefined);
    });
  });

function frame(msg: Buffer): Buffer {
  const len = Buffer.alloc(2);
  len.writeUInt16BE(msg.length);
  return Buffer.concat([len, msg]);
}

/**
 * Asks the resolvers in turn; on an answer, writes what it allows `client`
 * to reach, then hands it back to be relayed. Undefined: nothing to relay.
 */
async function resolve(query: Buffer, q: DnsMessage, client: string, ask: Ask): Promise<Buffer | undefined> {
  const t0 = Date.now();
  let got: { buf: Buffer; msg: DnsMessage } | undefined;
  for (const r of resolvers) if ((got = await ask(query, q, r))) break;
  if (!got) return undefined;
  // A malformed answer section is dropped, unless the answer says it was
  // cut short (UDP): the guest then retries over TCP.
  if (got.msg.answers === null && !got.msg.truncated) return undefined;
  const learned = learner.learn(client, got.msg);
  if (learned) {
    const w = nft.run(learned.cmd).then(
      (r) => {
        if (r.code === 0) learned.commit();
        else emit({ warn: `nft: ${r.stderr.trim().slice(0, 300)}` });
      },
      (err: Error) => emit({ warn: `nft: ${err.message}` }),
    );
    writing.add(w);
    await w;
    writing.delete(w);
    emit({ learned: { client, name: got.msg.questions[0]!.text, addresses: learned.addresses, ms: Date.now() - t0 } });
  }
  return got.buf;
}

function isQuery(q: DnsMessage | undefined): q is DnsMessage {
  return !!q && !q.response && q.opcode === 0 && q.questions.length === 1;
}

const udp = createSocket("udp4");
/**
 * Answers to one client socket (ip:port) go out in the order its queries
 * came in, as they would from one resolver: busybox's resolver sends A and
 * AAAA with one id and pairs answers with queries by order, and the A
 * answer here may wait for its nft write while the AAAA one does not.
 */
const flows = new Map<string, Array<{ done: boolean; answer?: Buffer }>>();
const MAX_PER_FLOW = 32;

function flush(key: string, port: number, address: string): void {
  const queue = flows.get(key);
  while (queue?.[0]?.done) {
    const { answer } = queue.shift()!;
    if (answer) udp.send(answer, port, address, () => undefined);
  }
  if (queue?.length === 0) flows.delete(key);
}

udp.on("message", (buf, rinfo) => {
  if (!isClient(rinfo.address) || inflight >= MAX_INFLIGHT) return;
  const q = parseDnsMessage(buf);
  if (!isQuery(q)) return;
  const key = `${rinfo.address}:${rinfo.port}`;
  const queue = flows.get(key) ?? [];
  if (queue.length >= MAX_PER_FLOW) return;
  flows.set(key, queue);
  const slot: { done: boolean; answer?: Buffer } = { done: false };
  queue.push(slot);
  inflight++;
  resolve(buf, q, rinfo.address, askUdp)
    .then((ans) => void (slot.answer = ans))
    .catch((err: Error) => emit({ warn: `udp: ${err.message}` }))
    .finally(() => {
      inflight--;
      slot.done = true;
      flush(key, rinfo.port, rinfo.address);
    });
});

let tcpConnections = 0;
const tcp = createServer((sock: Socket) => {
  const client = sock.remoteAddress ?? "";
  if (!isClient(client) || tcpConnections >= MAX_TCP_CONNECTIONS) {
    sock.destroy();
    return;
  }
  tcpConnections++;
  sock.once("close", () => tcpConnections--);
  sock.setTimeout(TCP_IDLE_MS, () => sock.destroy());
  sock.on("error", () => sock.destroy());
  let buf = Buffer.alloc(0);
  let busy = false;
  // Queries on one connection are answered in turn; reading pauses meanwhile.
  const pump = async () => {
    if (busy) return;
    busy = true;
    sock.pause();
    while (!sock.destroyed && buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
      const query = Buffer.from(buf.subarray(2, 2 + buf.readUInt16BE(0)));
      buf = buf.subarray(2 + query.length);
      const q = parseDnsMessage(query);
      if (!isQuery(q) || !isClient(client) || inflight >= MAX_INFLIGHT) return void sock.destroy();
      inflight++;
      const ans = await resolve(query, q, client, askTcp).catch(() => undefined).finally(() => inflight--);
      if (!ans) return void sock.destroy();
      sock.write(frame(ans));
    }
    busy = false;
    sock.resume();
  };
  sock.on("data", (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    void pump();
  });
});
tcp.on("error", (err) => {
  process.stderr.write(`dns forwarder: tcp ${listenIp}:${port}: ${err.message}\n`);
  process.exit(1);
});

createInterface({ input: process.stdin }).on("line", (line) => {
  let req: { seq?: number; clients?: WildcardClients };
  try {
    req = JSON.parse(line) as typeof req;
  } catch {
    return;
  }
  if (req.clients && typeof req.clients === "object") learner.setClients(req.clients);
  // Acked once every write decided under the old table is done: the
  // firewall may flush a changed client's sets right after.
  void Promise.allSettled([...writing]).then(() => emit({ ack: req.seq ?? 0 }));
});
process.stdin.on("end", () => process.exit(0));
process.stdin.on("error", () => process.exit(0));

let listening = 0;
// Ready once both sockets listen and the nft helper is up (its start-up
// would otherwise delay the first answer that teaches an address).
const warm = nft.run(`list set ip ${table} wild_dns`).catch(() => undefined);
const up = () => ++listening === 2 && void warm.then(() => emit({ ready: true }));
udp.on("error", (err) => {
  // Before it listens (the address is taken): nothing to forward with.
  if (listening < 2) {
    process.stderr.write(`dns forwarder: udp ${listenIp}:${port}: ${err.message}\n`);
    process.exit(1);
  }
  emit({ warn: `udp socket: ${err.message}` });
});
udp.bind({ address: listenIp, port }, () => up());
tcp.listen({ host: listenIp, port }, () => up());
