/** GET /healthz (process up) and GET /readyz (recovered and database reachable); no auth. */
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { Services } from "../../../core/services.js";

export const healthRoutes: FastifyPluginAsyncTypebox<{ services: Services }> = async (app, opts) => {
  app.get("/healthz", { config: { auth: false } }, async () => ({ status: "success", data: { up: true } }));

  app.get("/readyz", { config: { auth: false } }, async (request, reply) => {
    let reason: string | undefined;
    if (!opts.services.sandboxes.ready) reason = "recovering sandboxes";
    else {
      try {
        await opts.services.repos.ping();
      } catch (err) {
        request.log.warn({ err }, "database ping failed");
        reason = "database unavailable";
      }
    }
    if (reason) return reply.code(503).send({ status: "fail", data: { ready: false, reason } });
    return { status: "success", data: { ready: true } };
  });
};
