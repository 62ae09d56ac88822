/**
 * A VM's writable disk on a full host file system. Its drive has
 * `werror=enospc` (qemu-args.ts): a guest write that fails with ENOSPC on
 * the host stops the whole VM (RunState `io-error`) and keeps the request,
 * which QEMU retries on `cont`. So no guest write is lost, but the VM stands
 * still until someone frees space and continues it. These helpers notice
 * that stop (QMP `BLOCK_IO_ERROR` with `nospace`) and continue the VM.
 */
import { RuntimeError } from "../errors.js";
import type { QmpClient, QmpEvent } from "./qmp-client.js";

/** What a stalled sandbox's status says (the runtime's stall reason). */
export const DISK_FULL_REASON = "the host's data disk is full: the VM is stopped (nothing lost) until space is freed and it is resumed";

/** Whether `ev` is a disk write that failed for lack of host space and stopped the VM. */
export function isNoSpaceStop(ev: QmpEvent): boolean {
  return ev.event === "BLOCK_IO_ERROR" && ev.data?.nospace === true && (ev.data.action ?? "stop") === "stop";
}

/** Whether a QMP `query-status` status is a stop on an I/O error. */
export function isIoErrorStatus(status: string | undefined): boolean {
  return status === "io-error";
}

/**
 * Calls `onStall` each time `qmp` reports a no-space stop. Returns a
 * function that stops listening.
 */
export function watchIoErrors(qmp: QmpClient, onStall: (ev: QmpEvent) => void): () => void {
  const on = (ev: QmpEvent) => {
    if (isNoSpaceStop(ev)) onStall(ev);
  };
  qmp.on("event", on);
  return () => qmp.off("event", on);
}

/**
 * Continues a VM stopped on an I/O error (QEMU retries the failed requests)
 * and resolves with `ready()` (e.g. the agent answering). Rejects
 * RuntimeError `disk_full` when the VM stops again for lack of space first;
 * then it stays stopped, nothing lost, and may be continued later.
 */
export async function continueStalled<T>(qmp: QmpClient, ready: () => Promise<T>, timeoutMs: number): Promise<T> {
  let off: (() => void) | undefined;
  let timer: NodeJS.Timeout | undefined;
  const failed = new Promise<never>((_, reject) => {
    off = watchIoErrors(qmp, () => reject(new RuntimeError("disk_full", DISK_FULL_REASON)));
    timer = setTimeout(() => reject(new RuntimeError("agent_error", `the VM did not answer within ${timeoutMs} ms of being continued`)), timeoutMs);
  });
  failed.catch(() => {});
  try {
    await qmp.execute("cont");
    const done = ready();
    done.catch(() => {});
    return await Promise.race([done, failed]);
  } finally {
    off?.();
    clearTimeout(timer);
  }
}
