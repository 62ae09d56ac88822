/**
 * devbox:1 (the default) — Debian bookworm minbase from the host's apt mirror
 * with the tools of images/devbox.packages, cleaned by images/devbox-cleanup.sh.
 */
import { readFile } from "node:fs/promises";
import { basename, join } from "node:path";
import type { BuildContext } from "./artifact.js";
import { hostMirror } from "./apt-mirror.js";
import { sha256 } from "./build-manifest.js";
import { packBaseImage } from "./ext4-image.js";
import { rootfsPaths, type RootfsImage } from "./rootfs-image.js";
import { runCommand } from "../run-command.js";

/** Debian release of the image. */
export const DEVBOX_SUITE = "bookworm";
/** Bump when the build below changes in a way the recipe files do not show. */
const DEVBOX_FORMAT = "1";

/** Package names of a packages file (one per line, `#` comments). */
export function parsePackageList(text: string): string[] {
  return text
    .split("\n")
    .map((l) => l.replace(/#.*/, "").trim())
    .filter((l) => l.length > 0);
}

/** The devbox:1 recipe. */
export class DevboxImage implements RootfsImage {
  readonly id = "devbox:1";
  readonly description = "Debian 12 (bookworm) with bash, python3, git, curl, openssh-server, sudo";
  readonly steps = 3;
  readonly path: string;
  readonly manifestPath: string;
  readonly outputs: string[];

  /** `recipeDir` is the repo's images/ folder (devbox.packages, devbox-cleanup.sh). */
  constructor(
    rootfsDir: string,
    private readonly recipeDir: string,
  ) {
    ({ path: this.path, manifestPath: this.manifestPath } = rootfsPaths(rootfsDir, this.id));
    this.outputs = [this.path];
  }

  private packagesFile(): string {
    return join(this.recipeDir, "devbox.packages");
  }

  private cleanupScript(): string {
    return join(this.recipeDir, "devbox-cleanup.sh");
  }

  async inputs(): Promise<Record<string, string>> {
    return {
      format: DEVBOX_FORMAT,
      suite: DEVBOX_SUITE,
      mirror: await hostMirror(DEVBOX_SUITE),
      packages: parsePackageList(await readFile(this.packagesFile(), "utf8")).join(","),
      cleanup: sha256(await readFile(this.cleanupScript())),
    };
  }

  async build(ctx: BuildContext): Promise<void> {
    const packages = parsePackageList(await readFile(this.packagesFile(), "utf8"));
    const mirror = await hostMirror(DEVBOX_SUITE);
    const root = join(ctx.tmpDir, "root");

    ctx.step(0, "debootstrap");
    ctx.message(`${DEVBOX_SUITE} from ${mirror}: ${packages.join(" ")}`);
    await runCommand(
      "debootstrap",
      ["--variant=minbase", `--include=${packages.join(",")}`, "--components=main", DEVBOX_SUITE, root, mirror],
      // Stream every line: debootstrap takes minutes and is otherwise silent.
      { onLine: ctx.message, env: { ...process.env, LC_ALL: "C", DEBIAN_FRONTEND: "noninteractive" } },
    );

    ctx.step(1, "cleaning up");
    await runCommand("sh", [this.cleanupScript(), root], { onLine: ctx.message });

    ctx.step(2, "packing ext4");
    await packBaseImage(root, join(ctx.tmpDir, basename(this.path)), ctx.message);
  }
}
