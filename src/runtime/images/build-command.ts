/**
 * `hutch images build [--only NAME]`: builds what is missing or stale and
 * shows a progress bar per artifact (or plain lines when not on a terminal).
 */
import cliProgress from "cli-progress";
import type { BuildProgress } from "./build-progress.js";
import { defaultCacheDir, ImageStore } from "./image-store.js";

/** Options of {@link runImagesBuild}. */
export interface ImagesBuildOptions {
  /** Default: $HUTCH_CACHE_DIR or ~/.cache/hutch. */
  cacheDir?: string;
  /** The repo's agent/ directory. */
  agentDir: string;
  /** Build only this image (plus kernel and initramfs). */
  only?: string;
  /** Use this agent binary instead of `make -C agentDir`. */
  agentBinary?: string;
  /** Where to write (default: process.stderr). */
  out?: NodeJS.WriteStream;
}

/**
 * Runs the build with progress output. Resolves with the exit code to use
 * (0 ok, 1 build failed — the error is printed).
 */
export async function runImagesBuild(opts: ImagesBuildOptions): Promise<number> {
  const out = opts.out ?? process.stderr;
  const cacheDir = opts.cacheDir ?? defaultCacheDir();
  const store = new ImageStore({ cacheDir, agentDir: opts.agentDir, agentBinary: opts.agentBinary });
  const names = opts.only ? [opts.only] : undefined;
  const print = (line: string) => out.write(`${line}\n`);
  print(`image cache: ${cacheDir}`);
  try {
    const fresh = await store.freshness(names);
    for (const [id, ok] of Object.entries(fresh)) if (ok) print(`${id}: already built (cached)`);
    const onProgress = out.isTTY ? barRenderer(out) : lineRenderer(print);
    let report;
    try {
      report = await store.ensure(names, onProgress.update);
    } finally {
      onProgress.stop();
    }
    const built = Object.entries(report).filter(([, r]) => r === "built");
    print(built.length > 0 ? `built: ${built.map(([id]) => id).join(", ")}` : "everything was already built");
    for (const entry of store.catalog()) {
      if (names && !names.includes(entry.name)) continue;
      print(`  ${entry.name.padEnd(12)} ${store.rootfs(entry.name).path}`);
    }
    print(`  ${"kernel".padEnd(12)} ${store.kernel().vmlinux}`);
    return 0;
  } catch (err) {
    print(`image build failed: ${describe(err)}`);
    return 1;
  }
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  return err.cause ? `${err.message}\n  caused by: ${describe(err.cause)}` : err.message;
}

interface Renderer {
  update(p: BuildProgress): void;
  stop(): void;
}

/** One bar per artifact; the last message of the running step shows on its line. */
function barRenderer(out: NodeJS.WriteStream): Renderer {
  const multi = new cliProgress.MultiBar(
    {
      stream: out,
      format: "{image} [{bar}] {value}/{total} {step} {message}",
      barsize: 20,
      hideCursor: true,
      clearOnComplete: false,
      stopOnComplete: false,
      autopadding: true,
    },
    cliProgress.Presets.shades_classic,
  );
  const bars = new Map<string, cliProgress.SingleBar>();
  const width = Math.max(20, (out.columns ?? 100) - 60);
  return {
    update(p) {
      const payload = { image: p.image.padEnd(10), step: p.step, message: (p.message ?? "").slice(0, width) };
      let bar = bars.get(p.image);
      if (!bar) {
        bar = multi.create(p.total, p.done, payload);
        bars.set(p.image, bar);
      }
      bar.update(p.done, payload);
    },
    stop: () => multi.stop(),
  };
}

/** Plain lines (logs, CI): a line per step, and every message. */
function lineRenderer(print: (l: string) => void): Renderer {
  return {
    update(p) {
      const prefix = `[${p.image} ${p.done}/${p.total}] ${p.step}`;
      print(p.message ? `${prefix}: ${p.message}` : prefix);
    },
    stop: () => undefined,
  };
}
