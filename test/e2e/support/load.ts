/**
 * Load drivers shared by the suite's short load test (test/e2e/load.test.ts)
 * and the long run (bench/load.ts): creates and destroys through the SDK, N
 * at a time, then a check that nothing leaked; concurrent exec streams on
 * one sandbox with their output checked line by line.
 */
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import type { Sandbox } from "@nodeops-createos/sandbox";
import { fallbackTapName, tapName } from "../../../src/runtime/network/tap-name.js";
import { runCommand } from "../../../src/runtime/run-command.js";
import { api, pidsMentioning, type TestServer } from "./server.js";

export interface CreateDestroyResult {
  createMs: number[];
  destroyMs: number[];
  errors: string[];
  wallMs: number;
}

/**
 * `total` sandboxes created, checked with one exec and destroyed (waiting
 * for `destroyed`), `concurrency` at a time. Errors are collected, not thrown.
 */
export async function createDestroyLoad(
  server: TestServer,
  opts: { total: number; concurrency: number; shape: string; rootfs: string },
): Promise<CreateDestroyResult> {
  const res: CreateDestroyResult = { createMs: [], destroyMs: [], errors: [], wallMs: 0 };
  let next = 0;
  const t0 = performance.now();
  const worker = async () => {
    while (next < opts.total) {
      const n = next++;
      let sb: Sandbox | undefined;
      try {
        const c0 = performance.now();
        sb = await server.client.createSandbox({ shape: opts.shape, rootfs: opts.rootfs });
        res.createMs.push(performance.now() - c0);
        const out = await sb.runCommand("echo", [`load-${n}`]);
        if (out.result.stdout !== `load-${n}\n`) res.errors.push(`#${n}: exec answered ${JSON.stringify(out.result)}`);
      } catch (err) {
        res.errors.push(`#${n} create: ${(err as Error).message}`);
      }
      if (!sb) continue;
      try {
        const d0 = performance.now();
        await sb.destroy();
        await sb.waitUntilDestroyed({ timeoutMs: 120_000 });
        res.destroyMs.push(performance.now() - d0);
      } catch (err) {
        res.errors.push(`#${n} destroy: ${(err as Error).message}`);
      }
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency }, worker));
  res.wallMs = performance.now() - t0;
  return res;
}

/**
 * What is left of sandboxes after they were all destroyed: live rows,
 * QEMU processes, sandbox directories and taps (warm pool VMs aside: they
 * are not sandboxes and the API does not know their ids).
 */
export async function leftovers(server: TestServer): Promise<{ live: string[]; qemus: number[]; dirs: string[]; taps: string[] }> {
  const rows: Array<{ id: string; status: string }> = (await api(server, "GET", "/v1/sandboxes?limit=500")).json.data.data;
  const liveIds = rows.filter((r) => r.status !== "destroyed" && r.status !== "failed").map((r) => r.id);
  const dirs = await readdir(join(server.dataDir, "sandboxes")).catch(() => [] as string[]);
  const all = new Set(rows.map((r) => r.id));
  // Directories of sandboxes the API knows (warm pool VMs have ids it does not).
  const sandboxDirs = dirs.filter((d) => all.has(d));
  const qemus: number[] = [];
  for (const d of sandboxDirs) qemus.push(...(await pidsMentioning(join(server.dataDir, "sandboxes", d))));
  const links = new Set(
    (await runCommand("ip", ["-n", server.netns, "-o", "link", "show"], { allowFail: true })).stdout
      .split("\n")
      .map((l) => /^\d+: ([^:@]+)/.exec(l)?.[1])
      .filter((n): n is string => !!n),
  );
  const taps = [...all].flatMap((id) => [tapName(id), fallbackTapName(id)]).filter((t) => links.has(t));
  return { live: liveIds, qemus, dirs: sandboxDirs, taps };
}

/**
 * `n` exec streams at once on `sb`, each printing `lines` numbered lines
 * tagged with its index; resolves with the streams whose output was not
 * exactly theirs (empty when all were right).
 */
export async function concurrentExecStreams(sb: Sandbox, n: number, lines: number): Promise<string[]> {
  const bad: string[] = [];
  await Promise.all(
    Array.from({ length: n }, async (_, i) => {
      let out = "";
      let exit: number | undefined;
      try {
        for await (const ev of sb.streamCommand("sh", ["-c", `i=1; while [ $i -le ${lines} ]; do echo s${i}-$i; i=$((i+1)); done`])) {
          if (ev.type === "stdout") out += ev.data;
          else if (ev.type === "exit") exit = ev.exitCode;
          else if (ev.type === "error") bad.push(`stream ${i}: ${ev.message}`);
        }
      } catch (err) {
        bad.push(`stream ${i}: ${(err as Error).message}`);
        return;
      }
      const want = Array.from({ length: lines }, (_, k) => `s${i}-${k + 1}\n`).join("");
      if (exit !== 0 || out !== want) bad.push(`stream ${i}: exit ${exit}, ${out.length} bytes (want ${want.length})`);
    }),
  );
  return bad;
}
