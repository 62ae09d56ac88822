/** `hutch edit ID [--ingress on|off] [--auto-pause SECONDS|off]`: patches a sandbox. */
import { CliError } from "../client/cli-error.js";
import { keyValues, printJson } from "../client/output.js";
import { resolveSandbox } from "../client/resolve-sandbox.js";
import type { CommandContext } from "../client/run-action.js";

/** `off` turns auto-pause off; a number sets it. */
export function autoPauseValue(value: string): number | null {
  if (value.toLowerCase() === "off") return null;
  if (!/^\d+$/.test(value)) throw new CliError(`--auto-pause expects SECONDS or off, got "${value}"`);
  return Number(value);
}

export async function editCommand(
  ctx: CommandContext,
  ref: string,
  flags: { ingress?: boolean; autoPause?: string; json?: boolean },
): Promise<void> {
  if (flags.ingress === undefined && flags.autoPause === undefined) throw new CliError("nothing to change: give --ingress and/or --auto-pause");
  const autoPause = flags.autoPause === undefined ? undefined : autoPauseValue(flags.autoPause);
  const sb = await resolveSandbox(ctx.client(), ref);
  if (flags.ingress !== undefined) await sb.setIngress(flags.ingress);
  if (autoPause !== undefined) await sb.setAutoPause(autoPause);
  if (flags.json) return printJson(sb.data);
  const d = sb.data;
  process.stdout.write(
    keyValues({ id: d.id, ingress_enabled: d.ingress_enabled, ingress_url_template: d.ingress_url_template, auto_pause_after_seconds: d.auto_pause_after_seconds ?? "off" }),
  );
}
