/**
 * The `hutch-jailer` binary (jailer/jailer.c): built from the repo's
 * jailer/ directory with `make` when a jailed server starts, as the image
 * store builds the agent (a no-op once built; gcc comes with scripts/setup.sh).
 */
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { runCommand } from "../run-command.js";
import type { RuntimeLogger } from "./runtime-logger.js";

/** The repo's jailer/ (this file is src/runtime/qemu/ or dist/runtime/qemu/). */
export const JAILER_DIR = path.resolve(fileURLToPath(import.meta.url), "../../../../jailer");

/**
 * Builds (if needed) and returns the jailer's path; undefined, with a
 * warning, when it cannot be built: the jail then uses its shell chain.
 */
export async function buildJailer(log: RuntimeLogger, dir = JAILER_DIR): Promise<string | undefined> {
  // Everything in jailer/: the RAM shim (roRamShim) is found beside the jailer.
  return buildJailerTool("hutch-jailer", [], "hutch-jailer not built: VMM jails use the slower shell chain", log, dir);
}

/**
 * Runs make in `dir` (for `targets`, or all of it) and returns the path of
 * `build/<name>`; undefined, with `warning` logged, when it cannot be built.
 */
export async function buildJailerTool(name: string, targets: string[], warning: string, log: RuntimeLogger, dir = JAILER_DIR): Promise<string | undefined> {
  const bin = path.join(dir, "build", name);
  try {
    await runCommand("make", ["-s", "-C", dir, ...targets], { timeoutMs: 120_000 });
    if (existsSync(bin)) return bin;
    throw new Error(`${bin} missing after make`);
  } catch (err) {
    log.warn({ err: (err as Error).message }, warning);
    return undefined;
  }
}

/**
 * The read-only RAM shim built beside `jailer` (jailer/ro-ram.c), if it is
 * there: preloaded into a jailed QEMU so the copy-on-write RAM file it maps
 * (a template's `mem`, a fork's `mem.base`) is opened O_RDONLY and can stay
 * unwritable by every VMM uid.
 */
export function roRamShim(jailer: string): string | undefined {
  const so = path.join(path.dirname(jailer), "libhutch-ro-ram.so");
  return existsSync(so) ? so : undefined;
}
