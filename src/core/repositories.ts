/**
 * The storage interfaces core depends on. src/store implements them with
 * Kysely (SQLite or PostgreSQL); core never sees SQL.
 */
import type { SandboxRecord, SandboxSummary, SettingsPatch, StatusPatch } from "./sandbox-record.js";
import type { SandboxStatus } from "./sandbox-state.js";

/** Thrown by repositories when a unique rule of the database rejects a write. */
export class UniqueViolationError extends Error {
  override readonly name = "UniqueViolationError";
  constructor(
    /** Which rule: the per-user live name, the per-host live IP, or another. */
    readonly target: "name" | "ip" | "other",
    options?: { cause?: unknown },
  ) {
    super(`unique violation on ${target}`, options);
  }
}

export interface ListQuery {
  userId: string;
  status?: SandboxStatus;
  limit: number;
  offset: number;
}

export interface SandboxRepository {
  /** Inserts a new row. @throws UniqueViolationError on a live name/IP clash. */
  insert(record: SandboxRecord): Promise<void>;
  /** The row, whoever owns it. */
  get(id: string): Promise<SandboxRecord | undefined>;
  /** The row only when `userId` owns it. */
  getOwned(userId: string, id: string): Promise<SandboxRecord | undefined>;
  /** Newest first; list columns only. */
  list(query: ListQuery): Promise<{ items: SandboxSummary[]; total: number }>;
  /** The caller's rows holding `ip`, newest first (at most a few). */
  findByIp(userId: string, ip: string): Promise<SandboxRecord[]>;
  /**
   * Sets `to` (plus `patch`) only if the row is still in `from`.
   * Returns false when the row moved meanwhile (nothing written).
   */
  updateStatus(id: string, from: SandboxStatus, to: SandboxStatus, patch: StatusPatch, now: string): Promise<boolean>;
  updateSettings(id: string, patch: SettingsPatch, now: string): Promise<void>;
  /** Adds counted bytes to the row's egress (used) and ingress totals, atomically. */
  addBandwidthUsage(id: string, egressBytes: number, ingressBytes: number): Promise<void>;
  /** Rows whose status is one of `statuses` (recovery). */
  listByStatus(statuses: readonly SandboxStatus[]): Promise<SandboxRecord[]>;
  /** Live (non-terminal) rows on a host: what admission and IP allocation count (memory: only those holding a VM, see `holdsMemory`). */
  liveOnHost(hostId: string): Promise<Array<{ ip: string; memMib: number; status: SandboxStatus }>>;
  /** Per-status counts of one user's sandboxes. */
  countByStatus(userId: string): Promise<Partial<Record<SandboxStatus, number>>>;
  /** How many live (non-terminal) sandboxes a user has and their memory, MiB (per-user limits). */
  liveUsage(userId: string): Promise<{ sandboxes: number; memMib: number }>;
}

export interface UserRecord {
  id: string;
  name: string;
  createdAt: string;
}

export interface UserRepository {
  /** The user owning the key with this sha256 hash (hex), if any, with that hash. */
  findByKeyHash(keyHash: string): Promise<(UserRecord & { keyHash: string }) | undefined>;
  findByName(name: string): Promise<UserRecord | undefined>;
  /** Creates the user when missing; returns it either way. */
  ensureUser(name: string): Promise<UserRecord>;
  /** Stores a key hash for a user (idempotent for the same hash). */
  addKey(userId: string, keyHash: string): Promise<void>;
  countKeys(): Promise<number>;
}

export interface HostRecord {
  id: string;
  region: string;
  status: "active" | "draining" | "dead";
  createdAt: string;
}

export interface HostRepository {
  /** Inserts or refreshes a host row. */
  upsert(host: HostRecord): Promise<void>;
  get(id: string): Promise<HostRecord | undefined>;
  list(): Promise<HostRecord[]>;
}

/** Everything the store offers core. */
export interface Repositories {
  sandboxes: SandboxRepository;
  users: UserRepository;
  hosts: HostRepository;
  /** Cheap liveness probe of the database (readyz). */
  ping(): Promise<void>;
}
