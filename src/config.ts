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
  /** Ingress on when set: URLs are `<scheme>://<ulid>-<port>.<domain>`. */
  ingressDomain: string | undefined;
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
  hostId: string;
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
  return {
    listenHost: listen.host,
    listenPort: listen.port,
    dataDir: resolve(flags.dataDir ?? env.HUTCH_DATA_DIR ?? join(homedir(), ".local/share/hutch")),
    cacheDir: resolve(flags.cacheDir ?? env.HUTCH_CACHE_DIR ?? join(homedir(), ".cache/hutch")),
    apiKey: env.HUTCH_API_KEY || undefined,
    region: flags.region ?? env.HUTCH_REGION ?? "local",
    ingressDomain: env.HUTCH_INGRESS_DOMAIN || undefined,
    ingressScheme: scheme,
    accel: accel === "kvm" || accel === "tcg" ? accel : undefined,
    hostMemMib: positiveInt("HUTCH_HOST_MEM_MIB", env.HUTCH_HOST_MEM_MIB),
    networkCidr,
    dns: dns.length > 0 ? dns : hostResolvers(),
    disabledRootfs: list(env.HUTCH_DISABLED_ROOTFS),
    logLevel,
    databaseUrl: env.HUTCH_DATABASE_URL || undefined,
    maxFileBytes: positiveInt("HUTCH_MAX_FILE_BYTES", env.HUTCH_MAX_FILE_BYTES) ?? 1024 * 1024 * 1024,
    hostId: env.HUTCH_HOST_ID || `host-${hostname().toLowerCase().replace(/[^a-z0-9-]/g, "-")}`,
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
    defaultBandwidthQuotaBytes: DEFAULT_BANDWIDTH_QUOTA_BYTES,
  };
}
