/**
 * A byte progress bar for push/pull on a terminal (cli-progress), and a
 * pass-through Transform that feeds it.
 */
import { Transform, type TransformCallback } from "node:stream";
import cliProgress from "cli-progress";
import { interactive } from "./spinner.js";

/** Formats a byte count for people: 1.5 MiB. */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`;
}

/** What a transfer reports to: bytes so far, then stop. */
export interface ByteProgress {
  add(bytes: number): void;
  stop(): void;
}

/** Small transfers finish before a bar would help. */
const BAR_THRESHOLD = 1024 * 1024;

/**
 * A bar titled `label` when stderr is a TTY and the transfer is large (or of
 * unknown size); otherwise a no-op. `total` may be an estimate.
 */
export function byteProgress(label: string, total: number | undefined): ByteProgress {
  if (!interactive() || (total !== undefined && total < BAR_THRESHOLD)) return { add: () => undefined, stop: () => undefined };
  const bar = new cliProgress.SingleBar(
    {
      format: `${label} [{bar}] {percentage}% {done}/{size} {speed}`,
      hideCursor: true,
      stream: process.stderr,
      etaBuffer: 20,
    },
    cliProgress.Presets.shades_classic,
  );
  let done = 0;
  let size = total ?? 0;
  const t0 = Date.now();
  const payload = () => ({
    done: formatBytes(done),
    size: total === undefined ? "?" : formatBytes(size),
    speed: `${formatBytes(done / Math.max(0.001, (Date.now() - t0) / 1000))}/s`,
  });
  bar.start(Math.max(size, 1), 0, payload());
  return {
    add(bytes) {
      done += bytes;
      // Estimates (tar archives) can come out a bit larger than guessed.
      if (done > size) {
        size = done;
        bar.setTotal(size);
      }
      bar.update(done, payload());
    },
    stop() {
      bar.update(done, payload());
      bar.stop();
    },
  };
}

/** Counts bytes flowing through into `progress`. */
export class CountingStream extends Transform {
  bytes = 0;
  constructor(private readonly progress: ByteProgress) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    this.progress.add(chunk.length);
    cb(null, chunk);
  }
}
