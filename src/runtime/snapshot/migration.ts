/**
 * Saving and loading VM state through QMP migration to/from a file. QEMU 7.2
 * has no `file:` migration URI, so the stream goes through `exec:cat`.
 */
import { createReadStream } from "node:fs";
import net from "node:net";
import { pipeline } from "node:stream/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { readTail } from "../file-tail.js";
import { LEGACY_MACHINE, MACHINE } from "../qemu/qemu-args.js";
import type { QmpClient } from "../qemu/qmp-client.js";

/** max-bandwidth in bytes/s: high enough never to throttle a local file. */
const UNLIMITED_BANDWIDTH = 8 * 1024 ** 3;

/** What `query-migrate` reports. */
interface MigrateInfo {
  status?: string;
  "error-desc"?: string;
  ram?: { transferred?: number };
}

/** A shell-safe single-quoted path for `exec:` URIs (run by /bin/sh). */
export function shQuote(p: string): string {
  return `'${p.replaceAll("'", `'\\''`)}'`;
}

/**
 * Sets `x-ignore-shared`: RAM blocks mapped share=on are left out of the
 * stream (the file holds them). Must be the same on both ends of a stream.
 */
export async function setIgnoreShared(qmp: QmpClient, on: boolean): Promise<void> {
  await qmp.execute("migrate-set-capabilities", {
    capabilities: [{ capability: "x-ignore-shared", state: on }],
  });
}

/**
 * Polls `query-migrate` until completed (every 1, 2, 4… ms, at most `maxDelayMs`);
 * rejects on failed/cancelled or after `timeoutMs`.
 */
export async function waitMigration(qmp: QmpClient, timeoutMs: number, what: string, maxDelayMs = 25): Promise<MigrateInfo> {
  const deadline = Date.now() + timeoutMs;
  let delay = 1;
  for (;;) {
    const info = await qmp.execute<MigrateInfo>("query-migrate");
    if (info.status === "completed") return info;
    if (info.status === "failed" || info.status === "cancelled") {
      throw new Error(`${what}: migration ${info.status}${info["error-desc"] ? `: ${info["error-desc"]}` : ""}`);
    }
    if (Date.now() >= deadline) throw new Error(`${what}: migration not done in ${timeoutMs} ms (status ${info.status})`);
    await sleep(delay);
    delay = Math.min(delay * 2, maxDelayMs);
  }
}

/**
 * Writes the state of a VM (already `stop`ped) to `file`. With `ignoreShared`
 * only device/CPU state is written; otherwise all RAM too.
 */
export async function saveState(qmp: QmpClient, file: string, ignoreShared: boolean, timeoutMs = 60_000): Promise<void> {
  await setIgnoreShared(qmp, ignoreShared);
  // QEMU throttles migration to 128 MiB/s by default (meant for live
  // migration over a network); a stopped VM to a local file wants no limit.
  await qmp.execute("migrate-set-parameters", { "max-bandwidth": UNLIMITED_BANDWIDTH });
  await qmp.execute("migrate", { uri: `exec:cat > ${shQuote(file)}` });
  await waitMigration(qmp, timeoutMs, "save");
}

/**
 * Loads `file` into a VM started with `-incoming defer` (its capabilities
 * must match the ones the file was saved with). The VM stays paused: `cont` it.
 * `uri` is where QEMU reads it from when not `exec:cat file` (e.g. `fd:3`,
 * the file inherited open: see LaunchInput.incomingFrom).
 */
export async function loadState(qmp: QmpClient, file: string, ignoreShared: boolean, timeoutMs = 60_000, uri?: string): Promise<void> {
  await setIgnoreShared(qmp, ignoreShared);
  await qmp.execute("migrate-incoming", { uri: uri ?? `exec:cat ${shQuote(file)}` });
  // A `unix:` URI (a spare QEMU's, which has no fd of the file): QEMU
  // listens there once the command returns; the file is written into it.
  const sending = uri?.startsWith("unix:") ? sendFile(file, uri.slice("unix:".length), timeoutMs) : undefined;
  sending?.catch(() => {});
  await waitMigration(qmp, timeoutMs, "load", 5);
  await sending;
}

/** Writes `file` into the unix socket at `socketPath`. */
async function sendFile(file: string, socketPath: string, timeoutMs: number): Promise<void> {
  const sock = net.connect(socketPath);
  await pipeline(createReadStream(file), sock, { signal: AbortSignal.timeout(timeoutMs) });
}

/** Bytes at the end of a stream searched for its device list (QEMU's vmdesc: ~12 KB for a microvm). */
const VMDESC_TAIL = 256 * 1024;

/**
 * The `-M` value a VM must be started with to load the stream in `file`:
 * LEGACY_MACHINE when the stream was saved by a VM with a second IOAPIC
 * (templates and pauses from before MACHINE had `ioapic2=off`), else
 * MACHINE. QEMU ends every stream with a JSON list of the devices it holds
 * (the vmdesc); the second IOAPIC appears there as instance 1 of "ioapic".
 */
export async function streamMachine(file: string): Promise<string> {
  const tail = await readTail(file, VMDESC_TAIL);
  return /"name": ?"ioapic", ?"instance_id": ?1\b/.test(tail.toString("latin1")) ? LEGACY_MACHINE : MACHINE;
}
