/**
 * A read-through cache of sandbox rows by id in front of any
 * SandboxRepository, so GET /v1/sandboxes/{id} costs no database round trip
 * when hot. Correct only while this process is the sole writer of the
 * sandboxes table (true for one control plane per store; the CLI never
 * writes sandboxes): every write goes through here and evicts the row, and
 * a generation counter stops a read that raced a write from caching the old
 * row.
 */
import type { ListQuery, SandboxRepository } from "./repositories.js";
import type { SandboxRecord, SettingsPatch, StatusPatch } from "./sandbox-record.js";
import type { SandboxStatus } from "./sandbox-state.js";

export class CachedSandboxRepository implements SandboxRepository {
  readonly #inner: SandboxRepository;
  readonly #max: number;
  readonly #rows = new Map<string, SandboxRecord>();
  #generation = 0;

  constructor(inner: SandboxRepository, opts: { maxEntries?: number } = {}) {
    this.#inner = inner;
    this.#max = opts.maxEntries ?? 10_000;
  }

  async insert(record: SandboxRecord): Promise<void> {
    this.#evict(record.id);
    await this.#inner.insert(record);
    this.#evict(record.id);
  }

  async get(id: string): Promise<SandboxRecord | undefined> {
    const hit = this.#rows.get(id);
    if (hit) return hit;
    const gen = this.#generation;
    const row = await this.#inner.get(id);
    // Only cache when no write happened meanwhile (the row may be stale).
    if (row && gen === this.#generation) {
      if (this.#rows.size >= this.#max) this.#rows.clear();
      this.#rows.set(id, row);
    }
    return row;
  }

  async getOwned(userId: string, id: string): Promise<SandboxRecord | undefined> {
    const row = await this.get(id);
    return row && row.userId === userId ? row : undefined;
  }

  list(query: ListQuery) {
    return this.#inner.list(query);
  }

  findByIp(userId: string, ip: string) {
    return this.#inner.findByIp(userId, ip);
  }

  async updateStatus(id: string, from: SandboxStatus, to: SandboxStatus, patch: StatusPatch, now: string): Promise<boolean> {
    this.#evict(id);
    try {
      return await this.#inner.updateStatus(id, from, to, patch, now);
    } finally {
      this.#evict(id);
    }
  }

  async updateSettings(id: string, patch: SettingsPatch, now: string): Promise<void> {
    this.#evict(id);
    try {
      await this.#inner.updateSettings(id, patch, now);
    } finally {
      this.#evict(id);
    }
  }

  async addBandwidthUsage(id: string, egressBytes: number, ingressBytes: number): Promise<void> {
    this.#evict(id);
    try {
      await this.#inner.addBandwidthUsage(id, egressBytes, ingressBytes);
    } finally {
      this.#evict(id);
    }
  }

  listByStatus(statuses: readonly SandboxStatus[]) {
    return this.#inner.listByStatus(statuses);
  }

  liveOnHost(hostId: string) {
    return this.#inner.liveOnHost(hostId);
  }

  countByStatus(userId: string) {
    return this.#inner.countByStatus(userId);
  }

  liveUsage(userId: string) {
    return this.#inner.liveUsage(userId);
  }

  #evict(id: string): void {
    this.#generation++;
    this.#rows.delete(id);
  }
}
