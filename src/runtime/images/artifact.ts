/**
 * What the cache builds: the kernel, the initramfs and each rootfs image are
 * "artifacts" with a recipe (inputs that are hashed) and a build function.
 */

/** Given to an artifact's build: where to write and how to report. */
export interface BuildContext {
  /** Fresh private directory; outputs are written here under their basename. */
  tmpDir: string;
  /** Reports the start of step number `index` (0-based) of `total` steps. */
  step(index: number, name: string): void;
  /** Reports a detail line within the current step. */
  message(line: string): void;
}

/** One thing the image cache builds. */
export interface Artifact {
  /** "kernel", "initramfs", "devbox:1", ... */
  readonly id: string;
  /** Final output paths; each is built as `tmpDir/<basename>` and renamed into place. */
  readonly outputs: string[];
  /** Where the manifest lives. */
  readonly manifestPath: string;
  /** Number of steps `build` reports (for progress bars). */
  readonly steps: number;
  /**
   * The recipe: every input whose change must cause a rebuild (package
   * lists, script texts, hashes of binaries copied in, a format version).
   */
  inputs(): Promise<Record<string, string>>;
  /** Builds all outputs into `ctx.tmpDir`. */
  build(ctx: BuildContext): Promise<void>;
}
