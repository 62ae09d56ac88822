/**
 * The host's image cache: guest kernel, initramfs and rootfs images, built
 * once into `cacheDir` and rebuilt when their recipe changes.
 *
 * Layout of `cacheDir`:
 * ```
 * kernel/vmlinux, kernel/modules.cpio, kernel/initrd.img  (+ *.manifest.json)
 * rootfs/devbox-1.ext4, rootfs/minimal-1.ext4            (+ *.manifest.json)
 * tmp/   builds in progress (renamed into place when done)
 * locks/ one flock per artifact
 * ```
 */
import { access } from "node:fs/promises";
import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Artifact } from "./artifact.js";
import { artifactIsFresh, ensureArtifact, type EnsureResult } from "./artifact-builder.js";
import { manifestFilePath } from "./build-manifest.js";
import type { BuildProgress } from "./build-progress.js";
import { DevboxImage } from "./devbox-image.js";
import { createDisk } from "./ext4-image.js";
import { InitramfsArtifact } from "./initramfs-artifact.js";
import { KernelArtifact } from "./kernel-artifact.js";
import { kernelCmdline } from "./kernel-cmdline.js";
import { MinimalImage } from "./minimal-image.js";
import type { RootfsImage } from "./rootfs-image.js";
import { runCommand } from "../run-command.js";

export type { BuildProgress } from "./build-progress.js";

/** One image of the catalog. */
export interface ImageCatalogEntry {
  name: string;
  description: string;
  built: boolean;
}

/** Options of {@link ImageStore}. */
export interface ImageStoreOptions {
  /** Where images are cached; see {@link defaultCacheDir}. */
  cacheDir: string;
  /** The repo's agent/ directory: `make -C agentDir` builds `agentDir/build/hutch-agent`. */
  agentDir: string;
  /** Progress lines for a server log. */
  log?: (msg: string) => void;
  /**
   * Use this agent binary instead of building `agentDir` (tests, or a
   * prebuilt agent). Must be static.
   */
  agentBinary?: string;
  /** Folder with the recipes (init.sh, devbox.packages...); default: the repo's images/. */
  recipeDir?: string;
}

/** What one `ensure` did to each artifact. */
export type EnsureReport = Record<string, EnsureResult>;

/** `$HUTCH_CACHE_DIR`, or ~/.cache/hutch. */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.HUTCH_CACHE_DIR || join(homedir(), ".cache", "hutch");
}

/** images/ at the repo root, found from this file (src/runtime/images or dist/runtime/images). */
export function defaultRecipeDir(): string {
  return fileURLToPath(new URL("../../../images/", import.meta.url));
}

/**
 * Builds and finds the guest kernel, initramfs and rootfs images.
 *
 * @example
 * const store = new ImageStore({ cacheDir: defaultCacheDir(), agentDir: "agent" });
 * await store.ensure(["minimal:1"], (p) => console.log(p.image, p.step));
 * const { vmlinux, initrd, cmdline } = store.kernel();
 */
export class ImageStore {
  /** The image sandboxes get when they name none. */
  readonly defaultImage = "devbox:1";
  readonly cacheDir: string;
  private readonly kernelArtifact: KernelArtifact;
  private readonly initramfs: InitramfsArtifact;
  private readonly images: Map<string, RootfsImage>;
  private readonly log: (msg: string) => void;

  constructor(private readonly opts: ImageStoreOptions) {
    this.cacheDir = opts.cacheDir;
    this.log = opts.log ?? (() => undefined);
    const recipeDir = opts.recipeDir ?? defaultRecipeDir();
    const kernelDir = join(this.cacheDir, "kernel");
    const rootfsDir = join(this.cacheDir, "rootfs");
    this.kernelArtifact = new KernelArtifact(kernelDir);
    this.initramfs = new InitramfsArtifact(kernelDir, {
      initScript: join(recipeDir, "init.sh"),
      modulesCpio: join(kernelDir, "modules.cpio"),
      agentBinary: () => this.agentBinary(),
    });
    const images: RootfsImage[] = [new DevboxImage(rootfsDir, recipeDir), new MinimalImage(rootfsDir)];
    this.images = new Map(images.map((i) => [i.id, i]));
  }

  /** Image names this store knows how to build, default first. */
  names(): string[] {
    return [...this.images.keys()];
  }

  /**
   * Builds kernel + initramfs and the named images (default: all) if missing
   * or stale. Idempotent; safe against a concurrent build by another process
   * (waits for it). Resolves with what was built and what was already cached.
   */
  async ensure(names?: string[], onProgress?: (p: BuildProgress) => void): Promise<EnsureReport> {
    const report: EnsureReport = {};
    for (const artifact of this.artifactsFor(names)) {
      report[artifact.id] = await ensureArtifact(artifact, join(this.cacheDir, "tmp"), onProgress ?? (() => undefined), this.log);
      if (report[artifact.id] === "cached") this.log(`${artifact.id}: up to date`);
    }
    return report;
  }

  /**
   * Which of kernel, initramfs and the named images (default: all) are built
   * for their current recipe (builds the agent if needed to hash it).
   */
  async freshness(names?: string[]): Promise<Record<string, boolean>> {
    const out: Record<string, boolean> = {};
    for (const artifact of this.artifactsFor(names)) {
      // The initramfs recipe hashes modules.cpio, which exists only once the kernel is built.
      out[artifact.id] = artifact === this.initramfs && !out.kernel ? false : await artifactIsFresh(artifact);
    }
    return out;
  }

  /** Paths for booting. Throws if kernel or initramfs are not built (call `ensure` first). */
  kernel(): { vmlinux: string; initrd: string; cmdline: string } {
    const [vmlinux] = this.kernelArtifact.outputs;
    const [initrd] = this.initramfs.outputs;
    if (!vmlinux || !initrd || !builtFromManifest(this.kernelArtifact) || !builtFromManifest(this.initramfs)) {
      throw new Error(`guest kernel not built in ${this.cacheDir} (run: hutch images build)`);
    }
    return { vmlinux, initrd, cmdline: kernelCmdline() };
  }

  /** The read-only ext4 (label hutch-base) of image `name`. Throws if unknown or not built. */
  rootfs(name: string): { path: string } {
    const image = this.images.get(name);
    if (!image) throw new Error(`unknown image ${name} (known: ${this.names().join(", ")})`);
    if (!builtFromManifest(image)) throw new Error(`image ${name} not built (run: hutch images build --only ${name})`);
    return { path: image.path };
  }

  /** Every image with its description and whether it is built (by its manifest; cheap, sync). */
  catalog(): ImageCatalogEntry[] {
    return [...this.images.values()].map((i) => ({ name: i.id, description: i.description, built: builtFromManifest(i) }));
  }

  /** Creates a sparse writable ext4 of `sizeMib` labeled hutch-disk at `path` (lazy init: fast). */
  createDisk(path: string, sizeMib: number): Promise<void> {
    return createDisk(path, sizeMib);
  }

  /** Kernel and initramfs always come first: every image needs them. */
  private artifactsFor(names?: string[]): Artifact[] {
    const wanted = names ?? this.names();
    const unknown = wanted.filter((n) => !this.images.has(n));
    if (unknown.length > 0) throw new Error(`unknown image ${unknown.join(", ")} (known: ${this.names().join(", ")})`);
    return [this.kernelArtifact, this.initramfs, ...wanted.map((n) => this.images.get(n) as RootfsImage)];
  }

  /** The agent binary: the given one, or `make -C agentDir` (a no-op when up to date). */
  private async agentBinary(): Promise<string> {
    if (this.opts.agentBinary) return this.opts.agentBinary;
    try {
      await runCommand("make", ["-s", "-C", this.opts.agentDir]);
    } catch (err) {
      throw new Error(`cannot build the guest agent in ${this.opts.agentDir}`, { cause: err });
    }
    const bin = join(this.opts.agentDir, "build", "hutch-agent");
    await access(bin).catch((err: unknown) => {
      throw new Error(`make -C ${this.opts.agentDir} did not produce ${bin}`, { cause: err });
    });
    return bin;
  }
}

/**
 * Built = a manifest whose files all exist. (Sync and cheap for the boot
 * path; whether the recipe changed since is `ensure`'s business.)
 */
function builtFromManifest(artifact: Artifact): boolean {
  try {
    const manifest = JSON.parse(readFileSync(artifact.manifestPath, "utf8")) as { files?: Record<string, number> };
    return Object.keys(manifest.files ?? {}).every((f) => existsSync(manifestFilePath(artifact.manifestPath, f)));
  } catch {
    return false;
  }
}
