/**
 * Connects a shell client to a ShellSession: client frames (data / resize,
 * see shell-frame-decoder.ts) in, raw terminal output out. When the shell
 * exits the client connection is closed; when the client goes away the
 * terminal is hung up.
 */
import type { ShellSession } from "../../runtime/runtime.js";
import { ShellFrameDecoder, ShellFrameError } from "./shell-frame-decoder.js";

/** The transport a shell runs over: the upgraded socket or a WebSocket. */
export interface ShellTransport {
  /** Sends terminal output; returns false when the client is slow (backpressure). */
  send(data: Buffer): boolean;
  /** Calls `fn` once the client can take more after `send` returned false. */
  onDrain(fn: () => void): void;
  /** Stops/starts reading client input (backpressure towards the client). */
  pause(): void;
  resume(): void;
  /** Ends the connection after what was sent; `reason` for the WebSocket close. */
  close(exitCode: number | null, reason: string): void;
}

/**
 * Feeds client bytes into `session`. Returns the function that takes client
 * input and the one to call when the client is gone.
 */
export function bridgeShell(session: ShellSession, t: ShellTransport, onActivity: () => void, onProtocolError: (msg: string) => void) {
  const decoder = new ShellFrameDecoder();
  const { stream } = session;
  let ended = false;

  stream.on("data", (c: Buffer) => {
    onActivity();
    if (!t.send(c)) {
      stream.pause();
      t.onDrain(() => stream.resume());
    }
  });
  stream.on("error", () => {
    /* reported through exit (-1); the close below ends the client */
  });
  void session.exit.then((code) => {
    // Let the last output through first: exit resolves before the stream ends.
    const finish = () => {
      if (ended) return;
      ended = true;
      t.close(code, code >= 0 ? `exit ${code}` : "hung up");
    };
    if (stream.readableEnded || stream.destroyed) finish();
    else {
      stream.once("end", finish);
      stream.once("close", finish);
    }
  });

  return {
    input(chunk: Buffer): void {
      let frames;
      try {
        frames = decoder.push(chunk);
      } catch (err) {
        onProtocolError(err instanceof ShellFrameError ? err.message : String(err));
        return;
      }
      for (const f of frames) {
        if (f.type === "resize") session.resize(f.rows, f.cols);
        else if (!stream.write(f.data)) {
          t.pause();
          stream.once("drain", () => t.resume());
        }
      }
      if (frames.length) onActivity();
    },
    /** The client is gone: hang up (no-op once the shell ended). */
    gone(): void {
      ended = true;
      if (!stream.destroyed) stream.destroy();
    },
  };
}
