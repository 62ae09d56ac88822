/**
 * Port relay over an agent channel: a Duplex whose other end is a TCP
 * connection to 127.0.0.1:port inside the guest. Both directions use credit
 * windows (HP_TCP_WINDOW), so a slow side holds back only its own channel.
 */
import { Duplex } from "node:stream";

import { RuntimeError } from "../errors.js";
import type { AgentClient } from "./agent-client.js";
import { agentError } from "./agent-errors.js";
import { CreditWindow } from "./credit-window.js";
import { decodeError, decodeTcpClose, encodeTcpConnect } from "./messages.js";
import {
  FRAME_TYPE_NAMES,
  HP_CHUNK_SIZE,
  HP_CREDIT,
  HP_ERROR,
  HP_OK,
  HP_TCP_CLOSE,
  HP_TCP_CONNECT,
  HP_TCP_DATA,
  HP_TCP_EOF,
  HP_TCP_WINDOW,
} from "./protocol.js";

/** TCP_CONNECT → OK | ERROR; then TCP_DATA/TCP_EOF both ways, TCP_CLOSE last. */
export function openTcp(client: AgentClient, port: number): Promise<Duplex> {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    return Promise.reject(new RuntimeError("internal", `bad port ${port}`));
  }
  return new Promise((resolve, reject) => {
    let duplex: Duplex | null = null;
    // Assigned right after openChannel: frames only arrive from later socket events.
    let win: CreditWindow;

    const ch = client.openChannel({
      onFrame: (f) => {
        if (!duplex) {
          if (f.type === HP_OK) {
            duplex = makeDuplex();
            return resolve(duplex);
          }
          if (f.type !== HP_ERROR) throw new Error(`unexpected ${FRAME_TYPE_NAMES[f.type] ?? f.type} on a tcp channel`);
          const err = agentError(decodeError(f.payload), `connect to guest port ${port}`);
          win.close();
          ch.close();
          return reject(err);
        }
        switch (f.type) {
          case HP_TCP_DATA:
            return win.received(f.payload.length, duplex.push(f.payload));
          case HP_TCP_EOF:
            duplex.push(null);
            return;
          case HP_CREDIT:
            return win.granted(f.payload);
          case HP_TCP_CLOSE: {
            const e = decodeTcpClose(f.payload);
            win.close();
            ch.close();
            if (e.errno) return void duplex.destroy(agentError(e, `guest port ${port}`));
            // Clean end: both directions are done; let the reader drain first.
            const d = duplex;
            if (d.readableEnded) d.destroy();
            else {
              d.once("end", () => d.destroy());
              d.push(null);
            }
            return;
          }
          default:
            throw new Error(`unexpected ${FRAME_TYPE_NAMES[f.type] ?? f.type} on a tcp channel`);
        }
      },
      onClose: (err) => {
        win.close();
        if (duplex) duplex.destroy(err);
        else reject(err);
      },
    });

    win = new CreditWindow(ch);

    const makeDuplex = () =>
      new Duplex({
        // Not destroyed when both sides end locally: the agent may still be
        // writing our last bytes into the guest socket; its TCP_CLOSE ends it.
        autoDestroy: false,
        readableHighWaterMark: HP_TCP_WINDOW,
        writableHighWaterMark: HP_CHUNK_SIZE,
        read() {
          win.readMore();
        },
        write(chunk: Buffer, _enc, cb) {
          win.write(HP_TCP_DATA, chunk, () => new RuntimeError("not_running", `guest port ${port}: relay closed`)).then(() => cb(), cb);
        },
        final(cb) {
          if (!win.closed) ch.send(HP_TCP_EOF);
          cb();
        },
        destroy(err, cb) {
          if (!win.closed) {
            ch.send(HP_TCP_CLOSE);
            ch.close();
          }
          win.close();
          cb(err);
        },
      });

    ch.send(HP_TCP_CONNECT, encodeTcpConnect(port));
  });
}
