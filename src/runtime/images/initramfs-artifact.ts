/**
 * The initramfs: busybox, `/init` (images/init.sh), the guest agent at
 * /hutch/agent, and the kernel's module fragment appended (the kernel
 * unpacks concatenated newc archives in order).
 */
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Artifact, BuildContext } from "./artifact.js";
import { sha256, sha256File } from "./build-manifest.js";
import { writeCpioNewc, type CpioEntry } from "./cpio-newc.js";
import { BUSYBOX_PATH, assertStatic } from "./host-binaries.js";

/** Bump when the layout of the initramfs changes. */
const INITRAMFS_FORMAT = "1";

/** Where the initramfs gets its parts. */
export interface InitramfsSources {
  /** The init script (images/init.sh). */
  initScript: string;
  /** The guest agent binary (static). Resolved lazily: it may be built on demand. */
  agentBinary: () => Promise<string>;
  /** The kernel artifact's `modules.cpio`. */
  modulesCpio: string;
  busybox?: string;
}

/** Applets /init uses; linked in /bin so the script can call them by name. */
const INIT_APPLETS = [
  "sh", "mount", "umount", "insmod", "mkdir", "cp", "chmod", "findfs", "sleep",
  "switch_root", "poweroff", "echo", "cat", "ls", "dmesg",
];

/** Builds `initrd.img` (uncompressed newc: nothing to inflate at boot under TCG). */
export class InitramfsArtifact implements Artifact {
  readonly id = "initramfs";
  readonly steps = 1;
  readonly outputs: string[];
  readonly manifestPath: string;

  constructor(
    kernelDir: string,
    private readonly src: InitramfsSources,
  ) {
    this.outputs = [join(kernelDir, "initrd.img")];
    this.manifestPath = join(kernelDir, "initrd.manifest.json");
  }

  async inputs(): Promise<Record<string, string>> {
    const busybox = this.src.busybox ?? BUSYBOX_PATH;
    return {
      format: INITRAMFS_FORMAT,
      init: sha256(await readFile(this.src.initScript)),
      busybox: await sha256File(busybox),
      agent: await sha256File(await this.src.agentBinary()),
      modules: await sha256File(this.src.modulesCpio),
    };
  }

  async build(ctx: BuildContext): Promise<void> {
    ctx.step(0, "packing initramfs");
    const busybox = this.src.busybox ?? BUSYBOX_PATH;
    await assertStatic(busybox);
    const agent = await this.src.agentBinary();
    await assertStatic(agent);
    const entries: CpioEntry[] = [
      ...["bin", "dev", "proc", "sys", "base", "disk", "newroot", "hutch", "lib", "lib/modules"].map(
        (path): CpioEntry => ({ type: "dir", path }),
      ),
      // The kernel opens /dev/console for init's stdio before devtmpfs is mounted.
      { type: "char", path: "dev/console", major: 5, minor: 1, mode: 0o600 },
      { type: "file", path: "bin/busybox", data: await readFile(busybox), mode: 0o755 },
      ...INIT_APPLETS.map((a): CpioEntry => ({ type: "symlink", path: `bin/${a}`, target: "busybox" })),
      { type: "file", path: "init", data: await readFile(this.src.initScript), mode: 0o755 },
      { type: "file", path: "hutch/agent", data: await readFile(agent), mode: 0o755 },
    ];
    const image = Buffer.concat([writeCpioNewc(entries), await readFile(this.src.modulesCpio)]);
    ctx.message(`${(image.length / 1048576).toFixed(1)} MiB`);
    await writeFile(join(ctx.tmpDir, "initrd.img"), image);
  }
}
