/**
 * JSend answers for the errors that happen before a request reaches a route:
 * a path Fastify's router cannot decode or whose parameter is too long
 * (`frameworkErrors`), and HTTP the parser rejects or a request that is not
 * received in time (`clientErrorHandler`). Fastify's defaults answer these
 * with its own `{error, message, statusCode}` shape.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { FastifyError, FastifyReply, FastifyRequest } from "fastify";
import { responseHead } from "../upgrade/upgrade-response.js";
import { sendError, sendFail } from "./error-handler.js";

/** Fastify's router limit on one path parameter (its default, stated here so messages can name it). */
export const MAX_PARAM_LENGTH = 100;

/** The name of the first path parameter longer than the limit (the routes' own names). */
function longParamOf(path: string): string {
  const segs = path.split("?")[0]!.split("/");
  const i = segs.findIndex((s) => s.length > MAX_PARAM_LENGTH);
  const prev = segs[i - 1];
  if (prev === "by-ip") return "ip";
  if (prev === "tunnel") return "port";
  if (prev === "sandboxes") return "id";
  return "path";
}

/**
 * Fastify `frameworkErrors`: a path with malformed percent-encoding (400,
 * `url`) or a parameter over {@link MAX_PARAM_LENGTH} characters (414, named).
 */
export function onFrameworkError(err: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  // These run before the onRequest hooks: add what request-id.ts would.
  reply.header("x-request-id", request.id);
  if (err.code === "FST_ERR_BAD_URL") {
    sendFail(reply, 400, { url: "the path has malformed percent-encoding" });
    return;
  }
  if (err.code === "FST_ERR_MAX_PARAM_LENGTH") {
    sendFail(reply, 414, { [longParamOf(request.raw.url ?? "")]: `longer than ${MAX_PARAM_LENGTH} characters` });
    return;
  }
  request.log.error({ err }, "framework error");
  sendError(reply, 500, "internal error");
}

/** What the HTTP parser rejected, by its error code: the header or part named. */
function parserFailure(code: string | undefined): { status: number; data: Record<string, string> } {
  switch (code) {
    case "ERR_HTTP_REQUEST_TIMEOUT":
      return { status: 408, data: { request: "the request was not received in time" } };
    case "HPE_HEADER_OVERFLOW":
      return { status: 431, data: { headers: "request line and headers are too large" } };
    case "HPE_INVALID_CONTENT_LENGTH":
    case "HPE_UNEXPECTED_CONTENT_LENGTH":
      return { status: 400, data: { "content-length": "invalid or conflicting Content-Length" } };
    case "HPE_INVALID_TRANSFER_ENCODING":
    case "HPE_INVALID_CHUNK_SIZE":
    case "HPE_CHUNK_EXTENSIONS_OVERFLOW":
      return { status: 400, data: { "transfer-encoding": "invalid chunked body" } };
    case "HPE_INVALID_METHOD":
      return { status: 400, data: { method: "invalid method" } };
    case "HPE_INVALID_URL":
      return { status: 400, data: { url: "invalid request target" } };
    case "HPE_INVALID_VERSION":
      return { status: 400, data: { version: "invalid HTTP version" } };
    case "HPE_INVALID_HEADER_TOKEN":
    case "HPE_LF_EXPECTED":
    case "HPE_CR_EXPECTED":
      return { status: 400, data: { headers: "malformed header" } };
    default:
      return { status: 400, data: { request: "malformed HTTP request" } };
  }
}

/**
 * Fastify `clientErrorHandler` (node's 'clientError'): answers a JSend `fail`
 * when nothing was sent on the connection yet, then closes it.
 */
export function onClientError(err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === "ECONNRESET" || socket.destroyed) return;
  // A response already under way (headers sent) cannot take another one.
  const current = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
  if (socket.writable && !current?.headersSent) {
    const { status, data } = parserFailure(err.code);
    const body = JSON.stringify({ status: "fail", data });
    socket.write(
      responseHead(status, { "Content-Type": "application/json; charset=utf-8", "Content-Length": String(Buffer.byteLength(body)), Connection: "close" }) + body,
    );
  }
  socket.destroy();
}

/**
 * onRequest hook: an HTTP/1.1 request without `Host` is a 400 naming it
 * (node's own check, turned off in app.ts, answers an empty 400).
 */
export async function requireHost(request: FastifyRequest, reply: FastifyReply): Promise<void> {
  if (request.raw.httpVersion === "1.1" && request.headers.host === undefined) {
    await sendFail(reply, 400, { host: "required in HTTP/1.1" });
  }
}

/**
 * Node's 'checkExpectation' (an `Expect` other than 100-continue): 417 in
 * JSend naming the header (node's own answer has no body).
 */
export function onCheckExpectation(req: IncomingMessage, res: ServerResponse): void {
  const body = JSON.stringify({ status: "fail", data: { expect: "only 100-continue is supported" } });
  res.writeHead(417, { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(body), connection: "close" });
  res.end(body);
  req.resume();
}
