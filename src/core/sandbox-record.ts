/**
 * A sandbox as core stores it: one row of the `sandboxes` table, in
 * TypeScript types. Views for the API are built from this in src/api/views.
 */
import type { SandboxStatus } from "./sandbox-state.js";

export interface SandboxRecord {
  /** `sb_<ULID>`. */
  id: string;
  userId: string;
  hostId: string;
  name: string;
  status: SandboxStatus;
  shape: string;
  rootfs: string;
  vcpu: number;
  memMib: number;
  diskMib: number;
  /** Kept after the sandbox ends (history); only non-terminal rows hold it. */
  ip: string;
  mac: string;
  region: string;
  ingressEnabled: boolean;
  autoPauseAfterSeconds: number | null;
  /** Names of the envs, in clear. */
  envKeys: string[];
  /** AES-256-GCM sealed JSON of the envs (SecretBox), or null when none. */
  envsSealed: string | null;
  sshPubkeys: string[];
  egress: string[];
  bandwidthQuotaBytes: number;
  bandwidthIngressBytes: number;
  /** Egress bytes counted so far (against `bandwidthQuotaBytes`). */
  bandwidthUsedBytes: number;
  spawnMs: number | null;
  forkedFrom: string | null;
  /** RFC 3339 UTC timestamps. */
  createdAt: string;
  runningAt: string | null;
  pausedAt: string | null;
  lastResumedAt: string | null;
  destroyedAt: string | null;
  updatedAt: string;
}

/** Fields a status change may set alongside the status. */
export type StatusPatch = Partial<
  Pick<SandboxRecord, "runningAt" | "pausedAt" | "lastResumedAt" | "destroyedAt" | "spawnMs">
>;

/** Fields PATCH /v1/sandboxes/{id} may change (and ssh keys, via POST .../ssh-pubkeys). */
export type SettingsPatch = Partial<Pick<SandboxRecord, "ingressEnabled" | "autoPauseAfterSeconds" | "sshPubkeys" | "egress" | "bandwidthQuotaBytes">>;

/** The columns a list item shows (GET /v1/sandboxes): cheaper to read in bulk. */
export type SandboxSummary = Pick<
  SandboxRecord,
  | "id" | "name" | "status" | "ip" | "vcpu" | "memMib" | "diskMib" | "shape" | "rootfs" | "region"
  | "ingressEnabled" | "autoPauseAfterSeconds" | "createdAt"
>;
