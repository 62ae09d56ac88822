/**
 * `hutch pull ID REMOTE LOCAL`: a file is streamed to LOCAL (or into it when
 * LOCAL is a directory); a directory's contents are packed by `tar -c` in the
 * guest (bash: pipefail), streamed base64-encoded over an exec (no temporary file in the guest)
 * and unpacked by the host's tar into LOCAL (created).
 */
import { createWriteStream } from "node:fs";
import { mkdir, rename, rm, stat } from "node:fs/promises";
import { join, posix } from "node:path";
import { Readable, Transform, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import { byteProgress, CountingStream, formatBytes } from "../client/byte-progress.js";
import { CliError } from "../client/cli-error.js";
import { runChecked, streamExec } from "../client/guest-exec.js";
import { tarExtract } from "../client/host-tar.js";
import { resolveSandbox } from "../client/resolve-sandbox.js";
import type { CommandContext } from "../client/run-action.js";

/** What REMOTE is, and its (approximate, for dirs) size. */
export function parseKind(out: string): { kind: "file" | "dir" | "none"; size: number | undefined } {
  const [kind, size] = out.trim().split(/\s+/);
  const n = Number(size);
  if (kind === "file") return { kind, size: Number.isFinite(n) ? n : undefined };
  if (kind === "dir") return { kind, size: Number.isFinite(n) ? n * 1024 : undefined };
  return { kind: "none", size: undefined };
}

/** Decodes base64 text arriving in arbitrary pieces (with line breaks) into bytes. */
export class Base64Decoder extends Transform {
  private pending = "";
  override _transform(chunk: Buffer | string, _enc: BufferEncoding, cb: TransformCallback): void {
    this.pending += chunk.toString().replace(/[^A-Za-z0-9+/=]/g, "");
    const usable = this.pending.length - (this.pending.length % 4);
    const out = Buffer.from(this.pending.slice(0, usable), "base64");
    this.pending = this.pending.slice(usable);
    cb(null, out);
  }
  override _flush(cb: TransformCallback): void {
    if (this.pending.length) return cb(new Error("truncated base64 stream"));
    cb();
  }
}

async function isDir(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isDirectory() === true;
}

export async function pullCommand(ctx: CommandContext, ref: string, remote: string, local: string): Promise<void> {
  if (!remote.startsWith("/")) throw new CliError(`REMOTE must be an absolute path in the sandbox, got "${remote}"`);
  const client = ctx.client();
  const sb = await resolveSandbox(client, ref);
  const probe =
    'if [ -d "$1" ]; then echo dir $(du -sk "$1" | cut -f1); elif [ -f "$1" ]; then echo file $(stat -c %s "$1" 2>/dev/null || wc -c < "$1"); else echo none; fi';
  const { kind, size } = parseKind(await runChecked(client, sb.id, { cmd: "sh", args: ["-c", probe, "hutch-pull", remote] }, "looking up the path"));
  if (kind === "none") throw new CliError(`${sb.id}:${remote}: no such file or directory`);

  if (kind === "file") {
    const target = (await isDir(local)) ? join(local, posix.basename(remote)) : local;
    const url = `/v1/sandboxes/${encodeURIComponent(sb.id)}/files`;
    const res = await client.http.requestRaw("GET", url, { query: { path: remote }, timeoutMs: 600_000, retry: false });
    if (!res.ok) await client.http.throwForResponse(res, "GET", url);
    if (!res.body) throw new CliError("the server sent no file body");
    const progress = byteProgress(posix.basename(remote), size);
    const counter = new CountingStream(progress);
    // Write beside the target and rename at the end: an interrupted pull leaves no half file.
    const partial = `${target}.hutch-partial`;
    try {
      await pipeline(Readable.fromWeb(res.body as import("node:stream/web").ReadableStream), counter, createWriteStream(partial));
      await rename(partial, target);
    } catch (err) {
      await rm(partial, { force: true });
      throw err;
    } finally {
      progress.stop();
    }
    process.stderr.write(`pulled ${formatBytes(counter.bytes)} to ${target}\n`);
    return;
  }

  await mkdir(local, { recursive: true });
  const tar = tarExtract(local);
  const progress = byteProgress(`${posix.basename(remote) || remote}/`, size);
  const counter = new CountingStream(progress);
  const decoder = new Base64Decoder();
  // If tar dies early its stdin errors (EPIPE); tar.done carries the real reason.
  tar.proc.stdin!.on("error", () => undefined);
  decoder.pipe(counter).pipe(tar.proc.stdin!);
  let exitCode: number | undefined;
  let stderr = "";
  try {
    for await (const frame of streamExec(client, sb.id, { cmd: "bash", args: ["-c", 'set -o pipefail; tar -c -f - -C "$1" . | base64', "hutch-pull", remote] })) {
      if (frame.stdout !== undefined && !decoder.write(frame.stdout)) await new Promise((r) => decoder.once("drain", r));
      if (frame.stderr !== undefined) stderr += frame.stderr;
      if (frame.error !== undefined) stderr += frame.error;
      if (frame.exit_code !== undefined) exitCode = frame.exit_code;
    }
    decoder.end();
    await tar.done;
  } catch (err) {
    decoder.destroy();
    tar.proc.kill();
    throw err;
  } finally {
    progress.stop();
  }
  if (exitCode !== 0) throw new CliError(`packing ${remote} failed in the sandbox: ${stderr.trim().split("\n").pop() || `exit code ${exitCode}`}`);
  process.stderr.write(`pulled ${remote} (${formatBytes(counter.bytes)} of tar) into ${local}\n`);
}
