/**
 * Builds one artifact if it is missing or stale: under a lock, into a temp
 * directory, then renamed into place with the manifest written last.
 */
import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat } from "node:fs/promises";
import { basename, dirname, join, relative } from "node:path";
import type { Artifact } from "./artifact.js";
import { acquireLock } from "./build-lock.js";
import {
  manifestIsFresh,
  readManifest,
  recipeHash,
  removeManifest,
  writeManifest,
  type BuildManifest,
} from "./build-manifest.js";
import type { ProgressListener } from "./build-progress.js";
import { runCommand } from "../run-command.js";

/** What {@link ensureArtifact} did. */
export type EnsureResult = "cached" | "built";

/** Whether `artifact` is built for its current recipe. */
export async function artifactIsFresh(artifact: Artifact): Promise<boolean> {
  const hash = recipeHash(await artifact.inputs());
  return manifestIsFresh(artifact.manifestPath, await readManifest(artifact.manifestPath), hash);
}

/** "devbox:1" → "devbox-1": usable in file names. */
export function safeName(id: string): string {
  return id.replace(/[^a-zA-Z0-9_.-]/g, "-");
}

/** Temp directories of one artifact: `<tmpRoot>/<safe id>.<random>`. */
function tmpPrefix(tmpRoot: string, artifact: Artifact): string {
  return join(tmpRoot, `${safeName(artifact.id)}.`);
}

/**
 * Unmounts anything still mounted below `dir` (a debootstrap killed midway
 * leaves /proc and /sys mounted in its target), deepest first, so that the
 * following `rm -rf` can never reach into the host's /proc or /sys.
 */
export async function unmountBelow(dir: string): Promise<void> {
  const mounts = (await readFile("/proc/self/mounts", "utf8"))
    .split("\n")
    .map((l) => (l.split(" ")[1] ?? "").replace(/\\040/g, " "))
    .filter((m) => m === dir || m.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) await runCommand("umount", ["-l", m]);
}

/** Removes a temp build directory safely (unmounting first). */
async function removeTmp(dir: string): Promise<void> {
  await unmountBelow(dir);
  await rm(dir, { recursive: true, force: true });
}

/**
 * Ensures `artifact` is built for its current recipe. Returns "cached" when
 * nothing had to be done. Another process building the same artifact is
 * waited for (and its result reused).
 */
export async function ensureArtifact(
  artifact: Artifact,
  tmpRoot: string,
  onProgress: ProgressListener,
  log: (msg: string) => void,
): Promise<EnsureResult> {
  const inputs = await artifact.inputs();
  const hash = recipeHash(inputs);
  if (await manifestIsFresh(artifact.manifestPath, await readManifest(artifact.manifestPath), hash)) return "cached";

  await mkdir(tmpRoot, { recursive: true });
  // Locks live next to the temp root (both inside the cache dir).
  const lock = await acquireLock(join(dirname(tmpRoot), "locks", `${safeName(artifact.id)}.lock`), () =>
    log(`${artifact.id}: another process is building it, waiting`),
  );
  try {
    // Re-check: whoever held the lock may have just built it.
    if (await manifestIsFresh(artifact.manifestPath, await readManifest(artifact.manifestPath), hash)) return "cached";

    // Leftovers of a build that crashed (we hold the lock: nobody else is using them).
    const prefix = tmpPrefix(tmpRoot, artifact);
    for (const name of await readdir(tmpRoot)) {
      const path = join(tmpRoot, name);
      if (path.startsWith(prefix)) await removeTmp(path);
    }

    const tmpDir = await mkdtemp(prefix);
    let stepName = "";
    let stepIndex = 0;
    const report = (message?: string) =>
      onProgress({ image: artifact.id, step: stepName, done: stepIndex, total: artifact.steps, message });
    try {
      await artifact.build({
        tmpDir,
        step(index, name) {
          stepIndex = index;
          stepName = name;
          log(`${artifact.id}: ${name}`);
          report();
        },
        message: (line) => report(line),
      });
      await install(artifact, tmpDir, inputs, hash);
    } finally {
      await removeTmp(tmpDir);
    }
    stepIndex = artifact.steps;
    stepName = "done";
    report();
    return "built";
  } finally {
    await lock.release();
  }
}

/** Renames the outputs into place, manifest last. */
async function install(artifact: Artifact, tmpDir: string, inputs: Record<string, string>, hash: string): Promise<void> {
  const files: Record<string, number> = {};
  for (const out of artifact.outputs) {
    const built = join(tmpDir, basename(out));
    files[relative(dirname(artifact.manifestPath), out)] = (await stat(built)).size;
  }
  await removeManifest(artifact.manifestPath);
  for (const out of artifact.outputs) {
    await mkdir(dirname(out), { recursive: true });
    // rename(2) replaces atomically: a VM booted from the old file keeps its inode.
    await rename(join(tmpDir, basename(out)), out);
  }
  const manifest: BuildManifest = { artifact: artifact.id, hash, inputs, builtAt: new Date().toISOString(), files };
  await mkdir(dirname(artifact.manifestPath), { recursive: true });
  await writeManifest(artifact.manifestPath, manifest);
}
