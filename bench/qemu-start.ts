/**
 * Where a QEMU start goes, without a server: the resume command line
 * (`buildSnapshotArgs`, minimal:1, 256 MiB RAM file share=on, qcow2-less raw
 * disk, `-incoming defer`, `-S`; a hub netdev instead of the tap) started
 * by this process (Node forks) or by `hutch-spawn`, and variants of it.
 * Each start is timed to its QMP socket, to QEMU's greeting (sent by the
 * monitor's I/O thread, while the machine may still be built) and to the
 * answer to `qmp_capabilities` (the main loop runs: QEMU is ready).
 * Variants are interleaved round by round. `--ballast MB` grows this
 * process first, as a server's heap is, which the fork of a spawn copies.
 *
 *   npm run build && node --import tsx bench/qemu-start.ts [--runs 9] [--ballast 150]
 */
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, truncate, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { ImageStore, defaultCacheDir } from "../src/runtime/images/image-store.js";
import { vmPaths } from "../src/runtime/qemu/vm-paths.js";
import { launchDetached, VmmSpawner, type VmmChild } from "../src/runtime/qemu/vmm-spawner.js";
import { buildSnapshotArgs } from "../src/runtime/snapshot/snapshot-args.js";
import { median, table } from "./support/stats.js";

const arg = (name: string) => (process.argv.includes(name) ? process.argv[process.argv.indexOf(name) + 1] : undefined);
const runs = Number(arg("--runs")) || 9;
const ballastMb = Number(arg("--ballast")) || 0;
const ROOT = path.resolve(fileURLToPath(import.meta.url), "../..");
const log = { debug() {}, info() {}, warn() {}, error() {} };

const ballast: Buffer[] = [];
for (let i = 0; i < ballastMb; i++) ballast.push(Buffer.alloc(1 << 20, 1));

const images = new ImageStore({ cacheDir: defaultCacheDir(), agentDir: path.join(ROOT, "agent") });
const dir = await mkdtemp(path.join(tmpdir(), "hutch-qemu-start-"));
const id = "sb_01BENCHQEMUSTART000000000";
const paths = vmPaths(dir, id);
const spawner = await VmmSpawner.create(log);
try {
  await mkdir(paths.dir, { recursive: true });
  const mem = path.join(paths.dir, "mem");
  await writeFile(mem, "");
  await truncate(mem, 256 * 1048576);
  await writeFile(paths.disk, "");
  await truncate(paths.disk, 1024 * 1048576);
  const base = buildSnapshotArgs({
    id, accel: "tcg", vcpu: 1, memMib: 256, paths, kernel: images.kernel(), rootfsPath: images.rootfs("minimal:1").path,
    tap: { fd: 9 }, mac: "02:fc:00:00:00:09", ram: { file: mem, share: true }, disk: { file: paths.disk, format: "raw" }, incoming: true, paused: true,
  }).map((a) => (a.startsWith("tap,id=net0,") ? "hubport,id=net0,hubid=0" : a));
  /** `args` without the `flag value` pairs whose value matches. */
  const drop = (args: string[], flag: string, match: (v: string) => boolean) =>
    args.filter((a, i) => !(a === flag && match(args[i + 1]!)) && !(args[i - 1] === flag && match(a)));
  const noRamFile = drop(drop(base, "-object", (v) => v.startsWith("memory-backend")), "-machine", (v) => v.startsWith("memory-backend="));
  const noDisk = drop(drop(base, "-drive", (v) => v.startsWith("id=disk,")), "-device", (v) => v.includes("drive=disk"));
  const variants: [string, string[], "node" | "helper"][] = [
    ["resume argv, Node spawns", base, "node"],
    ["resume argv, hutch-spawn", base, "helper"],
    ["no RAM file (anonymous)", noRamFile, "helper"],
    ["no writable disk", noDisk, "helper"],
    ["tb-size=32", base.map((a) => (a.startsWith("tcg,tb-size=") ? "tcg,tb-size=32" : a)), "helper"],
  ];
  if (!spawner) variants.splice(1);
  const samples = new Map<string, number[][]>();
  for (let r = 0; r < runs; r++) {
    for (const [label, argv, how] of variants) {
      const list = samples.get(label) ?? [];
      list.push(await start(argv, how === "helper" ? spawner : undefined));
      samples.set(label, list);
    }
  }
  const rows = [...samples].map(([label, s]) => [label, ...[0, 1, 2].map((k) => median(s.map((x) => x[k]!)).toFixed(1)), String(s.length)]);
  console.log(`\nQEMU start (resume command line, minimal:1, 256 MiB; ballast ${ballastMb} MB in this process), medians in ms\n`);
  console.log(table(["what", "QMP socket", "greeting", "ready (qmp_capabilities)", "n"], rows));
} finally {
  spawner?.close();
  await rm(dir, { recursive: true, force: true });
}

async function start(args: string[], via: VmmSpawner | undefined): Promise<number[]> {
  await rm(paths.qmp, { force: true });
  const t0 = performance.now();
  const child: VmmChild = await launchDetached(via, { argv: ["qemu-system-x86_64", ...args], cwd: paths.dir, logFile: paths.qemuLog });
  const gone = new Promise((r) => child.once("exit", r));
  while (!existsSync(paths.qmp)) await new Promise((r) => setTimeout(r, 1));
  const tSock = performance.now();
  let sock: net.Socket | undefined;
  while (!sock) {
    sock = await new Promise<net.Socket | undefined>((res) => {
      const s = net.connect(paths.qmp);
      s.once("connect", () => res(s));
      s.once("error", () => res(undefined));
    });
  }
  const lines = lineReader(sock);
  await lines();
  const tGreet = performance.now();
  sock.write('{"execute":"qmp_capabilities"}\n');
  await lines();
  const tReady = performance.now();
  sock.write('{"execute":"quit"}\n');
  // A detached child does not keep this process alive: a timer does meanwhile.
  const keep = setInterval(() => {}, 1000);
  await gone;
  clearInterval(keep);
  sock.destroy();
  return [tSock - t0, tGreet - t0, tReady - t0];
}

/** Next JSON line from `sock` on each call. */
function lineReader(sock: net.Socket): () => Promise<string> {
  let buf = "";
  const waiting: ((l: string) => void)[] = [];
  const ready: string[] = [];
  sock.setEncoding("utf8");
  sock.on("data", (d: string) => {
    buf += d;
    for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      const w = waiting.shift();
      if (w) w(line);
      else ready.push(line);
    }
  });
  return () => (ready.length ? Promise.resolve(ready.shift()!) : new Promise((r) => waiting.push(r)));
}
