/**
 * One command over an agent channel: EXEC_START, STDIN…, STDIN_EOF; then
 * STDOUT/STDERR… and one EXIT (or ERROR). See AgentClient.exec.
 *
 * With an agent of protocol >= HP_VERSION_EXEC_CREDIT the output comes within
 * a window (HP_EXEC_WINDOW): each chunk's bytes are credited back once the
 * consumer took it, i.e. at once, or when `out.ready()`'s promise resolves.
 * A slow consumer thus holds the command in the guest, not bytes here.
 */
import type { ExecOutcome, ExecOutput, ExecRequest } from "../runtime.js";
import type { AgentClient } from "./agent-client.js";
import { agentError } from "./agent-errors.js";
import { decodeError, decodeExit, encodeCredit, encodeExecStart } from "./messages.js";
import {
  FRAME_TYPE_NAMES,
  HP_CHUNK_SIZE,
  HP_CREDIT,
  HP_ERROR,
  HP_EXEC_START,
  HP_EXIT,
  HP_KILL,
  HP_STDERR,
  HP_STDIN,
  HP_STDIN_EOF,
  HP_STDOUT,
  HP_VERSION_EXEC_CREDIT,
} from "./protocol.js";

/** Runs `req`; aborting `signal` sends KILL (SIGKILL to the process group). */
export async function runExec(client: AgentClient, req: ExecRequest, out: ExecOutput, signal?: AbortSignal): Promise<ExecOutcome> {
  // Nothing was started, so nothing to kill: report it the way a kill would.
  if (signal?.aborted) return { exitCode: 137, signal: 9, error: "aborted before start" };
  const start = encodeExecStart([req.cmd, ...req.args], req.env ?? {}, req.cwd ?? "");
  const credited = client.protocolVersion >= HP_VERSION_EXEC_CREDIT;
  return new Promise((resolve, reject) => {
    let over = false; // EXIT, ERROR or connection gone: nothing more to credit
    let killed = false; // KILL sent: credit at once, never wait for the consumer
    let waiting = 0; // bytes delivered to a consumer that is still behind
    const grant = (bytes: number) => {
      if (credited && !over && bytes > 0) ch.send(HP_CREDIT, encodeCredit(bytes));
    };
    const kill = () => {
      if (!over) ch.send(HP_KILL);
      // What the command printed before it died must still come through for
      // its EXIT to follow; a consumer that is gone may never catch up.
      killed = true;
      grant(waiting);
      waiting = 0;
    };
    // A throwing output callback is the caller's bug, not the agent's: it
    // kills this command and fails this call, never the whole connection.
    let callbackError: unknown = null;
    const deliver = (fn: (chunk: Buffer) => void, chunk: Buffer) => {
      const n = chunk.length;
      if (callbackError !== null) return grant(n);
      let behind: Promise<void> | undefined;
      try {
        fn(chunk);
        if (credited && !killed) behind = out.ready?.();
      } catch (err) {
        callbackError = err;
        kill();
        return grant(n);
      }
      if (!behind) return grant(n);
      waiting += n;
      const caughtUp = () => {
        if (killed) return; // paid by kill()
        waiting -= n;
        grant(n);
      };
      behind.then(caughtUp, caughtUp);
    };
    const onAbort = kill;
    const finish = () => {
      over = true;
      ch.close();
      signal?.removeEventListener("abort", onAbort);
    };
    const ch = client.openChannel({
      onFrame: (f) => {
        switch (f.type) {
          case HP_STDOUT:
            return deliver((c) => out.onStdout(c), f.payload);
          case HP_STDERR:
            return deliver((c) => out.onStderr(c), f.payload);
          case HP_EXIT: {
            const x = decodeExit(f.payload); // throws (closing the connection) before the channel is let go
            finish();
            if (callbackError !== null) return reject(callbackError);
            const outcome: ExecOutcome = { exitCode: x.exitCode };
            if (x.signal) outcome.signal = x.signal;
            if (x.error) outcome.error = x.error;
            return resolve(outcome);
          }
          case HP_ERROR: {
            const e = decodeError(f.payload);
            finish();
            return reject(agentError(e, `exec ${req.cmd}`));
          }
          default:
            throw new Error(`unexpected ${FRAME_TYPE_NAMES[f.type] ?? f.type} on an exec channel`);
        }
      },
      onClose: (err) => {
        over = true;
        signal?.removeEventListener("abort", onAbort);
        reject(err);
      },
    });
    signal?.addEventListener("abort", onAbort, { once: true });
    ch.send(HP_EXEC_START, start);
    const stdin = req.stdin ?? Buffer.alloc(0);
    for (let off = 0; off < stdin.length; off += HP_CHUNK_SIZE) {
      ch.send(HP_STDIN, stdin.subarray(off, off + HP_CHUNK_SIZE));
    }
    ch.send(HP_STDIN_EOF);
  });
}
