/**
 * Recipe hashing and the manifest written next to each built artifact.
 * An artifact counts as built only if its manifest exists, carries the hash
 * of the current recipe, and every output file it lists is there with the
 * recorded size. The manifest is written last (after the outputs are renamed
 * into place) and removed first (before any output is replaced), so a crash
 * at any point leaves something that looks stale, never complete.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";

/** The manifest of one built artifact (JSON). */
export interface BuildManifest {
  artifact: string;
  /** {@link recipeHash} of `inputs`. */
  hash: string;
  /** What the artifact was built from (shown by `hutch images`, and for debugging staleness). */
  inputs: Record<string, string>;
  builtAt: string;
  /** Output path (relative to the manifest's folder, so the cache can move) → size in bytes. */
  files: Record<string, number>;
}

/** Hash of a recipe's inputs: stable across key order. */
export function recipeHash(inputs: Record<string, string>): string {
  const sorted = Object.keys(inputs)
    .sort()
    .map((k) => [k, inputs[k]]);
  return createHash("sha256").update(JSON.stringify(sorted)).digest("hex");
}

/** sha256 (hex) of a string or buffer. */
export function sha256(data: string | Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

/** sha256 (hex) of a file's content, streamed. */
export function sha256File(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash("sha256");
    createReadStream(path)
      .on("data", (c) => h.update(c))
      .on("error", reject)
      .on("end", () => resolve(h.digest("hex")));
  });
}

/** Reads a manifest; undefined if missing or unreadable (treated as not built). */
export async function readManifest(path: string): Promise<BuildManifest | undefined> {
  try {
    const m = JSON.parse(await readFile(path, "utf8")) as BuildManifest;
    return typeof m.hash === "string" && typeof m.files === "object" ? m : undefined;
  } catch {
    return undefined;
  }
}

/** Absolute path of a manifest's file entry. */
export function manifestFilePath(manifestPath: string, entry: string): string {
  return resolve(dirname(manifestPath), entry);
}

/**
 * True when the manifest at `manifestPath` was written for `hash` and all its
 * files still exist with their recorded sizes.
 */
export async function manifestIsFresh(manifestPath: string, manifest: BuildManifest | undefined, hash: string): Promise<boolean> {
  if (!manifest || manifest.hash !== hash) return false;
  for (const [entry, size] of Object.entries(manifest.files)) {
    try {
      if ((await stat(manifestFilePath(manifestPath, entry))).size !== size) return false;
    } catch {
      return false;
    }
  }
  return true;
}

/** Writes a manifest atomically (temp file + rename). */
export async function writeManifest(path: string, manifest: BuildManifest): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, `${JSON.stringify(manifest, null, 2)}\n`);
  await rename(tmp, path);
}

/** Removes a manifest (before its outputs are replaced). */
export async function removeManifest(path: string): Promise<void> {
  await rm(path, { force: true });
}
