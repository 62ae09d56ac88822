/** `hutch ls` and `hutch get`: read commands, a table or JSON. */
import type { ListSandboxesOptions } from "@nodeops-createos/sandbox";
import { CliError } from "../client/cli-error.js";
import { keyValues, printJson, table } from "../client/output.js";
import { resolveSandbox } from "../client/resolve-sandbox.js";
import type { CommandContext } from "../client/run-action.js";

const LISTABLE = ["running", "creating", "destroyed", "failed"] as const;

export async function listCommand(ctx: CommandContext, flags: { status?: string; json?: boolean }): Promise<void> {
  const opts: ListSandboxesOptions = {};
  if (flags.status !== undefined) {
    if (!(LISTABLE as readonly string[]).includes(flags.status)) throw new CliError(`--status must be one of ${LISTABLE.join(", ")}`);
    opts.status = flags.status as (typeof LISTABLE)[number];
  }
  const rows = await ctx.client().listSandboxes(opts);
  if (flags.json) return printJson(rows.map((s) => s.data));
  process.stdout.write(
    table(
      ["ID", "NAME", "STATUS", "SHAPE", "ROOTFS", "IP", "CREATED"],
      rows.map((s) => [s.id, s.name ?? "", s.status, s.data.shape ?? "", s.data.rootfs ?? "", s.ip ?? "", s.data.created_at ?? ""]),
    ),
  );
}

export async function getCommand(ctx: CommandContext, ref: string, flags: { json?: boolean }): Promise<void> {
  const sb = await resolveSandbox(ctx.client(), ref);
  if (flags.json) return printJson(sb.data);
  process.stdout.write(keyValues(sb.data as unknown as Record<string, unknown>));
}
