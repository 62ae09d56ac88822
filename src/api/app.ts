/**
 * Builds the Fastify application. Never listens (see server.ts), so tests
 * and benchmarks can run it on any port. Order: request id, errors, auth,
 * then routes.
 */
import { TypeBoxValidatorCompiler, type TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import Fastify, { LogController, type FastifyInstance } from "fastify";
import type { Logger } from "pino";
import type { Services } from "../core/services.js";
import type { ApiSettings } from "./api-settings.js";
import { authPlugin } from "./plugins/auth.js";
import { errorHandlerPlugin } from "./plugins/error-handler.js";
import fp from "fastify-plugin";
import { genReqId, requestIdPlugin } from "./plugins/request-id.js";
import { MAX_PARAM_LENGTH, onCheckExpectation, onClientError, onFrameworkError, requireHost } from "./plugins/transport-errors.js";
import { catalogRoutes } from "./routes/catalog/index.js";
import { healthRoutes } from "./routes/health/index.js";
import { sandboxRoutes } from "./routes/sandboxes/index.js";
import { whoamiRoutes } from "./routes/whoami/index.js";

export interface AppOptions {
  services: Services;
  settings: ApiSettings;
  logger: Logger;
}

/** The whole API as one plugin (hooks apply app-wide). */
type HutchApiOptions = { services: Services; settings: ApiSettings };

export const hutchApi = fp<HutchApiOptions>(async (app: FastifyInstance, opts: HutchApiOptions) => {
  await app.register(requestIdPlugin);
  await app.register(errorHandlerPlugin);
  app.addHook("onRequest", requireHost);
  await app.register(authPlugin, { auth: opts.services.auth });
  if ((app.log as Logger).isLevelEnabled("debug")) {
    app.addHook("onResponse", async (request, reply) => {
      request.log.debug({ method: request.method, url: request.url, status: reply.statusCode, ms: reply.elapsedTime }, "request");
    });
  }
  await app.register(healthRoutes, { services: opts.services });
  await app.register(catalogRoutes, { services: opts.services, prefix: "/v1" });
  await app.register(whoamiRoutes, { services: opts.services, prefix: "/v1" });
  await app.register(sandboxRoutes, { services: opts.services, settings: opts.settings, prefix: "/v1/sandboxes" });
}, { name: "hutch-api" });

/** Largest request head (request line and headers), bytes: node's default, stated. */
export const MAX_HEADER_BYTES = 16 * 1024;
/** Default bound on receiving a whole request, body included (an upload of HUTCH_MAX_FILE_BYTES must fit). */
export const DEFAULT_REQUEST_TIMEOUT_MS = 600_000;
/** Default bound on receiving a request's headers. */
export const DEFAULT_HEADERS_TIMEOUT_MS = 15_000;

/** Creates the Fastify instance with the API registered; call `listen` or `inject` on it. */
export async function buildApp(opts: AppOptions): Promise<FastifyInstance> {
  const requestTimeout = opts.settings.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  const headersTimeout = Math.min(opts.settings.headersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS, requestTimeout);
  const app = Fastify({
    loggerInstance: opts.logger,
    // Per-request info logs cost more than the GET itself; hutchApi logs at debug.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: opts.settings.bodyLimit,
    genReqId,
    requestIdHeader: false,
    return503OnClosing: true,
    forceCloseConnections: "idle",
    // Bounds on what a client may hold open: a request (headers and body) must
    // arrive within requestTimeout, its headers within headersTimeout and
    // maxHeaderSize; the checks run often enough to honour short bounds.
    requestTimeout,
    http: {
      headersTimeout,
      maxHeaderSize: MAX_HEADER_BYTES,
      connectionsCheckingInterval: Math.max(50, Math.min(1000, headersTimeout / 4)),
      // Checked by requireHost instead, which answers in JSend.
      requireHostHeader: false,
    },
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
    // `__proto__` / `constructor.prototype` keys are dropped from JSON bodies: refusing
    // them would call valid JSON "malformed" (Fastify hides why the parse failed).
    onProtoPoisoning: "remove",
    onConstructorPoisoning: "remove",
    // Errors before routing answer JSend like the rest (Fastify's own shape otherwise).
    frameworkErrors: onFrameworkError,
    clientErrorHandler: onClientError,
  }).withTypeProvider<TypeBoxTypeProvider>();
  app.server.on("checkExpectation", onCheckExpectation);
  // Body types are checked strictly (no coercion); query and params convert.
  app.setValidatorCompiler(TypeBoxValidatorCompiler);
  await app.register(hutchApi, { services: opts.services, settings: opts.settings });
  await app.ready();
  return app as unknown as FastifyInstance;
}
