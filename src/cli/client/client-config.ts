/**
 * Where the CLI finds its server and key: `HUTCH_URL` / `HUTCH_API_KEY`,
 * else the file `hutch login` writes (~/.config/hutch/config.json, mode
 * 0600). The environment wins over the file, field by field.
 */
import { chmod, mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, join } from "node:path";

/** The server the CLI talks to when nothing says otherwise. */
export const DEFAULT_URL = "http://127.0.0.1:8080";

/** What a client command needs to reach the API. */
export interface ClientConfig {
  url: string;
  apiKey: string | undefined;
}

/** The path of the config file: `$XDG_CONFIG_HOME/hutch/config.json` or `~/.config/hutch/config.json`. */
export function configPath(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CONFIG_HOME || join(env.HOME || homedir(), ".config");
  return join(base, "hutch", "config.json");
}

/** Reads the config file; an absent file is an empty config, a corrupt one an error. */
export async function readConfigFile(path = configPath()): Promise<Partial<ClientConfig>> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return {};
    throw err;
  }
  try {
    const raw = JSON.parse(text) as Record<string, unknown>;
    const out: Partial<ClientConfig> = {};
    if (typeof raw.url === "string") out.url = raw.url;
    if (typeof raw.api_key === "string") out.apiKey = raw.api_key;
    return out;
  } catch {
    throw new Error(`${path} is not valid JSON (run hutch login again)`);
  }
}

/** Resolves the effective config: environment first, then the file, then the default URL. */
export async function loadClientConfig(env: NodeJS.ProcessEnv = process.env): Promise<ClientConfig> {
  const file = await readConfigFile(configPath(env));
  const url = (env.HUTCH_URL || file.url || DEFAULT_URL).replace(/\/+$/, "");
  return { url, apiKey: env.HUTCH_API_KEY || file.apiKey };
}

/**
 * Writes the config file atomically with mode 0600 (its directory 0700):
 * it holds a credential.
 */
export async function writeConfigFile(config: ClientConfig, path = configPath()): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.tmp`;
  const body = { url: config.url, ...(config.apiKey ? { api_key: config.apiKey } : {}) };
  await writeFile(tmp, `${JSON.stringify(body, null, 2)}\n`, { mode: 0o600 });
  // writeFile's mode is filtered by the umask; make it exact before it becomes visible.
  await chmod(tmp, 0o600);
  await rename(tmp, path);
}
