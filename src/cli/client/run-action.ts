/**
 * Wraps a client command: loads the config and the SDK client, prints any
 * failure as one `hutch: <message>` line on stderr and exits with the
 * command's code (or 1 on error).
 */
import type { CreateosSandboxClient } from "@nodeops-createos/sandbox";
import { apiClient } from "./api-client.js";
import { errorLine, exitCodeOf } from "./cli-error.js";
import { loadClientConfig, type ClientConfig } from "./client-config.js";

/** What every client command receives. */
export interface CommandContext {
  config: ClientConfig;
  /** The SDK client (created on first use, so `login` works without a key). */
  client(): CreateosSandboxClient;
}

/** Builds the context from the environment and the config file. */
export async function commandContext(): Promise<CommandContext> {
  const config = await loadClientConfig();
  let client: CreateosSandboxClient | undefined;
  return { config, client: () => (client ??= apiClient(config)) };
}

/**
 * Runs `body` and exits the process: with the number it returns (default 0)
 * or, on error, after one line on stderr, with the error's code. Exiting
 * explicitly keeps pooled keep-alive sockets from holding the CLI open.
 */
export async function runAction(body: (ctx: CommandContext) => Promise<number | void>): Promise<never> {
  let code: number;
  let url: string | undefined;
  try {
    const ctx = await commandContext();
    url = ctx.config.url;
    code = (await body(ctx)) ?? 0;
  } catch (err) {
    process.stderr.write(`hutch: ${errorLine(err, url)}\n`);
    if (process.env.HUTCH_DEBUG && err instanceof Error) process.stderr.write(`${err.stack}\n`);
    code = exitCodeOf(err);
  }
  return exit(code);
}

/** Exits once stdout and stderr have flushed what was written. */
async function exit(code: number): Promise<never> {
  await Promise.all([flush(process.stdout), flush(process.stderr)]);
  process.exit(code);
}

function flush(stream: NodeJS.WriteStream): Promise<void> {
  return new Promise((resolve) => {
    if (!stream.writable) return resolve();
    stream.write("", () => resolve());
  });
}
