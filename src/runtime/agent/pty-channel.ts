/**
 * An interactive shell over an agent channel: PTY_OPEN → OK | ERROR; then
 * STDIN (what the user types) and STDOUT (what the terminal shows), each
 * within a credit window of HP_TCP_WINDOW like a TCP relay; PTY_RESIZE; one
 * EXIT when the shell is gone. KILL hangs the terminal up.
 */
import { Duplex } from "node:stream";

import { RuntimeError } from "../errors.js";
import type { ShellOptions, ShellSession } from "../runtime.js";
import type { AgentClient } from "./agent-client.js";
import { agentError } from "./agent-errors.js";
import { CreditWindow } from "./credit-window.js";
import { decodeError, decodeExit, encodePtyOpen, encodePtyResize } from "./messages.js";
import {
  FRAME_TYPE_NAMES,
  HP_CHUNK_SIZE,
  HP_CREDIT,
  HP_ERROR,
  HP_EXIT,
  HP_KILL,
  HP_OK,
  HP_PTY_OPEN,
  HP_PTY_RESIZE,
  HP_STDIN,
  HP_STDOUT,
  HP_TCP_WINDOW,
} from "./protocol.js";

/** Terminal sizes are u16 in the kernel; 0 means the agent's default (24×80). */
function clampSize(n: number): number {
  return Number.isFinite(n) ? Math.max(0, Math.min(0xffff, Math.floor(n))) : 0;
}

/** Starts a login shell on a new PTY in the guest; see `Runtime.openShell`. */
export function openPty(client: AgentClient, opts: ShellOptions): Promise<ShellSession> {
  return new Promise((resolve, reject) => {
    let stream: Duplex | null = null;
    // Assigned right after openChannel: frames only arrive from later socket events.
    let win: CreditWindow;
    let resolveExit!: (code: number) => void;
    const exit = new Promise<number>((r) => (resolveExit = r));

    const ch = client.openChannel({
      onFrame: (f) => {
        if (!stream) {
          if (f.type === HP_OK) {
            stream = makeStream();
            return resolve({
              stream,
              exit,
              resize: (rows, cols) => {
                if (!win.closed) ch.send(HP_PTY_RESIZE, encodePtyResize(clampSize(rows), clampSize(cols)));
              },
            });
          }
          if (f.type !== HP_ERROR) throw new Error(`unexpected ${FRAME_TYPE_NAMES[f.type] ?? f.type} on a pty channel`);
          const err = agentError(decodeError(f.payload), "open shell");
          win.close();
          ch.close();
          return reject(err);
        }
        switch (f.type) {
          case HP_STDOUT:
            return win.received(f.payload.length, stream.push(f.payload));
          case HP_CREDIT:
            return win.granted(f.payload);
          case HP_EXIT: {
            const x = decodeExit(f.payload);
            win.close();
            ch.close();
            resolveExit(x.exitCode);
            // Let the reader drain what the terminal showed last, then end.
            const s = stream;
            s.once("end", () => s.destroy());
            s.push(null);
            if (s.readableEnded) s.destroy();
            return;
          }
          case HP_ERROR: {
            const e = decodeError(f.payload);
            win.close();
            ch.close();
            resolveExit(-1);
            return void stream.destroy(agentError(e, "shell"));
          }
          default:
            throw new Error(`unexpected ${FRAME_TYPE_NAMES[f.type] ?? f.type} on a pty channel`);
        }
      },
      onClose: (err) => {
        win.close();
        resolveExit(-1);
        if (stream) stream.destroy(err);
        else reject(err);
      },
    });

    win = new CreditWindow(ch);

    const makeStream = () =>
      new Duplex({
        readableHighWaterMark: HP_TCP_WINDOW,
        writableHighWaterMark: HP_CHUNK_SIZE,
        read() {
          win.readMore();
        },
        write(chunk: Buffer, _enc, cb) {
          win.write(HP_STDIN, chunk, () => new RuntimeError("not_running", "shell has ended")).then(() => cb(), cb);
        },
        // A terminal has no half-close: the end of input is the user's ^D.
        final(cb) {
          cb();
        },
        destroy(err, cb) {
          if (!win.closed) {
            ch.send(HP_KILL);
            ch.close();
            resolveExit(-1);
          }
          win.close();
          cb(err);
        },
      });

    ch.send(HP_PTY_OPEN, encodePtyOpen(clampSize(opts.rows), clampSize(opts.cols), opts.env ?? {}));
  });
}
