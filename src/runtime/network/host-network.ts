/**
 * The host side of the sandbox network. Everything lives in one network
 * namespace that Hutch owns (default `hutch`):
 *
 * ```
 *  host netns                     │ netns "hutch"
 *  eth0 ── NAT (table ip hutch) ──┤   (tables are named after the netns)
 *  hutch-host 169.254.211.1/30 ═══╪═ uplink 169.254.211.2/30  (veth pair)
 *                                 │   │ masquerade CIDR → uplink (table ip hutch)
 *                                 │ hutch0 192.168.0.1/16 (bridge, VMs' gateway)
 *                                 │   ├─ hvXXXXXXXXXX (tap) ── QEMU ── guest 192.168.0.x
 *                                 │   └─ ...
 * ```
 *
 * Outbound traffic from a guest is masqueraded twice: in the netns to the
 * uplink's address, then on the host to the host's own address. The host has
 * no route to the sandbox CIDR (it cannot clash with the host's networks);
 * the server reaches guests by entering the netns. The link subnet defaults
 * to 169.254.211.0/30 (link-local: never routed, unlikely to be in use).
 * Guests may not open connections to the host through the veth (host input
 * from it is dropped), only through the internet-facing address like anyone.
 *
 * A VM's tap is made one of two ways. With the VMM jail's `hutch-jailer`,
 * the jailer creates it in-process from `tapSpec` and QEMU inherits it as an
 * fd (`heldTap` learns its name): not persistent, it goes with its QEMU.
 * Otherwise `createTap` makes a persistent one with `ip` (~40 ms) that QEMU
 * opens by name, and `deleteTap` removes it after the VM.
 */
import { readFile } from "node:fs/promises";
import { RuntimeError } from "../errors.js";
import { cidrInfo, intToIp, ipToInt } from "./cidr.js";
import { netnsNames } from "./netns-names.js";
import { runCommand } from "./run-command.js";
import { fallbackTapName, tapName } from "./tap-name.js";

/** Minimal logger (pino-compatible). */
export interface NetLogger {
  info(obj: object | string, msg?: string): void;
  warn(obj: object | string, msg?: string): void;
}

export interface HostNetworkOptions {
  nsName?: string;
  bridge?: string;
  /** Sandbox network; the bridge gets its first host. */
  cidr?: string;
  /** Host end of the veth pair (the netns end is always `uplink`). */
  hostVeth?: string;
  /** /30 between host and netns for outbound NAT. */
  linkCidr?: string;
  /** Resolvers given to guests; default none. */
  dns?: string[];
  /**
   * Turn on the host's net.ipv4.ip_forward so guests reach the outside
   * (default true). It is a host-wide setting and `teardown` leaves it on.
   */
  hostForwarding?: boolean;
  log?: NetLogger;
}

/** A tap found on the bridge. */
export interface TapInfo {
  name: string;
  /** Sandbox id stored in the tap's alias by `createTap`, if any. */
  sandboxId?: string;
}

/**
 * What `hutch-jailer --tap` needs to create sandbox `id`'s tap itself:
 * the names to try in order (the second when a live VM holds the first),
 * the bridge, and the alias that records the id (read by `list`).
 */
export interface TapSpec {
  names: string[];
  bridge: string;
  alias: string;
}

/** Name of the veth end inside the namespace. */
export const NS_VETH = "uplink";

/** Owns the netns, bridge, veth pair, NAT tables and taps. */
export class HostNetwork {
  readonly netnsName: string;
  readonly bridge: string;
  readonly cidr: string;
  readonly gateway: string;
  readonly prefixLen: number;
  readonly dns: string[];
  readonly hostVeth: string;
  private readonly linkHostIp: string;
  private readonly linkNsIp: string;
  private readonly linkPrefix: number;
  private readonly linkCidr: string;
  private readonly hostForwarding: boolean;
  /** nftables table name, in the netns and on the host: the netns name. */
  private readonly table: string;
  private readonly log: NetLogger | undefined;
  /**
   * Owner uid of sandbox `id`'s tap (set by the VMM jail): an unprivileged
   * QEMU may attach to a tap it owns without CAP_NET_ADMIN. Undefined: root's.
   */
  tapOwner: ((id: string) => Promise<number | undefined>) | undefined;
  /** Taps held open by a QEMU of this server (`heldTap`): they go with it, `deleteTap` has nothing to do. */
  private readonly held = new Set<string>();

  constructor(opts: HostNetworkOptions = {}) {
    this.netnsName = opts.nsName ?? "hutch";
    // Bridge, veth and link subnet follow from the netns name, so servers
    // with different HUTCH_NETNS can share a host.
    const derived = netnsNames(this.netnsName);
    this.bridge = opts.bridge ?? derived.bridge;
    const info = cidrInfo(opts.cidr ?? "192.168.0.0/16");
    this.cidr = `${info.network}/${info.prefixLen}`;
    this.gateway = info.gateway;
    this.prefixLen = info.prefixLen;
    this.dns = opts.dns ?? [];
    this.hostVeth = opts.hostVeth ?? derived.hostVeth;
    const link = cidrInfo(opts.linkCidr ?? derived.linkCidr);
    this.linkCidr = `${link.network}/${link.prefixLen}`;
    this.linkPrefix = link.prefixLen;
    this.linkHostIp = link.firstHost;
    this.linkNsIp = intToIp(ipToInt(link.firstHost) + 1);
    this.hostForwarding = opts.hostForwarding ?? true;
    this.table = derived.table;
    this.log = opts.log;
    for (const n of [this.bridge, this.hostVeth]) {
      if (n.length > 15 || !/^[A-Za-z0-9_.-]+$/.test(n)) throw new Error(`invalid interface name: ${n}`);
    }
  }

  /**
   * Creates whatever is missing of the namespace, bridge, veth pair, NAT and
   * forwarding. Idempotent: safe at every server start.
   */
  async ensure(): Promise<void> {
    const ns = this.netnsName;
    const have = await runCommand("ip", ["netns", "list"]);
    if (!have.stdout.split("\n").some((l) => l.split(" ")[0] === ns)) {
      await runCommand("ip", ["netns", "add", ns]);
      this.log?.info({ netns: ns }, "created network namespace");
    }
    if (!(await this.linkExists(this.bridge, true))) {
      await this.ip(true, ["link", "add", this.bridge, "type", "bridge"]);
    }
    if (!(await this.linkExists(this.hostVeth, false))) {
      // A stale netns end would block the peer name: remove it first.
      await this.ip(true, ["link", "del", NS_VETH], true);
      await runCommand("ip", ["link", "add", this.hostVeth, "type", "veth", "peer", "name", NS_VETH, "netns", ns]);
    }
    await this.ipBatch(true, [
      "link set lo up",
      `addr replace ${this.gateway}/${this.prefixLen} dev ${this.bridge}`,
      `link set ${this.bridge} up`,
      `addr replace ${this.linkNsIp}/${this.linkPrefix} dev ${NS_VETH}`,
      `link set ${NS_VETH} up`,
      `route replace default via ${this.linkHostIp} dev ${NS_VETH}`,
    ]);
    await this.ipBatch(false, [
      `addr replace ${this.linkHostIp}/${this.linkPrefix} dev ${this.hostVeth}`,
      `link set ${this.hostVeth} up`,
    ]);
    await runCommand("ip", ["netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    if (this.hostForwarding) await runCommand("sysctl", ["-qw", "net.ipv4.ip_forward=1"]);
    // Replace both tables atomically: the "add; delete; add" idiom makes the
    // script valid whether or not the table exists.
    await runCommand("ip", ["netns", "exec", ns, "nft", "-f", "-"], {
      input: [
        `table ip ${this.table} {}`,
        `delete table ip ${this.table}`,
        `table ip ${this.table} {`,
        "  chain postrouting {",
        "    type nat hook postrouting priority srcnat; policy accept;",
        `    oifname "${NS_VETH}" ip saddr ${this.cidr} masquerade`,
        "  }",
        "}",
        "",
      ].join("\n"),
    });
    await runCommand("nft", ["-f", "-"], {
      input: [
        `table ip ${this.table} {}`,
        `delete table ip ${this.table}`,
        `table ip ${this.table} {`,
        "  chain input {",
        "    type filter hook input priority filter; policy accept;",
        `    iifname "${this.hostVeth}" ct state established,related accept`,
        `    iifname "${this.hostVeth}" drop`,
        "  }",
        "  chain postrouting {",
        "    type nat hook postrouting priority srcnat; policy accept;",
        `    ip saddr ${this.linkCidr} oifname != "${this.hostVeth}" masquerade`,
        "  }",
        "}",
        "",
      ].join("\n"),
    });
  }

  /**
   * Creates the tap for sandbox `id` in the namespace, attached to the bridge
   * and up; returns its name. The tap's alias records the id, so a name
   * clash with another sandbox's tap is detected (then `fallbackTapName` is
   * used) and a leftover tap of the same id is reused. With `tapOwner`,
   * the tap belongs to the uid the VM's QEMU will run as.
   */
  async createTap(id: string): Promise<string> {
    for (const name of [tapName(id), fallbackTapName(id)]) {
      const existing = await this.tapInfo(name);
      if (existing && existing.sandboxId !== id) {
        this.log?.warn({ tap: name, id, owner: existing.sandboxId }, "tap name taken, trying fallback");
        continue;
      }
      const uid = await this.tapOwner?.(id);
      const add = `tuntap add dev ${name} mode tap${uid === undefined ? "" : ` user ${uid}`}`;
      // A leftover tap of this id may have another owner: made anew.
      const cmds = existing ? (uid === undefined ? [] : [`tuntap del dev ${name} mode tap`, add]) : [add];
      cmds.push(`link set dev ${name} alias ${id}`, `link set dev ${name} master ${this.bridge} up`);
      await this.ipBatch(true, cmds);
      return name;
    }
    throw new RuntimeError("internal", `no free tap name for ${id}`);
  }

  /** How `hutch-jailer` makes sandbox `id`'s tap (see TapSpec): the names `createTap` would try. */
  tapSpec(id: string): TapSpec {
    return { names: [tapName(id), fallbackTapName(id)], bridge: this.bridge, alias: id };
  }

  /**
   * The name of the tap that process `pid` holds open at `fd` (made by
   * `hutch-jailer` from `tapSpec`), from /proc/<pid>/fdinfo. Remembered as
   * held: it is not persistent, so once its QEMU is gone so is the tap and
   * `deleteTap` of it runs nothing.
   */
  async heldTap(pid: number, fd: number): Promise<string> {
    const info = await readFile(`/proc/${pid}/fdinfo/${fd}`, "utf8").catch(() => "");
    const name = /^iff:\s*(\S+)$/m.exec(info)?.[1];
    if (!name) throw new RuntimeError("internal", `process ${pid} holds no tap at fd ${fd}`);
    this.held.add(name);
    return name;
  }

  /**
   * Removes a tap once its VM is gone; a missing one is fine. A tap held by
   * a QEMU of this server (`heldTap`) went with it: nothing to run. (One
   * held by a previous server's QEMU is removed by name, usually already gone.)
   */
  async deleteTap(name: string): Promise<void> {
    if (this.held.delete(name)) return;
    const r = await this.ip(true, ["link", "del", "dev", name], true);
    if (r.code !== 0 && !/Cannot find device|does not exist/i.test(r.stderr)) {
      throw new RuntimeError("internal", `ip link del ${name}: ${r.stderr.trim()}`);
    }
  }

  /** Taps attached to the bridge (empty when the namespace does not exist). */
  async list(): Promise<TapInfo[]> {
    const r = await this.ip(true, ["-j", "-d", "link", "show", "master", this.bridge], true);
    if (r.code !== 0) return [];
    const links = JSON.parse(r.stdout || "[]") as { ifname: string; ifalias?: string; linkinfo?: { info_kind?: string } }[];
    return links
      .filter((l) => l.linkinfo?.info_kind === "tun")
      .map((l) => (l.ifalias ? { name: l.ifname, sandboxId: l.ifalias } : { name: l.ifname }));
  }

  /**
   * Removes everything `ensure` made: taps, bridge, veth pair, NAT tables and
   * the namespace. Stop the VMs first: a QEMU still inside keeps the netns
   * alive. net.ipv4.ip_forward on the host is left as it is.
   */
  async teardown(): Promise<void> {
    for (const t of await this.list()) await this.deleteTap(t.name);
    await this.ip(true, ["link", "del", this.bridge], true);
    await runCommand("ip", ["link", "del", this.hostVeth], { allowFail: true });
    await runCommand("nft", ["delete", "table", "ip", this.table], { allowFail: true });
    await runCommand("ip", ["netns", "del", this.netnsName], { allowFail: true });
  }

  /** argv prefix that runs a command inside the namespace. */
  execPrefix(): string[] {
    return ["ip", "netns", "exec", this.netnsName];
  }

  private async tapInfo(name: string): Promise<TapInfo | undefined> {
    const r = await this.ip(true, ["-j", "link", "show", "dev", name], true);
    if (r.code !== 0) return undefined;
    const [l] = JSON.parse(r.stdout || "[]") as { ifname: string; ifalias?: string }[];
    if (!l) return undefined;
    return l.ifalias ? { name, sandboxId: l.ifalias } : { name };
  }

  private async linkExists(name: string, inNs: boolean): Promise<boolean> {
    return (await this.ip(inNs, ["link", "show", "dev", name], true)).code === 0;
  }

  private ip(inNs: boolean, args: string[], allowFail = false) {
    return runCommand("ip", inNs ? ["-n", this.netnsName, ...args] : args, { allowFail });
  }

  private async ipBatch(inNs: boolean, cmds: string[]): Promise<void> {
    await runCommand("ip", [...(inNs ? ["-n", this.netnsName] : []), "-batch", "-"], { input: cmds.join("\n") + "\n" });
  }
}
