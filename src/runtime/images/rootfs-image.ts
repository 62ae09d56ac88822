/**
 * What every rootfs recipe shares: a catalog name and description, and the
 * output path of its read-only ext4 image.
 */
import { join } from "node:path";
import type { Artifact } from "./artifact.js";
import { safeName } from "./artifact-builder.js";

/** A rootfs image recipe. */
export interface RootfsImage extends Artifact {
  /** One line for the catalog. */
  readonly description: string;
  /** The image file (ext4, label hutch-base). */
  readonly path: string;
}

/** Output and manifest paths of the image called `name` under `rootfsDir`. */
export function rootfsPaths(rootfsDir: string, name: string): { path: string; manifestPath: string } {
  return {
    path: join(rootfsDir, `${safeName(name)}.ext4`),
    manifestPath: join(rootfsDir, `${safeName(name)}.manifest.json`),
  };
}
