/**
 * Where the time of a pool hand-over, a template restore, a resume and a
 * fork goes, phase by phase, for several server variants side by side in
 * one run (interleaved: each round runs every variant once, in alternating
 * order, so load drifts hit them alike). A variant is a source tree (its
 * dist/ is what runs) plus environment, e.g. the jail on and off:
 *
 *   npm run build && node --import tsx bench/snapshot-phases.ts --runs 7 \
 *     --variant jail=.:HUTCH_JAIL=on --variant nojail=.:HUTCH_JAIL=off [--json samples.json]
 *
 * (`--variant before=/tmp/old-tree:HUTCH_JAIL=on` compares another build:
 * a copy of the repo with its own dist/ and a node_modules link.)
 *
 * Each variant's server has a warm pool of 1 on minimal:1 / s-1vcpu-256mb.
 * One round: wait for the pool; create (hand-over) and at once create
 * again (template restore: the pool refills only a second later); exec
 * `true` ×5 on the first; wait for the pool again (no refill competes);
 * pause the first and resume it at once (measured: a first resume right
 * after the pause, while its RAM may still be being owned);
 * pause the second twice with a resume between (first pause streams its
 * RAM; the server then owns it in the background, unless
 * HUTCH_OWN_STREAMS=off: the bench waits for that, then the first resume
 * maps it, or loads the stream: reported apart), resume (measured),
 * pause, fork (measured: until the child runs). Client times are through
 * the SDK (create, fork) or raw API + GET polled every 5 ms (resume).
 * Server phases come from the runtime's debug lines "snapshot phases" and
 * core's "sandbox created".
 */
import { readFile, writeFile } from "node:fs/promises";
import { resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { median, table } from "./support/stats.js";

type ServerModule = typeof import("../test/e2e/support/server.js");
type TestServer = Awaited<ReturnType<ServerModule["startServer"]>>;

const arg = (name: string) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const runs = Number(arg("--runs")) || 5;
const ROOTFS = "minimal:1";
const SHAPE = "s-1vcpu-256mb";

interface Variant {
  label: string;
  tree: string;
  env: Record<string, string>;
  mod?: ServerModule;
  s?: TestServer;
  handed: number;
  /** metric → samples */
  samples: Map<string, number[]>;
}

function parseVariants(): Variant[] {
  const specs: string[] = [];
  process.argv.forEach((a, i) => a === "--variant" && specs.push(process.argv[i + 1]!));
  if (specs.length === 0) specs.push("jail=.:HUTCH_JAIL=on", "nojail=.:HUTCH_JAIL=off");
  return specs.map((spec) => {
    const [label, rest = "."] = spec.split(/=(.*)/s) as [string, string?];
    const [tree, ...envs] = rest.split(":");
    const env: Record<string, string> = {};
    for (const e of envs) {
      const [k, v = ""] = e.split(/=(.*)/s) as [string, string?];
      env[k] = v;
    }
    return { label, tree: resolve(tree || "."), env, handed: 0, samples: new Map() };
  });
}

/**
 * The exec round trip after `what`: the first one apart (a new QEMU's guest runs its
 * fork/exec path for the first time, translated anew under TCG), then four more.
 */
async function execs(v: Variant, what: string, sb: { runCommand(cmd: string): Promise<unknown> }): Promise<void> {
  add(v, `exec \`true\` after ${what}, first (client)`, (await timed(() => sb.runCommand("true")))[0]);
  for (let i = 0; i < 4; i++) add(v, `exec \`true\` after ${what}, later (client)`, (await timed(() => sb.runCommand("true")))[0]);
}

function add(v: Variant, metric: string, x: number): void {
  const list = v.samples.get(metric) ?? [];
  list.push(x);
  v.samples.set(metric, list);
}

/** JSON log lines of `msg` printed by the server since `from` (an output offset). */
function logLines(s: TestServer, msg: string, from = 0): any[] {
  const out: any[] = [];
  for (const line of s.output().slice(from).split("\n")) {
    if (!line.includes(`"msg":"${msg}"`)) continue;
    try {
      out.push(JSON.parse(line));
    } catch {
      // a line cut by a chunk boundary
    }
  }
  return out;
}

/** Adds the phases of the runtime's `op` on `id` (its last line) to `v` as "<label>: <phase>". */
function addPhases(v: Variant, label: string, op: string, id: string, from: number): void {
  const line = logLines(v.s!, "snapshot phases", from).filter((l) => l.op === op && l.id === id).pop();
  if (!line) return;
  for (const [k, ms] of Object.entries(line.phases as Record<string, number>)) add(v, `${label} · ${k}`, ms);
  add(v, `${label} · runtime total`, line.totalMs);
}

function addCreatePhases(v: Variant, label: string, id: string, from: number): void {
  const line = logLines(v.s!, "sandbox created", from).filter((l) => l.sandbox === id).pop();
  if (!line) return;
  for (const k of ["insertedMs", "policyMs", "startedMs", "doneMs"]) if (typeof line[k] === "number") add(v, `${label} · core ${k} (from request start)`, line[k]);
}

async function timed<T>(fn: () => Promise<T>): Promise<[number, T]> {
  const t0 = performance.now();
  const x = await fn();
  return [performance.now() - t0, x];
}

async function until(v: Variant, id: string, want: string): Promise<void> {
  const { api } = v.mod!;
  const deadline = Date.now() + 120_000;
  for (;;) {
    const st = (await api(v.s!, "GET", `/v1/sandboxes/${id}`)).json.data.status;
    if (st === want) return;
    if (st === "error" || st === "failed" || Date.now() > deadline) throw new Error(`${v.label}: ${id} is ${st}, never ${want}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function poolFull(v: Variant): Promise<void> {
  const want = 1 + v.handed;
  await v.mod!.waitFor(async () => (logLines(v.s!, "warm VM ready").length >= want ? true : undefined), 300_000, `${v.label} warm pool`);
}

async function round(v: Variant): Promise<void> {
  const s = v.s!;
  const { api } = v.mod!;
  await poolFull(v);
  let from = s.output().length;
  const [tHand, a] = await timed(() => s.client.createSandbox({ shape: SHAPE, rootfs: ROOTFS }));
  v.handed++;
  const [tRestore, b] = await timed(() => s.client.createSandbox({ shape: SHAPE, rootfs: ROOTFS }));
  add(v, "create: pool hand-over (client)", tHand);
  add(v, "create: template restore (client)", tRestore);
  await new Promise((r) => setTimeout(r, 200)); // let the log lines arrive
  addPhases(v, "hand-over", "hand-over", a.id, from);
  addCreatePhases(v, "hand-over", a.id, from);
  addPhases(v, "restore", "restore", b.id, from);
  addCreatePhases(v, "restore", b.id, from);
  await execs(v, "hand-over", a);
  await poolFull(v);
  /** POST pause / resume of `id`, until GET shows the status (ms). */
  const pause = async (id = b.id) => {
    const [t] = await timed(async () => {
      await api(s, "POST", `/v1/sandboxes/${id}/pause`);
      await until(v, id, "paused");
    });
    return t;
  };
  const resume = async (id = b.id) => {
    const [t] = await timed(async () => {
      await api(s, "POST", `/v1/sandboxes/${id}/resume`);
      await until(v, id, "running");
    });
    return t;
  };
  // The hand-over's sandbox: a first pause and a resume right after it
  // (while the server may still be owning the streamed RAM).
  add(v, "pause: first (RAM streamed) (client)", await pause(a.id));
  add(v, "resume: first, right after the pause (client)", await resume(a.id));
  add(v, "pause: first (RAM streamed) (client)", await pause());
  if (v.env.HUTCH_OWN_STREAMS !== "off") {
    // The server moves the streamed RAM into the sandbox's own file (own-ram.ts).
    const bundle = resolve(s.dataDir, "sandboxes", b.id, "bundle.json");
    const [tOwn, owned] = await timed(async () => {
      for (let i = 0; i < 3000; i++) {
        if (JSON.parse(await readFile(bundle, "utf8")).mem === "owned") return true;
        await new Promise((r) => setTimeout(r, 10));
      }
      return false;
    });
    if (owned) add(v, "pause: first, then RAM owned in the background (after the pause)", tOwn);
    add(v, owned ? "resume: first, RAM owned (client)" : "resume: first, from a RAM stream (client)", await resume());
  } else {
    add(v, "resume: first, from a RAM stream (client)", await resume());
  }
  add(v, "pause: later (client)", await pause());
  from = s.output().length;
  add(v, "resume (client)", await resume());
  await new Promise((r) => setTimeout(r, 100));
  addPhases(v, "resume", "resume", b.id, from);
  await execs(v, "resume", b);
  await pause();
  from = s.output().length;
  const [tFork, child] = await timed(() => b.fork({}));
  add(v, "fork → child running (client)", tFork);
  await new Promise((r) => setTimeout(r, 100));
  addPhases(v, "fork", "fork", child.id, from);
  addPhases(v, "fork child resume", "resume", child.id, from);
  await Promise.all([a.destroy(), b.destroy(), child.destroy()]);
  for (const sb of [a, b, child]) await sb.waitUntilDestroyed({ timeoutMs: 60_000 });
}

const variants = parseVariants();
try {
  for (const v of variants) {
    v.mod = (await import(`${v.tree}/test/e2e/support/server.ts`)) as ServerModule;
    v.s = await v.mod.startServer({
      HUTCH_LOG_LEVEL: "debug", HUTCH_TEMPLATES: "on", HUTCH_POOL_SIZE: "1", HUTCH_POOL_ROOTFS: ROOTFS,
      HUTCH_USER_CREATES_PER_MINUTE: "off", ...v.env,
    });
    console.error(`${v.label}: server up (${v.tree}, ${JSON.stringify(v.env)})`);
  }
  for (const v of variants) await v.mod!.templateBuilt(v.s!.dataDir, "minimal-1_1c256m10240d", 300_000);
  // One round each not counted: first restores after a template build are slower.
  for (const v of variants) await round(v).then(() => v.samples.clear());
  for (let r = 0; r < runs; r++) {
    const order = r % 2 === 0 ? variants : [...variants].reverse();
    for (const v of order) await round(v);
    console.error(`round ${r + 1}/${runs} done`);
  }
} finally {
  for (const v of variants) await v.s?.dispose().catch(() => {});
}

const json = arg("--json");
if (json) await writeFile(json, JSON.stringify(Object.fromEntries(variants.map((v) => [v.label, Object.fromEntries(v.samples)])), null, 1) + "\n");
const metrics = [...new Set(variants.flatMap((v) => [...v.samples.keys()]))];
const order = (m: string) => ["create: pool", "hand-over ·", "create: template", "restore ·", "exec", "pause", "resume", "fork →", "fork ·", "fork child"].findIndex((p) => m.startsWith(p));
metrics.sort((x, y) => order(x) - order(y));
const load = (await readFile("/proc/loadavg", "utf8")).split(" ").slice(0, 3).join(" ");
console.log(`\nSnapshot phases (${ROOTFS}, ${SHAPE}, ${runs} rounds, medians in ms, load at the end ${load})\n`);
console.log(
  table(
    ["what", ...variants.map((v) => v.label)],
    metrics.map((m) => [m, ...variants.map((v) => {
      const xs = v.samples.get(m);
      return xs ? median(xs).toFixed(1) : "–";
    })]),
  ),
);
