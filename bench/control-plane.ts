/**
 * Control-plane benchmark: starts bench/control-plane-server.ts in a child
 * process (fake runtime, 1,000 rows) and drives it with autocannon
 * (50 connections, 10 s each) on GET /v1/sandboxes/{id} and on
 * GET /v1/sandboxes?limit=500. Prints a markdown table.
 *
 *   node --import tsx bench/control-plane.ts [--duration 10] [--connections 50]
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

/** The part of autocannon's (untyped) API used here. */
interface CannonResult {
  requests: { average: number };
  latency: { p50: number; p99: number };
  non2xx: number;
  errors: number;
  timeouts: number;
}
type Cannon = (opts: { url: string; connections: number; duration: number; headers: Record<string, string> }) => Promise<CannonResult>;
const moduleName = "autocannon";
const autocannon = ((await import(moduleName)) as { default: Cannon }).default;

const args = process.argv.slice(2);
const opt = (name: string, def: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : def;
};
const duration = opt("duration", 10);
const connections = opt("connections", 50);

const here = dirname(fileURLToPath(import.meta.url));
const child = spawn(process.execPath, ["--import", "tsx", join(here, "control-plane-server.ts")], { stdio: ["ignore", "pipe", "inherit"] });
const firstLine = (await once(createInterface({ input: child.stdout! }), "line")) as [string];
const { url, apiKey, id } = JSON.parse(firstLine[0]) as { url: string; apiKey: string; id: string };

async function run(title: string, path: string) {
  const result = await autocannon({ url: url + path, connections, duration, headers: { "x-api-key": apiKey } });
  const non2xx = result.non2xx + result.errors + result.timeouts;
  return { title, rps: result.requests.average, p50: result.latency.p50, p99: result.latency.p99, non2xx };
}

try {
  // Short warm-up so JIT and statement caches are hot.
  await autocannon({ url: `${url}/v1/sandboxes/${id}`, connections: 10, duration: 2, headers: { "x-api-key": apiKey } });
  const rows = [await run("GET /v1/sandboxes/{id}", `/v1/sandboxes/${id}`), await run("GET /v1/sandboxes?limit=500 (1,000 rows)", "/v1/sandboxes?limit=500")];
  console.log(`\n${connections} connections, ${duration} s each, node ${process.version}\n`);
  console.log("| endpoint | req/s | p50 ms | p99 ms | errors/non-2xx |");
  console.log("|---|---:|---:|---:|---:|");
  for (const r of rows) console.log(`| ${r.title} | ${Math.round(r.rps)} | ${r.p50} | ${r.p99} | ${r.non2xx} |`);
} finally {
  child.kill("SIGTERM");
  await once(child, "exit");
}
