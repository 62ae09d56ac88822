/**
 * The runtime's command runner with the network's default: host tools here
 * (ip, nft, sysctl, qemu-img) answer in milliseconds, so one that has not
 * finished in 15 s is stuck and is killed rather than awaited forever.
 */
import { runCommand as run, type RunCommandOptions, type RunCommandResult } from "../run-command.js";

export function runCommand(cmd: string, args: string[], opts: RunCommandOptions = {}): Promise<RunCommandResult> {
  return run(cmd, args, { timeoutMs: 15_000, ...opts });
}
