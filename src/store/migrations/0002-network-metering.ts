/**
 * Network metering: the egress bytes a sandbox used (its quota is already
 * on the row), so counters survive a server restart.
 */
import type { Kysely, Migration } from "kysely";

export const networkMeteringMigration: Migration = {
  async up(db: Kysely<any>): Promise<void> {
    await db.schema.alterTable("sandboxes").addColumn("bandwidth_used_bytes", "bigint", (c) => c.notNull().defaultTo(0)).execute();
  },
  async down(db: Kysely<any>): Promise<void> {
    await db.schema.alterTable("sandboxes").dropColumn("bandwidth_used_bytes").execute();
  },
};
