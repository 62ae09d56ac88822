/**
 * The nft commands of `*.host` egress rules, for the firewall (table
 * `ip <t>_fw`): a DNAT of the DNS of sandboxes in the set `wild_dns` to the
 * DNS forwarder, and per sandbox `<k>` the sets the forwarder fills, `w_<k>`
 * (addresses) and `wp_<k>` (address . port), which its egress chain
 * accepts. Pure: strings only.
 */

/** Once per table (idempotent): the `wild_dns` set and the DNAT chain. */
export function wildcardTableScript(t: string, gateway: string, port: number): string[] {
  const dnat = `dnat to ${gateway}:${port}`;
  return [
    `add set ip ${t} wild_dns { type ipv4_addr; }`,
    `add chain ip ${t} dns_dnat { type nat hook prerouting priority dstnat; policy accept; }`,
    `flush chain ip ${t} dns_dnat`,
    `add rule ip ${t} dns_dnat ip saddr @wild_dns udp dport 53 ${dnat}`,
    `add rule ip ${t} dns_dnat ip saddr @wild_dns tcp dport 53 ${dnat}`,
  ];
}

const setW = (t: string, k: string) => `add set ip ${t} w_${k} { type ipv4_addr; flags timeout; }`;
const setWp = (t: string, k: string) => `add set ip ${t} wp_${k} { type ipv4_addr . inet_service; flags timeout; }`;

/** Rules of egress chain `e_<k>` that accept what the sandbox's lookups learned. */
export function wildcardEgressRules(k: string): string[] {
  return [`ip daddr @w_${k} return`, `meta l4proto { tcp, udp } ip daddr . th dport @wp_${k} return`];
}

/**
 * Installing sandbox `k` at `ip`: `before` goes ahead of its egress chain's
 * rules (the sets exist, and keep what they learned: `add` keeps elements),
 * `after` behind them (without `*.` rules the sets go, once the chain no
 * longer refers to them). Each add + delete pair works whether or not the
 * thing exists.
 */
export function wildcardApplyScript(t: string, k: string, ip: string, o: { wild: boolean; dnat: boolean }): { before: string[]; after: string[] } {
  return {
    before: [setW(t, k), setWp(t, k), `add element ip ${t} wild_dns { ${ip} }`, ...(o.dnat ? [] : [`delete element ip ${t} wild_dns { ${ip} }`])],
    after: o.wild ? [] : [`delete set ip ${t} w_${k}`, `delete set ip ${t} wp_${k}`],
  };
}

/** Empties sandbox `k`'s learned sets (its `*.` rules changed). */
export function wildcardFlushScript(t: string, k: string): string[] {
  return [`flush set ip ${t} w_${k}`, `flush set ip ${t} wp_${k}`];
}

/**
 * Removing sandbox `k` at `ip` (after its egress chain): each entry one
 * transaction that works whether or not the thing exists.
 */
export function wildcardRemoveScript(t: string, k: string, ip: string): string[] {
  return [
    `${setW(t, k)}\ndelete set ip ${t} w_${k}`,
    `${setWp(t, k)}\ndelete set ip ${t} wp_${k}`,
    `add element ip ${t} wild_dns { ${ip} }\ndelete element ip ${t} wild_dns { ${ip} }`,
  ];
}
