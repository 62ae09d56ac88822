/**
 * API-key authentication (`X-Api-Key`, also `X-Auth-Token`, `X-Access-Token`
 * or `Authorization: Bearer`). Routes opt out with `config: { auth: false }`.
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { AuthService } from "../../core/auth-service.js";
import type { UserRecord } from "../../core/repositories.js";
import { sendFail } from "./error-handler.js";
import fp from "fastify-plugin";

declare module "fastify" {
  interface FastifyRequest {
    /** The authenticated caller; set on every route with auth. */
    user: UserRecord;
  }
  interface FastifyContextConfig {
    /** false: no API key needed (health, catalog). */
    auth?: boolean;
  }
}

function keyOf(request: FastifyRequest): string | undefined {
  const h = request.headers;
  for (const name of ["x-api-key", "x-auth-token", "x-access-token"] as const) {
    const v = h[name];
    if (typeof v === "string" && v !== "") return v;
  }
  const auth = h.authorization;
  if (typeof auth === "string" && auth.startsWith("Bearer ")) return auth.slice(7).trim();
  return undefined;
}

/** Rejects unauthenticated requests with 401 before their body is read. */
export const authPlugin = fp(async (app: FastifyInstance, opts: { auth: AuthService }) => {
  app.decorateRequest("user", null as unknown as UserRecord);
  app.addHook("onRequest", async (request, reply) => {
    if (request.routeOptions.config.auth === false || request.routeOptions.url === undefined) return;
    const user = await opts.auth.authenticate(keyOf(request));
    if (!user) return sendFail(reply, 401, { api_key: "missing or invalid API key" });
    request.user = user;
  });
}, { name: "auth" });
