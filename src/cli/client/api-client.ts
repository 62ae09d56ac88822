/** The SDK client the CLI uses for everything the SDK models. */
import { CreateosSandboxClient } from "@nodeops-createos/sandbox";
import { CliError } from "./cli-error.js";
import type { ClientConfig } from "./client-config.js";

/**
 * Creates the SDK client; fails with a clear line when no API key is
 * configured, unless `requireKey` is false (the catalog needs no key).
 */
export function apiClient(config: ClientConfig, requireKey = true): CreateosSandboxClient {
  if (requireKey && !config.apiKey) throw new CliError("no API key: set HUTCH_API_KEY or run `hutch login`");
  // Create and other synchronous calls boot VMs: give them room; per-call options override.
  return new CreateosSandboxClient({ ...(config.apiKey ? { apiKey: config.apiKey } : {}), baseUrl: config.url, timeoutMs: 300_000 });
}
