/** `HostRepository` over Kysely. */
import type { Kysely } from "kysely";
import type { HostRecord, HostRepository } from "../core/repositories.js";
import type { Database } from "./schema.js";

function toHost(r: { id: string; region: string; status: string; created_at: string }): HostRecord {
  return { id: r.id, region: r.region, status: r.status as HostRecord["status"], createdAt: r.created_at };
}

export class KyselyHostRepository implements HostRepository {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  async upsert(host: HostRecord): Promise<void> {
    await this.#db
      .insertInto("hosts")
      .values({ id: host.id, region: host.region, status: host.status, created_at: host.createdAt })
      .onConflict((oc) => oc.column("id").doUpdateSet({ region: host.region, status: host.status }))
      .execute();
  }

  async get(id: string): Promise<HostRecord | undefined> {
    const row = await this.#db.selectFrom("hosts").selectAll().where("id", "=", id).executeTakeFirst();
    return row && toHost(row);
  }

  async list(): Promise<HostRecord[]> {
    return (await this.#db.selectFrom("hosts").selectAll().orderBy("id").execute()).map(toHost);
  }
}
