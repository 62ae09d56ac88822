/** AuthService caching rules and the sandbox row cache's write invalidation. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { AuthService, hashApiKey } from "../../../src/core/auth-service.js";
import { CachedSandboxRepository } from "../../../src/core/cached-sandbox-repository.js";
import type { SandboxRepository, UserRecord, UserRepository } from "../../../src/core/repositories.js";
import type { SandboxRecord } from "../../../src/core/sandbox-record.js";

class MemoryUsers implements UserRepository {
  keys = new Map<string, UserRecord>();
  lookups = 0;
  async findByKeyHash(h: string) {
    this.lookups++;
    const u = this.keys.get(h);
    return u && { ...u, keyHash: h };
  }
  async findByName(name: string) {
    return [...this.keys.values()].find((u) => u.name === name);
  }
  async ensureUser(name: string) {
    return (await this.findByName(name)) ?? { id: `usr_${name}`, name, createdAt: "t" };
  }
  async addKey(userId: string, h: string) {
    this.keys.set(h, { id: userId, name: userId.slice(4), createdAt: "t" });
  }
  async countKeys() {
    return this.keys.size;
  }
}

describe("AuthService", () => {
  test("hits are cached, misses are not (a new key works at once)", async () => {
    const users = new MemoryUsers();
    const auth = new AuthService(users, { cacheTtlMs: 60_000 });
    assert.equal(await auth.authenticate("hk_new"), undefined);
    await users.addKey("usr_x", hashApiKey("hk_new"));
    assert.equal((await auth.authenticate("hk_new"))?.id, "usr_x");
    const before = users.lookups;
    await auth.authenticate("hk_new");
    assert.equal(users.lookups, before, "second hit served from cache");
    assert.equal(await auth.authenticate(undefined), undefined);
    assert.equal(await auth.authenticate(""), undefined);
  });

  test("bootstrap: env key registered; otherwise generated only when no key exists", async () => {
    const users = new MemoryUsers();
    const auth = new AuthService(users);
    assert.deepEqual(await auth.ensureBootstrapKey("hk_env"), { key: "hk_env", generated: false });
    assert.ok(users.keys.has(hashApiKey("hk_env")));
    assert.equal(await auth.ensureBootstrapKey(), undefined);
    const fresh = new AuthService(new MemoryUsers());
    const made = await fresh.ensureBootstrapKey();
    assert.ok(made?.generated);
    assert.match(made!.key, /^hk_[A-Za-z0-9_-]{43}$/);
  });
});

describe("CachedSandboxRepository", () => {
  function rec(status: SandboxRecord["status"]): SandboxRecord {
    return { id: "sb_1", userId: "u", status } as SandboxRecord;
  }

  test("serves repeat reads from memory and drops the row on every write", async () => {
    let row = rec("running");
    let reads = 0;
    const inner = {
      get: async () => {
        reads++;
        return row;
      },
      updateStatus: async () => {
        row = rec("destroying");
        return true;
      },
      updateSettings: async () => undefined,
    } as unknown as SandboxRepository;
    const cache = new CachedSandboxRepository(inner);
    await cache.get("sb_1");
    await cache.getOwned("u", "sb_1");
    assert.equal(reads, 1);
    assert.equal(await cache.getOwned("other", "sb_1"), undefined, "ownership still enforced");
    await cache.updateStatus("sb_1", "running", "destroying", {}, "t");
    assert.equal((await cache.get("sb_1"))?.status, "destroying");
  });

  test("a read racing a write does not cache the stale row", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let row = rec("running");
    const inner = {
      get: async () => {
        const seen = row;
        await gate;
        return seen;
      },
      updateStatus: async () => {
        row = rec("failed");
        return true;
      },
    } as unknown as SandboxRepository;
    const cache = new CachedSandboxRepository(inner);
    const slow = cache.get("sb_1");
    await cache.updateStatus("sb_1", "running", "failed", {}, "t");
    release();
    assert.equal((await slow)?.status, "running");
    const fresh = await cache.get("sb_1");
    assert.equal(fresh?.status, "failed");
  });
});
