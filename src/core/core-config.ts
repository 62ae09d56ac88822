import type { UserLimitsConfig } from "./user-limits.js";

/** What core needs from the server configuration (no env parsing here). */
export interface CoreConfig {
  region: string;
  /** HUTCH_NETWORK_CIDR, e.g. "192.168.0.0/16". */
  networkCidr: string;
  /** Resolvers handed to guests. */
  dns: string[];
  /** Rootfs names refused at create (HUTCH_DISABLED_ROOTFS). */
  disabledRootfs: string[];
  /** Id of the single local host, e.g. "local". */
  hostId: string;
  /** Default egress quota of new sandboxes, bytes (5 GiB). */
  defaultBandwidthQuotaBytes: number;
  /** Per-user caps and create rate (HUTCH_USER_*); an absent field is no limit. */
  userLimits: UserLimitsConfig;
}

/** 5 GiB: the cluster default egress quota of every new sandbox. */
export const DEFAULT_BANDWIDTH_QUOTA_BYTES = 5 * 1024 * 1024 * 1024;
