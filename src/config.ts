/**
 * Server configuration from flags and environment variables. The variable
 * names are a contract (documented in the README); flags win over env.
 */
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { hostname, homedir } from "node:os";
import { join, resolve } from "node:path";
import { DEFAULT_BANDWIDTH_QUOTA_BYTES, type CoreConfig } from "./core/core-config.js";
import { IpPool } from "./core/ip-pool.js";
import type { UserLimitsConfig } from "./core/user-limits.js";

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface Config {
  listenHost: string;
  listenPort: number;
  dataDir: string;
  cacheDir: string;
  /** Bootstrap key of the first user (HUTCH_API_KEY); generated when unset. */
  apiKey: string | undefined;
  region: string;
  /**
   * Ingress host-name suffix (HUTCH_INGRESS_DOMAIN, default "sb.localhost"):
   * URLs are `<scheme>://<ulid>-<port>.<domain>`. Undefined when ingress is
   * off (HUTCH_INGRESS_LISTEN=off).
   */
  ingressDomain: string | undefined;
  /** HUTCH_INGRESS_LISTEN (default 127.0.0.1:8081); undefined when "off". */
  ingressListen: { host: string; port: number } | undefined;
  /** HUTCH_NETNS: the network namespace (and derived bridge/veth names), default "hutch". */
  netns: string;
  /** HUTCH_BANDWIDTH_QUOTA_BYTES: egress quota of new sandboxes (default 5 GiB, -1 unmetered). */
  defaultBandwidthQuotaBytes: number;
  ingressScheme: "http" | "https";
  accel: "kvm" | "tcg" | undefined;
  hostMemMib: number | undefined;
  networkCidr: string;
  dns: string[];
  disabledRootfs: string[];
  logLevel: LogLevel;
  /** `postgres://…` selects PostgreSQL; SQLite in the data dir otherwise. */
  databaseUrl: string | undefined;
  /** Largest file accepted by PUT /files, bytes. */
  maxFileBytes: number;
  /** HUTCH_REQUEST_TIMEOUT_MS (default 600000): a request, body included, must arrive within it (else 408). */
  requestTimeoutMs: number;
  /** HUTCH_HEADERS_TIMEOUT_MS (default 15000): a request's headers must arrive within it (else 408). */
  headersTimeoutMs: number;
  /** HUTCH_TEMPLATES (default on): creates restore template snapshots; "off": every create cold boots. */
  templates: boolean;
  /** HUTCH_POOL_SIZE (default 2): warm VMs kept for the default rootfs and shape; 0 disables the pool. */
  poolSize: number;
  /** HUTCH_POOL_ROOTFS: rootfs of the start-up template and warm pool (default: the default image). */
  poolRootfs: string | undefined;
  /**
   * HUTCH_JAIL (default on when running as root, else off): each QEMU runs
   * under its own uid, chrooted, without capabilities, under rlimits and a
   * cgroup (src/runtime/qemu/vmm-jail.ts). Needs root.
   */
  jail: boolean;
  /**
   * HUTCH_SPAWN_HELPER (default on): QEMU is started by `hutch-spawn`, a
   * small helper process, so the server never forks itself for it (a fork
   * of the server blocks it for ~10 ms and slows it after; see
   * src/runtime/qemu/vmm-spawner.ts). "off": the server spawns QEMU.
   */
  spawnHelper: boolean;
  /**
   * HUTCH_OWN_STREAMS (default on): after a sandbox's first pause (a clone's
   * or cold-booted VM's: all its RAM streamed), a background QEMU moves that
   * RAM into a file of its own, so its first resume and its forks are as
   * fast as later ones (src/runtime/snapshot/own-ram.ts). "off": the first
   * resume loads the stream.
   */
  ownStreams: boolean;
  /**
   * HUTCH_SPARES (default 1): spare QEMUs kept started ahead per warm shape,
   * and per shape forked since (src/runtime/qemu/spare-pool.ts), so a fork's
   * child, or a create the warm pool cannot serve, skips QEMU's start.
   * "0": none. Needs the jail's hutch-jailer.
   */
  spares: number;
  /** HUTCH_AUTO_PAUSE_CHECK_MS (default 5000): how often idle sandboxes are looked for. */
  autoPauseCheckMs: number;
  /**
   * Per-user limits: HUTCH_USER_MAX_SANDBOXES (live sandboxes, default 50),
   * HUTCH_USER_MAX_MEM_MIB (their guest memory, default none: the host's own
   * admission already bounds it) and HUTCH_USER_CREATES_PER_MINUTE (creates
   * and forks, default 120). "0" or "off" turns one off.
   */
  userLimits: UserLimitsConfig;
  hostId: string;
  /**
   * HUTCH_MIN_FREE_MIB (default 256): free space the data dir keeps for
   * guests' disks to grow into; a create, pause, fork, resume or template
   * build that would leave less is refused (503) before it writes anything.
   */
  minFreeMib: number;
  /**
   * HUTCH_DISK_RESERVE_MIB (default 32; 0: none): a reserve file in the data
   * dir, released when a VM's disk write finds the disk full, so the
   * database still takes the status changes; put back once space returns.
   */
  diskReserveMib: number;
  /**
   * Guest agent liveness: HUTCH_AGENT_PING_INTERVAL_MS (default 10000; "0"
   * or "off": no sweep), HUTCH_AGENT_PING_TIMEOUT_MS (default 5000),
   * HUTCH_AGENT_PING_MISSES (default 3): a running VM whose agent misses that
   * many pings in a row (and whose QEMU does not hold it stopped) fails.
   */
  agentLiveness: { intervalMs: number; timeoutMs: number; misses: number } | undefined;
  /** HUTCH_CONSOLE_MAX_BYTES (default 1 MiB): a VM's console.log is rotated past it; at most twice that is kept. */
  consoleMaxBytes: number;
  /** HUTCH_EXEC_MAX_OUTPUT_BYTES (default 16 MiB): a buffered exec printing more is killed, its output truncated. */
  execMaxOutputBytes: number;
  /** HUTCH_EXEC_STREAM_BACKLOG_BYTES (default 8 MiB): a streaming exec whose client falls this far behind is killed
   *  (only reachable with an agent without exec credit, i.e. an older image: otherwise the command waits for the client). */
  execStreamBacklogBytes: number;
}

/** Flags `hutch serve` accepts (all optional; env and defaults fill the rest). */
export interface ConfigFlags {
  listen?: string;
  dataDir?: string;
  cacheDir?: string;
  region?: string;
  logLevel?: string;
  accel?: string;
  networkCidr?: string;
}

function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(text.trim());
  const port = Number(m?.[3]);
  if (!m || port > 65535) throw new Error(`invalid listen address "${text}" (host:port)`);
  return { host: m[1] ?? (m[2] || "127.0.0.1"), port };
}

function positiveInt(name: string, text: string | undefined): number | undefined {
  if (text === undefined || text === "") return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer`);
  return n;
}

function list(text: string | undefined): string[] {
  return (text ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
}

/**
 * The host's upstream resolvers (non-loopback nameservers of /etc/resolv.conf):
 * the default DNS of guests, since the sandbox network runs no resolver.
 */
function hostResolvers(): string[] {
  try {
    return readFileSync("/etc/resolv.conf", "utf8")
      .split("\n")
      .map((l) => /^\s*nameserver\s+(\S+)/.exec(l)?.[1])
      .filter((ip): ip is string => ip !== undefined && isIP(ip) === 4 && !ip.startsWith("127."));
  } catch {
    return [];
  }
}

/** "on"/"off" (also 1/0, true/false); `dflt` when unset. */
function onOff(name: string, text: string | undefined, dflt: boolean): boolean {
  if (text === undefined || text === "") return dflt;
  if (["on", "1", "true"].includes(text)) return true;
  if (["off", "0", "false"].includes(text)) return false;
  throw new Error(`${name} must be on or off`);
}

/** HUTCH_BANDWIDTH_QUOTA_BYTES: a non-negative integer or -1 (unmetered); default 5 GiB. */
function quotaBytes(text: string | undefined): number {
  if (text === undefined || text === "") return DEFAULT_BANDWIDTH_QUOTA_BYTES;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < -1) throw new Error("HUTCH_BANDWIDTH_QUOTA_BYTES must be an integer ≥ 0, or -1");
  return n;
}

/** A per-user limit: a positive integer; "0" or "off" (no limit); `dflt` when unset. */
function userLimit(name: string, text: string | undefined, dflt: number | undefined): number | undefined {
  if (text === undefined || text.trim() === "") return dflt;
  const t = text.trim();
  if (t === "off" || t === "0") return undefined;
  const n = Number(t);
  if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, 0 or off`);
  return n;
}

/** HUTCH_USER_*: the per-user limits, an absent field meaning none. */
function userLimits(env: NodeJS.ProcessEnv): UserLimitsConfig {
  const out: UserLimitsConfig = {};
  const maxSandboxes = userLimit("HUTCH_USER_MAX_SANDBOXES", env.HUTCH_USER_MAX_SANDBOXES, 50);
  const maxMemMib = userLimit("HUTCH_USER_MAX_MEM_MIB", env.HUTCH_USER_MAX_MEM_MIB, undefined);
  const createsPerMinute = userLimit("HUTCH_USER_CREATES_PER_MINUTE", env.HUTCH_USER_CREATES_PER_MINUTE, 120);
  if (maxSandboxes !== undefined) out.maxSandboxes = maxSandboxes;
  if (maxMemMib !== undefined) out.maxMemMib = maxMemMib;
  if (createsPerMinute !== undefined) out.createsPerMinute = createsPerMinute;
  return out;
}

/** HUTCH_AGENT_PING_*: the liveness sweep's settings, undefined when turned off. */
function agentLiveness(env: NodeJS.ProcessEnv): Config["agentLiveness"] {
  const interval = env.HUTCH_AGENT_PING_INTERVAL_MS?.trim();
  if (interval === "0" || interval === "off") return undefined;
  return {
    intervalMs: positiveInt("HUTCH_AGENT_PING_INTERVAL_MS", interval) ?? 10_000,
    timeoutMs: positiveInt("HUTCH_AGENT_PING_TIMEOUT_MS", env.HUTCH_AGENT_PING_TIMEOUT_MS) ?? 5000,
    misses: positiveInt("HUTCH_AGENT_PING_MISSES", env.HUTCH_AGENT_PING_MISSES) ?? 3,
  };
}

/** A whole number ≥ 0 of MiB; `dflt` when unset. */
function mib(name: string, text: string | undefined, dflt: number): number {
  if (text === undefined || text.trim() === "") return dflt;
  const n = Number(text.trim());
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${name} must be an integer ≥ 0 (MiB)`);
  return n;
}

/** Reads the configuration; throws a readable Error on an invalid value. */
export function loadConfig(flags: ConfigFlags = {}, env: NodeJS.ProcessEnv = process.env): Config {
  const listen = parseListen(flags.listen ?? env.HUTCH_LISTEN ?? "127.0.0.1:8080");
  const logLevel = (flags.logLevel ?? env.HUTCH_LOG_LEVEL ?? "info") as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) throw new Error(`HUTCH_LOG_LEVEL must be one of ${LOG_LEVELS.join(", ")}`);
  const accel = flags.accel ?? env.HUTCH_ACCEL;
  if (accel !== undefined && accel !== "" && accel !== "kvm" && accel !== "tcg") throw new Error("HUTCH_ACCEL must be kvm or tcg");
  const networkCidr = flags.networkCidr ?? env.HUTCH_NETWORK_CIDR ?? "192.168.0.0/16";
  new IpPool(networkCidr); // validates the CIDR early
  const scheme = env.HUTCH_INGRESS_SCHEME ?? "http";
  if (scheme !== "http" && scheme !== "https") throw new Error("HUTCH_INGRESS_SCHEME must be http or https");
  const dns = list(env.HUTCH_DNS);
  const ingressText = env.HUTCH_INGRESS_LISTEN ?? "127.0.0.1:8081";
  const ingressListen = ingressText === "off" ? undefined : parseListen(ingressText);
  return {
    listenHost: listen.host,
    listenPort: listen.port,
    dataDir: resolve(flags.dataDir ?? env.HUTCH_DATA_DIR ?? join(homedir(), ".local/share/hutch")),
    cacheDir: resolve(flags.cacheDir ?? env.HUTCH_CACHE_DIR ?? join(homedir(), ".cache/hutch")),
    apiKey: env.HUTCH_API_KEY || undefined,
    region: flags.region ?? env.HUTCH_REGION ?? "local",
    ingressDomain: ingressListen ? env.HUTCH_INGRESS_DOMAIN || "sb.localhost" : undefined,
    ingressListen,
    netns: env.HUTCH_NETNS || "hutch",
    defaultBandwidthQuotaBytes: quotaBytes(env.HUTCH_BANDWIDTH_QUOTA_BYTES),
    ingressScheme: scheme,
    accel: accel === "kvm" || accel === "tcg" ? accel : undefined,
    hostMemMib: positiveInt("HUTCH_HOST_MEM_MIB", env.HUTCH_HOST_MEM_MIB),
    networkCidr,
    dns: dns.length > 0 ? dns : hostResolvers(),
    disabledRootfs: list(env.HUTCH_DISABLED_ROOTFS),
    logLevel,
    databaseUrl: env.HUTCH_DATABASE_URL || undefined,
    maxFileBytes: positiveInt("HUTCH_MAX_FILE_BYTES", env.HUTCH_MAX_FILE_BYTES) ?? 1024 * 1024 * 1024,
    requestTimeoutMs: positiveInt("HUTCH_REQUEST_TIMEOUT_MS", env.HUTCH_REQUEST_TIMEOUT_MS) ?? 600_000,
    headersTimeoutMs: positiveInt("HUTCH_HEADERS_TIMEOUT_MS", env.HUTCH_HEADERS_TIMEOUT_MS) ?? 15_000,
    templates: onOff("HUTCH_TEMPLATES", env.HUTCH_TEMPLATES, true),
    poolSize: env.HUTCH_POOL_SIZE === "0" ? 0 : (positiveInt("HUTCH_POOL_SIZE", env.HUTCH_POOL_SIZE) ?? 2),
    poolRootfs: env.HUTCH_POOL_ROOTFS || undefined,
    jail: onOff("HUTCH_JAIL", env.HUTCH_JAIL, process.getuid?.() === 0),
    spawnHelper: onOff("HUTCH_SPAWN_HELPER", env.HUTCH_SPAWN_HELPER, true),
    ownStreams: onOff("HUTCH_OWN_STREAMS", env.HUTCH_OWN_STREAMS, true),
    spares: env.HUTCH_SPARES === "0" ? 0 : (positiveInt("HUTCH_SPARES", env.HUTCH_SPARES) ?? 1),
    autoPauseCheckMs: positiveInt("HUTCH_AUTO_PAUSE_CHECK_MS", env.HUTCH_AUTO_PAUSE_CHECK_MS) ?? 5000,
    userLimits: userLimits(env),
    hostId: env.HUTCH_HOST_ID || `host-${hostname().toLowerCase().replace(/[^a-z0-9-]/g, "-")}`,
    minFreeMib: mib("HUTCH_MIN_FREE_MIB", env.HUTCH_MIN_FREE_MIB, 256),
    diskReserveMib: mib("HUTCH_DISK_RESERVE_MIB", env.HUTCH_DISK_RESERVE_MIB, 32),
    agentLiveness: agentLiveness(env),
    consoleMaxBytes: positiveInt("HUTCH_CONSOLE_MAX_BYTES", env.HUTCH_CONSOLE_MAX_BYTES) ?? 1024 * 1024,
    execMaxOutputBytes: positiveInt("HUTCH_EXEC_MAX_OUTPUT_BYTES", env.HUTCH_EXEC_MAX_OUTPUT_BYTES) ?? 16 * 1024 * 1024,
    execStreamBacklogBytes: positiveInt("HUTCH_EXEC_STREAM_BACKLOG_BYTES", env.HUTCH_EXEC_STREAM_BACKLOG_BYTES) ?? 8 * 1024 * 1024,
  };
}

/** The part of the configuration core uses. */
export function coreConfig(config: Config): CoreConfig {
  return {
    region: config.region,
    networkCidr: config.networkCidr,
    dns: config.dns,
    disabledRootfs: config.disabledRootfs,
    hostId: config.hostId,
    defaultBandwidthQuotaBytes: config.defaultBandwidthQuotaBytes,
    userLimits: config.userLimits,
  };
}
