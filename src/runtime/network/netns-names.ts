/**
 * Names derived from the network namespace name (HUTCH_NETNS), so that two
 * servers with different namespaces can run side by side on one host
 * (e2e tests do): the bridge, the host end of the veth pair, the /30 link
 * subnet and the nftables table names all follow from it.
 */
import { createHash } from "node:crypto";
import { MAX_IFNAME } from "./tap-name.js";

/** Everything named after one namespace. */
export interface NetnsNames {
  netns: string;
  /** Bridge inside the netns (the guests' gateway). */
  bridge: string;
  /** Host end of the veth pair. */
  hostVeth: string;
  /** /30 between the host and the netns. */
  linkCidr: string;
  /** nftables table name (NAT, host input), in the netns and on the host. */
  table: string;
}

const NETNS_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$/;

/**
 * The names for namespace `netns`. The default namespace "hutch" keeps the
 * historic names (hutch0, hutch-host, 169.254.211.0/30); any other gets
 * `<ns>0` / `<ns>-h` when they fit in 15 characters (else a hash), and a
 * link /30 in 169.254.0.0/16 picked by a hash of the name (never .211.0).
 *
 * @example netnsNames("ht1a2b").bridge // "ht1a2b0"
 */
export function netnsNames(netns: string): NetnsNames {
  if (!NETNS_RE.test(netns)) throw new Error(`invalid network namespace name "${netns}" (letters, digits, _ . -; ≤ 32)`);
  const table = netns.replace(/[^A-Za-z0-9_]/g, "_");
  if (netns === "hutch") return { netns, bridge: "hutch0", hostVeth: "hutch-host", linkCidr: "169.254.211.0/30", table };
  const h = createHash("sha256").update(netns).digest();
  const short = `hn${h.toString("hex").slice(0, 8)}`;
  const bridge = netns.length + 1 <= MAX_IFNAME ? `${netns}0` : `${short}0`;
  const hostVeth = netns.length + 2 <= MAX_IFNAME ? `${netns}-h` : `${short}-h`;
  // 169.254.X.Y/30 with X in 1..254 except 211 and Y a multiple of 4.
  let third = 1 + (h.readUInt16BE(4) % 254);
  if (third === 211) third = 212;
  const fourth = (h[6]! % 64) * 4;
  return { netns, bridge, hostVeth, linkCidr: `169.254.${third}.${fourth}/30`, table };
}
