/**
 * `hutch push ID LOCAL REMOTE`: a file is streamed to REMOTE (or into it when
 * REMOTE ends with `/`); a directory is packed by the host's tar, streamed to
 * a temporary file in the guest and unpacked there into REMOTE (created).
 */
import { randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { basename, posix } from "node:path";
import { Readable } from "node:stream";
import type { Sandbox } from "@nodeops-createos/sandbox";
import { byteProgress, CountingStream, formatBytes } from "../client/byte-progress.js";
import { CliError } from "../client/cli-error.js";
import { runChecked } from "../client/guest-exec.js";
import { tarCreate } from "../client/host-tar.js";
import { resolveSandbox } from "../client/resolve-sandbox.js";
import type { CommandContext } from "../client/run-action.js";
import { estimateTarSize } from "../client/tar-size.js";

/** Streams `source` to `path` in the guest with a progress bar; resolves with the byte count. */
async function upload(sb: Sandbox, path: string, source: Readable, label: string, total: number | undefined): Promise<number> {
  const progress = byteProgress(label, total);
  const counter = new CountingStream(progress);
  source.on("error", (err) => counter.destroy(err));
  source.pipe(counter);
  try {
    // No timeout: a large upload takes as long as it takes.
    await sb.files.upload(path, Readable.toWeb(counter) as ReadableStream<Uint8Array>, { timeoutMs: 0, retry: false });
  } finally {
    progress.stop();
  }
  return counter.bytes;
}

/** The guest path a pushed file lands at. */
export function pushTarget(local: string, remote: string): string {
  return remote.endsWith("/") ? posix.join(remote, basename(local)) : remote;
}

export async function pushCommand(ctx: CommandContext, ref: string, local: string, remote: string): Promise<void> {
  if (!remote.startsWith("/")) throw new CliError(`REMOTE must be an absolute path in the sandbox, got "${remote}"`);
  const st = await stat(local).catch(() => {
    throw new CliError(`${local}: no such file or directory`);
  });
  const client = ctx.client();
  const sb = await resolveSandbox(client, ref);

  if (st.isFile()) {
    const target = pushTarget(local, remote);
    const bytes = await upload(sb, target, createReadStream(local), basename(local), st.size);
    process.stderr.write(`pushed ${formatBytes(bytes)} to ${sb.id}:${target}\n`);
    return;
  }
  if (!st.isDirectory()) throw new CliError(`${local}: not a regular file or directory`);

  const tmp = `/var/tmp/.hutch-push-${randomBytes(6).toString("hex")}.tar`;
  const tar = tarCreate(local);
  const [bytes] = await Promise.all([upload(sb, tmp, tar.out, `${basename(local)}/`, await estimateTarSize(local)), tar.done]);
  // Check that the whole archive arrived (a short one would only say "tar: short read"),
  // unpack, and remove the archive whatever happens.
  const script = [
    'size=$(wc -c < "$2")',
    'if [ "$size" != "$3" ]; then echo "the archive arrived with $size of $3 bytes" >&2; rm -f "$2"; exit 1; fi',
    'mkdir -p "$1" && tar -x -f "$2" -C "$1"; rc=$?; rm -f "$2"; exit $rc',
  ].join("\n");
  await runChecked(client, sb.id, { cmd: "sh", args: ["-c", script, "hutch-push", remote, tmp, String(bytes)] }, "unpacking");
  process.stderr.write(`pushed ${local} (${formatBytes(bytes)} of tar) to ${sb.id}:${remote}\n`);
}
