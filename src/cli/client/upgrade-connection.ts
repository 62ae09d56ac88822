/**
 * Opens an HTTP Upgrade connection (tunnel, shell) to the API and hands back
 * the raw socket once the server answered 101. The SDK does not model
 * upgrades, so this is plain node:http. Sockets are half-open capable so a
 * FIN from one side does not cut the other direction short.
 */
import { request as httpRequest, type ClientRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import { connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { CliError, httpFailureMessage } from "./cli-error.js";
import type { ClientConfig } from "./client-config.js";

/** The upgrade protocol token the API expects (tunnel and shell alike). */
export const UPGRADE_PROTOCOL = "tcp-tunnel";

/** Reads a non-101 answer and turns it into a one-line error. */
async function failure(res: IncomingMessage): Promise<CliError> {
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c as Buffer);
  const text = Buffer.concat(chunks).toString("utf8");
  let envelope: unknown;
  try {
    envelope = JSON.parse(text);
  } catch {
    envelope = undefined;
  }
  return new CliError(httpFailureMessage(res.statusCode ?? 0, envelope, text.trim().slice(0, 200) || res.statusMessage));
}

/**
 * POSTs `path` with `Connection: Upgrade` and resolves with the socket
 * (any bytes that came with the 101 are unshifted back into it).
 */
export function openUpgrade(config: ClientConfig, path: string, protocol = UPGRADE_PROTOCOL): Promise<Socket> {
  const url = new URL(path, `${config.url}/`);
  const secure = url.protocol === "https:";
  const port = Number(url.port) || (secure ? 443 : 80);
  const host = url.hostname.replace(/^\[|\]$/g, "");
  return new Promise((resolve, reject) => {
    const req: ClientRequest = (secure ? httpsRequest : httpRequest)({
      method: "POST",
      host,
      port,
      path: `${url.pathname}${url.search}`,
      agent: false,
      headers: {
        Connection: "Upgrade",
        Upgrade: protocol,
        "X-Api-Key": config.apiKey ?? "",
        "Content-Length": "0",
      },
      createConnection: () =>
        secure ? tlsConnect({ host, port, servername: host }) : netConnect({ host, port, allowHalfOpen: true }),
    });
    req.on("upgrade", (res, socket, head) => {
      if (res.statusCode !== 101) {
        socket.destroy();
        reject(new CliError(`unexpected upgrade answer (HTTP ${res.statusCode})`));
        return;
      }
      socket.setNoDelay(true);
      if (head.length) socket.unshift(head);
      resolve(socket);
    });
    req.on("response", (res) => {
      failure(res).then(reject, reject);
    });
    req.on("error", (err: NodeJS.ErrnoException) => {
      reject(new CliError(`cannot reach the server: ${config.url} (${err.code ?? err.message})`));
    });
    req.end();
  });
}
