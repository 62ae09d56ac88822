/**
 * minimal:1 — busybox (every applet linked) plus Debian's bash with the
 * libraries it loads, copied from this host. Tiny and fast to boot: for tests.
 */
import { chmod, copyFile, lstat, mkdir, symlink, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import type { BuildContext } from "./artifact.js";
import { sha256, sha256File } from "./build-manifest.js";
import { packBaseImage } from "./ext4-image.js";
import { BUSYBOX_PATH, assertStatic, busyboxApplets, sharedLibraries } from "./host-binaries.js";
import { rootfsPaths, type RootfsImage } from "./rootfs-image.js";

/** Bump when the layout built below changes. */
const MINIMAL_FORMAT = "2";
const BASH_PATH = "/bin/bash";

/** Small files of the image: path → [mode, content]. */
const ETC_FILES: Record<string, [number, string]> = {
  "etc/passwd": [0o644, "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"],
  "etc/group": [0o644, "root:x:0:\nnogroup:x:65534:\n"],
  "etc/shadow": [0o600, "root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n"],
  "etc/profile": [0o644, 'export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"\n'],
};

/**
 * The sandbox's identity files: links into the agent's tmpfs, where its
 * CONFIGURE writes them (agent/configure.c: a write to the disk is the slow
 * part of a clone's first CONFIGURE under TCG).
 */
export const IDENTITY_LINKS: Record<string, string> = {
  "etc/hostname": "/run/hutch/hostname",
  "etc/hosts": "/run/hutch/hosts",
  "etc/resolv.conf": "/run/hutch/resolv.conf",
};

/** Applets we never link: `init`/`linuxrc` would suggest busybox init runs (the agent is PID 1). */
const SKIP_APPLETS = new Set(["init", "linuxrc"]);

/** The minimal:1 recipe. */
export class MinimalImage implements RootfsImage {
  readonly id = "minimal:1";
  readonly description = "BusyBox and bash only: tiny, fastest boot; for tests";
  readonly steps = 2;
  readonly path: string;
  readonly manifestPath: string;
  readonly outputs: string[];

  constructor(rootfsDir: string) {
    ({ path: this.path, manifestPath: this.manifestPath } = rootfsPaths(rootfsDir, this.id));
    this.outputs = [this.path];
  }

  async inputs(): Promise<Record<string, string>> {
    const inputs: Record<string, string> = {
      format: MINIMAL_FORMAT,
      busybox: await sha256File(BUSYBOX_PATH),
      bash: await sha256File(BASH_PATH),
      etc: sha256(JSON.stringify([ETC_FILES, IDENTITY_LINKS])),
    };
    for (const lib of await sharedLibraries(BASH_PATH)) inputs[`lib:${lib}`] = await sha256File(lib);
    return inputs;
  }

  async build(ctx: BuildContext): Promise<void> {
    ctx.step(0, "assembling tree");
    const root = join(ctx.tmpDir, "root");
    await assertStatic(BUSYBOX_PATH);
    for (const dir of ["bin", "sbin", "usr/bin", "usr/sbin", "usr/local/bin", "etc", "dev", "proc", "sys", "run",
      "var/tmp", "var/log", "home", "mnt"]) {
      await mkdir(join(root, dir), { recursive: true });
    }
    // Explicit modes: the image must not depend on the builder's umask.
    for (const dir of ["", "bin", "sbin", "usr", "usr/bin", "usr/sbin", "usr/local", "usr/local/bin", "etc", "dev",
      "proc", "sys", "run", "var", "var/log", "home", "mnt"]) {
      await chmod(join(root, dir), 0o755);
    }
    for (const [dir, mode] of [["root", 0o700], ["tmp", 0o1777]] as const) {
      await mkdir(join(root, dir), { recursive: true });
      await chmod(join(root, dir), mode);
    }
    await chmod(join(root, "var/tmp"), 0o1777);

    await copyFile(BUSYBOX_PATH, join(root, "bin/busybox"));
    await chmod(join(root, "bin/busybox"), 0o755);
    let linked = 0;
    for (const applet of await busyboxApplets()) {
      const name = applet.split("/").pop() ?? "";
      if (SKIP_APPLETS.has(name) || applet === "bin/busybox") continue;
      await symlink("/bin/busybox", join(root, applet));
      linked++;
    }
    ctx.message(`busybox: ${linked} applets`);

    // bash and exactly the libraries it loads, at the paths the loader expects.
    await copyFile(BASH_PATH, join(root, "bin/bash"));
    await chmod(join(root, "bin/bash"), 0o755);
    for (const lib of await sharedLibraries(BASH_PATH)) {
      await mkdir(join(root, dirname(lib)), { recursive: true });
      await copyFile(lib, join(root, lib));
      await chmod(join(root, lib), 0o755);
    }
    for (const [path, [mode, content]] of Object.entries(ETC_FILES)) {
      await writeFile(join(root, path), content, { mode });
      await chmod(join(root, path), mode);
    }
    for (const [path, target] of Object.entries(IDENTITY_LINKS)) await symlink(target, join(root, path));
    // Sanity: the link targets we rely on are there.
    // (lstat: the links are absolute, following them here would read the host's files.)
    await lstat(join(root, "usr/bin/env")).catch(() => {
      throw new Error("minimal image has no /usr/bin/env (busybox without env?)");
    });

    ctx.step(1, "packing ext4");
    await packBaseImage(root, join(ctx.tmpDir, basename(this.path)), ctx.message);
  }
}
