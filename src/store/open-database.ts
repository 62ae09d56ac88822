/**
 * Opens the store: SQLite (better-sqlite3, `<data dir>/hutch.db`) by default,
 * PostgreSQL when a `postgres://` URL is given; then migrates to latest.
 */
import { chmodSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import SqliteDatabase from "better-sqlite3";
import { Kysely, Migrator, PostgresDialect, SqliteDialect, type SqliteDatabase as KyselySqliteDatabase } from "kysely";
import pg from "pg";
import { CodeMigrationProvider } from "./migrations/code-migration-provider.js";
import type { Database } from "./schema.js";

export type DialectName = "sqlite" | "postgres";

export interface OpenDatabaseOptions {
  /** Directory holding `hutch.db` (SQLite). */
  dataDir: string;
  /** `postgres://…` selects PostgreSQL instead of SQLite. */
  databaseUrl?: string | undefined;
}

export interface OpenedDatabase {
  db: Kysely<Database>;
  dialect: DialectName;
}

/**
 * Wraps better-sqlite3 so each distinct SQL text is prepared once: Kysely
 * prepares on every query, which dominates the cost of small reads.
 */
function cachingSqlite(raw: SqliteDatabase.Database): KyselySqliteDatabase {
  const cache = new Map<string, SqliteDatabase.Statement>();
  return {
    close: () => raw.close(),
    prepare: (sqlText: string) => {
      let stmt = cache.get(sqlText);
      if (!stmt) {
        stmt = raw.prepare(sqlText);
        if (cache.size > 500) cache.clear();
        cache.set(sqlText, stmt);
      }
      return stmt as unknown as ReturnType<KyselySqliteDatabase["prepare"]>;
    },
  };
}

/** Opens and migrates the database. Call `db.destroy()` to close it. */
export async function openDatabase(opts: OpenDatabaseOptions): Promise<OpenedDatabase> {
  let db: Kysely<Database>;
  let dialect: DialectName;
  if (opts.databaseUrl && /^postgres(ql)?:\/\//.test(opts.databaseUrl)) {
    dialect = "postgres";
    db = new Kysely<Database>({
      dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: opts.databaseUrl, max: 10 }) }),
    });
  } else {
    dialect = "sqlite";
    mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
    const file = join(opts.dataDir, "hutch.db");
    const raw = new SqliteDatabase(file);
    // Sealed envs and key hashes live here: owner only (WAL files follow).
    chmodSync(file, 0o600);
    raw.pragma("journal_mode = WAL");
    raw.pragma("synchronous = NORMAL");
    // The CLI (keys create) writes while a server runs: wait instead of failing.
    raw.pragma("busy_timeout = 5000");
    raw.pragma("foreign_keys = ON");
    // Reads map the file instead of a pread per page: fewer syscalls per GET.
    raw.pragma("mmap_size = 268435456");
    db = new Kysely<Database>({ dialect: new SqliteDialect({ database: cachingSqlite(raw) }) });
  }
  const migrator = new Migrator({ db, provider: new CodeMigrationProvider() });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    await db.destroy();
    const failed = results?.find((r) => r.status === "Error")?.migrationName;
    throw new Error(`database migration ${failed ?? ""} failed`, { cause: error });
  }
  return { db, dialect };
}
