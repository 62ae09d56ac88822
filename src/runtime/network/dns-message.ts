/**
 * A small, defensive reader of DNS messages (RFC 1035 §4.1), enough for the
 * wildcard egress forwarder: the header, the question and the answer
 * section's A and CNAME records. No DNS library is installed, and the
 * packets come from untrusted guests and from upstream, so every read is
 * bounds-checked, names are limited to 255 bytes and 63-byte labels, and
 * compression pointers may only point backwards (so they cannot loop) and
 * at most {@link MAX_POINTERS} times per name. Anything malformed reads as
 * `undefined`; nothing here throws on any input.
 */

export const DNS_TYPE_A = 1;
export const DNS_TYPE_CNAME = 5;
export const DNS_CLASS_IN = 1;
/** Length of the fixed header. */
export const DNS_HEADER_BYTES = 12;
/** Pointers followed in one name at most (a real one needs a few). */
export const MAX_POINTERS = 32;
/** Wire length of a name at most, length bytes and root included. */
const MAX_NAME_BYTES = 255;

/** A domain name as labels, ASCII letters lower-cased (DNS names compare so). */
export interface DnsName {
  labels: string[];
  /** The labels joined with dots, a dot inside a label escaped as `\.`. */
  text: string;
}

export interface DnsQuestion extends DnsName {
  type: number;
  klass: number;
}

/** An answer record; `address` for IN A records, `target` for CNAME. */
export interface DnsRecord extends DnsName {
  type: number;
  klass: number;
  /** Seconds; a value with the top bit set reads as 0 (RFC 2181 §8). */
  ttl: number;
  address?: string;
  target?: DnsName;
}

export interface DnsMessage {
  id: number;
  response: boolean;
  opcode: number;
  truncated: boolean;
  rcode: number;
  questions: DnsQuestion[];
  /** Null when the answer section is cut short or malformed (see `truncated`). */
  answers: DnsRecord[] | null;
}

/**
 * Reads a message's header, questions and answer records. Undefined when
 * the header or a question is malformed; `answers` is null when only the
 * answer section is (a truncated UDP answer may end mid-record).
 *
 * @example parseDnsMessage(packet)?.questions[0]?.text // "api.example.com"
 */
export function parseDnsMessage(buf: Uint8Array): DnsMessage | undefined {
  if (buf.length < DNS_HEADER_BYTES) return undefined;
  const flags = u16(buf, 2);
  const qdcount = u16(buf, 4);
  const ancount = u16(buf, 6);
  const msg: DnsMessage = {
    id: u16(buf, 0),
    response: (flags & 0x8000) !== 0,
    opcode: (flags >> 11) & 0xf,
    truncated: (flags & 0x0200) !== 0,
    rcode: flags & 0xf,
    questions: [],
    answers: null,
  };
  let pos = DNS_HEADER_BYTES;
  for (let i = 0; i < qdcount; i++) {
    const name = readName(buf, pos);
    if (!name || name.next + 4 > buf.length) return undefined;
    msg.questions.push({ ...name.name, type: u16(buf, name.next), klass: u16(buf, name.next + 2) });
    pos = name.next + 4;
  }
  const answers: DnsRecord[] = [];
  for (let i = 0; i < ancount; i++) {
    const rec = readRecord(buf, pos);
    if (!rec) return msg;
    answers.push(rec.record);
    pos = rec.next;
  }
  msg.answers = answers;
  return msg;
}

/**
 * Reads the name at `offset`: its labels and where the bytes after it start
 * (after the first pointer, when it is compressed). Undefined when it runs
 * past the buffer, is too long, uses a reserved label type or a pointer that
 * does not point strictly backwards into the message body.
 */
export function readName(buf: Uint8Array, offset: number): { name: DnsName; next: number } | undefined {
  const labels: string[] = [];
  let pos = offset;
  let next = -1;
  let pointers = 0;
  let wire = 1; // the root label
  for (;;) {
    if (pos >= buf.length) return undefined;
    const len = buf[pos]!;
    if (len === 0) {
      if (next < 0) next = pos + 1;
      break;
    }
    const kind = len & 0xc0;
    if (kind === 0xc0) {
      if (pos + 1 >= buf.length) return undefined;
      const target = ((len & 0x3f) << 8) | buf[pos + 1]!;
      // Strictly backwards: a compressor only points at names already
      // written, and it makes loops impossible.
      if (target >= pos || target < DNS_HEADER_BYTES || ++pointers > MAX_POINTERS) return undefined;
      if (next < 0) next = pos + 2;
      pos = target;
      continue;
    }
    if (kind !== 0) return undefined; // 0x40 and 0x80: extended label types, obsolete
    wire += len + 1;
    if (wire > MAX_NAME_BYTES || pos + 1 + len > buf.length) return undefined;
    labels.push(lowerAscii(buf, pos + 1, len));
    pos += 1 + len;
  }
  return { name: { labels, text: labels.map((l) => l.replace(/[\\.]/g, (c) => `\\${c}`)).join(".") }, next };
}

function readRecord(buf: Uint8Array, offset: number): { record: DnsRecord; next: number } | undefined {
  const name = readName(buf, offset);
  if (!name) return undefined;
  const p = name.next;
  if (p + 10 > buf.length) return undefined;
  const type = u16(buf, p);
  const klass = u16(buf, p + 2);
  const rawTtl = ((buf[p + 4]! << 24) | (buf[p + 5]! << 16) | (buf[p + 6]! << 8) | buf[p + 7]!) >>> 0;
  const rdlength = u16(buf, p + 8);
  const start = p + 10;
  const end = start + rdlength;
  if (end > buf.length) return undefined;
  const record: DnsRecord = { ...name.name, type, klass, ttl: rawTtl > 0x7fffffff ? 0 : rawTtl };
  if (klass === DNS_CLASS_IN && type === DNS_TYPE_A) {
    if (rdlength !== 4) return undefined;
    record.address = `${buf[start]}.${buf[start + 1]}.${buf[start + 2]}.${buf[start + 3]}`;
  } else if (type === DNS_TYPE_CNAME) {
    const target = readName(buf, start);
    if (!target || target.next !== end) return undefined;
    record.target = target.name;
  }
  return { record, next: end };
}

function u16(buf: Uint8Array, at: number): number {
  return (buf[at]! << 8) | buf[at + 1]!;
}

/** Bytes as latin1 with only A-Z lower-cased: DNS case folding is ASCII only. */
function lowerAscii(buf: Uint8Array, start: number, len: number): string {
  let s = "";
  for (let i = start; i < start + len; i++) {
    const b = buf[i]!;
    s += String.fromCharCode(b >= 0x41 && b <= 0x5a ? b + 0x20 : b);
  }
  return s;
}
