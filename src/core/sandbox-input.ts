/**
 * Inputs of sandbox operations as they arrive from the API, with the wire
 * field names (so every validation error names the field the client sent).
 * Types are already checked by the API's schemas; core checks the rules.
 */

export interface CreateSandboxInput {
  shape: string;
  rootfs?: string;
  name?: string;
  disk_mib?: number;
  ssh_pubkeys?: string[];
  envs?: Record<string, string>;
  ingress_enabled?: boolean;
  networks?: Array<{ id: string }>;
  disks?: Array<{ disk_id: string; mount_path?: string; sub_path?: string }>;
  egress?: string[];
  auto_pause_after_seconds?: number | null;
  host_id?: string;
  region?: string;
  bandwidth_quota_bytes?: unknown;
}

export interface PatchSandboxInput {
  ingress_enabled?: boolean;
  auto_pause_after_seconds?: number;
  disable_auto_pause?: boolean;
}

export interface ExecInput {
  cmd: string;
  args?: string[];
  stdin?: string;
  env?: Record<string, string>;
  cwd?: string;
}
