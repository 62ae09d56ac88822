/**
 * `hutch keys create --user NAME`: adds a key to the same store a running
 * server uses; the server accepts it at once (misses are never cached).
 */
import { AuthService } from "../../core/auth-service.js";
import { loadConfig } from "../../config.js";
import { kyselyRepositories } from "../../store/kysely-repositories.js";
import { openDatabase } from "../../store/open-database.js";

/** Creates the key, prints it as the last line of stdout and returns it. */
export async function createKeyCommand(
  flags: { user: string; dataDir?: string },
  env: NodeJS.ProcessEnv = process.env,
  print: (line: string) => void = (l) => process.stdout.write(`${l}\n`),
): Promise<string> {
  const name = flags.user.trim();
  if (!/^[A-Za-z0-9_.@-]{1,128}$/.test(name)) throw new Error("--user must be 1-128 of [A-Za-z0-9_.@-]");
  const config = loadConfig(flags.dataDir ? { dataDir: flags.dataDir } : {}, env);
  const { db } = await openDatabase({ dataDir: config.dataDir, databaseUrl: config.databaseUrl });
  try {
    const auth = new AuthService(kyselyRepositories(db).users);
    const { key, user } = await auth.createKey(name);
    print(`created a key for user ${user.name} (${user.id}); it is shown only once:`);
    print(key);
    return key;
  } finally {
    await db.destroy();
  }
}
