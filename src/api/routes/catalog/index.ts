/** GET /v1/shapes (no auth, paginated), /v1/rootfs (no auth), /v1/hosts (paginated). */
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { Services } from "../../../core/services.js";
import { page, pageOf, PageQuery } from "../../schemas/page-query.js";

export const catalogRoutes: FastifyPluginAsyncTypebox<{ services: Services }> = async (app, opts) => {
  const { catalog } = opts.services;

  app.get("/shapes", { config: { auth: false }, schema: { querystring: PageQuery } }, async (request) => {
    const p = pageOf(request.query);
    const all = catalog.shapes().map((s) => ({ id: s.id, vcpu: s.vcpu, mem_mib: s.memMib, default_disk_mib: s.defaultDiskMib }));
    return { status: "success", data: page(all.slice(p.offset, p.offset + p.limit), all.length, p) };
  });

  app.get("/rootfs", { config: { auth: false } }, async () => {
    const c = await catalog.rootfs();
    return { status: "success", data: { rootfs: c.names, default: c.default, entries: c.entries } };
  });

  app.get("/hosts", { schema: { querystring: PageQuery } }, async (request) => {
    const p = pageOf(request.query);
    const all = (await catalog.hosts()).map((h) => {
      const view: Record<string, unknown> = { id: h.id, status: h.status, free_mib: h.freeMib, vm_count: h.vmCount };
      if (h.rootfses.length > 0) view.rootfses = h.rootfses;
      return view;
    });
    return { status: "success", data: page(all.slice(p.offset, p.offset + p.limit), all.length, p) };
  });
};
