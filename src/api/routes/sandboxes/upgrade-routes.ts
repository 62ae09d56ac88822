/**
 * The routes that switch protocols. Node hands a request carrying
 * `Connection: Upgrade` to the server's 'upgrade' event (never to Fastify's
 * router), so ONE listener here dispatches all of them:
 *
 * - `POST /v1/sandboxes/{id}/tunnel/{port}` (`Upgrade: tcp-tunnel`) → 101,
 *   then the connection is a raw TCP pipe to 127.0.0.1:port in the guest.
 * - `POST /v1/sandboxes/{id}/shell` (same upgrade) → 101, then a PTY: client
 *   frames in (shell-frame-decoder.ts), raw terminal output out.
 * - `GET /v1/sandboxes/{id}/shell-ws` (WebSocket) → the same PTY, one or more
 *   client frames per binary message (a text message is typed as is).
 *
 * Auth, tenancy (404), the running check (409), a bad port (400) and a guest
 * port that refuses (502) are answered as plain HTTP JSend before switching.
 * Upgrade requests to other paths are left to other 'upgrade' listeners (e.g.
 * @fastify/websocket, if one is registered), else answered 404.
 */
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import type { FastifyInstance } from "fastify";
import { WebSocketServer, type WebSocket } from "ws";
import type { Services } from "../../../core/services.js";
import { genReqId } from "../../plugins/request-id.js";
import { bridgeShell, type ShellTransport } from "../../upgrade/shell-bridge.js";
import { splice } from "../../upgrade/splice.js";
import { sendFailure, sendJson, sendSwitching } from "../../upgrade/upgrade-response.js";

type Route =
  | { kind: "tunnel"; id: string; port: string }
  | { kind: "shell"; id: string }
  | { kind: "shell-ws"; id: string };

const ROUTE = /^\/v1\/sandboxes\/([^/]+)\/(?:tunnel\/([^/]+)|(shell)|(shell-ws))\/?$/;

function routeOf(method: string | undefined, path: string): Route | undefined {
  const m = ROUTE.exec(path);
  if (!m) return undefined;
  const id = decodeURIComponent(m[1]!);
  if (m[2] !== undefined && method === "POST") return { kind: "tunnel", id, port: decodeURIComponent(m[2]) };
  if (m[3] !== undefined && method === "POST") return { kind: "shell", id };
  if (m[4] !== undefined && method === "GET") return { kind: "shell-ws", id };
  return undefined;
}

/** The API key, from the same headers as every route (and `?api_key=` for browsers on shell-ws). */
function keyOf(req: IncomingMessage, url: URL, route: Route): string | undefined {
  for (const name of ["x-api-key", "x-auth-token", "x-access-token"]) {
    const v = req.headers[name];
    if (typeof v === "string" && v !== "") return v;
  }
  const auth = req.headers.authorization;
  if (typeof auth === "string" && auth.startsWith("Bearer ")) return auth.slice(7).trim();
  // A browser's WebSocket cannot set headers.
  if (route.kind === "shell-ws") return url.searchParams.get("api_key") ?? undefined;
  return undefined;
}

/** `?rows=&cols=`: the terminal size until the first resize frame. */
function sizeOf(url: URL): { rows?: number; cols?: number } {
  const out: { rows?: number; cols?: number } = {};
  for (const k of ["rows", "cols"] as const) {
    const v = Number(url.searchParams.get(k));
    if (Number.isInteger(v) && v > 0 && v <= 0xffff) out[k] = v;
  }
  return out;
}

/** What ws would refuse in a WebSocket handshake (key, version), named by header; undefined when fine. */
function webSocketHandshakeProblem(req: IncomingMessage): Record<string, string> | undefined {
  const key = req.headers["sec-websocket-key"];
  if (typeof key !== "string" || !/^[+/0-9A-Za-z]{22}==$/.test(key)) return { "sec-websocket-key": "missing or invalid" };
  const version = Number(req.headers["sec-websocket-version"]);
  if (version !== 13 && version !== 8) return { "sec-websocket-version": "must be 13 or 8" };
  return undefined;
}

function upgradeToken(req: IncomingMessage): string {
  return String(req.headers.upgrade ?? "").trim().toLowerCase();
}

export async function upgradeRoutes(app: FastifyInstance, opts: { services: Services }): Promise<void> {
  const { auth, remoteAccess } = opts.services;
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 4 * 1024 * 1024 });
  // A handshake ws still refuses (e.g. a malformed Sec-WebSocket-Protocol) is answered in JSend too.
  wss.on("wsClientError", (err: Error, socket: Duplex, req: IncomingMessage) => {
    sendJson(socket, 400, { status: "fail", data: { headers: err.message } }, genReqId(req));
  });
  const open = new Set<Duplex>();
  let closing = false;

  const track = (s: Duplex) => {
    open.add(s);
    s.once("close", () => open.delete(s));
  };

  async function handle(req: IncomingMessage, socket: Duplex, head: Buffer, route: Route, url: URL, reqId: string): Promise<void> {
    const log = app.log.child({ reqId, sandbox: route.id, upgrade: route.kind });
    const user = await auth.authenticate(keyOf(req, url, route));
    if (!user) return sendJson(socket, 401, { status: "fail", data: { api_key: "missing or invalid API key" } }, reqId);
    const token = upgradeToken(req);
    if (route.kind === "shell-ws" ? token !== "websocket" : token === "" || token === "websocket") {
      const want = route.kind === "shell-ws" ? "websocket" : "tcp-tunnel";
      return sendJson(socket, 400, { status: "fail", data: { upgrade: `expected Upgrade: ${want}` } }, reqId);
    }
    // ws would refuse a bad handshake itself, but after the shell is open and not in JSend: check first.
    const wsProblem = route.kind === "shell-ws" ? webSocketHandshakeProblem(req) : undefined;
    if (wsProblem) return sendJson(socket, 400, { status: "fail", data: wsProblem }, reqId);

    if (route.kind === "tunnel") {
      // Connect in the guest first, so a refused port is a 502, not a dead pipe.
      const guest = await remoteAccess.openTunnel(user.id, route.id, route.port);
      if (socket.destroyed || closing) return void guest.destroy();
      sendSwitching(socket, req.headers.upgrade as string, reqId);
      if (head.length > 0) socket.unshift(head);
      splice(socket, guest, () => remoteAccess.touch(route.id));
      log.debug({ port: route.port }, "tunnel open");
      return;
    }

    const session = await remoteAccess.openShell(user.id, route.id, sizeOf(url));
    if (socket.destroyed || closing) return void session.stream.destroy();
    const touch = () => remoteAccess.touch(route.id);

    if (route.kind === "shell") {
      sendSwitching(socket, req.headers.upgrade as string, reqId);
      const t: ShellTransport = {
        send: (d) => socket.write(d),
        onDrain: (fn) => socket.once("drain", fn),
        pause: () => socket.pause(),
        resume: () => socket.resume(),
        close: () => {
          socket.end();
          // A client that never closes its side must not hold the socket forever.
          setTimeout(() => socket.destroy(), 5000).unref();
        },
      };
      const bridge = bridgeShell(session, t, touch, (msg) => {
        log.debug({ msg }, "bad shell frame: closing");
        socket.destroy();
      });
      if (head.length > 0) bridge.input(head);
      socket.on("data", (c: Buffer) => bridge.input(c));
      // A terminal has no half-close: the client's end is a hang-up.
      socket.on("end", () => {
        bridge.gone();
        socket.end();
      });
      socket.on("error", () => bridge.gone());
      socket.on("close", () => bridge.gone());
      return;
    }

    // Should ws still refuse the handshake, the shell must not outlive the socket.
    let accepted = false;
    socket.once("close", () => {
      if (!accepted) session.stream.destroy();
    });
    wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
      accepted = true;
      const t: ShellTransport = {
        send: (d) => {
          ws.send(d, { binary: true });
          return ws.bufferedAmount < 1024 * 1024;
        },
        onDrain: (fn) => {
          // ws has no drain event of its own: poll its buffer.
          const timer = setInterval(() => {
            if (ws.readyState !== ws.OPEN || ws.bufferedAmount < 256 * 1024) {
              clearInterval(timer);
              fn();
            }
          }, 20);
        },
        pause: () => ws.pause(),
        resume: () => ws.resume(),
        close: (_code, reason) => ws.close(1000, reason),
      };
      const bridge = bridgeShell(session, t, touch, (msg) => ws.close(1007, msg.slice(0, 120)));
      ws.on("message", (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => {
        const buf = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
        if (isBinary) bridge.input(buf);
        else session.stream.write(buf); // text: typed as is (handy from a browser console)
      });
      ws.on("close", () => bridge.gone());
      ws.on("error", () => bridge.gone());
    });
  }

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const reqId = genReqId(req);
    let url: URL;
    let route: Route | undefined;
    try {
      url = new URL(req.url ?? "/", "http://localhost");
      route = routeOf(req.method, url.pathname);
    } catch {
      // A malformed target or percent-encoding: an event listener must not throw (it would crash the server).
      socket.on("error", () => socket.destroy());
      return sendJson(socket, 400, { status: "fail", data: { url: "malformed request path" } }, reqId);
    }
    if (!route) {
      // Someone else's upgrade route (another listener answers it), or nobody's.
      if (app.server.listenerCount("upgrade") > 1) return;
      return sendJson(socket, 404, { status: "fail", data: { route: `no route ${req.method} ${url.pathname}` } }, reqId);
    }
    track(socket);
    socket.on("error", () => socket.destroy());
    if (closing) return sendJson(socket, 503, { status: "error", message: "service unavailable", code: 503 }, reqId);
    handle(req, socket, head, route, url, reqId).catch((err: unknown) => {
      const status = sendFailure(socket, err, reqId);
      if (status >= 500) app.log.error({ err, reqId, sandbox: route.id, upgrade: route.kind }, "upgrade request failed");
    });
  };

  app.server.on("upgrade", onUpgrade);
  app.addHook("preClose", async () => {
    closing = true;
    app.server.off("upgrade", onUpgrade);
    for (const s of open) s.destroy();
    wss.close();
  });
}
