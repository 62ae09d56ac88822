/**
 * Validation of egress allowlist entries: `*`, `host[:port]`,
 * `*.host[:port]`, `ip[:port]`, `cidr[:port]` (IPv6 with a port is written
 * `[addr]:port` or `[addr/len]:port`).
 */
import { isIP } from "node:net";

const LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/i;

/** True for a DNS hostname of at least one label (no trailing dot, ≤ 253 chars). */
export function isHostname(host: string): boolean {
  if (host.length === 0 || host.length > 253) return false;
  const labels = host.split(".");
  // A name made only of digits and dots is a malformed IP, not a hostname.
  if (labels.every((l) => /^\d+$/.test(l))) return false;
  return labels.every((l) => LABEL.test(l));
}

function isPort(text: string): boolean {
  if (!/^\d{1,5}$/.test(text)) return false;
  const n = Number(text);
  return n >= 1 && n <= 65535;
}

function isCidr(text: string): boolean {
  const slash = text.indexOf("/");
  if (slash < 0) return false;
  const addr = text.slice(0, slash);
  const len = text.slice(slash + 1);
  const family = isIP(addr);
  if (family === 0 || !/^\d{1,3}$/.test(len)) return false;
  return Number(len) <= (family === 4 ? 32 : 128);
}

function isTarget(text: string): boolean {
  if (isIP(text) !== 0 || isCidr(text)) return true;
  if (text.startsWith("*.")) return isHostname(text.slice(2));
  return isHostname(text);
}

/**
 * Returns null when `rule` is a valid egress entry, else why it is not.
 *
 * @example validateEgressRule("pypi.org:443") // null
 */
export function validateEgressRule(rule: string): string | null {
  if (rule === "*") return null;
  if (rule.length === 0 || rule.length > 300) return "must be host[:port], *.host[:port], ip[:port], cidr[:port] or *";
  let target = rule;
  let port: string | undefined;
  if (rule.startsWith("[")) {
    const close = rule.indexOf("]");
    if (close < 0) return `invalid entry "${rule}"`;
    target = rule.slice(1, close);
    const rest = rule.slice(close + 1);
    if (rest !== "") {
      if (!rest.startsWith(":")) return `invalid entry "${rule}"`;
      port = rest.slice(1);
    }
    if (!(isIP(target) === 6 || (isCidr(target) && target.includes(":")))) return `invalid IPv6 address in "${rule}"`;
  } else {
    const colons = rule.split(":").length - 1;
    if (colons === 1) {
      const i = rule.lastIndexOf(":");
      target = rule.slice(0, i);
      port = rule.slice(i + 1);
    }
    // Two or more colons: a bare IPv6 address or CIDR without a port.
    if (!isTarget(target)) return `invalid host, IP or CIDR in "${rule}"`;
  }
  if (port !== undefined && !isPort(port)) return `invalid port in "${rule}" (1-65535)`;
  return null;
}
