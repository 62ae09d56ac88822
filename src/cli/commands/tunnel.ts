/**
 * `hutch tunnel ID REMOTE_PORT [--local PORT --bind ADDR]`: listens locally;
 * every accepted connection opens its own tunnel to REMOTE_PORT in the guest.
 * `--stdio` pipes stdin/stdout through one tunnel instead (ssh ProxyCommand).
 */
import { createServer, type Socket } from "node:net";
import type { ClientConfig } from "../client/client-config.js";
import { errorLine } from "../client/cli-error.js";
import { resolveSandbox } from "../client/resolve-sandbox.js";
import type { CommandContext } from "../client/run-action.js";
import { tunnelPath } from "../client/tunnel-path.js";
import { openUpgrade } from "../client/upgrade-connection.js";

/** Flags of `hutch tunnel`. */
export interface TunnelFlags {
  local?: number;
  bind: string;
  stdio?: boolean;
}

/**
 * Joins two sockets both ways; an end on one side half-closes the other, an
 * error or a close destroys both.
 */
export function splice(a: Socket, b: Socket): Promise<void> {
  return new Promise((resolve) => {
    a.pipe(b);
    b.pipe(a);
    let closed = 0;
    const done = () => {
      a.destroy();
      b.destroy();
    };
    a.on("error", done);
    b.on("error", done);
    const onClose = () => {
      done();
      if (++closed === 2) resolve();
    };
    a.on("close", onClose);
    b.on("close", onClose);
  });
}

/** Pipes stdin/stdout through one tunnel; resolves when the guest side is done. */
async function stdioTunnel(config: ClientConfig, id: string, remotePort: number): Promise<number> {
  const sock = await openUpgrade(config, tunnelPath(id, remotePort));
  process.stdin.pipe(sock);
  sock.pipe(process.stdout);
  await new Promise<void>((resolve, reject) => {
    sock.on("error", reject);
    // The guest side finished sending: everything is on stdout.
    sock.on("end", () => resolve());
    sock.on("close", () => resolve());
  });
  return 0;
}

export async function tunnelCommand(ctx: CommandContext, ref: string, remotePort: number, flags: TunnelFlags): Promise<number> {
  const sb = await resolveSandbox(ctx.client(), ref);
  const id = sb.id;
  if (flags.stdio) return stdioTunnel(ctx.config, id, remotePort);

  // The guest service may start later, so no probe tunnel here; just say when it cannot work yet.
  if (sb.status !== "running") process.stderr.write(`hutch: warning: ${id} is ${sb.status}; tunnels need it running\n`);

  const server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (local) => {
    openUpgrade(ctx.config, tunnelPath(id, remotePort)).then(
      (remote) => {
        void splice(local, remote);
        local.resume();
      },
      (err: unknown) => {
        process.stderr.write(`hutch: tunnel: ${errorLine(err)}\n`);
        local.destroy();
      },
    );
  });
  const localPort = flags.local ?? remotePort;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(localPort, flags.bind, () => resolve());
  });
  const addr = server.address();
  const bound = typeof addr === "object" && addr ? addr.port : localPort;
  const host = flags.bind.includes(":") ? `[${flags.bind}]` : flags.bind;
  process.stdout.write(`forwarding ${host}:${bound} -> ${id}:${remotePort}\n`);
  await new Promise<void>((resolve) => {
    const stop = () => {
      server.close();
      resolve();
    };
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });
  return 0;
}
