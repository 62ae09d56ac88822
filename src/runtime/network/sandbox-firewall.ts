/**
 * Per-sandbox egress allowlist, bandwidth cap and byte counters, enforced by
 * nftables inside Hutch's network namespace.
 *
 * Why keyed by IP in the `ip` family, plus a guard in the `bridge` family:
 * filtering needs conntrack (replies, `ct direction`), and conntrack is not
 * available on bridge ports on this kernel (no nf_conntrack_bridge), while
 * the `ip` forward hook only sees the bridge, not the tap a packet came in
 * on. So the bridge table binds each tap to its sandbox's IP (a guest that
 * spoofs another source address or ARP is dropped at its tap), and the `ip`
 * table filters and meters by that IP:
 *
 * ```
 * table bridge <t>_fw  prerouting: iifname vmap @guard  → g_<k>: saddr must be the sandbox's IP
 * table ip <t>_fw      forward:    iifname <bridge> ip saddr vmap @egress    → e_<k> (allowlist, cap)
 *                                  oifname uplink   ip saddr vmap @meter_out → m_<k> (counter o_<k>, quota q_<k>)
 *                                  oifname <bridge> ip daddr vmap @meter_in  → n_<k> (counter i_<k>)
 *                      output:     oifname <bridge> ip daddr vmap @meter_in  (the ingress dialer)
 * ```
 * A sandbox with `*.host` rules also gets sets of the addresses its own DNS
 * lookups of names under those hosts resolved to, kept by the DNS forwarder
 * (dns-forwarder-main.ts) that its DNS queries are DNATed to:
 *
 * ```
 * table ip <t>_fw      dns_dnat (prerouting): ip saddr @wild_dns udp|tcp dport 53 dnat → <gateway>:<port>
 *                      e_<k>: ip daddr @w_<k> return; ip daddr . th dport @wp_<k> return
 * ```
 * `<k>` is the sandbox ULID in lower case. Rules reference interface names
 * and addresses, not live devices, so they can be installed before the VM
 * (and its tap) exists and stay valid across pause/resume. Counters are
 * read with `nft reset counters` (read and zero in one step), so nothing is
 * lost or double counted across a server restart: the kernel keeps counting
 * while the server is down.
 */
import { Resolver } from "node:dns/promises";
import { RuntimeError } from "../errors.js";
import type { NetworkPolicy, NetworkUsage } from "../runtime.js";
import { cidrInfo } from "./cidr.js";
import { DnsForwarder } from "./dns-forwarder.js";
import { compileEgress, namesToResolve, wildcardsOf, type EgressPolicy } from "./egress-policy.js";
import type { NetLogger } from "./host-network.js";
import { NftSession } from "./nft-session.js";
import { fallbackTapName, tapName } from "./tap-name.js";
import type { WildcardClient, WildcardClients } from "./wildcard-learner.js";
import { wildcardApplyScript, wildcardEgressRules, wildcardFlushScript, wildcardRemoveScript, wildcardTableScript } from "./wildcard-nft.js";

export interface SandboxFirewallOptions {
  netns: string;
  /** Table base name (the netns's); the firewall's tables are `<table>_fw`. */
  table: string;
  bridge: string;
  /** The netns end of the veth pair. */
  uplink: string;
  /** The sandbox CIDR (traffic inside it is not egress). */
  cidr: string;
  /** Resolvers of the guests: always reachable on port 53, used to resolve host rules. */
  dns: string[];
  /** Re-resolve host rules this often (default 20 s; must stay ≤ 30 s). */
  refreshMs?: number;
  /** Port of the DNS forwarder for `*.host` rules, on the bridge's address (default 10053). */
  dnsForwarderPort?: number;
  log?: NetLogger;
}

interface Entry {
  ip: string;
  policy: EgressPolicy;
  capped: boolean;
  /** Addresses the host rules resolved to, as last written. */
  resolved: string;
  /** Its `*.host` rules, as the DNS forwarder knows them (none: undefined). */
  wild: WildcardClient | undefined;
  /** Its DNS goes to the forwarder (it has `*.` rules, is not capped, the forwarder runs). */
  dnat: boolean;
  /** The limit its quota was given, bytes (undefined: unmetered, no quota rule). */
  limit: number | undefined;
}

/** Default port of the DNS forwarder on the gateway. */
export const DNS_FORWARDER_PORT = 10053;

const RESOLVE_TIMEOUT_MS = 3000;

/** The sandbox key in chain and counter names. */
function keyOf(id: string): string {
  return id.replace(/^sb_/, "").toLowerCase();
}

/**
 * Whether `a` and `b` need the same chains and rules (their quotas' limits
 * may differ). Neither may have `*.` rules (and so no DNS DNAT either): those
 * involve the forwarder, which a full apply tells.
 */
function sameRules(a: Entry, b: Entry): boolean {
  return a.ip === b.ip && a.capped === b.capped && a.resolved === b.resolved && (a.limit === undefined) === (b.limit === undefined) &&
    a.wild === undefined && b.wild === undefined && JSON.stringify(a.policy) === JSON.stringify(b.policy);
}

export class SandboxFirewall {
  private readonly t: string;
  private readonly entries = new Map<string, Entry>();
  private readonly names = new Map<string, string[]>();
  private readonly resolver: Resolver;
  private timer: NodeJS.Timeout | undefined;
  /** nft transactions run one at a time (a refresh must not interleave with an apply). */
  private chain: Promise<unknown> = Promise.resolve();
  private readonly session: NftSession;
  /** The bridge's address, where the DNS forwarder listens. */
  private readonly gateway: string;
  private readonly dnsPort: number;
  /** Learns `*.host` subdomains from the guests' DNS answers (none without resolvers). */
  private readonly forwarder: DnsForwarder | undefined;

  constructor(private readonly opts: SandboxFirewallOptions) {
    this.t = `${opts.table}_fw`;
    this.session = new NftSession(opts.netns, opts.log);
    this.resolver = new Resolver({ timeout: RESOLVE_TIMEOUT_MS, tries: 2 });
    if (opts.dns.length > 0) this.resolver.setServers(opts.dns);
    this.gateway = cidrInfo(opts.cidr).gateway;
    this.dnsPort = opts.dnsForwarderPort ?? DNS_FORWARDER_PORT;
    const resolvers = opts.dns.filter((d) => !d.includes(":"));
    this.forwarder = resolvers.length
      ? new DnsForwarder({ netns: opts.netns, table: this.t, listenIp: this.gateway, port: this.dnsPort, cidr: opts.cidr, resolvers, ...(opts.log ? { log: opts.log } : {}) })
      : undefined;
  }

  /**
   * Creates the tables when missing (else only refreshes the resolver set,
   * keeping every sandbox's rules and counters), and starts the refresh of
   * host rules.
   */
  async init(): Promise<void> {
    const have = await this.nft(`list table ip ${this.t}`);
    const dns = this.opts.dns.length > 0 ? `elements = { ${this.opts.dns.join(", ")} }` : "";
    if (have.code !== 0) {
      const { bridge, uplink } = this.opts;
      await this.script([
        `table ip ${this.t} {`,
        `  set dns { type ipv4_addr; ${dns} }`,
        "  map egress { type ipv4_addr : verdict; }",
        "  map meter_out { type ipv4_addr : verdict; }",
        "  map meter_in { type ipv4_addr : verdict; }",
        "  chain forward {",
        "    type filter hook forward priority filter; policy accept;",
        `    iifname "${bridge}" ip saddr vmap @egress`,
        `    oifname "${uplink}" ip saddr vmap @meter_out`,
        `    oifname "${bridge}" ip daddr vmap @meter_in`,
        "  }",
        "  chain output {",
        "    type filter hook output priority filter; policy accept;",
        `    oifname "${bridge}" ip daddr vmap @meter_in`,
        "  }",
        "}",
        `table bridge ${this.t} {`,
        "  map guard { type ifname : verdict; }",
        "  chain prerouting {",
        "    type filter hook prerouting priority filter; policy accept;",
        "    iifname vmap @guard",
        "  }",
        "}",
      ]);
    } else {
      await this.script([`flush set ip ${this.t} dns`, ...(this.opts.dns.length ? [`add element ip ${this.t} dns { ${this.opts.dns.join(", ")} }`] : [])]);
    }
    // Idempotent, and on its own: a table made by an older version lacks it.
    await this.script(wildcardTableScript(this.t, this.gateway, this.dnsPort));
    if (!this.timer) {
      this.timer = setInterval(() => void this.refresh(), this.opts.refreshMs ?? 20_000);
      this.timer.unref();
    }
  }

  /**
   * Installs or replaces the rules of sandbox `id`; resolves its host rules
   * first. When nothing but the quota changes (a recharge; the hand-over of
   * a warm VM whose rules the pool applied for its address), only the quota
   * object is written, and when its limit stays, only its count restarts:
   * changing a chain, a rule or a quota's limit costs the kernel an RCU
   * grace period, 8-16 ms here, most of a warm pool create. Should that
   * fail (the rules went behind this process's back), all are written.
   */
  async apply(id: string, policy: NetworkPolicy): Promise<void> {
    const compiled = compileEgress(policy.egress);
    const resolved = await this.resolveFor(compiled);
    await this.serial(async () => {
      const old = this.entries.get(id);
      if (old && old.ip !== policy.ip) await this.removeNow(id, old.ip);
      const wild = this.wildcardClient(id, compiled);
      const limit = policy.remainingBytes === undefined ? undefined : Math.max(0, Math.floor(policy.remainingBytes));
      const entry: Entry = { ip: policy.ip, policy: compiled, capped: policy.capped, resolved: JSON.stringify(resolved), wild, dnat: false, limit };
      if (old && sameRules(old, entry)) {
        try {
          if (limit !== undefined) await this.script(this.quotaScript(id, limit, old.limit !== limit));
          this.entries.set(id, entry);
          return;
        } catch (err) {
          this.opts.log?.warn({ id, err: (err as Error).message }, "quota update failed: writing every rule again");
        }
      }
      // The forwarder knows the sandbox before its DNS is sent there (and
      // forgets what it learned for rules that changed or went).
      if (wild || old?.wild) entry.dnat = (await this.tellForwarder(id, entry)) && !!wild && !policy.capped;
      // Other `*.` rules than before: what the old ones let in goes.
      const flush = old?.wild && wild && JSON.stringify(old.wild) !== JSON.stringify(wild) ? wildcardFlushScript(this.t, keyOf(id)) : [];
      await this.script([...this.applyScript(id, entry, resolved), ...flush, ...this.meterScript(id, limit)]);
      this.entries.set(id, entry);
    });
    this.opts.log?.info({ id, ip: policy.ip, rules: policy.egress?.length ?? 0, capped: policy.capped }, "egress policy applied");
  }

  /** Removes every rule and counter of `id` (its last bytes are lost). Unknown ids resolve. */
  async remove(id: string): Promise<void> {
    await this.serial(async () => {
      const e = this.entries.get(id);
      if (e) await this.removeNow(id, e.ip);
    });
  }

  /**
   * Removes the rules of sandboxes not in `keep` (left by a previous server
   * whose sandboxes ended while it was down, or its warm VMs). Rules this
   * firewall applied itself stay (a warm VM's may be in already).
   */
  async prune(keep: Iterable<string>): Promise<void> {
    const want = new Set([...keep].map(keyOf));
    const r = await this.nft(`list map ip ${this.t} meter_out`, true);
    if (r.code !== 0) return;
    for (const { ip, key } of mapElements(r.stdout)) {
      if (want.has(key)) continue;
      const id = `sb_${key.toUpperCase()}`;
      // Looked at in turn: an apply queued before may have just made it this process's.
      await this.serial(async () => {
        if (!this.entries.has(id)) await this.removeNow(id, ip);
      });
    }
  }

  /** Bytes per sandbox id since the previous call (read and zeroed atomically). */
  async takeUsage(): Promise<Map<string, NetworkUsage>> {
    const out = new Map<string, NetworkUsage>();
    const r = await this.nft(`reset counters table ip ${this.t}`, true);
    if (r.code !== 0) return out;
    const doc = JSON.parse(r.stdout || "{}") as { nftables?: Array<{ counter?: { name: string; bytes: number } }> };
    for (const item of doc.nftables ?? []) {
      const c = item.counter;
      if (!c || c.bytes === 0) continue;
      const m = /^([oi])_([0-9a-z]{26})$/.exec(c.name);
      if (!m) continue;
      const id = `sb_${m[2]!.toUpperCase()}`;
      const u = out.get(id) ?? { egressBytes: 0, ingressBytes: 0 };
      if (m[1] === "o") u.egressBytes += c.bytes;
      else u.ingressBytes += c.bytes;
      out.set(id, u);
    }
    return out;
  }

  /** Stops the refresh timer and the nft helper (rules stay in the kernel). */
  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.session.close();
    this.forwarder?.close();
  }

  // --- internals ----------------------------------------------------------

  private applyScript(id: string, e: Entry, resolved: { nets: string[]; netPorts: Array<{ net: string; port: number }> }): string[] {
    const k = keyOf(id);
    const t = this.t;
    const rules: string[] = [];
    // Capped: drop every packet of a connection the sandbox opens (replies
    // of inbound ingress connections are `reply` direction and still pass).
    if (e.capped) rules.push(`ct direction original ip daddr != ${this.opts.cidr} drop`);
    if (!e.policy.allowAll) {
      rules.push("ct state established,related return");
      rules.push("ip daddr @dns meta l4proto { tcp, udp } th dport 53 return");
      const nets = [...e.policy.nets, ...resolved.nets];
      const netPorts = [...e.policy.netPorts, ...resolved.netPorts];
      for (const n of nets) rules.push(`ip daddr ${n} return`);
      for (const np of netPorts) rules.push(`meta l4proto { tcp, udp } ip daddr ${np.net} th dport ${np.port} return`);
      if (e.wild) rules.push(...wildcardEgressRules(k));
      rules.push("drop");
    }
    const taps = [tapName(id), fallbackTapName(id)];
    const wild = wildcardApplyScript(t, k, e.ip, { wild: e.wild !== undefined, dnat: e.dnat });
    return [
      ...wild.before,
      `add chain ip ${t} e_${k}`,
      `flush chain ip ${t} e_${k}`,
      ...rules.map((r) => `add rule ip ${t} e_${k} ${r}`),
      ...wild.after,
      `add counter ip ${t} o_${k}`,
      `add counter ip ${t} i_${k}`,
      `add chain ip ${t} m_${k}`,
      `add chain ip ${t} n_${k}`,
      `flush chain ip ${t} n_${k}`,
      `add rule ip ${t} n_${k} counter name "i_${k}"`,
      `add element ip ${t} egress { ${e.ip} : jump e_${k} }`,
      `add element ip ${t} meter_out { ${e.ip} : jump m_${k} }`,
      `add element ip ${t} meter_in { ${e.ip} : jump n_${k} }`,
      `add chain bridge ${t} g_${k}`,
      `flush chain bridge ${t} g_${k}`,
      `add rule bridge ${t} g_${k} ether type ip ip saddr != ${e.ip} drop`,
      `add rule bridge ${t} g_${k} ether type arp arp saddr ip != ${e.ip} drop`,
      `add element bridge ${t} guard { ${taps.map((n) => `"${n}" : jump g_${k}`).join(", ")} }`,
    ];
  }

  /**
   * The egress meter of `id`: its counter and, when metered, a quota object
   * of `remaining` bytes that drops what goes past it in the kernel (the
   * meter read once a second would let up to a second of traffic through).
   * The quota counts from now: only `apply` (with a fresh remaining from the
   * store) writes it, never a refresh of host rules.
   */
  private meterScript(id: string, remaining: number | undefined): string[] {
    const k = keyOf(id);
    const t = this.t;
    return [
      `flush chain ip ${t} m_${k}`,
      // Re-created, not updated: its consumed bytes must start at zero
      // (add + delete first, so the delete finds one either way).
      `add quota ip ${t} q_${k} { over 1 bytes }`,
      `delete quota ip ${t} q_${k}`,
      `add quota ip ${t} q_${k} { over ${Math.max(0, Math.floor(remaining ?? 0))} bytes }`,
      // Counted before the quota: the bytes that hit the limit count too,
      // so the meter sees the quota used up and the sandbox shows `capped`.
      `add rule ip ${t} m_${k} counter name "o_${k}"`,
      ...(remaining === undefined ? [] : [`add rule ip ${t} m_${k} quota name "q_${k}" drop`]),
    ];
  }

  /**
   * The quota of `id` counting from now, as `meterScript`'s does, without
   * touching a chain: `reset` zeroes what it consumed, and `add` (only when
   * `newLimit`) updates the limit of the existing quota.
   */
  private quotaScript(id: string, limit: number, newLimit: boolean): string[] {
    const q = `quota ip ${this.t} q_${keyOf(id)}`;
    return [...(newLimit ? [`add ${q} { over ${limit} bytes }`] : []), `reset ${q}`];
  }

  private async removeNow(id: string, ip: string): Promise<void> {
    const k = keyOf(id);
    const t = this.t;
    const taps = [tapName(id), fallbackTapName(id)];
    const lines = [
      `delete element ip ${t} egress { ${ip} }`,
      `delete element ip ${t} meter_out { ${ip} }`,
      `delete element ip ${t} meter_in { ${ip} }`,
      ...taps.map((n) => `delete element bridge ${t} guard { "${n}" }`),
      `delete chain ip ${t} e_${k}`,
      `delete chain ip ${t} m_${k}`,
      `delete chain ip ${t} n_${k}`,
      `delete chain bridge ${t} g_${k}`,
      `delete counter ip ${t} o_${k}`,
      `delete counter ip ${t} i_${k}`,
      `delete quota ip ${t} q_${k}`,
      ...wildcardRemoveScript(t, k, ip),
    ];
    const all = await this.nft(lines.join("\n") + "\n");
    // Partly present (an earlier failure): remove what is there, one by one.
    if (all.code !== 0) for (const l of lines) await this.nft(l + "\n");
    const hadWild = this.entries.get(id)?.wild !== undefined;
    this.entries.delete(id);
    if (hadWild) await this.tellForwarder();
  }

  /** The forwarder's view of sandbox `id`'s `*.` rules (none: undefined). */
  private wildcardClient(id: string, p: EgressPolicy): WildcardClient | undefined {
    if (!this.forwarder || p.allowAll) return undefined;
    const { suffixes, portSuffixes } = wildcardsOf(p);
    if (suffixes.length === 0 && portSuffixes.length === 0) return undefined;
    const k = keyOf(id);
    return { set: `w_${k}`, portSet: `wp_${k}`, suffixes, portSuffixes };
  }

  /**
   * Sends the forwarder every sandbox's `*.` rules, with `entry` as `id`'s
   * when given; true once it has them. A forwarder that cannot run leaves
   * those sandboxes' DNS undiverted (their subdomains stay blocked).
   */
  private async tellForwarder(id?: string, entry?: Entry): Promise<boolean> {
    if (!this.forwarder) return false;
    const clients: WildcardClients = {};
    // Capped sandboxes are left out: their DNS must not pass either.
    for (const [eid, e] of this.entries) if (e.wild && !e.capped && eid !== id) clients[e.ip] = e.wild;
    if (entry?.wild && !entry.capped) clients[entry.ip] = entry.wild;
    const ok = await this.forwarder.setClients(clients);
    if (!ok) this.opts.log?.warn({ id }, "dns forwarder unavailable: *.host rules allow only the host and www");
    return ok;
  }

  /** Looks up the host rules of `p` (with the guests' resolvers); unresolvable names allow nothing. */
  private async resolveFor(p: EgressPolicy): Promise<{ nets: string[]; netPorts: Array<{ net: string; port: number }> }> {
    const nets = new Set<string>();
    const netPorts = new Map<string, { net: string; port: number }>();
    for (const host of p.hosts) for (const ip of await this.lookup(host)) nets.add(ip);
    for (const { host, port } of p.hostPorts) for (const ip of await this.lookup(host)) netPorts.set(`${ip}:${port}`, { net: ip, port });
    return { nets: [...nets].sort(), netPorts: [...netPorts.values()].sort((a, b) => (a.net + a.port).localeCompare(b.net + b.port)) };
  }

  private async lookup(host: string): Promise<string[]> {
    const ips = new Set<string>();
    for (const name of namesToResolve(host)) {
      try {
        for (const ip of await this.resolver.resolve4(name)) ips.add(ip);
      } catch (err) {
        // A failed lookup keeps what it resolved to last time.
        for (const ip of this.names.get(name) ?? []) ips.add(ip);
        this.opts.log?.warn({ name, err: (err as Error).message }, "egress host rule did not resolve");
        continue;
      }
    }
    const list = [...ips];
    for (const name of namesToResolve(host)) this.names.set(name, list);
    return list;
  }

  /** Re-resolves the host rules of every sandbox and rewrites those whose addresses changed. */
  private async refresh(): Promise<void> {
    for (const [id, e] of [...this.entries]) {
      if (e.policy.hosts.length === 0 && e.policy.hostPorts.length === 0) continue;
      try {
        const resolved = await this.resolveFor(e.policy);
        const key = JSON.stringify(resolved);
        if (key === e.resolved) continue;
        await this.serial(async () => {
          if (this.entries.get(id) !== e) return; // replaced or removed meanwhile
          await this.script(this.applyScript(id, e, resolved));
          e.resolved = key;
        });
        this.opts.log?.info({ id }, "egress host rules re-resolved");
      } catch (err) {
        this.opts.log?.warn({ id, err: (err as Error).message }, "egress refresh failed");
      }
    }
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.chain.then(fn, fn);
    this.chain = p.catch(() => undefined);
    return p;
  }

  private async script(lines: string[]): Promise<void> {
    const r = await this.nft(lines.join("\n") + "\n");
    if (r.code !== 0) throw new RuntimeError("internal", `nft: ${r.stderr.trim().slice(0, 2000)}`);
  }

  /** Runs nft commands (one transaction); `json`: JSON output. Never rejects on an nft error: see `code`. */
  private nft(cmd: string, json = false) {
    return this.session.run(cmd, { json });
  }
}

/** Elements `ip : jump m_<key>` of a `nft -j list map` answer. */
function mapElements(json: string): Array<{ ip: string; key: string }> {
  const doc = JSON.parse(json || "{}") as { nftables?: Array<{ map?: { elem?: unknown[] } }> };
  const out: Array<{ ip: string; key: string }> = [];
  for (const item of doc.nftables ?? []) {
    for (const el of item.map?.elem ?? []) {
      const pair = el as [string, { jump?: { target?: string } }];
      const target = pair[1]?.jump?.target;
      const m = target ? /^m_([0-9a-z]{26})$/.exec(target) : null;
      if (m && typeof pair[0] === "string") out.push({ ip: pair[0], key: m[1]! });
    }
  }
  return out;
}
