/**
 * PUT/GET /v1/sandboxes/{id}/files?path=/abs: raw bytes streamed to and from
 * the runtime. The body is never buffered; a size limit applies.
 */
import { Transform, type TransformCallback } from "node:stream";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { AppError } from "../../../core/errors.js";
import type { Services } from "../../../core/services.js";
import type { ApiSettings } from "../../api-settings.js";
import { FileQuery, SandboxIdParams } from "../../schemas/sandbox-schemas.js";

function tooLarge(max: number): AppError {
  return new AppError("payload_too_large", "file too large", { body: `file exceeds ${max} bytes` });
}

/** Passes bytes through, failing once more than `max` went by. */
class ByteLimit extends Transform {
  bytes = 0;
  exceeded = false;
  constructor(readonly max: number) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.max) {
      this.exceeded = true;
      cb(tooLarge(this.max));
      return;
    }
    cb(null, chunk);
  }
}

export const fileRoutes: FastifyPluginAsyncTypebox<{ services: Services; settings: ApiSettings }> = async (app, opts) => {
  const { guest } = opts.services;
  const max = opts.settings.maxFileBytes;

  // File bodies are raw bytes whatever their content type: hand the request
  // stream through untouched (encapsulated to this plugin).
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", (_request, _payload, done) => done(null, undefined));

  app.put("/:id/files", { schema: { params: SandboxIdParams, querystring: FileQuery } }, async (request) => {
    const declared = Number(request.headers["content-length"]);
    if (Number.isFinite(declared) && declared > max) throw tooLarge(max);
    const limit = new ByteLimit(max);
    request.raw.on("error", (err) => limit.destroy(err));
    request.raw.pipe(limit);
    try {
      await guest.writeFile(request.user.id, request.params.id, request.query.path, limit);
    } catch (err) {
      // Drain what the client still sends so the connection stays usable.
      request.raw.unpipe(limit);
      request.raw.resume();
      if (limit.exceeded) throw tooLarge(max);
      throw err;
    }
    return { status: "success", data: { path: request.query.path, bytes: limit.bytes } };
  });

  app.get("/:id/files", { schema: { params: SandboxIdParams, querystring: FileQuery } }, async (request, reply) => {
    const stream = await guest.readFile(request.user.id, request.params.id, request.query.path);
    reply.header("content-type", "application/octet-stream");
    return reply.send(stream);
  });
};
