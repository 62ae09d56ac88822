/**
 * The one error handler: builds JSend from any error. Below 500: `fail` with
 * the offending field names; 500 and up: `error` with a generic message (the
 * cause goes to the log only). Also the JSend 404 for unknown routes.
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { AppError, isDiskFullError, noDiskSpace } from "../../core/errors.js";
import fp from "fastify-plugin";

interface SchemaIssue {
  instancePath?: string;
  keyword?: string;
  message?: string;
  params?: Record<string, unknown>;
}

const GENERIC: Record<number, string> = {
  500: "internal error",
  502: "bad gateway",
  503: "service unavailable",
};

/** decodeURIComponent that keeps text it cannot decode (a body key may hold a stray `%`). */
function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** The first path segment an issue points at (the top-level field). */
function fieldOf(issue: SchemaIssue | undefined, fallback: string): string {
  if (!issue) return fallback;
  const seg = (issue.instancePath ?? "").split("/").filter(Boolean)[0];
  if (seg) return safeDecode(seg.replace(/~1/g, "/").replace(/~0/g, "~"));
  const params = issue.params ?? {};
  const missing = params.missingProperty ?? (Array.isArray(params.requiredProperties) ? params.requiredProperties[0] : undefined);
  if (typeof missing === "string") return missing;
  const extra = params.additionalProperty ?? (Array.isArray(params.additionalProperties) ? params.additionalProperties[0] : undefined);
  if (typeof extra === "string") return extra;
  return fallback;
}

function schemaMessage(issue: SchemaIssue | undefined): string {
  if (!issue) return "invalid";
  if (issue.keyword === "required") return "required";
  return issue.message ?? "invalid";
}

/** Sends `{status:"fail", data}` with `status`. */
export function sendFail(reply: FastifyReply, status: number, data: Record<string, string>): FastifyReply {
  return reply.code(status).type("application/json; charset=utf-8").send({ status: "fail", data });
}

/** Sends `{status:"error", message, code}`. */
export function sendError(reply: FastifyReply, status: number, message: string): FastifyReply {
  return reply.code(status).type("application/json; charset=utf-8").send({ status: "error", message, code: status });
}

/** 5xx codes whose message says something the client can act on (no detail of the host). */
const SAFE_5XX: Partial<Record<AppError["code"], string>> = {
  no_capacity: "no host capacity",
  no_disk_space: "no host capacity: not enough free disk space on the host",
};

function handle(err: FastifyError & { validation?: SchemaIssue[]; validationContext?: string }, request: FastifyRequest, reply: FastifyReply) {
  // A store write that found the data dir's disk full (SQLITE_FULL, ENOSPC): retry later, nothing was done.
  if (!(err instanceof AppError) && isDiskFullError(err)) return handle(noDiskSpace(err) as unknown as typeof err, request, reply);
  if (err instanceof AppError) {
    if (err.status >= 500) {
      request.log.error({ err, code: err.code }, "request failed");
      return sendError(reply, err.status, SAFE_5XX[err.code] ?? GENERIC[err.status] ?? "internal error");
    }
    // 429 (per-user create rate): when the next attempt can succeed.
    if (err.retryAfterS !== undefined) reply.header("retry-after", String(err.retryAfterS));
    return sendFail(reply, err.status, Object.keys(err.fields).length > 0 ? err.fields : { error: err.message });
  }
  if (err.validation) {
    const context = err.validationContext ?? "body";
    const fallback = context === "body" ? "body" : context;
    const issue = err.validation[0];
    const field = fieldOf(issue, fallback);
    return sendFail(reply, 400, { [field]: schemaMessage(issue) });
  }
  const status = err.statusCode ?? 500;
  if (status < 500) {
    switch (err.code) {
      case "FST_ERR_CTP_INVALID_JSON_BODY":
      case "FST_ERR_CTP_EMPTY_JSON_BODY":
        return sendFail(reply, 400, { body: err.code === "FST_ERR_CTP_EMPTY_JSON_BODY" ? "empty JSON body" : "malformed JSON" });
      case "FST_ERR_CTP_BODY_TOO_LARGE":
        return sendFail(reply, 413, { body: "body too large" });
      case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
        return sendFail(reply, 415, { body: "unsupported content type" });
      default:
        if (err instanceof SyntaxError) return sendFail(reply, 400, { body: "malformed JSON" });
        return sendFail(reply, status, { request: err.message });
    }
  }
  request.log.error({ err }, "request failed");
  return sendError(reply, status, GENERIC[status] ?? "internal error");
}

/** Installs the error handler and the JSend 404 for the whole app. */
export const errorHandlerPlugin = fp(async (app: FastifyInstance) => {
  app.setErrorHandler(handle);
  app.setNotFoundHandler((request, reply) => {
    return sendFail(reply, 404, { route: `no route ${request.method} ${request.url.split("?")[0]}` });
  });
}, { name: "error-handler" });
