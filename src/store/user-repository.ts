/** `UserRepository` over Kysely: users and their hashed API keys. */
import type { Kysely } from "kysely";
import { ulid } from "ulid";
import type { UserRecord, UserRepository } from "../core/repositories.js";
import type { Database } from "./schema.js";
import { asUniqueViolation } from "./unique-violation.js";

export class KyselyUserRepository implements UserRepository {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  async findByKeyHash(keyHash: string): Promise<(UserRecord & { keyHash: string }) | undefined> {
    const row = await this.#db
      .selectFrom("api_keys")
      .innerJoin("users", "users.id", "api_keys.user_id")
      .select(["users.id as id", "users.name as name", "users.created_at as created_at", "api_keys.key_hash as key_hash"])
      .where("api_keys.key_hash", "=", keyHash)
      .executeTakeFirst();
    return row && { id: row.id, name: row.name, createdAt: row.created_at, keyHash: row.key_hash };
  }

  async findByName(name: string): Promise<UserRecord | undefined> {
    const row = await this.#db.selectFrom("users").selectAll().where("name", "=", name).executeTakeFirst();
    return row && { id: row.id, name: row.name, createdAt: row.created_at };
  }

  async ensureUser(name: string): Promise<UserRecord> {
    const existing = await this.findByName(name);
    if (existing) return existing;
    const user = { id: `usr_${ulid()}`, name, created_at: new Date().toISOString() };
    try {
      await this.#db.insertInto("users").values(user).execute();
    } catch (err) {
      // Another process created the same user meanwhile: use theirs.
      if (!asUniqueViolation(err)) throw err;
      const again = await this.findByName(name);
      if (again) return again;
      throw err;
    }
    return { id: user.id, name, createdAt: user.created_at };
  }

  async addKey(userId: string, keyHash: string): Promise<void> {
    try {
      await this.#db.insertInto("api_keys").values({ key_hash: keyHash, user_id: userId, created_at: new Date().toISOString() }).execute();
    } catch (err) {
      if (!asUniqueViolation(err)) throw err;
    }
  }

  async countKeys(): Promise<number> {
    const row = await this.#db
      .selectFrom("api_keys")
      .select((eb) => eb.fn.countAll<number | string>().as("n"))
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }
}
