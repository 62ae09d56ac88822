/** Turns an id or a name typed by the user into a sandbox handle. */
import type { CreateosSandboxClient, Sandbox } from "@nodeops-createos/sandbox";
import { CliError } from "./cli-error.js";

const ID_RE = /^sb_[0-9A-Za-z]{26}$/;
const GONE = new Set(["destroyed", "failed"]);

/**
 * Resolves `ref` (an `sb_…` id, or a sandbox name) to a fresh handle.
 * A name prefers live sandboxes; among only dead ones the newest wins.
 */
export async function resolveSandbox(client: CreateosSandboxClient, ref: string): Promise<Sandbox> {
  if (ID_RE.test(ref)) return client.getSandbox(ref);
  const named = (await client.listSandboxes()).filter((s) => s.name === ref);
  if (named.length === 0) throw new CliError(`no sandbox with id or name "${ref}"`);
  const live = named.filter((s) => !GONE.has(s.status));
  if (live.length > 1) throw new CliError(`name "${ref}" is ambiguous: ${live.map((s) => s.id).join(", ")}`);
  const pick = live[0] ?? named.sort((a, b) => b.data.created_at.localeCompare(a.data.created_at))[0]!;
  // List items are a summary: fetch the full view.
  return client.getSandbox(pick.id);
}
