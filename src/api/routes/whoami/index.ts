/** GET /v1/whoami: the caller's id and sandbox counts. */
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { Services } from "../../../core/services.js";

export const whoamiRoutes: FastifyPluginAsyncTypebox<{ services: Services }> = async (app, opts) => {
  app.get("/whoami", async (request) => {
    const stats = await opts.services.sandboxes.stats(request.user.id);
    return { status: "success", data: { user_id: request.user.id, stats } };
  });
};
