/**
 * Decides, for the DNS forwarder, which addresses a DNS answer allows a
 * sandbox to reach under its `*.host` egress rules, and writes them as nft
 * set elements with a timeout. Pure apart from the clock: the forwarder
 * runs the commands it returns.
 */
import type { DnsMessage, DnsName, DnsRecord } from "./dns-message.js";

/** What the forwarder knows of one sandbox that has `*.` rules. */
export interface WildcardClient {
  /** nft set (`ipv4_addr`, timeout) of addresses allowed on every port. */
  set: string;
  /** nft set (`ipv4_addr . inet_service`, timeout) of address/port pairs. */
  portSet: string;
  /** `*.example.com` → `example.com`: its subdomains are allowed on every port. */
  suffixes: string[];
  /** `*.example.com:443` → `{ suffix: "example.com", port: 443 }`. */
  portSuffixes: Array<{ suffix: string; port: number }>;
}

/** Sandbox IPv4 address → its wildcard rules. */
export type WildcardClients = Record<string, WildcardClient>;

/** Learned addresses stay allowed at least this long (s), whatever the TTL. */
export const MIN_TIMEOUT_S = 60;
/** ...and at most this long, until the name is looked up again. */
export const MAX_TIMEOUT_S = 86_400;
/** An element that has at least this much more time left is not rewritten. */
const REFRESH_SLACK_MS = 5000;
/** Remembered element expiries before expired ones are swept. */
const CACHE_SWEEP_AT = 10_000;

/**
 * True when `labels` is a proper subdomain of `suffix`, label by label:
 * `a.example.com` and `x.y.example.com` match `example.com`; the suffix
 * itself does not, nor does a label that only contains it as text (a label
 * `x.example` in the wire form is one label, not two).
 *
 * @example matchesWildcard(["api", "example", "com"], "example.com") // true
 */
export function matchesWildcard(labels: readonly string[], suffix: string): boolean {
  const want = suffix.toLowerCase().split(".");
  if (labels.length <= want.length) return false;
  const off = labels.length - want.length;
  return want.every((l, i) => labels[off + i] === l);
}

/**
 * The A records of `answers` that answer `question`: those owned by the
 * question's name or by a name its CNAME chain leads to (an `api.example.com`
 * that is a CNAME of a CDN name is reached at the CDN's addresses). Each
 * address once, with its longest TTL.
 */
export function chainAddresses(question: DnsName, answers: readonly DnsRecord[]): Array<{ address: string; ttl: number }> {
  const names = new Set([question.text]);
  // Each round adds at least one name or stops: bounded by the record count.
  for (let grew = true; grew; ) {
    grew = false;
    for (const r of answers) {
      if (r.target && names.has(r.text) && !names.has(r.target.text)) {
        names.add(r.target.text);
        grew = true;
      }
    }
  }
  const out = new Map<string, number>();
  for (const r of answers) {
    if (r.address && names.has(r.text)) out.set(r.address, Math.max(r.ttl, out.get(r.address) ?? 0));
  }
  return [...out].map(([address, ttl]) => ({ address, ttl }));
}

/** What one answer adds to the kernel's sets. */
export interface Learned {
  /** nft commands (one transaction). */
  cmd: string;
  /** The addresses allowed, for logs and tests. */
  addresses: string[];
  /** Call once `cmd` ran: later answers of the same names are then skipped. */
  commit(): void;
}

/** Turns DNS answers into nft set elements, per client sandbox. */
export class WildcardLearner {
  #clients = new Map<string, WildcardClient>();
  /** `<set> <element>` → when that element expires (ms), as last written. */
  readonly #expiry = new Map<string, number>();

  /** @param table the nft table (family ip) that holds the sets. */
  constructor(
    private readonly table: string,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Replaces the clients. A client whose rules changed or went away forgets
   * what it wrote (the firewall flushes or deletes its sets).
   */
  setClients(clients: WildcardClients): void {
    const next = new Map(Object.entries(clients));
    for (const [ip, old] of this.#clients) {
      const now = next.get(ip);
      if (now && JSON.stringify(now) === JSON.stringify(old)) continue;
      for (const key of this.#expiry.keys()) {
        if (key.startsWith(`${old.set} `) || key.startsWith(`${old.portSet} `)) this.#expiry.delete(key);
      }
    }
    this.#clients = next;
  }

  /** The rules of client `ip`, if it has any. */
  client(ip: string): WildcardClient | undefined {
    return this.#clients.get(ip);
  }

  /**
   * The nft commands that allow what `answer` resolved to for client `ip`,
   * or undefined when the client has no wildcard matching the question's
   * name or nothing would change.
   */
  learn(ip: string, answer: DnsMessage): Learned | undefined {
    const c = this.#clients.get(ip);
    const q = answer.questions[0];
    if (!c || !q || answer.questions.length !== 1 || !answer.answers || answer.rcode !== 0) return undefined;
    const all = c.suffixes.some((s) => matchesWildcard(q.labels, s));
    const ports = [...new Set(c.portSuffixes.filter((p) => matchesWildcard(q.labels, p.suffix)).map((p) => p.port))];
    if (!all && ports.length === 0) return undefined;
    const now = this.now();
    const writes: Array<{ key: string; set: string; elem: string; timeoutS: number; expires: number }> = [];
    const addresses: string[] = [];
    for (const { address, ttl } of chainAddresses(q, answer.answers)) {
      const timeoutS = Math.min(MAX_TIMEOUT_S, Math.max(MIN_TIMEOUT_S, ttl));
      const expires = now + timeoutS * 1000;
      const elems = [...(all ? [{ set: c.set, elem: address }] : []), ...ports.map((p) => ({ set: c.portSet, elem: `${address} . ${p}` }))];
      for (const { set, elem } of elems) {
        const key = `${set} ${elem}`;
        if ((this.#expiry.get(key) ?? 0) >= expires - REFRESH_SLACK_MS) continue;
        writes.push({ key, set, elem, timeoutS, expires });
      }
      addresses.push(address);
    }
    if (writes.length === 0) return undefined;
    const t = this.table;
    // add + delete + add: the element gets exactly this timeout whether or
    // not it existed (an `add` of an existing element keeps its old timeout
    // on older kernels), in one transaction, so it is never absent.
    const lines = writes.flatMap(({ set, elem, timeoutS }) => [
      `add element ip ${t} ${set} { ${elem} timeout ${timeoutS}s }`,
      `delete element ip ${t} ${set} { ${elem} }`,
      `add element ip ${t} ${set} { ${elem} timeout ${timeoutS}s }`,
    ]);
    return {
      cmd: lines.join("\n") + "\n",
      addresses,
      commit: () => {
        for (const w of writes) this.#expiry.set(w.key, w.expires);
        this.#sweep();
      },
    };
  }

  #sweep(): void {
    if (this.#expiry.size < CACHE_SWEEP_AT) return;
    const now = this.now();
    for (const [k, at] of this.#expiry) if (at <= now) this.#expiry.delete(k);
    // Still huge (a guest resolving endless names): start over; it only
    // costs rewriting elements that are already there.
    if (this.#expiry.size >= CACHE_SWEEP_AT * 5) this.#expiry.clear();
  }
}
