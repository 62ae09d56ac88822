/** `hutch shapes` and `hutch rootfs`: what can be created. */
import { apiClient } from "../client/api-client.js";
import { printJson, table } from "../client/output.js";
import type { CommandContext } from "../client/run-action.js";

export async function shapesCommand(ctx: CommandContext, flags: { json?: boolean }): Promise<void> {
  const shapes = await apiClient(ctx.config, false).listShapes();
  if (flags.json) return printJson(shapes);
  process.stdout.write(
    table(
      ["SHAPE", "VCPU", "MEMORY", "DISK"],
      shapes.map((s) => [s.id, String(s.vcpu), `${s.mem_mib} MiB`, `${s.default_disk_mib} MiB`]),
    ),
  );
}

export async function rootfsCommand(ctx: CommandContext, flags: { json?: boolean }): Promise<void> {
  const data = await apiClient(ctx.config, false).listRootfs();
  if (flags.json) return printJson(data);
  const entries = data.entries ?? data.rootfs.map((name) => ({ name }));
  process.stdout.write(
    table(
      ["ROOTFS", "DEFAULT", "DESCRIPTION"],
      entries.map((e) => {
        const notes = [
          "description" in e && e.description ? e.description : "",
          "deprecated" in e && e.deprecated ? `deprecated${"successor" in e && e.successor ? `, use ${e.successor}` : ""}` : "",
        ].filter(Boolean);
        return [e.name, e.name === data.default ? "*" : "", notes.join("; ")];
      }),
    ),
  );
}
