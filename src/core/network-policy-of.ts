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

/** Egress bytes left of a metered sandbox's quota; undefined when unmetered. */
function remainingBytes(rec: Pick<SandboxRecord, "bandwidthQuotaBytes" | "bandwidthUsedBytes">): number | undefined {
  return rec.bandwidthQuotaBytes === UNMETERED ? undefined : Math.max(0, rec.bandwidthQuotaBytes - rec.bandwidthUsedBytes);
}

/** What `Runtime.setNetworkPolicy` should enforce for `rec`. */
export function networkPolicyOf(rec: Pick<SandboxRecord, "ip" | "egress" | "bandwidthQuotaBytes" | "bandwidthUsedBytes">): NetworkPolicy {
  const remaining = remainingBytes(rec);
  return { ip: rec.ip, egress: rec.egress, capped: isCapped(rec), ...(remaining === undefined ? {} : { remainingBytes: remaining }) };
}

/** What `networkPolicyOf` gives a new sandbox at `ip` with no egress rules and `quotaBytes` of quota. */
export function newSandboxPolicy(ip: string, quotaBytes: number): NetworkPolicy {
  return networkPolicyOf({ ip, egress: [], bandwidthQuotaBytes: quotaBytes, bandwidthUsedBytes: 0 });
}

/** Body of GET /v1/sandboxes/{id}/bandwidth. */
export function bandwidthOf(rec: SandboxRecord) {
  const quota = rec.bandwidthQuotaBytes;
  return {
    id: rec.id,
    quota_bytes: quota,
    used_bytes: rec.bandwidthUsedBytes,
    ingress_bytes: rec.bandwidthIngressBytes,
    remaining_bytes: remainingBytes(rec) ?? UNMETERED,
    capped: isCapped(rec),
  };
}
