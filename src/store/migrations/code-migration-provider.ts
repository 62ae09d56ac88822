/**
 * Migrations in code, applied in name order by Kysely's Migrator. Append new
 * ones; never edit one that has shipped.
 */
import type { Migration, MigrationProvider } from "kysely";
import { initialMigration } from "./0001-initial.js";
import { networkMeteringMigration } from "./0002-network-metering.js";

const MIGRATIONS: Record<string, Migration> = {
  "0001-initial": initialMigration,
  "0002-network-metering": networkMeteringMigration,
};

/** Provides {@link MIGRATIONS} to the Migrator without touching the filesystem. */
export class CodeMigrationProvider implements MigrationProvider {
  async getMigrations(): Promise<Record<string, Migration>> {
    return MIGRATIONS;
  }
}
