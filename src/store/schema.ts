/**
 * Table types for Kysely. Booleans are stored as 0/1 integers and lists as
 * JSON text so the same SQL runs on SQLite and PostgreSQL; timestamps are
 * RFC 3339 UTC text (they sort correctly as text).
 */

export interface SandboxesTable {
  id: string;
  user_id: string;
  host_id: string;
  name: string;
  status: string;
  shape: string;
  rootfs: string;
  vcpu: number;
  mem_mib: number;
  disk_mib: number;
  ip: string;
  mac: string;
  region: string;
  ingress_enabled: number;
  auto_pause_after_seconds: number | null;
  env_keys: string;
  envs_sealed: string | null;
  ssh_pubkeys: string;
  egress: string;
  /** bigint: PostgreSQL returns it as a string. */
  bandwidth_quota_bytes: number | string;
  bandwidth_ingress_bytes: number | string;
  /** Egress bytes used (migration 0002). */
  bandwidth_used_bytes: number | string;
  spawn_ms: number | null;
  forked_from: string | null;
  created_at: string;
  running_at: string | null;
  paused_at: string | null;
  last_resumed_at: string | null;
  destroyed_at: string | null;
  updated_at: string;
}

export interface UsersTable {
  id: string;
  name: string;
  created_at: string;
}

export interface ApiKeysTable {
  key_hash: string;
  user_id: string;
  created_at: string;
}

export interface HostsTable {
  id: string;
  region: string;
  status: string;
  created_at: string;
}

export interface Database {
  sandboxes: SandboxesTable;
  users: UsersTable;
  api_keys: ApiKeysTable;
  hosts: HostsTable;
}

