/**
 * Listens and closes gracefully: on SIGINT/SIGTERM the server stops
 * accepting, finishes in-flight requests and closes. VMs keep running.
 */
import type { FastifyInstance } from "fastify";

/** Starts listening; returns the URL. */
export async function listen(app: FastifyInstance, host: string, port: number): Promise<string> {
  await app.listen({ host, port });
  const addr = app.server.address();
  const actualPort = typeof addr === "object" && addr ? addr.port : port;
  const shownHost = host.includes(":") ? `[${host}]` : host;
  return `http://${shownHost}:${actualPort}`;
}

/**
 * Calls `shutdown` once on the first SIGINT/SIGTERM; a second signal exits
 * at once.
 */
export function closeOnSignals(shutdown: () => Promise<void>, log: (msg: string) => void): void {
  let closing = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (closing) {
      log(`${signal} again: exiting now`);
      process.exit(130);
    }
    closing = true;
    log(`${signal}: closing (VMs keep running)`);
    shutdown().then(
      () => process.exit(0),
      (err: unknown) => {
        log(`shutdown failed: ${String(err)}`);
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
}
