/** `hutch images build [--only NAME]`: builds images into the cache. */
import { runImagesBuild } from "../../runtime/images/build-command.js";
import { loadConfig } from "../../config.js";
import { AGENT_DIR } from "./package-root.js";

/** Runs the build; resolves with the process exit code. */
export async function imagesBuildCommand(flags: { cacheDir?: string; only?: string }): Promise<number> {
  const config = loadConfig(flags.cacheDir ? { cacheDir: flags.cacheDir } : {});
  return runImagesBuild({ cacheDir: config.cacheDir, agentDir: AGENT_DIR, ...(flags.only ? { only: flags.only } : {}) });
}
