/**
 * The Kysely repositories on every configured dialect: SQLite always,
 * PostgreSQL too when HUTCH_TEST_DATABASE_URL points at a scratch database.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { sql, type Kysely } from "kysely";
import { UniqueViolationError, type Repositories } from "../../../src/core/repositories.js";
import type { SandboxRecord } from "../../../src/core/sandbox-record.js";
import { kyselyRepositories } from "../../../src/store/kysely-repositories.js";
import { openDatabase } from "../../../src/store/open-database.js";
import type { Database } from "../../../src/store/schema.js";

let seq = 0;
function record(over: Partial<SandboxRecord> = {}): SandboxRecord {
  seq++;
  const now = new Date(Date.UTC(2026, 0, 1, 0, 0, seq)).toISOString();
  return {
    id: `sb_01J0000000000000000000${String(seq).padStart(4, "0")}`,
    userId: "usr_a",
    hostId: "local",
    name: `box-${seq}`,
    status: "running",
    shape: "s-1vcpu-256mb",
    rootfs: "devbox:1",
    vcpu: 1,
    memMib: 256,
    diskMib: 10240,
    ip: `192.168.0.${seq + 1}`,
    mac: "02:fc:c0:a8:00:02",
    region: "local",
    ingressEnabled: false,
    autoPauseAfterSeconds: null,
    envKeys: [],
    envsSealed: null,
    sshPubkeys: [],
    egress: [],
    bandwidthQuotaBytes: 5368709120,
    bandwidthIngressBytes: 0,
    bandwidthUsedBytes: 0,
    spawnMs: 1.5,
    forkedFrom: null,
    createdAt: now,
    runningAt: now,
    pausedAt: null,
    lastResumedAt: null,
    destroyedAt: null,
    updatedAt: now,
    ...over,
  };
}

const dialects: Array<{ name: string; url?: string }> = [{ name: "sqlite" }];
if (process.env.HUTCH_TEST_DATABASE_URL) dialects.push({ name: "postgres", url: process.env.HUTCH_TEST_DATABASE_URL });

for (const d of dialects) {
  describe(`repositories on ${d.name}`, () => {
    let dir: string;
    let db: Kysely<Database>;
    let repos: Repositories;
    before(async () => {
      dir = await mkdtemp(join(tmpdir(), "hutch-store-"));
      if (d.url) {
        const { db: tmp } = await openDatabase({ dataDir: dir, databaseUrl: d.url });
        for (const t of ["api_keys", "sandboxes", "hosts", "users", "kysely_migration", "kysely_migration_lock"]) await sql`drop table if exists ${sql.table(t)} cascade`.execute(tmp);
        await tmp.destroy();
      }
      db = (await openDatabase({ dataDir: dir, databaseUrl: d.url })).db;
      repos = kyselyRepositories(db);
      await db.insertInto("users").values([
        { id: "usr_a", name: "a", created_at: "2026-01-01T00:00:00Z" },
        { id: "usr_b", name: "b", created_at: "2026-01-01T00:00:00Z" },
      ]).execute();
    });
    after(async () => {
      await db.destroy();
      await rm(dir, { recursive: true, force: true });
    });

    test("round trip keeps every field and type", async () => {
      const r = record({ envKeys: ["A"], envsSealed: "v1.x.y.z", sshPubkeys: ["k"], egress: ["*"], autoPauseAfterSeconds: 600, ingressEnabled: true });
      await repos.sandboxes.insert(r);
      assert.deepEqual(await repos.sandboxes.get(r.id), r);
      assert.deepEqual(await repos.sandboxes.getOwned("usr_a", r.id), r);
      assert.equal(await repos.sandboxes.getOwned("usr_b", r.id), undefined);
    });

    test("live names are unique per user; terminal rows free them", async () => {
      const a = record({ name: "same" });
      await repos.sandboxes.insert(a);
      await assert.rejects(repos.sandboxes.insert(record({ name: "same" })), (e: unknown) => e instanceof UniqueViolationError && e.target === "name");
      await repos.sandboxes.insert(record({ name: "same", userId: "usr_b" }));
      assert.equal(await repos.sandboxes.updateStatus(a.id, "running", "failed", {}, new Date().toISOString()), true);
      await repos.sandboxes.insert(record({ name: "same" }));
    });

    test("live IPs are unique per host; terminal rows keep theirs", async () => {
      const a = record({ ip: "192.168.9.9" });
      await repos.sandboxes.insert(a);
      await assert.rejects(repos.sandboxes.insert(record({ ip: "192.168.9.9" })), (e: unknown) => e instanceof UniqueViolationError && e.target === "ip");
      await repos.sandboxes.updateStatus(a.id, "running", "destroyed", { destroyedAt: "2026-01-02T00:00:00.000Z" }, "2026-01-02T00:00:00.000Z");
      await repos.sandboxes.insert(record({ ip: "192.168.9.9" }));
      assert.equal((await repos.sandboxes.get(a.id))!.ip, "192.168.9.9");
      assert.equal((await repos.sandboxes.findByIp("usr_a", "192.168.9.9")).length, 2);
    });

    test("updateStatus only moves rows still in the expected status", async () => {
      const a = record();
      await repos.sandboxes.insert(a);
      assert.equal(await repos.sandboxes.updateStatus(a.id, "creating", "running", {}, "t"), false);
      assert.equal(await repos.sandboxes.updateStatus(a.id, "running", "destroying", {}, "t"), true);
      assert.equal((await repos.sandboxes.get(a.id))!.status, "destroying");
    });

    test("list is newest first with total; filters by status and user", async () => {
      const page = await repos.sandboxes.list({ userId: "usr_a", limit: 3, offset: 0 });
      assert.equal(page.items.length, 3);
      assert.ok(page.total >= 6);
      assert.ok(page.items[0]!.id > page.items[1]!.id);
      const failed = await repos.sandboxes.list({ userId: "usr_a", status: "failed", limit: 50, offset: 0 });
      assert.ok(failed.items.every((x) => x.status === "failed"));
      assert.equal((await repos.sandboxes.list({ userId: "usr_b", limit: 50, offset: 0 })).total, 1);
      const counts = await repos.sandboxes.countByStatus("usr_a");
      assert.equal(counts.failed, 1);
    });

    test("liveOnHost counts non-terminal rows only", async () => {
      const live = await repos.sandboxes.liveOnHost("local");
      const all = await db.selectFrom("sandboxes").select(["status"]).execute();
      assert.equal(live.length, all.filter((r) => r.status !== "destroyed" && r.status !== "failed").length);
    });

    test("liveUsage sums one user's non-terminal rows (per-user limits)", async () => {
      await db.insertInto("users").values({ id: "usr_lim", name: "lim", created_at: "2026-01-01T00:00:00Z" }).execute();
      assert.deepEqual(await repos.sandboxes.liveUsage("usr_lim"), { sandboxes: 0, memMib: 0 });
      const rows: Array<[SandboxRecord["status"], number]> = [["creating", 256], ["running", 512], ["paused", 1024], ["forking", 256], ["destroyed", 2048], ["failed", 4096]];
      for (const [status, memMib] of rows) await repos.sandboxes.insert(record({ userId: "usr_lim", status, memMib }));
      assert.deepEqual(await repos.sandboxes.liveUsage("usr_lim"), { sandboxes: 4, memMib: 2048 });
    });

    test("users and keys", async () => {
      const u = await repos.users.ensureUser("carol");
      assert.deepEqual(await repos.users.ensureUser("carol"), u);
      await repos.users.addKey(u.id, "f".repeat(64));
      await repos.users.addKey(u.id, "f".repeat(64)); // idempotent
      assert.equal((await repos.users.findByKeyHash("f".repeat(64)))!.id, u.id);
      assert.equal(await repos.users.findByKeyHash("0".repeat(64)), undefined);
    });

    test("hosts upsert", async () => {
      await repos.hosts.upsert({ id: "h1", region: "local", status: "active", createdAt: "t" });
      await repos.hosts.upsert({ id: "h1", region: "eu", status: "draining", createdAt: "t2" });
      assert.deepEqual(await repos.hosts.get("h1"), { id: "h1", region: "eu", status: "draining", createdAt: "t" });
      await repos.ping();
    });

    test("migrations are idempotent on reopen", async () => {
      const again = await openDatabase({ dataDir: dir, databaseUrl: d.url });
      await again.db.destroy();
    });
  });
}
