/**
 * `hutch create`: creates a sandbox (synchronous: the VM runs when it
 * returns). Prints the id on stdout (or the full response with --json) and a
 * summary line on stderr.
 */
import type { CreateSandboxRequest } from "@nodeops-createos/sandbox";
import { printJson } from "../client/output.js";
import type { CommandContext } from "../client/run-action.js";
import { withSpinner } from "../client/spinner.js";

/** Flags of `hutch create`. */
export interface CreateFlags {
  shape: string;
  rootfs?: string;
  name?: string;
  diskMib?: number;
  sshKey?: string[];
  env?: Record<string, string>;
  ingress?: boolean;
  egress?: string[];
  autoPause?: number;
  hostId?: string;
  region?: string;
  network?: string[];
  json?: boolean;
}

/** Maps the flags onto the API's create request (omitting what was not given). */
export function createRequest(f: CreateFlags): CreateSandboxRequest {
  const req: CreateSandboxRequest = { shape: f.shape };
  if (f.rootfs !== undefined) req.rootfs = f.rootfs;
  if (f.name !== undefined) req.name = f.name;
  if (f.diskMib !== undefined) req.disk_mib = f.diskMib;
  if (f.sshKey?.length) req.ssh_pubkeys = f.sshKey;
  if (f.env && Object.keys(f.env).length) req.envs = f.env;
  if (f.ingress !== undefined) req.ingress_enabled = f.ingress;
  if (f.egress?.length) req.egress = f.egress;
  if (f.autoPause !== undefined) req.auto_pause_after_seconds = f.autoPause;
  if (f.hostId !== undefined) req.host_id = f.hostId;
  if (f.region !== undefined) req.region = f.region;
  if (f.network?.length) req.networks = f.network.map((id) => ({ id }));
  return req;
}

export async function createCommand(ctx: CommandContext, flags: CreateFlags): Promise<void> {
  const request = createRequest(flags);
  const sb = await withSpinner(
    `creating a ${request.shape} sandbox${request.rootfs ? ` (${request.rootfs})` : ""}`,
    () => ctx.client().createSandbox(request),
    { json: flags.json, done: (s) => `created ${s.id}` },
  );
  if (flags.json) return printJson(sb.data);
  const d = sb.data;
  process.stderr.write(`${d.name ?? ""} ${d.ip ?? ""} ${d.rootfs ?? ""}${d.spawn_ms !== undefined ? ` spawned in ${d.spawn_ms} ms` : ""}\n`.trimStart());
  process.stdout.write(`${sb.id}\n`);
}
