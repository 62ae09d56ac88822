/**
 * The HTTP ingress: its own listener (HUTCH_INGRESS_LISTEN) where a request
 * whose Host is `<ulid>-<port>.<domain>` is forwarded to that port of the
 * sandbox, while it runs with ingress enabled (404 JSend otherwise).
 * Bodies stream both ways (nothing is buffered); WebSocket and other
 * upgrades are spliced into a raw byte pipe. Connections to guests come from
 * `NetworkService.dial`, i.e. from inside the network namespace, so the
 * kernel counts them as the sandbox's ingress bytes. Each request counts as
 * activity (auto-pause).
 */
import { Agent, createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { Logger } from "pino";
import { AppError } from "../core/errors.js";
import type { NetworkService } from "../core/network-service.js";

export interface IngressProxyOptions {
  network: NetworkService;
  /** Suffix of ingress host names, e.g. "sb.localhost". */
  domain: string;
  host: string;
  port: number;
  log: Logger;
}

/** Hop-by-hop headers (RFC 9110 §7.6.1) are not forwarded. */
const HOP = new Set(["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"]);

function jsendError(res: ServerResponse, status: number, message: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body =
    status < 500 ? { status: "fail", data: { host: message } } : { status: "error", message, code: status };
  res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
}

function forwardHeaders(req: IncomingMessage, keepUpgrade: boolean): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(req.headers)) {
    if (v === undefined) continue;
    if (!keepUpgrade && HOP.has(k)) continue;
    out[k] = v;
  }
  const fwd = req.socket.remoteAddress;
  if (fwd) out["x-forwarded-for"] = req.headers["x-forwarded-for"] ? `${String(req.headers["x-forwarded-for"])}, ${fwd}` : fwd;
  out["x-forwarded-host"] = req.headers.host ?? "";
  out["x-forwarded-proto"] = "http";
  return out;
}

/** A running ingress listener. */
export interface IngressProxy {
  url: string;
  server: Server;
  close(): Promise<void>;
}

/** Starts the ingress listener. */
export async function startIngressProxy(opts: IngressProxyOptions): Promise<IngressProxy> {
  const { network, domain, log } = opts;
  // Keep-alive pool of connections to guests, keyed by ip:port; each new
  // connection is dialed through the netns (Agent supports an async
  // createConnection with a callback).
  const agent = new Agent({ keepAlive: true, maxFreeSockets: 64, timeout: 60_000 });
  const targets = new Map<string, Parameters<NetworkService["dial"]>>();
  (agent as unknown as { createConnection: unknown }).createConnection = (
    o: { host: string; port: number },
    cb: (err: Error | null, s?: Duplex) => void,
  ) => {
    const t = targets.get(`${o.host}:${o.port}`);
    if (!t) {
      cb(new Error("unknown ingress target"));
      return undefined;
    }
    network.dial(...t).then((s) => cb(null, s), (err: Error) => cb(err));
    return undefined;
  };

  const server = createServer(async (req, res) => {
    let target: Awaited<ReturnType<NetworkService["ingressTarget"]>>;
    try {
      target = await network.ingressTarget(req.headers.host, domain);
    } catch {
      jsendError(res, 404, "no sandbox serves this host");
      req.resume();
      return;
    }
    const { rec, port } = target;
    network.touch(rec.id);
    targets.set(`${rec.ip}:${port}`, [rec, port]);
    const up = httpRequest({ agent, host: rec.ip, port, method: req.method, path: req.url, headers: forwardHeaders(req, false) });
    up.on("response", (r) => {
      const headers: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(r.headers)) if (v !== undefined && !HOP.has(k)) headers[k] = v;
      res.writeHead(r.statusCode ?? 502, r.statusMessage, headers);
      r.pipe(res);
      r.on("error", () => res.destroy());
    });
    up.on("error", (err) => {
      const status = err instanceof AppError ? err.status : 502;
      log.debug({ err: err.message, sandbox: rec.id, port }, "ingress upstream error");
      jsendError(res, status, status === 502 ? `nothing answers on port ${port}` : "upstream error");
    });
    res.on("close", () => {
      if (!res.writableFinished) up.destroy();
    });
    req.pipe(up);
  });

  // Upgrades (WebSocket): replay the request head, then pipe raw bytes.
  server.on("upgrade", async (req: IncomingMessage, socket: Socket, head: Buffer) => {
    socket.on("error", () => socket.destroy());
    let guest: Duplex;
    try {
      const { rec, port } = await network.ingressTarget(req.headers.host, domain);
      network.touch(rec.id);
      guest = await network.dial(rec, port);
    } catch (err) {
      const status = err instanceof AppError ? err.status : 502;
      const body = JSON.stringify(status < 500 ? { status: "fail", data: { host: "no sandbox serves this host" } } : { status: "error", message: "bad gateway", code: status });
      socket.end(`HTTP/1.1 ${status} ${status === 404 ? "Not Found" : "Bad Gateway"}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
      return;
    }
    const lines = [`${req.method} ${req.url} HTTP/1.1`];
    const h = forwardHeaders(req, true);
    for (const [k, v] of Object.entries(h)) for (const one of Array.isArray(v) ? v : [v]) lines.push(`${k}: ${one}`);
    guest.write(lines.join("\r\n") + "\r\n\r\n");
    if (head.length > 0) guest.write(head);
    guest.pipe(socket);
    socket.pipe(guest);
    const close = () => {
      socket.destroy();
      guest.destroy();
    };
    guest.on("error", close);
    socket.on("close", close);
    guest.on("close", close);
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  const addr = server.address();
  const port = typeof addr === "object" && addr ? addr.port : opts.port;
  const url = `http://${opts.host.includes(":") ? `[${opts.host}]` : opts.host}:${port}`;
  return {
    url,
    server,
    close: async () => {
      agent.destroy();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
