/**
 * Initial schema: users, api_keys, hosts, sandboxes, and the partial unique
 * indexes that make live names (per user) and live IPs (per host) unique.
 */
import { sql, type Kysely, type Migration } from "kysely";

const LIVE = sql<boolean>`status not in ('destroyed', 'failed')`;

export const initialMigration: Migration = {
  async up(db: Kysely<any>): Promise<void> {
    await db.schema
      .createTable("users")
      .addColumn("id", "varchar(64)", (c) => c.primaryKey())
      .addColumn("name", "varchar(128)", (c) => c.notNull().unique())
      .addColumn("created_at", "varchar(40)", (c) => c.notNull())
      .execute();
    await db.schema
      .createTable("api_keys")
      .addColumn("key_hash", "varchar(64)", (c) => c.primaryKey())
      .addColumn("user_id", "varchar(64)", (c) => c.notNull().references("users.id"))
      .addColumn("created_at", "varchar(40)", (c) => c.notNull())
      .execute();
    await db.schema
      .createTable("hosts")
      .addColumn("id", "varchar(128)", (c) => c.primaryKey())
      .addColumn("region", "varchar(64)", (c) => c.notNull())
      .addColumn("status", "varchar(16)", (c) => c.notNull())
      .addColumn("created_at", "varchar(40)", (c) => c.notNull())
      .execute();
    await db.schema
      .createTable("sandboxes")
      .addColumn("id", "varchar(40)", (c) => c.primaryKey())
      .addColumn("user_id", "varchar(64)", (c) => c.notNull().references("users.id"))
      .addColumn("host_id", "varchar(128)", (c) => c.notNull())
      .addColumn("name", "varchar(63)", (c) => c.notNull())
      .addColumn("status", "varchar(16)", (c) => c.notNull())
      .addColumn("shape", "varchar(64)", (c) => c.notNull())
      .addColumn("rootfs", "varchar(128)", (c) => c.notNull())
      .addColumn("vcpu", "integer", (c) => c.notNull())
      .addColumn("mem_mib", "integer", (c) => c.notNull())
      .addColumn("disk_mib", "integer", (c) => c.notNull())
      .addColumn("ip", "varchar(45)", (c) => c.notNull())
      .addColumn("mac", "varchar(17)", (c) => c.notNull())
      .addColumn("region", "varchar(64)", (c) => c.notNull())
      .addColumn("ingress_enabled", "integer", (c) => c.notNull())
      .addColumn("auto_pause_after_seconds", "integer")
      .addColumn("env_keys", "text", (c) => c.notNull())
      .addColumn("envs_sealed", "text")
      .addColumn("ssh_pubkeys", "text", (c) => c.notNull())
      .addColumn("egress", "text", (c) => c.notNull())
      .addColumn("bandwidth_quota_bytes", "bigint", (c) => c.notNull())
      .addColumn("bandwidth_ingress_bytes", "bigint", (c) => c.notNull())
      .addColumn("spawn_ms", "double precision")
      .addColumn("forked_from", "varchar(40)")
      .addColumn("created_at", "varchar(40)", (c) => c.notNull())
      .addColumn("running_at", "varchar(40)")
      .addColumn("paused_at", "varchar(40)")
      .addColumn("last_resumed_at", "varchar(40)")
      .addColumn("destroyed_at", "varchar(40)")
      .addColumn("updated_at", "varchar(40)", (c) => c.notNull())
      .execute();
    await db.schema.createIndex("sandboxes_live_name").on("sandboxes").columns(["user_id", "name"]).unique().where(LIVE).execute();
    await db.schema.createIndex("sandboxes_live_ip").on("sandboxes").columns(["host_id", "ip"]).unique().where(LIVE).execute();
    await db.schema.createIndex("sandboxes_user_id").on("sandboxes").columns(["user_id", "id"]).execute();
    await db.schema.createIndex("sandboxes_user_status").on("sandboxes").columns(["user_id", "status", "id"]).execute();
    await db.schema.createIndex("sandboxes_status").on("sandboxes").column("status").execute();
    await db.schema.createIndex("sandboxes_user_ip").on("sandboxes").columns(["user_id", "ip"]).execute();
    await db.schema.createIndex("api_keys_user").on("api_keys").column("user_id").execute();
  },
  async down(db: Kysely<any>): Promise<void> {
    for (const t of ["api_keys", "sandboxes", "hosts", "users"]) await db.schema.dropTable(t).execute();
  },
};
