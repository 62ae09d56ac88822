/**
 * Reaches guests from the server process. The server lives in the host
 * netns, which by design has no route to the sandbox CIDR (it cannot clash
 * with the host's own networks). Rather than route or DNAT into the netns,
 * a tiny long-lived helper (netns-dialer-main.ts) runs inside it, started
 * with `ip netns exec`, and accepts on a unix socket (path sockets cross
 * network namespaces): each connection names a target ip:port, the helper
 * dials it from inside and pipes bytes. One process, no per-request spawn,
 * no host routing change, and it can only dial the sandbox CIDR.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { createConnection, type Socket } from "node:net";
import { fileURLToPath } from "node:url";
import { RuntimeError } from "../errors.js";
import type { NetLogger } from "./host-network.js";

export interface NetnsDialerOptions {
  netns: string;
  /** Unix socket path (≤ 107 bytes). */
  socketPath: string;
  /** The sandbox CIDR: the only addresses the helper will dial. */
  cidr: string;
  log?: NetLogger;
}

const CONNECT_TIMEOUT_MS = 5000;

export class NetnsDialer {
  private child: ChildProcess | undefined;
  private ready: Promise<void> | undefined;
  private closed = false;

  constructor(private readonly opts: NetnsDialerOptions) {}

  /** Starts the helper (idempotent); resolves once it listens. */
  start(): Promise<void> {
    if (this.closed) return Promise.reject(new RuntimeError("internal", "dialer closed"));
    this.ready ??= this.spawn().catch((err: unknown) => {
      this.ready = undefined;
      throw err;
    });
    return this.ready;
  }

  /**
   * A TCP connection to `ip:port` on the sandbox network, made from inside
   * the netns. Rejects `not_running` when nothing accepts there.
   */
  async dial(ip: string, port: number): Promise<Socket> {
    await this.start();
    const sock = createConnection(this.opts.socketPath);
    return new Promise<Socket>((resolve, reject) => {
      const timer = setTimeout(() => fail(new Error("connect timeout")), CONNECT_TIMEOUT_MS);
      const fail = (err: Error) => {
        clearTimeout(timer);
        sock.destroy();
        reject(new RuntimeError("not_running", `cannot reach ${ip}:${port}: ${err.message}`, { cause: err }));
      };
      sock.once("error", fail);
      sock.once("connect", () => sock.write(`${ip} ${port}\n`));
      const onReadable = () => {
        const b = sock.read(1) as Buffer | null;
        if (b === null) return;
        sock.off("readable", onReadable);
        if (b[0] === 0) {
          clearTimeout(timer);
          sock.off("error", fail);
          sock.off("end", onEnd);
          sock.setNoDelay(true);
          resolve(sock);
          return;
        }
        let msg = "";
        sock.setEncoding("utf8");
        sock.on("data", (d: string) => (msg += d));
        sock.once("end", () => fail(new Error(msg.trim() || "refused")));
      };
      const onEnd = () => fail(new Error("dialer closed the connection"));
      sock.on("readable", onReadable);
      sock.once("end", onEnd);
    });
  }

  /** Stops the helper. */
  close(): void {
    this.closed = true;
    this.child?.kill("SIGTERM");
    this.child = undefined;
  }

  private spawn(): Promise<void> {
    const [base, prefix] = this.opts.cidr.split("/") as [string, string];
    const js = fileURLToPath(new URL("./netns-dialer-main.js", import.meta.url));
    // Under tsx (tests run from src) only the .ts file exists.
    const entry = existsSync(js) ? [js] : ["--import", "tsx", fileURLToPath(new URL("./netns-dialer-main.ts", import.meta.url))];
    const child = spawn("ip", ["netns", "exec", this.opts.netns, process.execPath, ...entry, this.opts.socketPath, base, prefix], {
      stdio: ["pipe", "pipe", "pipe"],
    });
    this.child = child;
    let err = "";
    child.stderr!.setEncoding("utf8").on("data", (d: string) => (err = (err + d).slice(-2000)));
    return new Promise<void>((resolve, reject) => {
      child.stdout!.setEncoding("utf8").once("data", () => resolve());
      child.once("error", (e) => reject(new RuntimeError("internal", `netns dialer: ${e.message}`, { cause: e })));
      child.once("exit", (code, sig) => {
        if (this.child === child) {
          this.child = undefined;
          this.ready = undefined; // the next dial restarts it
        }
        if (!this.closed) this.opts.log?.warn({ code, sig, stderr: err }, "netns dialer exited");
        reject(new RuntimeError("internal", `netns dialer exited (${code ?? sig}): ${err.trim()}`));
      });
    });
  }
}
