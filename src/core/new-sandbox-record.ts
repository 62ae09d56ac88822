/** Builds the row of a sandbox being created (status `creating`). */
import type { SandboxRecord } from "./sandbox-record.js";
import type { ValidCreate } from "./sandbox-validator.js";
import type { Placement } from "./scheduler.js";

/** Everything a new row is made of, besides the validated request. */
export interface NewSandboxParts {
  id: string;
  userId: string;
  name: string;
  valid: ValidCreate;
  placement: Placement;
  envKeys: string[];
  envsSealed: string | null;
  bandwidthQuotaBytes: number;
  now: string;
}

/** The `creating` row for a validated create request placed on a host. */
export function newSandboxRecord(p: NewSandboxParts): SandboxRecord {
  const { valid } = p;
  return {
    id: p.id,
    userId: p.userId,
    hostId: p.placement.hostId,
    name: p.name,
    status: "creating",
    shape: valid.shape.id,
    rootfs: valid.rootfs,
    vcpu: valid.shape.vcpu,
    memMib: valid.shape.memMib,
    diskMib: valid.diskMib,
    ip: p.placement.ip,
    mac: p.placement.mac,
    region: valid.region,
    ingressEnabled: valid.ingressEnabled,
    autoPauseAfterSeconds: valid.autoPauseAfterSeconds,
    envKeys: p.envKeys,
    envsSealed: p.envsSealed,
    sshPubkeys: valid.sshPubkeys,
    egress: valid.egress,
    bandwidthQuotaBytes: p.bandwidthQuotaBytes,
    bandwidthIngressBytes: 0,
    bandwidthUsedBytes: 0,
    spawnMs: null,
    forkedFrom: null,
    createdAt: p.now,
    runningAt: null,
    pausedAt: null,
    lastResumedAt: null,
    destroyedAt: null,
    updatedAt: p.now,
  };
}
