/**
 * POST /v1/sandboxes/{id}/exec: buffered (`{result, exec_ms}`) or streaming
 * NDJSON (`?stream=true` or `stream: true`) with heartbeats. Closing the
 * connection aborts the command.
 *
 * What the server holds for one exec is bounded. A stream has backpressure:
 * the command's output is credited back to the guest only once the HTTP
 * response took it (`ExecOutput.ready`: the response drained), so a client
 * that reads slowly slows the command down (it blocks on its write in the
 * guest) and gets every byte. A buffered result past `execMaxOutputBytes`
 * kills the command and says so in `error` (it must fit in one answer).
 * The agent of an older image has no exec credit and prints as fast as it
 * can: for it a stream whose client falls `execStreamBacklogBytes` behind is
 * still killed, the safety net that keeps such a guest from growing the
 * server's memory (with credit the backlog stays within a window).
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

/** Default of ApiSettings.execMaxOutputBytes: 16 MiB. */
export const EXEC_MAX_OUTPUT_BYTES = 16 * 1024 * 1024;
/** Default of ApiSettings.execStreamBacklogBytes: 8 MiB. */
export const EXEC_STREAM_BACKLOG_BYTES = 8 * 1024 * 1024;

export const execRoutes: FastifyPluginAsyncTypebox<{ services: Services; settings: ApiSettings }> = async (app, opts) => {
  const { guest } = opts.services;
  const maxOutput = opts.settings.execMaxOutputBytes ?? EXEC_MAX_OUTPUT_BYTES;
  const maxBacklog = opts.settings.execStreamBacklogBytes ?? EXEC_STREAM_BACKLOG_BYTES;

  app.post("/:id/exec", { schema: { params: SandboxIdParams, body: ExecBody, querystring: ExecQuery } }, async (request, reply) => {
    const run = await guest.prepareExec(request.user.id, request.params.id, request.body);
    const ac = abortOnClose(reply);
    const started = performance.now();

    if (request.query.stream === true || request.body.stream === true) {
      const out = new PassThrough();
      const write = (frame: object) => {
        if (!out.writableEnded && !out.destroyed) out.write(`${JSON.stringify(frame)}\n`);
      };
      // `out` is piped into the response: it needs a drain once the client
      // stops reading, and until then the guest gets no more credit.
      let drain: Promise<void> | undefined;
      const ready = () => {
        if (!out.writableNeedDrain || out.destroyed) return undefined;
        drain ??= new Promise<void>((resolve) => {
          const done = () => {
            out.off("drain", done);
            out.off("close", done);
            drain = undefined;
            resolve();
          };
          out.on("drain", done);
          out.on("close", done);
        });
        return drain;
      };
      // Safety net for agents without exec credit (older images): output
      // the client has not taken yet waits in `out`; past the bound, the command is killed.
      let overrun = false;
      const output = (frame: object) => {
        if (overrun) return;
        write(frame);
        if (out.writableLength + out.readableLength > maxBacklog) {
          overrun = true;
          ac.abort();
        }
      };
      const dec = { stdout: new StringDecoder("utf8"), stderr: new StringDecoder("utf8") };
      const hb = setInterval(() => write({ hb: true }), opts.settings.execHeartbeatMs);
      run(
        {
          onStdout: (c) => output({ stdout: dec.stdout.write(c) }),
          onStderr: (c) => output({ stderr: dec.stderr.write(c) }),
          ready,
        },
        ac.signal,
      )
        .then((outcome) => {
          const tailOut = dec.stdout.end();
          const tailErr = dec.stderr.end();
          if (tailOut) output({ stdout: tailOut });
          if (tailErr) output({ stderr: tailErr });
          if (overrun) write({ error: `output not read: the client fell more than ${maxBacklog} bytes behind; command killed` });
          else if (outcome.error !== undefined) write({ error: outcome.error });
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
    let size = 0;
    let overrun = false;
    const keep = (into: Buffer[]) => (c: Buffer) => {
      if (overrun) return;
      if (size + c.length > maxOutput) {
        into.push(c.subarray(0, maxOutput - size));
        size = maxOutput;
        overrun = true;
        ac.abort();
        return;
      }
      size += c.length;
      into.push(c);
    };
    const outcome = await run({ onStdout: keep(stdout), onStderr: keep(stderr) }, ac.signal);
    const result: Record<string, unknown> = {
      stdout: Buffer.concat(stdout).toString("utf8"),
      stderr: Buffer.concat(stderr).toString("utf8"),
      exit_code: outcome.exitCode,
    };
    if (overrun) result.error = `output larger than ${maxOutput} bytes: truncated, command killed`;
    else if (outcome.error !== undefined) result.error = outcome.error;
    return { status: "success", data: { result, exec_ms: Math.round((performance.now() - started) * 10) / 10 } };
  });
};
