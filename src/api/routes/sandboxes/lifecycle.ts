/**
 * POST /v1/sandboxes/{id}/pause, /resume and /fork (issue 4). Pause and
 * resume answer 202 `{id, status}` with `X-Poll-After` while in progress,
 * 200 with the SandboxView when already there; fork answers the child's view.
 */
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Type } from "typebox";
import type { LifecycleResult } from "../../../core/snapshot-service.js";
import type { Services } from "../../../core/services.js";
import type { ApiSettings } from "../../api-settings.js";
import { SandboxIdParams } from "../../schemas/sandbox-schemas.js";
import { sandboxView } from "../../views/sandbox-views.js";

/** Seconds a client should wait before polling a pause/resume (both take about a second or less). */
const POLL_AFTER_S = 1;

// Loose value checks: core validates and names the offending field in a 400.
const ForkBody = Type.Object(
  {
    start_paused: Type.Optional(Type.Boolean()),
    ssh_pubkeys: Type.Optional(Type.Array(Type.String())),
    egress: Type.Optional(Type.Array(Type.String())),
    ingress_enabled: Type.Optional(Type.Boolean()),
    envs: Type.Optional(Type.Record(Type.String(), Type.String())),
    bandwidth_quota_bytes: Type.Optional(Type.Integer()),
  },
);

export const lifecycleRoutes: FastifyPluginAsyncTypebox<{ services: Services; settings: ApiSettings }> = async (app, opts) => {
  const { snapshots } = opts.services;
  const ingress = opts.settings.ingress;

  const answer = (reply: { code(n: number): unknown; header(k: string, v: string): unknown }, r: LifecycleResult) => {
    if (!r.accepted) return { status: "success", data: sandboxView(r.record, ingress) };
    reply.code(202);
    reply.header("x-poll-after", String(POLL_AFTER_S));
    return { status: "success", data: { id: r.record.id, status: r.record.status } };
  };

  app.post("/:id/pause", { schema: { params: SandboxIdParams } }, async (request, reply) => {
    return answer(reply, await snapshots.pause(request.user.id, request.params.id));
  });

  app.post("/:id/resume", { schema: { params: SandboxIdParams } }, async (request, reply) => {
    return answer(reply, await snapshots.resume(request.user.id, request.params.id));
  });

  app.post("/:id/fork", { schema: { params: SandboxIdParams, body: Type.Optional(ForkBody) } }, async (request) => {
    const child = await snapshots.fork(request.user.id, request.params.id, request.body ?? {});
    return { status: "success", data: sandboxView(child, ingress) };
  });
};
