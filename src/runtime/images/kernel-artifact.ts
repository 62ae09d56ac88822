/**
 * The guest kernel: Debian's cloud kernel package, unpacked, its bzImage
 * turned into an ELF vmlinux (PVH boot), and the modules the initramfs needs
 * packed as a cpio fragment (`modules.cpio`) that the initramfs appends.
 */
import { readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Artifact, BuildContext } from "./artifact.js";
import { extractVmlinux } from "./bzimage.js";
import { writeCpioNewc, type CpioEntry } from "./cpio-newc.js";
import { INITRAMFS_MODULES, resolveModules } from "./kernel-modules.js";
import { runCommand } from "../run-command.js";

/** Debian's metapackage that depends on the current cloud kernel. */
export const KERNEL_METAPACKAGE = "linux-image-cloud-amd64";
/** Bump when the way the kernel artifact is made changes. */
const KERNEL_FORMAT = "1";

/** apt options: we download as root into our own dir, so skip the _apt sandbox (and its warning). */
const APT_OPTS = ["-q", "-o", "APT::Sandbox::User=root"];

/** The kernel package the metapackage currently points to, and its version. */
export async function resolveKernelPackage(): Promise<{ name: string; version: string }> {
  let depends: string;
  try {
    depends = (await runCommand("apt-cache", ["depends", KERNEL_METAPACKAGE])).stdout;
  } catch (err) {
    throw new Error(`cannot resolve ${KERNEL_METAPACKAGE} (run apt-get update?)`, { cause: err });
  }
  const name = /Depends:\s*(linux-image-\S+)/.exec(depends)?.[1];
  if (!name) throw new Error(`${KERNEL_METAPACKAGE} has no linux-image dependency:\n${depends}`);
  const show = (await runCommand("apt-cache", ["show", "--no-all-versions", name])).stdout;
  const version = /^Version:\s*(\S+)/m.exec(show)?.[1];
  if (!version) throw new Error(`no version for ${name} in apt-cache`);
  return { name, version };
}

/** The kernel artifact: `vmlinux` (ELF, boots via PVH) and `modules.cpio` (initramfs fragment). */
export class KernelArtifact implements Artifact {
  readonly id = "kernel";
  readonly steps = 4;
  readonly outputs: string[];
  readonly manifestPath: string;
  private pkg?: { name: string; version: string };

  /** `kernelDir` receives `vmlinux` and `modules.cpio`. */
  constructor(readonly kernelDir: string) {
    this.outputs = [join(kernelDir, "vmlinux"), join(kernelDir, "modules.cpio")];
    this.manifestPath = join(kernelDir, "kernel.manifest.json");
  }

  async inputs(): Promise<Record<string, string>> {
    this.pkg ??= await resolveKernelPackage();
    return {
      format: KERNEL_FORMAT,
      package: this.pkg.name,
      version: this.pkg.version,
      modules: INITRAMFS_MODULES.join(","),
    };
  }

  async build(ctx: BuildContext): Promise<void> {
    const pkg = (this.pkg ??= await resolveKernelPackage());
    ctx.step(0, "downloading kernel");
    ctx.message(`${pkg.name} ${pkg.version}`);
    await runCommand("apt-get", [...APT_OPTS, "download", `${pkg.name}=${pkg.version}`], {
      cwd: ctx.tmpDir,
      onLine: ctx.message,
    });
    const deb = (await readdir(ctx.tmpDir)).find((f) => f.endsWith(".deb"));
    if (!deb) throw new Error(`apt-get download ${pkg.name} produced no .deb`);

    ctx.step(1, "extracting kernel package");
    const root = join(ctx.tmpDir, "pkg");
    await runCommand("dpkg", ["-x", join(ctx.tmpDir, deb), root]);

    ctx.step(2, "extracting vmlinux");
    const boot = join(root, "boot");
    const vmlinuz = (await readdir(boot)).find((f) => f.startsWith("vmlinuz-"));
    if (!vmlinuz) throw new Error(`no vmlinuz in ${pkg.name}`);
    await extractVmlinux(join(boot, vmlinuz), join(ctx.tmpDir, "vmlinux"));

    ctx.step(3, "collecting modules");
    const release = vmlinuz.slice("vmlinuz-".length);
    const modulesDir = await findModulesDir(root, release);
    const modules = await resolveModules(modulesDir, INITRAMFS_MODULES);
    ctx.message(`load order: ${modules.map((m) => m.name).join(" ")}`);
    const entries: CpioEntry[] = [
      { type: "dir", path: "lib" },
      { type: "dir", path: "lib/modules" },
      { type: "dir", path: "hutch" },
      ...modules.map((m): CpioEntry => ({ type: "file", path: `lib/modules/${m.name}.ko`, data: m.data })),
      { type: "file", path: "hutch/modules", data: Buffer.from(`${modules.map((m) => m.name).join("\n")}\n`) },
      { type: "file", path: "hutch/kernel-release", data: Buffer.from(`${release}\n`) },
    ];
    await writeFile(join(ctx.tmpDir, "modules.cpio"), writeCpioNewc(entries));
  }
}

/** Debian moved modules to /usr/lib/modules in later releases: accept both. */
async function findModulesDir(root: string, release: string): Promise<string> {
  for (const base of ["lib/modules", "usr/lib/modules"]) {
    const dir = join(root, base, release);
    try {
      await readdir(dir);
      return dir;
    } catch {
      // try the next layout
    }
  }
  throw new Error(`no modules for ${release} in the kernel package`);
}
