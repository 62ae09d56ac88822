/**
 * Pure IPv4 helpers for the sandbox network: parsing a CIDR, converting
 * addresses, deriving a VM's MAC from its IP. No I/O.
 */

/** What a CIDR such as "192.168.0.0/16" spans. All addresses dotted-quad. */
export interface CidrInfo {
  /** Network address (host bits cleared), e.g. "192.168.0.0". */
  network: string;
  prefixLen: number;
  /** The bridge's address: always the first host, e.g. "192.168.0.1". */
  gateway: string;
  /** First address usable by a host (equals `gateway`). */
  firstHost: string;
  /** Last address before the broadcast address, e.g. "192.168.255.254". */
  lastHost: string;
}

/** "192.168.0.1" → 3232235521. Throws on anything that is not a dotted quad. */
export function ipToInt(ip: string): number {
  const parts = ip.split(".");
  if (parts.length !== 4) throw new Error(`invalid IPv4 address: ${ip}`);
  let n = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) throw new Error(`invalid IPv4 address: ${ip}`);
    n = n * 256 + Number(p);
  }
  return n;
}

/** 3232235521 → "192.168.0.1". */
export function intToIp(n: number): string {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new Error(`invalid IPv4 integer: ${n}`);
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

/**
 * Parses "a.b.c.d/n". The prefix must leave room for a gateway and at least
 * one VM (8 ≤ n ≤ 30). Host bits in the address are ignored.
 */
export function cidrInfo(cidr: string): CidrInfo {
  const m = /^([\d.]+)\/(\d{1,2})$/.exec(cidr.trim());
  if (!m) throw new Error(`invalid CIDR: ${cidr}`);
  const prefixLen = Number(m[2]);
  if (prefixLen < 8 || prefixLen > 30) throw new Error(`CIDR prefix must be between /8 and /30: ${cidr}`);
  // Multiplication instead of bit shifts: JS shifts are 32-bit signed.
  const size = 2 ** (32 - prefixLen);
  const network = Math.floor(ipToInt(m[1]!) / size) * size;
  return {
    network: intToIp(network),
    prefixLen,
    gateway: intToIp(network + 1),
    firstHost: intToIp(network + 1),
    lastHost: intToIp(network + size - 2),
  };
}

/** Whether `ip` lies inside `cidr` (network and broadcast included). */
export function cidrContains(cidr: string, ip: string): boolean {
  const { network, prefixLen } = cidrInfo(cidr);
  const size = 2 ** (32 - prefixLen);
  const n = ipToInt(ip);
  const base = ipToInt(network);
  return n >= base && n < base + size;
}

/**
 * The MAC of the VM that has `ip`: "02:fc:" + the four bytes in hex, e.g.
 * "192.168.0.12" → "02:fc:c0:a8:00:0c" (locally administered, unicast), so
 * a MAC seen on the bridge tells which address it owns.
 */
export function macForIp(ip: string): string {
  const n = ipToInt(ip);
  const bytes = [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
  return ["02", "fc", ...bytes.map((b) => b.toString(16).padStart(2, "0"))].join(":");
}
