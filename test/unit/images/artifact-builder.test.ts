import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, beforeEach, describe, it } from "node:test";
import type { Artifact, BuildContext } from "../../../src/runtime/images/artifact.js";
import { artifactIsFresh, ensureArtifact } from "../../../src/runtime/images/artifact-builder.js";
import { readManifest, recipeHash } from "../../../src/runtime/images/build-manifest.js";
import type { BuildProgress } from "../../../src/runtime/images/build-progress.js";

const root = mkdtempSync(join(tmpdir(), "hutch-artifact-"));
after(() => rmSync(root, { recursive: true, force: true }));

/** An artifact whose recipe is `recipe.value` and that writes it to out/a.txt and out/b.txt. */
class FakeArtifact implements Artifact {
  readonly id = "fake:1";
  readonly steps = 2;
  readonly outputs: string[];
  readonly manifestPath: string;
  builds = 0;
  failAfterFirstFile = false;
  delayMs = 0;
  constructor(
    dir: string,
    public recipe = { value: "one" },
  ) {
    this.outputs = [join(dir, "out", "a.txt"), join(dir, "out", "b.txt")];
    this.manifestPath = join(dir, "out", "fake.manifest.json");
  }
  async inputs() {
    return { value: this.recipe.value };
  }
  async build(ctx: BuildContext) {
    this.builds++;
    ctx.step(0, "writing a");
    writeFileSync(join(ctx.tmpDir, "a.txt"), `a=${this.recipe.value}`);
    if (this.failAfterFirstFile) throw new Error("boom mid-build");
    if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
    ctx.step(1, "writing b");
    ctx.message("detail");
    writeFileSync(join(ctx.tmpDir, "b.txt"), `b=${this.recipe.value}`);
  }
}

let dir: string;
let n = 0;
beforeEach(() => {
  dir = join(root, `case${n++}`);
});
const noLog = () => undefined;

describe("recipeHash", () => {
  it("does not depend on key order and changes with any value", () => {
    assert.equal(recipeHash({ a: "1", b: "2" }), recipeHash({ b: "2", a: "1" }));
    assert.notEqual(recipeHash({ a: "1", b: "2" }), recipeHash({ a: "1", b: "3" }));
    assert.notEqual(recipeHash({ a: "1" }), recipeHash({ a: "1", b: "" }));
  });
});

describe("ensureArtifact", () => {
  it("builds once, reports progress, then answers from cache", async () => {
    const art = new FakeArtifact(dir);
    const seen: BuildProgress[] = [];
    assert.equal(await ensureArtifact(art, join(dir, "tmp"), (p) => seen.push(p), noLog), "built");
    assert.equal(readFileSync(art.outputs[0] as string, "utf8"), "a=one");
    assert.equal(readFileSync(art.outputs[1] as string, "utf8"), "b=one");
    assert.deepEqual(
      seen.map((p) => [p.step, p.done, p.total, p.message]),
      [["writing a", 0, 2, undefined], ["writing b", 1, 2, undefined], ["writing b", 1, 2, "detail"], ["done", 2, 2, undefined]],
    );
    assert.equal(await ensureArtifact(art, join(dir, "tmp"), noLog, noLog), "cached");
    assert.equal(art.builds, 1);
    assert.deepEqual(readdirSync(join(dir, "tmp")), [], "temp dir removed");
    const manifest = await readManifest(art.manifestPath);
    assert.equal(manifest?.hash, recipeHash({ value: "one" }));
  });

  it("rebuilds when the recipe changes", async () => {
    const art = new FakeArtifact(dir);
    await ensureArtifact(art, join(dir, "tmp"), noLog, noLog);
    art.recipe.value = "two";
    assert.equal(await artifactIsFresh(art), false);
    assert.equal(await ensureArtifact(art, join(dir, "tmp"), noLog, noLog), "built");
    assert.equal(readFileSync(art.outputs[1] as string, "utf8"), "b=two");
    assert.equal(art.builds, 2);
  });

  it("rebuilds when an output was changed or removed behind its back", async () => {
    const art = new FakeArtifact(dir);
    await ensureArtifact(art, join(dir, "tmp"), noLog, noLog);
    writeFileSync(art.outputs[0] as string, "truncated");
    assert.equal(await artifactIsFresh(art), false);
    await ensureArtifact(art, join(dir, "tmp"), noLog, noLog);
    rmSync(art.outputs[1] as string);
    assert.equal(await ensureArtifact(art, join(dir, "tmp"), noLog, noLog), "built");
    assert.equal(art.builds, 3);
  });

  it("a failed build leaves nothing that looks complete, and the old build untouched", async () => {
    const art = new FakeArtifact(dir);
    await ensureArtifact(art, join(dir, "tmp"), noLog, noLog);
    const before = statSync(art.outputs[0] as string).ino;
    art.recipe.value = "two";
    art.failAfterFirstFile = true;
    await assert.rejects(ensureArtifact(art, join(dir, "tmp"), noLog, noLog), /boom mid-build/);
    assert.equal(await artifactIsFresh(art), false);
    assert.equal(statSync(art.outputs[0] as string).ino, before, "old output not replaced by a half build");
    assert.deepEqual(readdirSync(join(dir, "tmp")), []);
  });

  it("a first build that fails leaves no manifest and no outputs", async () => {
    const art = new FakeArtifact(dir);
    art.failAfterFirstFile = true;
    await assert.rejects(ensureArtifact(art, join(dir, "tmp"), noLog, noLog));
    assert.equal(existsSync(art.manifestPath), false);
    assert.equal(existsSync(art.outputs[0] as string), false);
  });

  it("removes the temp dir of a build that crashed in an earlier process", async () => {
    const art = new FakeArtifact(dir);
    const stale = join(dir, "tmp", "fake-1.abc123");
    mkdirSync(stale, { recursive: true });
    writeFileSync(join(stale, "a.txt"), "half");
    await ensureArtifact(art, join(dir, "tmp"), noLog, noLog);
    assert.equal(existsSync(stale), false);
  });

  it("unmounts what a killed debootstrap left mounted in a stale temp dir before removing it", { skip: process.getuid?.() !== 0 && "needs root" }, async () => {
    const art = new FakeArtifact(dir);
    const proc = join(dir, "tmp", "fake-1.crashed", "root", "proc");
    mkdirSync(proc, { recursive: true });
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m", "hutch-test", proc]);
    try {
      writeFileSync(join(proc, "precious"), "x");
      await ensureArtifact(art, join(dir, "tmp"), noLog, noLog);
      assert.equal(readFileSync("/proc/self/mounts", "utf8").includes(proc), false, "unmounted");
      assert.equal(existsSync(join(dir, "tmp", "fake-1.crashed")), false);
    } finally {
      if (readFileSync("/proc/self/mounts", "utf8").includes(proc)) execFileSync("umount", ["-l", proc]);
    }
  });

  it("two concurrent ensures build once: the second waits for the lock and finds it built", async () => {
    const a = new FakeArtifact(dir);
    const b = new FakeArtifact(dir);
    a.delayMs = 300;
    const waits: string[] = [];
    const [ra, rb] = await Promise.all([
      ensureArtifact(a, join(dir, "tmp"), noLog, noLog),
      new Promise((r) => setTimeout(r, 50)).then(() => ensureArtifact(b, join(dir, "tmp"), noLog, (m) => waits.push(m))),
    ]);
    assert.deepEqual([ra, rb], ["built", "cached"]);
    assert.equal(a.builds + b.builds, 1);
    assert.match(waits.join("\n"), /another process is building it/);
  });
});
