/**
 * The kernel network policy of a sandbox row, and the bandwidth numbers the
 * API reports: one place decides what "capped" means.
 */
import type { NetworkPolicy } from "../runtime/runtime.js";
import type { SandboxRecord } from "./sandbox-record.js";

/** Quota value meaning "unmetered". */
export const UNMETERED = -1;

/** True once a metered sandbox used its whole egress quota. */
export function isCapped(rec: Pick<SandboxRecord, "bandwidthQuotaBytes" | "bandwidthUsedBytes">): boolean {
  return rec.bandwidthQuotaBytes !== UNMETERED && rec.bandwidthUsedBytes >= rec.bandwidthQuotaBytes;
}

/** What `Runtime.setNetworkPolicy` should enforce for `rec`. */
export function networkPolicyOf(rec: SandboxRecord): NetworkPolicy {
  const quota = rec.bandwidthQuotaBytes;
  return {
    ip: rec.ip,
    egress: rec.egress,
    capped: isCapped(rec),
    ...(quota === UNMETERED ? {} : { remainingBytes: Math.max(0, quota - rec.bandwidthUsedBytes) }),
  };
}

/** Body of GET /v1/sandboxes/{id}/bandwidth. */
export function bandwidthOf(rec: SandboxRecord) {
  const quota = rec.bandwidthQuotaBytes;
  return {
    id: rec.id,
    quota_bytes: quota,
    used_bytes: rec.bandwidthUsedBytes,
    ingress_bytes: rec.bandwidthIngressBytes,
    remaining_bytes: quota === UNMETERED ? UNMETERED : Math.max(0, quota - rec.bandwidthUsedBytes),
    capped: isCapped(rec),
  };
}
