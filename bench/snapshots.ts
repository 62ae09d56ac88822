/**
 * Snapshot benchmarks through the real server and the official SDK, side by
 * side in one run on minimal:1 / s-1vcpu-256mb (default disk): create by cold
 * boot (HUTCH_TEMPLATES=off), by template restore (pool off) and by warm
 * pool hand-over; then pause, resume and fork latency at 256 MiB and 1 GiB
 * (s-1vcpu-1gb) with the paused snapshot's size on disk, and the resident
 * memory of an idle sandbox right after create. Times are from the client:
 * create and fork until the call returns a running sandbox; pause and resume
 * until GET shows `paused` / `running` (polled every 10 ms).
 *
 *   npm run build && node --import tsx bench/snapshots.ts [--runs 5]
 */
import { execFileSync } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { api, pidsMentioning, startServer, templateBuilt, waitFor, type TestServer } from "../test/e2e/support/server.js";
import { median, table } from "./support/stats.js";

const runs = Number(process.argv[process.argv.indexOf("--runs") + 1]) || 5;
const ROOTFS = "minimal:1";
const SMALL = "s-1vcpu-256mb";
const BIG = "s-1vcpu-1gb";
const rows: string[][] = [];
const result: Record<string, number> = {};

function record(what: string, xs: number[], unit = "ms"): void {
  const m = median(xs);
  result[what] = m;
  rows.push([what, unit === "ms" ? `${m.toFixed(1)} ms` : `${m.toFixed(1)} ${unit}`, String(xs.length)]);
  // As it goes too: a long run on a loaded machine still leaves numbers.
  console.error(`${what}: ${m.toFixed(1)} ${unit} (n=${xs.length}; ${xs.map((x) => x.toFixed(0)).join(", ")})`);
}

async function timed<T>(fn: () => Promise<T>): Promise<[number, T]> {
  const t0 = performance.now();
  const v = await fn();
  return [performance.now() - t0, v];
}

async function statusOf(s: TestServer, id: string): Promise<string> {
  return (await api(s, "GET", `/v1/sandboxes/${id}`)).json.data.status;
}

async function until(s: TestServer, id: string, want: string): Promise<void> {
  const deadline = Date.now() + 120_000;
  while ((await statusOf(s, id)) !== want) {
    if (Date.now() > deadline) throw new Error(`${id} never ${want}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function templateOf(s: TestServer, key: string): Promise<void> {
  await templateBuilt(s.dataDir, key, 300_000);
}

/**
 * Resident memory of the sandbox's QEMU, MiB: RSS, and PSS (pages shared
 * with other processes, such as the template's RAM file in the page cache
 * that every clone maps, counted by share).
 */
async function memMib(s: TestServer, id: string): Promise<{ rss: number; pss: number }> {
  const [pid] = await pidsMentioning(join(s.dataDir, "sandboxes", id));
  const st = await readFile(`/proc/${pid}/smaps_rollup`, "utf8");
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+)`, "m").exec(st)?.[1]);
  return { rss: kb("Rss") / 1024, pss: kb("Pss") / 1024 };
}

function duMib(path: string): number {
  return Number(execFileSync("du", ["-sk", path]).toString().split("\t")[0]) / 1024;
}

async function creates(s: TestServer, label: string, between?: () => Promise<void>): Promise<void> {
  const t: number[] = [];
  const rss: number[] = [];
  const pss: number[] = [];
  for (let i = 0; i < runs; i++) {
    if (between) await between();
    const [ms, sb] = await timed(() => s.client.createSandbox({ shape: SMALL, rootfs: ROOTFS }));
    t.push(ms);
    const m = await memMib(s, sb.id);
    rss.push(m.rss);
    pss.push(m.pss);
    await sb.destroy();
    await sb.waitUntilDestroyed({ timeoutMs: 60_000 });
  }
  record(`create: ${label}`, t);
  record(`  RSS of the VM right after create (${label})`, rss, "MiB");
  record(`  PSS of the VM right after create (${label})`, pss, "MiB");
}

// 1. Cold boot.
let s = await startServer({ HUTCH_LOG_LEVEL: "warn", HUTCH_TEMPLATES: "off" });
try {
  await creates(s, "cold boot");
} finally {
  await s.dispose();
}

// 2. Template restore; pause, resume, fork at 256 MiB and 1 GiB.
s = await startServer({ HUTCH_LOG_LEVEL: "warn", HUTCH_TEMPLATES: "on", HUTCH_POOL_SIZE: "0", HUTCH_POOL_ROOTFS: ROOTFS, HUTCH_USER_CREATES_PER_MINUTE: "off" });
try {
  await templateOf(s, "minimal-1_1c256m10240d");
  await creates(s, "template restore");
  // Ten idle clones side by side: what one costs the host when clones share
  // their template's pages (PSS). (The host's MemAvailable moved with other
  // processes' page cache more than with the clones: not a usable measure here.)
  const idle = [];
  for (let i = 0; i < 10; i++) idle.push(await s.client.createSandbox({ shape: SMALL, rootfs: ROOTFS }));
  await new Promise((r) => setTimeout(r, 3000));
  const pssEach: number[] = [];
  for (const sb of idle) pssEach.push((await memMib(s, sb.id)).pss);
  record("10 idle clones side by side: PSS of one", pssEach, "MiB");
  for (const sb of idle) await sb.destroy();
  for (const shape of [SMALL, BIG]) {
    const mem = shape === SMALL ? "256 MiB" : "1 GiB";
    if (shape === BIG) {
      // First use of the shape cold boots and builds its template in the background.
      const first = await s.client.createSandbox({ shape, rootfs: ROOTFS });
      await first.destroy();
      await templateOf(s, "minimal-1_1c1024m10240d");
    }
    const sb = await s.client.createSandbox({ shape, rootfs: ROOTFS });
    await sb.sh("setsid sh -c 'while true; do sleep 0.1; done' </dev/null >/dev/null 2>&1 &");
    const pause1: number[] = [];
    const pause: number[] = [];
    const resume: number[] = [];
    const size: number[] = [];
    for (let i = 0; i <= runs; i++) {
      const [p] = await timed(async () => {
        await api(s, "POST", `/v1/sandboxes/${sb.id}/pause`);
        await until(s, sb.id, "paused");
      });
      (i === 0 ? pause1 : pause).push(p);
      size.push(duMib(join(s.dataDir, "sandboxes", sb.id)));
      const [r] = await timed(async () => {
        await api(s, "POST", `/v1/sandboxes/${sb.id}/resume`);
        await until(s, sb.id, "running");
      });
      resume.push(r);
    }
    const exec: number[] = [];
    for (let i = 0; i < 10; i++) exec.push((await timed(() => sb.runCommand("true")))[0]);
    record(`${mem}: first pause (a clone streams its RAM)`, pause1);
    record(`${mem}: pause, later cycles`, pause);
    record(`${mem}: resume`, resume);
    record(`${mem}: paused sandbox on disk (du)`, size, "MiB");
    record(`${mem}: exec \`true\` round trip after resume`, exec);
    const fork: number[] = [];
    for (let i = 0; i < runs; i++) {
      await api(s, "POST", `/v1/sandboxes/${sb.id}/pause`);
      await until(s, sb.id, "paused");
      const [f, child] = await timed(() => sb.fork({}));
      fork.push(f);
      // Gone before the next fork: a teardown (QEMU quit, files, cgroups) running beside it would be measured too.
      await child.destroy();
      await child.waitUntilDestroyed({ timeoutMs: 60_000 });
    }
    record(`${mem}: fork of a paused sandbox → child running`, fork);
    await sb.destroy();
  }
} finally {
  await s.dispose();
}

// 3. Warm pool hand-over (refilled between creates).
s = await startServer({ HUTCH_LOG_LEVEL: "info", HUTCH_TEMPLATES: "on", HUTCH_POOL_ROOTFS: ROOTFS, HUTCH_POOL_SIZE: "2" });
try {
  const ready = () => (s.output().match(/warm VM ready/g) ?? []).length;
  let handed = 0;
  await creates(s, "warm pool hand-over", async () => {
    // Wait for the pool to be full again (2 at start, +1 after each hand-over).
    await waitFor(async () => (ready() >= 2 + handed ? true : undefined), 300_000, "warm pool");
    handed++;
  });
} finally {
  await s.dispose();
}

const ratio = (a: string, b: string) => (result[a]! / result[b]!).toFixed(1);
rows.push(["cold boot / template restore", `${ratio("create: cold boot", "create: template restore")}×`, ""]);
rows.push(["cold boot / pool hand-over", `${ratio("create: cold boot", "create: warm pool hand-over")}×`, ""]);
rows.push(["template restore / pool hand-over", `${ratio("create: template restore", "create: warm pool hand-over")}×`, ""]);
console.log(`\nSnapshot benchmarks (${ROOTFS}, ${runs} runs, medians from the client, load ${(await readFile("/proc/loadavg", "utf8")).split(" ").slice(0, 3).join(" ")})\n`);
console.log(table(["what", "median", "n"], rows));
