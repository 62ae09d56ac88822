/**
 * A cross-process lock so two Hutch processes (say the server and
 * `hutch images build`) never build the same artifact at once.
 *
 * It is a kernel flock(2) held by a `flock` child process: the lock goes away
 * with the holder, even on SIGKILL (the child's stdin closes and it exits),
 * so there is no stale lock file to detect or steal.
 */
import { spawn } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { dirname } from "node:path";

/** A held lock; call `release` exactly once. */
export interface HeldLock {
  release(): Promise<void>;
}

/**
 * Takes an exclusive lock on `path` (created if needed), waiting for another
 * holder. `onWait` is called once if the lock is busy, so callers can say why
 * nothing seems to happen.
 */
export async function acquireLock(path: string, onWait?: () => void): Promise<HeldLock> {
  await mkdir(dirname(path), { recursive: true });
  const attempt = (wait: boolean) =>
    new Promise<HeldLock | undefined>((resolve, reject) => {
      // Once flock holds the lock the shell prints a line and becomes `cat`,
      // which lives until we close its stdin.
      const child = spawn("flock", [...(wait ? [] : ["-n"]), "-x", path, "-c", "echo locked; exec cat >/dev/null"], {
        stdio: ["pipe", "pipe", "inherit"],
      });
      let locked = false;
      child.on("error", (e) => reject(new Error(`cannot run flock: ${e.message}`, { cause: e })));
      child.stdout.on("data", (c: Buffer) => {
        if (locked || !c.toString().includes("locked")) return;
        locked = true;
        const exited = new Promise<void>((r) => child.once("exit", () => r()));
        resolve({
          release: async () => {
            child.stdin.end();
            await exited;
          },
        });
      });
      child.on("exit", (code) => {
        if (locked) return;
        if (code === 1 && !wait) resolve(undefined);
        else reject(new Error(`flock on ${path} failed (exit ${code})`));
      });
      // flock -n exits 1 when busy; don't let a dead pipe crash us either way.
      child.stdin.on("error", () => undefined);
    });
  const got = await attempt(false);
  if (got) return got;
  onWait?.();
  return (await attempt(true)) as HeldLock;
}
