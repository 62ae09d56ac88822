/**
 * Answers on a socket that asked for an Upgrade, before (or instead of)
 * switching protocols: Node hands such requests to the server's 'upgrade'
 * event with the raw socket, so there is no Fastify reply to use.
 */
import { STATUS_CODES } from "node:http";
import type { Duplex } from "node:stream";
import { AppError } from "../../core/errors.js";

const GENERIC: Record<number, string> = { 500: "internal error", 502: "bad gateway", 503: "service unavailable" };

/** An HTTP/1.1 status line and headers, for answers written straight to a socket. */
export function responseHead(status: number, headers: Record<string, string>): string {
  const lines = [`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? "Unknown"}`];
  for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
  return `${lines.join("\r\n")}\r\n\r\n`;
}

/** How long a refused upgrade's socket may linger for the client's close, ms. */
const LINGER_MS = 5000;

/** Sends a JSend answer and closes the connection. */
export function sendJson(socket: Duplex, status: number, body: unknown, requestId: string): void {
  if (socket.destroyed) return;
  // Read and drop what the client still sends (a body): a socket nobody reads
  // never sees the client's FIN and would stay open; a client that keeps
  // sending is cut after LINGER_MS.
  socket.on("data", () => {});
  socket.resume();
  const linger = setTimeout(() => socket.destroy(), LINGER_MS);
  linger.unref();
  socket.once("close", () => clearTimeout(linger));
  const json = Buffer.from(JSON.stringify(body));
  socket.end(
    Buffer.concat([
      Buffer.from(
        responseHead(status, {
          "Content-Type": "application/json; charset=utf-8",
          "Content-Length": String(json.length),
          "x-request-id": requestId,
          Connection: "close",
        }),
      ),
      json,
    ]),
  );
}

/** JSend `fail` (below 500, with field messages) or `error` (500 and up). */
export function sendFailure(socket: Duplex, err: unknown, requestId: string): number {
  const e = err instanceof AppError ? err : null;
  const status = e?.status ?? 500;
  if (status < 500) {
    sendJson(socket, status, { status: "fail", data: e && Object.keys(e.fields).length > 0 ? e.fields : { error: e?.message ?? "error" } }, requestId);
  } else {
    // bad_gateway messages are ours ("nothing accepted the connection on port N"): safe to show.
    const message = e?.code === "bad_gateway" ? e.message : e?.code === "no_capacity" ? "no host capacity" : (GENERIC[status] ?? "internal error");
    sendJson(socket, status, { status: "error", message, code: status }, requestId);
  }
  return status;
}

/** Writes the 101 answer; from then on the socket carries the new protocol. */
export function sendSwitching(socket: Duplex, protocol: string, requestId: string): void {
  socket.write(responseHead(101, { Connection: "Upgrade", Upgrade: protocol, "x-request-id": requestId }));
}
