/**
 * Request ids: an incoming `x-request-id` is kept when it looks sane, else a
 * new one is made; every response carries it.
 */
import { randomUUID } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { FastifyInstance } from "fastify";
import fp from "fastify-plugin";

const SANE = /^[A-Za-z0-9._:\-]{1,128}$/;

/** Fastify `genReqId`: the caller's id if sane, otherwise a UUID. */
export function genReqId(req: IncomingMessage): string {
  const given = req.headers["x-request-id"];
  return typeof given === "string" && SANE.test(given) ? given : randomUUID();
}

/** Adds `x-request-id` to every response, errors and 404s included. */
export const requestIdPlugin = fp(async (app: FastifyInstance) => {
  app.addHook("onRequest", async (request, reply) => {
    reply.header("x-request-id", request.id);
  });
}, { name: "request-id" });
