/** All repositories over one Kysely instance: what core receives as `Repositories`. */
import { sql, type Kysely } from "kysely";
import type { Repositories } from "../core/repositories.js";
import { KyselyHostRepository } from "./host-repository.js";
import { KyselySandboxRepository } from "./sandbox-repository.js";
import type { Database } from "./schema.js";
import { KyselyUserRepository } from "./user-repository.js";

/** Builds the repositories core uses from an opened database. */
export function kyselyRepositories(db: Kysely<Database>): Repositories {
  return {
    sandboxes: new KyselySandboxRepository(db),
    users: new KyselyUserRepository(db),
    hosts: new KyselyHostRepository(db),
    ping: async () => {
      await sql`select 1`.execute(db);
    },
  };
}
