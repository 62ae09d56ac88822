/**
 * File transfers over agent channels: writes stream FILE_DATA at the pace
 * the socket takes it; reads pull FILE_DATA with CREDIT as the returned
 * stream is consumed, so neither side buffers a whole file.
 */
import { Readable } from "node:stream";

import { RuntimeError } from "../errors.js";
import type { AgentClient } from "./agent-client.js";
import { fileError } from "./agent-errors.js";
import type { Frame } from "./frame-codec.js";
import { decodeError, decodeFileReadOk, encodeCredit, encodeFileRead, encodeFileWriteOpen } from "./messages.js";
import {
  FRAME_TYPE_NAMES,
  HP_CHUNK_SIZE,
  HP_CREDIT,
  HP_ERROR,
  HP_FILE_DATA,
  HP_FILE_END,
  HP_FILE_READ,
  HP_FILE_WRITE_OPEN,
  HP_KILL,
  HP_OK,
  HP_READ_WINDOW,
} from "./protocol.js";

function checkPath(path: string): void {
  if (!path.startsWith("/")) throw new RuntimeError("invalid_path", `${path}: path must be absolute`);
  if (path.includes("\0")) throw new RuntimeError("invalid_path", "path contains NUL");
}

function unexpected(f: Frame, what: string): Error {
  return new Error(`unexpected ${FRAME_TYPE_NAMES[f.type] ?? f.type} on a ${what} channel`);
}

/** FILE_WRITE_OPEN → OK, FILE_DATA…, FILE_END → OK. See AgentClient.writeFile. */
export async function streamWrite(client: AgentClient, path: string, data: Readable, mode: number): Promise<void> {
  checkPath(path);
  let failure: Error | null = null;
  let waiter: { resolve(): void; reject(e: Error): void } | null = null;
  const ch = client.openChannel({
    onFrame: (f) => {
      if (f.type === HP_OK) {
        const w = waiter;
        waiter = null;
        if (!w) throw unexpected(f, "file write");
        return w.resolve();
      }
      if (f.type !== HP_ERROR) throw unexpected(f, "file write");
      failure = fileError(decodeError(f.payload), path);
      ch.close();
      waiter?.reject(failure);
      waiter = null;
    },
    onClose: (err) => {
      failure = err;
      waiter?.reject(err);
      waiter = null;
    },
  });
  const answer = () =>
    new Promise<void>((resolve, reject) => {
      if (failure) return reject(failure);
      waiter = { resolve, reject };
    });
  let done = false;
  try {
    const opened = answer();
    ch.send(HP_FILE_WRITE_OPEN, encodeFileWriteOpen(path, mode));
    await opened;
    for await (const chunk of data) {
      const buf = typeof chunk === "string" ? Buffer.from(chunk) : (chunk as Buffer);
      for (let off = 0; off < buf.length; off += HP_CHUNK_SIZE) {
        if (failure) throw failure;
        if (!ch.send(HP_FILE_DATA, buf.subarray(off, off + HP_CHUNK_SIZE))) await ch.drained();
      }
      if (failure) throw failure;
    }
    const ended = answer();
    ch.send(HP_FILE_END);
    await ended;
    done = true;
  } finally {
    if (!done && !failure) ch.send(HP_KILL); // agent removes its temp file
    ch.close();
  }
}

/** FILE_READ → OK (size) | ERROR, then FILE_DATA… FILE_END. See AgentClient.readFile. */
export function openRead(client: AgentClient, path: string): Promise<Readable> {
  checkPath(path);
  return new Promise((resolve, reject) => {
    let stream: Readable | null = null;
    let owed = 0; // credit held back while the consumer is not reading
    let ended = false;
    const ch = client.openChannel({
      onFrame: (f) => {
        if (!stream) {
          if (f.type === HP_OK) {
            decodeFileReadOk(f.payload);
            stream = makeStream();
            return resolve(stream);
          }
          if (f.type !== HP_ERROR) throw unexpected(f, "file read");
          const err = fileError(decodeError(f.payload), path);
          ch.close();
          return reject(err);
        }
        switch (f.type) {
          case HP_FILE_DATA:
            if (stream.push(f.payload)) ch.send(HP_CREDIT, encodeCredit(f.payload.length));
            else owed += f.payload.length;
            return;
          case HP_FILE_END:
            ended = true;
            ch.close();
            stream.push(null);
            return;
          case HP_ERROR: {
            const err = fileError(decodeError(f.payload), path);
            ended = true;
            ch.close();
            stream.destroy(err);
            return;
          }
          default:
            throw unexpected(f, "file read");
        }
      },
      onClose: (err) => {
        ended = true;
        if (stream) stream.destroy(err);
        else reject(err);
      },
    });
    const makeStream = () =>
      new Readable({
        highWaterMark: HP_READ_WINDOW,
        read() {
          if (owed > 0) {
            ch.send(HP_CREDIT, encodeCredit(owed));
            owed = 0;
          }
        },
        destroy(err, cb) {
          if (!ended) {
            ended = true;
            ch.send(HP_KILL); // stop the agent sending the rest
            ch.close();
          }
          cb(err);
        },
      });
    ch.send(HP_FILE_READ, encodeFileRead(path));
  });
}
