/**
 * IPv4 arithmetic for the sandbox network (HUTCH_NETWORK_CIDR): which
 * addresses may be handed to VMs, and the MAC derived from each.
 */

/** Parses dotted-quad IPv4 to an unsigned 32-bit number; NaN when invalid. */
export function ipv4ToInt(ip: string): number {
  const parts = ip.split(".");
  if (parts.length !== 4) return NaN;
  let n = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) return NaN;
    n = n * 256 + Number(p);
  }
  return n;
}

/** Formats an unsigned 32-bit number as dotted-quad IPv4. */
export function intToIpv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

/** The sandbox network: gateway = first host address; VMs get the rest. */
export class IpPool {
  readonly network: number;
  readonly prefixLen: number;
  readonly gateway: string;
  readonly #first: number;
  readonly #last: number;

  /** @throws Error when `cidr` is not an IPv4 CIDR with prefix 8–29. */
  constructor(cidr: string) {
    const [addr, len] = cidr.split("/");
    const base = ipv4ToInt(addr ?? "");
    const prefixLen = Number(len);
    if (Number.isNaN(base) || !Number.isInteger(prefixLen) || prefixLen < 8 || prefixLen > 29) {
      throw new Error(`invalid network CIDR "${cidr}" (IPv4, prefix 8-29)`);
    }
    const size = 2 ** (32 - prefixLen);
    this.network = base - (base % size);
    this.prefixLen = prefixLen;
    this.gateway = intToIpv4(this.network + 1);
    // Skip the network address and the gateway; the last address is broadcast.
    this.#first = this.network + 2;
    this.#last = this.network + size - 2;
  }

  /** Number of addresses VMs can use. */
  get size(): number {
    return this.#last - this.#first + 1;
  }

  /** The lowest usable address not in `used`, or undefined when the pool is full. */
  allocate(used: Iterable<string>): string | undefined {
    const taken = new Set<number>();
    for (const ip of used) taken.add(ipv4ToInt(ip));
    for (let n = this.#first; n <= this.#last; n++) {
      if (!taken.has(n)) return intToIpv4(n);
    }
    return undefined;
  }
}

/** Locally administered MAC for a VM: "02:fc:" + the IPv4's four bytes in hex. */
export function macForIp(ip: string): string {
  const n = ipv4ToInt(ip);
  const bytes = [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
  return ["02", "fc", ...bytes.map((b) => b.toString(16).padStart(2, "0"))].join(":");
}
