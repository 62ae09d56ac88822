/**
 * Turns validated egress allowlist entries (src/core/egress-rule.ts) into
 * what the nftables firewall needs: IPv4 addresses/CIDRs, optionally with a
 * port, and host names to resolve. Guests only have IPv4, so IPv6 entries
 * can never match anything and are dropped here.
 */
import { isIP } from "node:net";

/** A compiled allowlist. */
export interface EgressPolicy {
  /** True for an empty list, null, or a list containing `*`. */
  allowAll: boolean;
  /** IPv4 addresses or CIDRs allowed on every port. */
  nets: string[];
  /** IPv4 address/CIDR + port pairs (TCP and UDP). */
  netPorts: Array<{ net: string; port: number }>;
  /** Host names (`*.x` kept as written) allowed on every port. */
  hosts: string[];
  hostPorts: Array<{ host: string; port: number }>;
}

function splitPort(rule: string): { target: string; port?: number } {
  if (rule.startsWith("[")) {
    const close = rule.indexOf("]");
    const rest = rule.slice(close + 1);
    return rest.startsWith(":") ? { target: rule.slice(1, close), port: Number(rest.slice(1)) } : { target: rule.slice(1, close) };
  }
  const colons = rule.split(":").length - 1;
  if (colons !== 1) return { target: rule };
  const i = rule.indexOf(":");
  return { target: rule.slice(0, i), port: Number(rule.slice(i + 1)) };
}

function isIpv4Net(target: string): boolean {
  const [addr, len] = target.split("/");
  return isIP(addr ?? "") === 4 && (len === undefined || /^\d{1,2}$/.test(len));
}

/**
 * Compiles an allowlist. Host names are resolved later by the firewall
 * (see {@link namesToResolve}).
 *
 * @example compileEgress(["10.0.0.0/8:80", "pypi.org"]).netPorts // [{ net: "10.0.0.0/8", port: 80 }]
 */
export function compileEgress(rules: readonly string[] | null): EgressPolicy {
  const p: EgressPolicy = { allowAll: false, nets: [], netPorts: [], hosts: [], hostPorts: [] };
  if (!rules || rules.length === 0 || rules.includes("*")) return { ...p, allowAll: true };
  for (const rule of rules) {
    const { target, port } = splitPort(rule.trim());
    if (target.includes(":") || isIP(target.split("/")[0] ?? "") === 6) continue; // IPv6: guests have none
    if (isIpv4Net(target)) {
      if (port === undefined) p.nets.push(target);
      else p.netPorts.push({ net: target, port });
      continue;
    }
    const host = target.toLowerCase();
    if (port === undefined) p.hosts.push(host);
    else p.hostPorts.push({ host, port });
  }
  return p;
}

/**
 * The names the host looks up for a host entry. For `*.x` these are `x` and
 * `www.x`, resolved ahead of any lookup of the guest's; every other
 * subdomain is allowed as the guest resolves it (see {@link wildcardsOf}).
 */
export function namesToResolve(host: string): string[] {
  if (!host.startsWith("*.")) return [host];
  const base = host.slice(2);
  return [base, `www.${base}`];
}

/** The `*.x` entries of an allowlist, as suffixes (`x`), for the DNS forwarder. */
export interface EgressWildcards {
  /** Subdomains of these are allowed on every port. */
  suffixes: string[];
  /** Subdomains of `suffix` are allowed on `port`. */
  portSuffixes: Array<{ suffix: string; port: number }>;
}

/**
 * The wildcard entries of `p`: their subdomains are allowed as the guest's
 * own DNS lookups resolve them (the forwarder learns the answers).
 *
 * @example wildcardsOf(compileEgress(["*.example.com:443"])).portSuffixes // [{ suffix: "example.com", port: 443 }]
 */
export function wildcardsOf(p: EgressPolicy): EgressWildcards {
  const suffixes = [...new Set(p.hosts.filter((h) => h.startsWith("*.")).map((h) => h.slice(2)))].sort();
  const seen = new Set<string>();
  const portSuffixes: EgressWildcards["portSuffixes"] = [];
  for (const { host, port } of p.hostPorts) {
    if (!host.startsWith("*.") || seen.has(`${host}:${port}`)) continue;
    seen.add(`${host}:${port}`);
    portSuffixes.push({ suffix: host.slice(2), port });
  }
  portSuffixes.sort((a, b) => a.suffix.localeCompare(b.suffix) || a.port - b.port);
  return { suffixes, portSuffixes };
}
