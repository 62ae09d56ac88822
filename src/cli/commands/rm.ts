/** `hutch rm ID...`: destroys sandboxes (`--wait`: until reclaimed). */
import { errorLine } from "../client/cli-error.js";
import { resolveSandbox } from "../client/resolve-sandbox.js";
import type { CommandContext } from "../client/run-action.js";
import { withSpinner } from "../client/spinner.js";

/** Destroys each sandbox; one failing does not stop the others; exit 1 if any failed. */
export async function rmCommand(ctx: CommandContext, refs: string[], flags: { wait?: boolean }): Promise<number> {
  let failed = 0;
  for (const ref of refs) {
    try {
      const sb = await resolveSandbox(ctx.client(), ref);
      const res = await sb.destroy();
      if (flags.wait && res.status !== "destroyed") {
        await withSpinner(`destroying ${sb.id}`, () => sb.waitUntilDestroyed({ timeoutMs: 300_000 }), { done: () => `destroyed ${sb.id}` });
      }
      process.stdout.write(`${sb.id}\n`);
    } catch (err) {
      failed++;
      process.stderr.write(`hutch: ${ref}: ${errorLine(err)}\n`);
    }
  }
  return failed ? 1 : 0;
}
