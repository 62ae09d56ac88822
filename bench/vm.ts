/**
 * VM benchmarks through the real server and the official SDK, side by side in
 * one run: COLD create latency per image (templates and the warm pool off:
 * bench/snapshots.ts measures those) (from the client, until the create call
 * returns a running sandbox whose agent answered) and the exec round trip of
 * `true`. Prints medians as a markdown table.
 *
 *   npm run build && node --import tsx bench/vm.ts [--runs 10]
 */
import { performance } from "node:perf_hooks";
import { startServer } from "../test/e2e/support/server.js";
import { median, percentile, table } from "./support/stats.js";

const runs = Number(process.argv[process.argv.indexOf("--runs") + 1]) || 10;
const SHAPE = "s-1vcpu-256mb";

const server = await startServer({ HUTCH_LOG_LEVEL: "warn", HUTCH_TEMPLATES: "off", HUTCH_POOL_SIZE: "0" });
try {
  const rows: string[][] = [];
  for (const rootfs of ["minimal:1", "devbox:1"]) {
    const create: number[] = [];
    const spawn: number[] = [];
    const exec: number[] = [];
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      const sb = await server.client.createSandbox({ shape: SHAPE, rootfs });
      create.push(performance.now() - t0);
      spawn.push(sb.data.spawn_ms ?? NaN);
      // Exec round trips on this sandbox (warm connection).
      for (let j = 0; j < 3; j++) {
        const e0 = performance.now();
        await sb.runCommand("true");
        exec.push(performance.now() - e0);
      }
      await sb.destroy();
      await sb.waitUntilDestroyed({ timeoutMs: 60_000 });
    }
    rows.push([rootfs, "create (client)", ms(median(create)), ms(percentile(create, 90)), String(create.length)]);
    rows.push([rootfs, "spawn_ms (server)", ms(median(spawn)), ms(percentile(spawn, 90)), String(spawn.length)]);
    rows.push([rootfs, "exec `true` round trip", ms(median(exec)), ms(percentile(exec, 90)), String(exec.length)]);
  }
  console.log(`\nVM benchmarks (${SHAPE}, ${runs} creates per image, accel: ${process.env.HUTCH_ACCEL ?? "auto"})\n`);
  console.log(table(["image", "what", "median", "p90", "n"], rows));
} finally {
  await server.dispose();
}

function ms(v: number): string {
  return `${v.toFixed(1)} ms`;
}
