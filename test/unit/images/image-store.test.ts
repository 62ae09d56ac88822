import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { fromDeb822, fromOneLine, hostMirror } from "../../../src/runtime/images/apt-mirror.js";
import { parsePackageList } from "../../../src/runtime/images/devbox-image.js";
import { defaultCacheDir, defaultRecipeDir, ImageStore } from "../../../src/runtime/images/image-store.js";
import { KERNEL_CMDLINE, kernelCmdline } from "../../../src/runtime/images/kernel-cmdline.js";

const dir = mkdtempSync(join(tmpdir(), "hutch-store-"));
after(() => rmSync(dir, { recursive: true, force: true }));

describe("kernel command line", () => {
  it("has the flags TCG boots need, and takes extras", () => {
    for (const flag of ["console=ttyS0", "reboot=t", "panic=-1", "quiet", "no_timer_check", "tsc_early_khz=2000000"]) {
      assert.ok(KERNEL_CMDLINE.split(" ").includes(flag), flag);
    }
    assert.equal(kernelCmdline(["loglevel=7"]), `${KERNEL_CMDLINE} loglevel=7`);
  });
});

describe("ImageStore before anything is built", () => {
  const store = new ImageStore({ cacheDir: join(dir, "empty"), agentDir: join(dir, "agent") });

  it("lists devbox:1 (default) and minimal:1, not built, with descriptions", () => {
    assert.equal(store.defaultImage, "devbox:1");
    const catalog = store.catalog();
    assert.deepEqual(catalog.map((c) => [c.name, c.built]), [["devbox:1", false], ["minimal:1", false]]);
    for (const c of catalog) assert.ok(c.description.length > 10);
  });

  it("refuses boot paths until built, and unknown names", async () => {
    assert.throws(() => store.kernel(), /not built/);
    assert.throws(() => store.rootfs("minimal:1"), /not built/);
    assert.throws(() => store.rootfs("nope:1"), /unknown image/);
    await assert.rejects(store.ensure(["nope:1"]), /unknown image nope:1/);
  });

  it("reports an image built once its manifest lists existing files", () => {
    const rootfs = join(dir, "empty", "rootfs");
    mkdirSync(rootfs, { recursive: true });
    writeFileSync(join(rootfs, "minimal-1.ext4"), "x");
    writeFileSync(
      join(rootfs, "minimal-1.manifest.json"),
      JSON.stringify({ hash: "h", files: { [join(rootfs, "minimal-1.ext4")]: 1 } }),
    );
    assert.equal(store.catalog().find((c) => c.name === "minimal:1")?.built, true);
    assert.equal(store.rootfs("minimal:1").path, join(rootfs, "minimal-1.ext4"));
  });
});

describe("defaults", () => {
  it("cache dir: $HUTCH_CACHE_DIR, else ~/.cache/hutch", () => {
    assert.equal(defaultCacheDir({ HUTCH_CACHE_DIR: "/x/y" }), "/x/y");
    assert.match(defaultCacheDir({}), /\/\.cache\/hutch$/);
  });
  it("recipes: the repo's images/ folder", () => {
    assert.match(readFileSync(join(defaultRecipeDir(), "init.sh"), "utf8"), /switch_root/);
    const pkgs = parsePackageList(readFileSync(join(defaultRecipeDir(), "devbox.packages"), "utf8"));
    for (const p of ["python3", "git", "curl", "openssh-server", "sudo", "iproute2"]) assert.ok(pkgs.includes(p), p);
  });
});

describe("apt mirror", () => {
  it("reads deb822 sources", () => {
    const text = [
      "Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n",
      "Types: deb\n# comment\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\n",
      "Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n",
    ].join("\n");
    assert.equal(fromDeb822(text, "bookworm"), "http://deb.debian.org/debian");
    assert.equal(fromDeb822(text, "bookworm-security"), "http://deb.debian.org/debian-security");
    assert.equal(fromDeb822(text, "trixie"), undefined);
  });
  it("reads one-line sources", () => {
    const text = "# x\ndeb [arch=amd64] http://mirror.example/debian bookworm main\ndeb http://other bullseye main\n";
    assert.equal(fromOneLine(text, "bookworm"), "http://mirror.example/debian");
  });
  it("falls back to deb.debian.org", async () => {
    assert.equal(await hostMirror("bookworm", join(dir, "no-apt")), "http://deb.debian.org/debian");
  });
  it("package lists ignore comments and blanks", () => {
    assert.deepEqual(parsePackageList("# c\nbash\n\n git # vcs\n"), ["bash", "git"]);
  });
});
