/**
 * Builds DNS messages for tests: queries and answers with A and CNAME
 * records, names compressed or not. Deliberately independent of the parser.
 */

/** A name in wire form (uncompressed). Labels may hold any bytes. */
export function wireName(name: string | string[]): Buffer {
  const labels = Array.isArray(name) ? name : name.split(".").filter(Boolean);
  return Buffer.concat([...labels.map((l) => Buffer.concat([Buffer.from([Buffer.byteLength(l, "latin1")]), Buffer.from(l, "latin1")])), Buffer.from([0])]);
}

export function header(id: number, flags: number, qd: number, an: number, ns = 0, ar = 0): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(id, 0);
  b.writeUInt16BE(flags, 2);
  b.writeUInt16BE(qd, 4);
  b.writeUInt16BE(an, 6);
  b.writeUInt16BE(ns, 8);
  b.writeUInt16BE(ar, 10);
  return b;
}

/** A standard query (RD set) for `name`, type A unless told. */
export function query(id: number, name: string | string[], type = 1): Buffer {
  const tail = Buffer.alloc(4);
  tail.writeUInt16BE(type, 0);
  tail.writeUInt16BE(1, 2);
  return Buffer.concat([header(id, 0x0100, 1, 0), wireName(name), tail]);
}

export interface Rec {
  /** Owner: a name, or a compression pointer offset. */
  name: string | number;
  type: "A" | "CNAME" | number;
  ttl?: number;
  /** A: dotted quad; CNAME: a name or a pointer offset; other types: raw bytes. */
  data: string | number | Buffer;
}

function owner(n: string | number): Buffer {
  return typeof n === "number" ? Buffer.from([0xc0 | (n >> 8), n & 0xff]) : wireName(n);
}

export function record(r: Rec): Buffer {
  const type = r.type === "A" ? 1 : r.type === "CNAME" ? 5 : r.type;
  let rdata: Buffer;
  if (Buffer.isBuffer(r.data)) rdata = r.data;
  else if (type === 1) rdata = Buffer.from(String(r.data).split(".").map(Number));
  else rdata = owner(r.data);
  const fixed = Buffer.alloc(10);
  fixed.writeUInt16BE(type, 0);
  fixed.writeUInt16BE(1, 2);
  fixed.writeUInt32BE(r.ttl ?? 300, 4);
  fixed.writeUInt16BE(rdata.length, 8);
  return Buffer.concat([owner(r.name), fixed, rdata]);
}

/** The answer to `query(id, name)` with these records (the question is echoed at offset 12). */
export function answer(id: number, name: string | string[], records: Rec[], rcode = 0): Buffer {
  const q = query(id, name);
  const h = header(id, 0x8180 | rcode, 1, records.length);
  return Buffer.concat([h, q.subarray(12), ...records.map(record)]);
}
