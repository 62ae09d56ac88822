/**
 * /v1/sandboxes: create, list, get, by-ip, patch, delete. Exec and files
 * live beside this file.
 */
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { invalid } from "../../../core/errors.js";
import { LISTABLE_STATUSES, type SandboxStatus } from "../../../core/sandbox-state.js";
import type { Services } from "../../../core/services.js";
import type { ApiSettings } from "../../api-settings.js";
import { page, pageOf } from "../../schemas/page-query.js";
import { CreateSandboxBody, ListSandboxesQuery, PatchSandboxBody, SandboxIdParams, SandboxIpParams } from "../../schemas/sandbox-schemas.js";
import { createView, listItemView, sandboxView } from "../../views/sandbox-views.js";
import { execRoutes } from "./exec.js";
import { fileRoutes } from "./files.js";
import { lifecycleRoutes } from "./lifecycle.js";
import { networkRoutes } from "./network.js";
import { remoteAccessRoutes } from "./remote-access.js";
import { upgradeRoutes } from "./upgrade-routes.js";

export const sandboxRoutes: FastifyPluginAsyncTypebox<{ services: Services; settings: ApiSettings }> = async (app, opts) => {
  const { sandboxes } = opts.services;
  const ingress = opts.settings.ingress;

  app.post("/", { schema: { body: CreateSandboxBody } }, async (request) => {
    const rec = await sandboxes.create(request.user.id, request.body);
    return { status: "success", data: createView(rec, ingress) };
  });

  app.get("/", { schema: { querystring: ListSandboxesQuery } }, async (request) => {
    const p = pageOf(request.query);
    const status = request.query.status;
    if (status !== undefined && !(LISTABLE_STATUSES as readonly string[]).includes(status)) {
      throw invalid("status", `must be one of ${LISTABLE_STATUSES.join(", ")}`);
    }
    const { items, total } = await sandboxes.list(request.user.id, {
      ...p,
      ...(status ? { status: status as SandboxStatus } : {}),
    });
    return { status: "success", data: page(items.map(listItemView), total, p) };
  });

  app.get("/by-ip/:ip", { schema: { params: SandboxIpParams } }, async (request) => {
    const rec = await sandboxes.getByIp(request.user.id, request.params.ip);
    return { status: "success", data: sandboxView(rec, ingress) };
  });

  app.get("/:id", { schema: { params: SandboxIdParams } }, async (request) => {
    const rec = await sandboxes.get(request.user.id, request.params.id);
    return { status: "success", data: sandboxView(rec, ingress) };
  });

  app.patch("/:id", { schema: { params: SandboxIdParams, body: PatchSandboxBody } }, async (request) => {
    const rec = await sandboxes.patch(request.user.id, request.params.id, request.body);
    return { status: "success", data: sandboxView(rec, ingress) };
  });

  app.delete("/:id", { schema: { params: SandboxIdParams } }, async (request) => {
    return { status: "success", data: await sandboxes.destroy(request.user.id, request.params.id) };
  });

  await app.register(execRoutes, { services: opts.services, settings: opts.settings });
  await app.register(fileRoutes, { services: opts.services, settings: opts.settings });
  await app.register(lifecycleRoutes, { services: opts.services, settings: opts.settings });
  await app.register(networkRoutes, { services: opts.services });
  await app.register(remoteAccessRoutes, { services: opts.services });
  await app.register(upgradeRoutes, { services: opts.services });
};
