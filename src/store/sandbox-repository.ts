/**
 * `SandboxRepository` over Kysely; the same queries run on SQLite and
 * PostgreSQL.
 */
import { sql, type Kysely, type Selectable } from "kysely";
import type { ListQuery, SandboxRepository } from "../core/repositories.js";
import type { SandboxRecord, SandboxSummary, SettingsPatch, StatusPatch } from "../core/sandbox-record.js";
import { TERMINAL_STATUSES, type SandboxStatus } from "../core/sandbox-state.js";
import type { Database, SandboxesTable } from "./schema.js";
import { asUniqueViolation } from "./unique-violation.js";

type Row = Selectable<SandboxesTable>;

function toRecord(r: Row): SandboxRecord {
  return {
    id: r.id,
    userId: r.user_id,
    hostId: r.host_id,
    name: r.name,
    status: r.status as SandboxStatus,
    shape: r.shape,
    rootfs: r.rootfs,
    vcpu: r.vcpu,
    memMib: r.mem_mib,
    diskMib: r.disk_mib,
    ip: r.ip,
    mac: r.mac,
    region: r.region,
    ingressEnabled: Number(r.ingress_enabled) === 1,
    autoPauseAfterSeconds: r.auto_pause_after_seconds,
    envKeys: JSON.parse(r.env_keys) as string[],
    envsSealed: r.envs_sealed,
    sshPubkeys: JSON.parse(r.ssh_pubkeys) as string[],
    egress: JSON.parse(r.egress) as string[],
    bandwidthQuotaBytes: Number(r.bandwidth_quota_bytes),
    bandwidthIngressBytes: Number(r.bandwidth_ingress_bytes),
    bandwidthUsedBytes: Number(r.bandwidth_used_bytes ?? 0),
    spawnMs: r.spawn_ms === null ? null : Number(r.spawn_ms),
    forkedFrom: r.forked_from,
    createdAt: r.created_at,
    runningAt: r.running_at,
    pausedAt: r.paused_at,
    lastResumedAt: r.last_resumed_at,
    destroyedAt: r.destroyed_at,
    updatedAt: r.updated_at,
  };
}

const SUMMARY_COLUMNS = [
  "id", "name", "status", "ip", "vcpu", "mem_mib", "disk_mib", "shape", "rootfs", "region",
  "ingress_enabled", "auto_pause_after_seconds", "created_at",
] as const;

function toSummary(r: Pick<Row, (typeof SUMMARY_COLUMNS)[number]>): SandboxSummary {
  return {
    id: r.id,
    name: r.name,
    status: r.status as SandboxStatus,
    ip: r.ip,
    vcpu: r.vcpu,
    memMib: r.mem_mib,
    diskMib: r.disk_mib,
    shape: r.shape,
    rootfs: r.rootfs,
    region: r.region,
    ingressEnabled: Number(r.ingress_enabled) === 1,
    autoPauseAfterSeconds: r.auto_pause_after_seconds,
    createdAt: r.created_at,
  };
}

function toRow(s: SandboxRecord): Row {
  return {
    id: s.id,
    user_id: s.userId,
    host_id: s.hostId,
    name: s.name,
    status: s.status,
    shape: s.shape,
    rootfs: s.rootfs,
    vcpu: s.vcpu,
    mem_mib: s.memMib,
    disk_mib: s.diskMib,
    ip: s.ip,
    mac: s.mac,
    region: s.region,
    ingress_enabled: s.ingressEnabled ? 1 : 0,
    auto_pause_after_seconds: s.autoPauseAfterSeconds,
    env_keys: JSON.stringify(s.envKeys),
    envs_sealed: s.envsSealed,
    ssh_pubkeys: JSON.stringify(s.sshPubkeys),
    egress: JSON.stringify(s.egress),
    bandwidth_quota_bytes: s.bandwidthQuotaBytes,
    bandwidth_ingress_bytes: s.bandwidthIngressBytes,
    bandwidth_used_bytes: s.bandwidthUsedBytes,
    spawn_ms: s.spawnMs,
    forked_from: s.forkedFrom,
    created_at: s.createdAt,
    running_at: s.runningAt,
    paused_at: s.pausedAt,
    last_resumed_at: s.lastResumedAt,
    destroyed_at: s.destroyedAt,
    updated_at: s.updatedAt,
  };
}

const STATUS_COLUMNS = {
  runningAt: "running_at",
  pausedAt: "paused_at",
  lastResumedAt: "last_resumed_at",
  destroyedAt: "destroyed_at",
  spawnMs: "spawn_ms",
} as const satisfies Record<keyof StatusPatch, keyof SandboxesTable>;

export class KyselySandboxRepository implements SandboxRepository {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  async insert(record: SandboxRecord): Promise<void> {
    try {
      await this.#db.insertInto("sandboxes").values(toRow(record)).execute();
    } catch (err) {
      throw asUniqueViolation(err) ?? err;
    }
  }

  async get(id: string): Promise<SandboxRecord | undefined> {
    const row = await this.#db.selectFrom("sandboxes").selectAll().where("id", "=", id).executeTakeFirst();
    return row && toRecord(row);
  }

  async getOwned(userId: string, id: string): Promise<SandboxRecord | undefined> {
    const row = await this.#db
      .selectFrom("sandboxes")
      .selectAll()
      .where("id", "=", id)
      .where("user_id", "=", userId)
      .executeTakeFirst();
    return row && toRecord(row);
  }

  async list(q: ListQuery): Promise<{ items: SandboxSummary[]; total: number }> {
    let base = this.#db.selectFrom("sandboxes").where("user_id", "=", q.userId);
    if (q.status) base = base.where("status", "=", q.status);
    const [rows, count] = await Promise.all([
      // ULIDs sort by creation time: id order is newest-first order.
      base.select(SUMMARY_COLUMNS).orderBy("id", "desc").limit(q.limit).offset(q.offset).execute(),
      base.select((eb) => eb.fn.countAll<number | string>().as("n")).executeTakeFirstOrThrow(),
    ]);
    return { items: rows.map(toSummary), total: Number(count.n) };
  }

  async findByIp(userId: string, ip: string): Promise<SandboxRecord[]> {
    const rows = await this.#db
      .selectFrom("sandboxes")
      .selectAll()
      .where("user_id", "=", userId)
      .where("ip", "=", ip)
      .orderBy("id", "desc")
      .limit(20)
      .execute();
    return rows.map(toRecord);
  }

  async updateStatus(id: string, from: SandboxStatus, to: SandboxStatus, patch: StatusPatch, now: string): Promise<boolean> {
    const set: Partial<Row> = { status: to, updated_at: now };
    for (const [key, column] of Object.entries(STATUS_COLUMNS) as Array<[keyof StatusPatch, keyof Row]>) {
      if (patch[key] !== undefined) (set as Record<string, unknown>)[column] = patch[key];
    }
    try {
      const res = await this.#db.updateTable("sandboxes").set(set).where("id", "=", id).where("status", "=", from).executeTakeFirst();
      return Number(res.numUpdatedRows) === 1;
    } catch (err) {
      throw asUniqueViolation(err) ?? err;
    }
  }

  async updateSettings(id: string, patch: SettingsPatch, now: string): Promise<void> {
    const set: Partial<Row> = { updated_at: now };
    if (patch.ingressEnabled !== undefined) set.ingress_enabled = patch.ingressEnabled ? 1 : 0;
    if (patch.autoPauseAfterSeconds !== undefined) set.auto_pause_after_seconds = patch.autoPauseAfterSeconds;
    if (patch.egress !== undefined) set.egress = JSON.stringify(patch.egress);
    if (patch.bandwidthQuotaBytes !== undefined) set.bandwidth_quota_bytes = patch.bandwidthQuotaBytes;
    if (patch.sshPubkeys !== undefined) set.ssh_pubkeys = JSON.stringify(patch.sshPubkeys);
    await this.#db.updateTable("sandboxes").set(set).where("id", "=", id).execute();
  }

  async addBandwidthUsage(id: string, egressBytes: number, ingressBytes: number): Promise<void> {
    await this.#db
      .updateTable("sandboxes")
      .set((eb) => ({
        bandwidth_used_bytes: eb("bandwidth_used_bytes", "+", egressBytes),
        bandwidth_ingress_bytes: eb("bandwidth_ingress_bytes", "+", ingressBytes),
      }))
      .where("id", "=", id)
      .execute();
  }

  async listByStatus(statuses: readonly SandboxStatus[]): Promise<SandboxRecord[]> {
    if (statuses.length === 0) return [];
    const rows = await this.#db.selectFrom("sandboxes").selectAll().where("status", "in", [...statuses]).orderBy("id").execute();
    return rows.map(toRecord);
  }

  async liveOnHost(hostId: string): Promise<Array<{ ip: string; memMib: number; status: SandboxStatus }>> {
    const rows = await this.#db
      .selectFrom("sandboxes")
      .select(["ip", "mem_mib", "status"])
      .where("host_id", "=", hostId)
      .where("status", "not in", [...TERMINAL_STATUSES])
      .execute();
    return rows.map((r) => ({ ip: r.ip, memMib: r.mem_mib, status: r.status as SandboxStatus }));
  }

  async countByStatus(userId: string): Promise<Partial<Record<SandboxStatus, number>>> {
    const rows = await this.#db
      .selectFrom("sandboxes")
      .select(["status", sql<number | string>`count(*)`.as("n")])
      .where("user_id", "=", userId)
      .groupBy("status")
      .execute();
    const out: Partial<Record<SandboxStatus, number>> = {};
    for (const r of rows) out[r.status as SandboxStatus] = Number(r.n);
    return out;
  }

  async liveUsage(userId: string): Promise<{ sandboxes: number; memMib: number }> {
    // PostgreSQL returns count/sum as strings (bigint/numeric); SQLite as numbers.
    const row = await this.#db
      .selectFrom("sandboxes")
      .select([sql<number | string>`count(*)`.as("n"), sql<number | string | null>`sum(mem_mib)`.as("mem")])
      .where("user_id", "=", userId)
      .where("status", "not in", [...TERMINAL_STATUSES])
      .executeTakeFirst();
    return { sandboxes: Number(row?.n ?? 0), memMib: Number(row?.mem ?? 0) };
  }
}
