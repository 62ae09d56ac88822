/**
 * Load, the long run (issue 7): 200 creates and destroys through the SDK,
 * 10 at a time, on template restores (minimal:1, s-1vcpu-256mb), then a
 * leak check; and 50 concurrent exec streams on one sandbox. Prints create
 * and destroy latency percentiles and what was left behind.
 *
 *   npm run build && node --import tsx bench/load.ts [--total 200] [--concurrency 10]
 */
import { readFile } from "node:fs/promises";
import { concurrentExecStreams, createDestroyLoad, leftovers } from "../test/e2e/support/load.js";
import { startServer, templateBuilt } from "../test/e2e/support/server.js";
import { median, percentile, table } from "./support/stats.js";

const arg = (name: string, dflt: number) => Number(process.argv[process.argv.indexOf(`--${name}`) + 1]) || dflt;
const total = arg("total", 200);
const concurrency = arg("concurrency", 10);
const s = await startServer({ HUTCH_LOG_LEVEL: "warn", HUTCH_TEMPLATES: "on", HUTCH_POOL_ROOTFS: "minimal:1", HUTCH_POOL_SIZE: "0", HUTCH_USER_CREATES_PER_MINUTE: "off", HUTCH_USER_MAX_SANDBOXES: "off" });
try {
  await templateBuilt(s.dataDir, "minimal-1_1c256m10240d", 300_000);
  const r = await createDestroyLoad(s, { total, concurrency, shape: "s-1vcpu-256mb", rootfs: "minimal:1" });
  const left = await leftovers(s);
  const sb = await s.client.createSandbox({ shape: "s-1vcpu-256mb", rootfs: "minimal:1" });
  const t0 = performance.now();
  const badStreams = await concurrentExecStreams(sb, 50, 200);
  const streamsMs = performance.now() - t0;
  await sb.destroy();
  const fmt = (xs: number[]) => `${median(xs).toFixed(0)} / ${percentile(xs, 99).toFixed(0)} ms`;
  console.log(`\nLoad (${total} creates+destroys, ${concurrency} at a time; load ${(await readFile("/proc/loadavg", "utf8")).split(" ").slice(0, 3).join(" ")})\n`);
  console.log(
    table(["what", "value"], [
      ["creates / destroys completed", `${r.createMs.length} / ${r.destroyMs.length} of ${total}`],
      ["errors", String(r.errors.length)],
      ["create (to running) median / p99", fmt(r.createMs)],
      ["destroy (to destroyed) median / p99", fmt(r.destroyMs)],
      ["wall time", `${(r.wallMs / 1000).toFixed(1)} s`],
      ["left behind: live rows / QEMUs / dirs / taps", `${left.live.length} / ${left.qemus.length} / ${left.dirs.length} / ${left.taps.length}`],
      ["50 concurrent exec streams × 200 lines: wrong", `${badStreams.length} (${streamsMs.toFixed(0)} ms)`],
    ]),
  );
  for (const e of [...r.errors, ...badStreams].slice(0, 20)) console.log(`  ${e}`);
} finally {
  await s.dispose();
}
