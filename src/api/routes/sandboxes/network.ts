/**
 * /v1/sandboxes/{id}/egress (GET, PUT) and /bandwidth (GET,
 * POST /recharge): the allowlist and the quota, applied live by core.
 */
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Type } from "typebox";
import type { Services } from "../../../core/services.js";
import { SandboxIdParams } from "../../schemas/sandbox-schemas.js";

// Loose schemas: core validates and names the offending field in a 400.
const EgressBody = Type.Object({ egress: Type.Unknown() });
const RechargeBody = Type.Object({ add_bytes: Type.Unknown() });

export const networkRoutes: FastifyPluginAsyncTypebox<{ services: Services }> = async (app, opts) => {
  const { network } = opts.services;

  app.get("/:id/egress", { schema: { params: SandboxIdParams } }, async (request) => {
    return { status: "success", data: await network.getEgress(request.user.id, request.params.id) };
  });

  app.put("/:id/egress", { schema: { params: SandboxIdParams, body: EgressBody } }, async (request) => {
    return { status: "success", data: await network.putEgress(request.user.id, request.params.id, request.body.egress) };
  });

  app.get("/:id/bandwidth", { schema: { params: SandboxIdParams } }, async (request) => {
    return { status: "success", data: await network.bandwidth(request.user.id, request.params.id) };
  });

  app.post("/:id/bandwidth/recharge", { schema: { params: SandboxIdParams, body: RechargeBody } }, async (request) => {
    return { status: "success", data: await network.recharge(request.user.id, request.params.id, request.body.add_bytes) };
  });
};
