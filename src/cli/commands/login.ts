/**
 * `hutch login [--url U] [--api-key K]`: checks the key against the server
 * (`GET /v1/whoami`) and saves both to the config file (mode 0600). Without
 * --api-key the key is read from stdin (a prompt without echo on a terminal).
 */
import { createInterface } from "node:readline";
import { apiClient } from "../client/api-client.js";
import { CliError } from "../client/cli-error.js";
import { configPath, writeConfigFile } from "../client/client-config.js";
import type { CommandContext } from "../client/run-action.js";

/** Reads one line; on a terminal the typed characters are not echoed. */
async function readKey(): Promise<string> {
  const tty = process.stdin.isTTY === true;
  if (tty) process.stderr.write("API key: ");
  // A terminal readline without an output stream puts stdin in raw mode and echoes nothing.
  const rl = createInterface({ input: process.stdin, terminal: tty });
  rl.on("SIGINT", () => {
    rl.close();
    process.stderr.write("\n");
    process.exit(130);
  });
  try {
    return await new Promise<string>((resolve) => {
      rl.once("line", (line) => resolve(line.trim()));
      rl.once("close", () => resolve(""));
    });
  } finally {
    rl.close();
    if (tty) process.stderr.write("\n");
  }
}

export async function loginCommand(ctx: CommandContext, flags: { url?: string; apiKey?: string; verify: boolean }): Promise<void> {
  const url = (flags.url ?? ctx.config.url).replace(/\/+$/, "");
  try {
    new URL(url);
  } catch {
    throw new CliError(`--url is not a URL: "${url}"`);
  }
  const apiKey = flags.apiKey ?? (await readKey());
  if (!apiKey) throw new CliError("no API key given");
  let who = "";
  if (flags.verify) {
    const me = await apiClient({ url, apiKey }).whoami({ retry: false, timeoutMs: 15_000 });
    who = ` as ${me.user_id}`;
  }
  const path = configPath();
  await writeConfigFile({ url, apiKey }, path);
  process.stderr.write(`logged in to ${url}${who}; saved to ${path}\n`);
}
