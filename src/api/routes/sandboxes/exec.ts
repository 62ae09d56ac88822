/**
 * POST /v1/sandboxes/{id}/exec: buffered (`{result, exec_ms}`) or streaming
 * NDJSON (`?stream=true` or `stream: true`) with heartbeats. Closing the
 * connection aborts the command.
 */
import { PassThrough } from "node:stream";
import { StringDecoder } from "node:string_decoder";
import { performance } from "node:perf_hooks";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { FastifyReply } from "fastify";
import { AppError } from "../../../core/errors.js";
import type { Services } from "../../../core/services.js";
import type { ApiSettings } from "../../api-settings.js";
import { ExecBody, ExecQuery, SandboxIdParams } from "../../schemas/sandbox-schemas.js";

/** An AbortController fired when the client goes away before the reply ends. */
function abortOnClose(reply: FastifyReply): AbortController {
  const ac = new AbortController();
  reply.raw.on("close", () => {
    if (!reply.raw.writableFinished) ac.abort();
  });
  return ac;
}

/** A message about an exec failure that is safe to show the sandbox owner. */
function safeMessage(err: unknown): string {
  return err instanceof AppError && err.status < 500 ? err.message : "exec failed";
}

export const execRoutes: FastifyPluginAsyncTypebox<{ services: Services; settings: ApiSettings }> = async (app, opts) => {
  const { guest } = opts.services;

  app.post("/:id/exec", { schema: { params: SandboxIdParams, body: ExecBody, querystring: ExecQuery } }, async (request, reply) => {
    const run = await guest.prepareExec(request.user.id, request.params.id, request.body);
    const ac = abortOnClose(reply);
    const started = performance.now();

    if (request.query.stream === true || request.body.stream === true) {
      const out = new PassThrough();
      const write = (frame: object) => {
        if (!out.writableEnded && !out.destroyed) out.write(`${JSON.stringify(frame)}\n`);
      };
      const dec = { stdout: new StringDecoder("utf8"), stderr: new StringDecoder("utf8") };
      const hb = setInterval(() => write({ hb: true }), opts.settings.execHeartbeatMs);
      run(
        {
          onStdout: (c) => write({ stdout: dec.stdout.write(c) }),
          onStderr: (c) => write({ stderr: dec.stderr.write(c) }),
        },
        ac.signal,
      )
        .then((outcome) => {
          const tailOut = dec.stdout.end();
          const tailErr = dec.stderr.end();
          if (tailOut) write({ stdout: tailOut });
          if (tailErr) write({ stderr: tailErr });
          if (outcome.error !== undefined) write({ error: outcome.error });
          write({ exit_code: outcome.exitCode });
        })
        .catch((err: unknown) => {
          if (!ac.signal.aborted) request.log.warn({ err, sandbox: request.params.id }, "streaming exec failed");
          write({ error: safeMessage(err) });
          write({ exit_code: -1 });
        })
        .finally(() => {
          clearInterval(hb);
          out.end();
        });
      reply.header("content-type", "application/x-ndjson").header("cache-control", "no-store");
      return reply.send(out);
    }

    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    const outcome = await run({ onStdout: (c) => stdout.push(c), onStderr: (c) => stderr.push(c) }, ac.signal);
    const result: Record<string, unknown> = {
      stdout: Buffer.concat(stdout).toString("utf8"),
      stderr: Buffer.concat(stderr).toString("utf8"),
      exit_code: outcome.exitCode,
    };
    if (outcome.error !== undefined) result.error = outcome.error;
    return { status: "success", data: { result, exec_ms: Math.round((performance.now() - started) * 10) / 10 } };
  });
};
