/**
 * POST /v1/sandboxes/{id}/ssh-pubkeys `{keys}` → `{count}`, and plain-HTTP
 * answers for the upgrade-only routes (tunnel, shell, shell-ws) when a client
 * calls them without `Connection: Upgrade` (426). The upgrades themselves
 * are dispatched in upgrade-routes.ts.
 */
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Type } from "typebox";
import type { Services } from "../../../core/services.js";
import { sendFail } from "../../plugins/error-handler.js";
import { SandboxIdParams } from "../../schemas/sandbox-schemas.js";

const SshPubkeysBody = Type.Object({ keys: Type.Array(Type.String({ maxLength: 16384 }), { maxItems: 256 }) });

export const remoteAccessRoutes: FastifyPluginAsyncTypebox<{ services: Services }> = async (app, opts) => {
  const { remoteAccess, sandboxes } = opts.services;

  app.post("/:id/ssh-pubkeys", { schema: { params: SandboxIdParams, body: SshPubkeysBody } }, async (request) => {
    const count = await remoteAccess.addSshPubkeys(request.user.id, request.params.id, request.body.keys);
    return { status: "success", data: { count } };
  });

  const needsUpgrade = (what: string) =>
    async (request: { user: { id: string }; params: { id: string } }, reply: Parameters<typeof sendFail>[0]) => {
      await sandboxes.get(request.user.id, request.params.id); // 404 before 426
      reply.header("upgrade", what === "shell-ws" ? "websocket" : "tcp-tunnel");
      return sendFail(reply, 426, { upgrade: what === "shell-ws" ? "a WebSocket upgrade is required" : "Connection: Upgrade with Upgrade: tcp-tunnel is required" });
    };
  app.post("/:id/tunnel/:port", { schema: { params: Type.Object({ id: Type.String(), port: Type.String() }) } }, needsUpgrade("tunnel"));
  app.post("/:id/shell", { schema: { params: SandboxIdParams } }, needsUpgrade("shell"));
  app.get("/:id/shell-ws", { schema: { params: SandboxIdParams } }, needsUpgrade("shell-ws"));
};
