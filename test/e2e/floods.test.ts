/**
 * A guest flooding its console, its agent channel or its own disk cannot
 * exhaust the host or other sandboxes (minimal:1, jailed): the console log
 * stays within its bound, a command printing far more than its client reads
 * is held by the exec credit (the server's memory stays bounded, the client
 * gets every byte), a buffered exec is cut at its bound, a full guest disk is the guest's
 * ENOSPC and never more host bytes than the sandbox's disk size; the flooded
 * sandbox, the server and a bystander sandbox keep answering throughout.
 * The figures printed here go to BENCHMARKS.md.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { request, type IncomingMessage } from "node:http";
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { Sandbox } from "@nodeops-createos/sandbox";
import { api, startServer, type TestServer } from "./support/server.js";

const CONSOLE_MAX = 256 * 1024;
const DISK_MIB = 256;
const MiB = 1024 * 1024;

describe("floods (minimal:1, jailed)", () => {
  let server: TestServer;
  let flooded: Sandbox;
  let bystander: Sandbox;
  const dir = () => join(server.dataDir, "sandboxes", flooded.id);
  const rssMib = async () => Number(/VmRSS:\s+(\d+)/.exec(await readFile(`/proc/${server.proc.pid}/status`, "utf8"))![1]) / 1024;
  const sh = async (sb: Sandbox, cmd: string) => (await sb.sh(cmd)).result;

  /** Runs `fn` while sampling every 50 ms; meanwhile the server, the flooded sandbox and the bystander must answer. */
  async function whileAnswering<T>(sample: () => Promise<void>, fn: () => Promise<T>): Promise<{ value: T; worstMs: number }> {
    let done = false;
    let worstMs = 0;
    const sampler = (async () => {
      while (!done) {
        await sample();
        await sleep(50);
      }
    })();
    const prober = (async () => {
      while (!done) {
        const t0 = Date.now();
        assert.equal((await fetch(`${server.url}/readyz`)).status, 200);
        assert.equal((await sh(bystander, "echo ok")).stdout, "ok\n");
        assert.equal((await sh(flooded, "echo ok")).stdout, "ok\n");
        worstMs = Math.max(worstMs, Date.now() - t0);
        await sleep(500);
      }
    })();
    try {
      const value = await fn();
      return { value, worstMs };
    } finally {
      done = true;
      await Promise.all([sampler, prober]);
    }
  }

  before(async () => {
    server = await startServer({ HUTCH_CONSOLE_MAX_BYTES: String(CONSOLE_MAX) });
    const made = await Promise.all([
      server.client.createSandbox({ shape: "s-1vcpu-256mb", rootfs: "minimal:1", disk_mib: DISK_MIB }),
      server.client.createSandbox({ shape: "s-1vcpu-256mb", rootfs: "minimal:1", disk_mib: DISK_MIB }),
    ]);
    [flooded, bystander] = made as [Sandbox, Sandbox];
  });
  after(async () => {
    await server?.dispose();
  });

  test("console: the guest writes its serial port flat out; console.log and console.log.1 stay within the bound", async () => {
    const size = (f: string) => stat(join(dir(), f)).then((s) => s.size, () => 0);
    let peakLog = 0;
    let peakSum = 0;
    const bytes = 1 * MiB; // 4× the bound; ~50 MiB would take minutes at the UART's pace under TCG
    const line = "console flood ".repeat(5);
    const { worstMs } = await whileAnswering(
      async () => {
        const [a, b] = await Promise.all([size("console.log"), size("console.log.1")]);
        peakLog = Math.max(peakLog, a);
        peakSum = Math.max(peakSum, a + b);
      },
      async () => {
        const t0 = Date.now();
        // ~100-200 KB/s: what the emulated UART takes under TCG, the guest's vCPU busy all along.
        const r = await sh(flooded, `yes '${line}' | head -c ${bytes} > /dev/ttyS0; echo '${line}done' > /dev/ttyS0`);
        assert.equal(r.exit_code, 0);
        return Date.now() - t0;
      },
    ).then(async (x) => {
      console.log(`floods: console ${bytes} bytes in ${x.value} ms; bound ${CONSOLE_MAX} B per file; peak console.log ${peakLog} B, peak both ${peakSum} B`);
      return x;
    });
    // Give the last poll its turn, then the newest lines are still there.
    await sleep(700);
    const tail = await readFile(join(dir(), "console.log"), "utf8").catch(() => "");
    const old = await readFile(join(dir(), "console.log.1"), "utf8").catch(() => "");
    assert.match(old + tail, /console flood done/);
    assert.ok(peakLog <= CONSOLE_MAX * 1.25, `console.log peaked at ${peakLog} B (bound ${CONSOLE_MAX})`);
    assert.ok(peakSum <= 2 * CONSOLE_MAX * 1.25, `console.log + .1 peaked at ${peakSum} B (bound ${2 * CONSOLE_MAX})`);
    assert.ok(worstMs < 10_000, `answers within ${worstMs} ms during the flood`);
  });

  test("agent channel: a stream whose client stops reading holds the command, then gets every byte; buffered is cut at its bound", async () => {
    const base = await rssMib();
    let peak = base;
    // `yes | head -c`: fast enough under TCG (~10 MB/s) that 3 s unread would be far past the
    // old 8 MiB backlog kill; 40 MiB is far more than the window and the sockets hold.
    const size = 40 * MiB;
    const line = "agent channel flood\n";
    const expected = createHash("sha256").update(line.repeat(Math.ceil(size / line.length)).slice(0, size));
    const t0 = Date.now();
    const { value: streamed, worstMs } = await whileAnswering(
      async () => void (peak = Math.max(peak, await rssMib())),
      async () => {
        // A client that reads one chunk, then nothing for 3 s, then everything.
        const req = request(`${server.url}/v1/sandboxes/${flooded.id}/exec?stream=true`, {
          method: "POST",
          headers: { "x-api-key": server.apiKey, "content-type": "application/json" },
        });
        req.end(JSON.stringify({ cmd: "sh", args: ["-c", `yes 'agent channel flood' | head -c ${size}`] }));
        const res = await new Promise<IncomingMessage>((r) => req.once("response", r));
        await new Promise((r) => res.once("readable", r));
        res.pause();
        await sleep(3000);
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (text += c));
        res.resume();
        await new Promise((r) => res.once("end", r));
        return text;
      },
    );
    const streamMs = Date.now() - t0;
    const streamPeak = peak;
    const lines = streamed.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    const got = createHash("sha256");
    let bytes = 0;
    for (const l of lines) {
      if (typeof l.stdout !== "string") continue;
      got.update(l.stdout);
      bytes += l.stdout.length;
    }
    assert.deepEqual(lines.at(-1), { exit_code: 0 }, "nothing killed");
    assert.ok(!lines.some((l) => "error" in l), "no error line");
    assert.equal(bytes, size);
    assert.equal(got.digest("hex"), expected.digest("hex"), "every byte, in order");
    // Buffered: cut at the output bound.
    const t1 = Date.now();
    const b = await api(server, "POST", `/v1/sandboxes/${flooded.id}/exec`, { cmd: "yes", args: ["buffered flood"] });
    const bufferedMs = Date.now() - t1;
    peak = Math.max(peak, await rssMib());
    assert.equal(b.status, 200);
    assert.equal(b.json.data.result.stdout.length, 16 * MiB);
    assert.match(b.json.data.result.error, /output larger than 16777216 bytes: truncated, command killed/);
    // The killed command is gone: nothing keeps printing into the channel.
    assert.equal((await sh(flooded, "ps -o comm | grep -c '^yes$' || true")).stdout.trim(), "0");
    console.log(
      `floods: agent channel: stream of ${bytes} B, client 3 s behind → all delivered, exit 0, in ${streamMs} ms (server RSS ${base.toFixed(0)} → peak ${streamPeak.toFixed(0)} MiB); ` +
        `buffered yes → 16 MiB in ${bufferedMs} ms then killed (peak ${peak.toFixed(0)} MiB); worst answer during ${worstMs} ms`,
    );
    assert.ok(streamPeak - base < 64, `server RSS grew by ${(streamPeak - base).toFixed(0)} MiB while the stream's client did not read`);
    assert.ok(peak - base < 200, `server RSS grew by ${(peak - base).toFixed(0)} MiB`);
    assert.ok(worstMs < 10_000, `answers within ${worstMs} ms during the flood`);
  });

  test("disk: the guest fills its own disk; it gets ENOSPC, the host file stays within the disk size, all answer", async () => {
    const disk = join(dir(), "disk.img");
    const before = await stat(disk);
    const { value: r, worstMs } = await whileAnswering(
      async () => {},
      () => sh(flooded, "dd if=/dev/zero of=/root/fill bs=1M 2>&1; sync; df -k /root | tail -1"),
    );
    assert.match(r.stdout, /No space left on device/);
    const after = await stat(disk);
    console.log(
      `floods: disk ${DISK_MIB} MiB filled by the guest (${r.stdout.trim().split("\n").pop()}); host disk.img size ${after.size} B, ` +
        `allocated ${after.blocks * 512} B (before ${before.blocks * 512}); worst answer during ${worstMs} ms`,
    );
    assert.ok(after.size <= DISK_MIB * MiB, `apparent size ${after.size}`);
    assert.ok(after.blocks * 512 <= DISK_MIB * MiB, `allocated ${after.blocks * 512}`);
    assert.equal((await sh(flooded, "rm /root/fill && echo freed")).stdout, "freed\n");
    assert.equal((await sh(bystander, "echo fine")).stdout, "fine\n");
    assert.equal(server.proc.exitCode, null, "the server is alive");
  });
});
