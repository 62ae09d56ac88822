/** `hutch pause`, `hutch resume`, `hutch fork`: snapshot lifecycle (issue 4's endpoints). */
import type { ForkSandboxRequest } from "@nodeops-createos/sandbox";
import { printJson } from "../client/output.js";
import { resolveSandbox } from "../client/resolve-sandbox.js";
import type { CommandContext } from "../client/run-action.js";
import { withSpinner } from "../client/spinner.js";

const WAIT_MS = 600_000;

/** Pauses and, unless --no-wait, waits until `paused`. Prints the id. */
export async function pauseCommand(ctx: CommandContext, ref: string, flags: { wait: boolean; json?: boolean }): Promise<void> {
  const sb = await resolveSandbox(ctx.client(), ref);
  await withSpinner(
    `pausing ${sb.id}`,
    async () => {
      await sb.pause();
      if (flags.wait) await sb.waitUntilPaused({ timeoutMs: WAIT_MS });
    },
    { json: flags.json, done: () => `paused ${sb.id}` },
  );
  if (flags.json) return printJson((await sb.refresh()).data);
  process.stdout.write(`${sb.id}\n`);
}

/** Resumes and, unless --no-wait, waits until `running`. Prints the id. */
export async function resumeCommand(ctx: CommandContext, ref: string, flags: { wait: boolean; json?: boolean }): Promise<void> {
  const sb = await resolveSandbox(ctx.client(), ref);
  await withSpinner(
    `resuming ${sb.id}`,
    async () => {
      await sb.resume();
      if (flags.wait) await sb.waitUntilRunning({ timeoutMs: WAIT_MS });
    },
    { json: flags.json, done: () => `resumed ${sb.id}` },
  );
  if (flags.json) return printJson((await sb.refresh()).data);
  process.stdout.write(`${sb.id}\n`);
}

/** Flags of `hutch fork` (each overrides what the child would inherit). */
export interface ForkFlags {
  startPaused?: boolean;
  sshKey?: string[];
  egress?: string[];
  ingress?: boolean;
  env?: Record<string, string>;
  bandwidthQuota?: number;
  json?: boolean;
}

/** Maps the flags onto the fork request. */
export function forkRequest(f: ForkFlags): ForkSandboxRequest {
  const req: ForkSandboxRequest = {};
  if (f.startPaused) req.start_paused = true;
  if (f.sshKey?.length) req.ssh_pubkeys = f.sshKey;
  if (f.egress?.length) req.egress = f.egress;
  if (f.ingress !== undefined) req.ingress_enabled = f.ingress;
  if (f.env && Object.keys(f.env).length) req.envs = f.env;
  if (f.bandwidthQuota !== undefined) req.bandwidth_quota_bytes = f.bandwidthQuota;
  return req;
}

/** Forks a paused sandbox; prints the child's id (or its view with --json). */
export async function forkCommand(ctx: CommandContext, ref: string, flags: ForkFlags): Promise<void> {
  const sb = await resolveSandbox(ctx.client(), ref);
  const child = await withSpinner(`forking ${sb.id}`, () => sb.fork(forkRequest(flags), { timeoutMs: WAIT_MS }), {
    json: flags.json,
    done: (c) => `forked ${sb.id} into ${c.id}`,
  });
  if (flags.json) return printJson(child.data);
  process.stdout.write(`${child.id}\n`);
}
