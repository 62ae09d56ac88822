/**
 * The netns dialer process: runs inside Hutch's network namespace (started
 * with `ip netns exec` by `NetnsDialer`), listens on a unix socket (path
 * sockets are reachable from every netns), and for each connection reads one
 * line `<ipv4> <port>\n`, connects to that address from inside the netns,
 * answers one byte (0 = connected, 1 = failed, followed by a reason line),
 * then pipes bytes both ways. Exits when its stdin closes (the server died).
 *
 * Usage: node netns-dialer-main.js <socket-path> <allowed-cidr-base> <prefix>
 */
import { createConnection, createServer, isIPv4, type Socket } from "node:net";
import { unlinkSync } from "node:fs";

const [socketPath, base, prefixText] = process.argv.slice(2);
if (!socketPath || !base || !prefixText) {
  process.stderr.write("usage: netns-dialer-main <socket> <cidr-network> <prefix>\n");
  process.exit(2);
}
const prefix = Number(prefixText);
const toInt = (ip: string) => ip.split(".").reduce((n, o) => n * 256 + Number(o), 0);
const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
const net = (toInt(base) & mask) >>> 0;

/** Only addresses of the sandbox network may be dialed: this is not a general proxy. */
function allowed(ip: string): boolean {
  return isIPv4(ip) && ((toInt(ip) & mask) >>> 0) === net;
}

function handle(client: Socket): void {
  let head = Buffer.alloc(0);
  client.setTimeout(10_000);
  client.once("timeout", () => client.destroy());
  const onData = (chunk: Buffer) => {
    head = Buffer.concat([head, chunk]);
    const nl = head.indexOf(10);
    if (nl < 0) {
      if (head.length > 64) client.destroy();
      return;
    }
    client.off("data", onData);
    client.pause();
    const rest = head.subarray(nl + 1);
    const [ip, portText] = head.subarray(0, nl).toString().trim().split(" ");
    const port = Number(portText);
    if (!ip || !allowed(ip) || !Number.isInteger(port) || port < 1 || port > 65535) {
      client.end(Buffer.from("\x01bad target\n"));
      return;
    }
    const upstream = createConnection({ host: ip, port });
    upstream.setNoDelay(true);
    const fail = (err: Error) => {
      if (!client.destroyed) client.end(Buffer.from(`\x01${err.message}\n`));
    };
    upstream.once("error", fail);
    upstream.once("connect", () => {
      upstream.off("error", fail);
      client.setTimeout(0);
      client.write(Buffer.from([0]));
      if (rest.length > 0) upstream.write(rest);
      client.pipe(upstream);
      upstream.pipe(client);
      client.resume();
      const close = () => {
        client.destroy();
        upstream.destroy();
      };
      upstream.once("error", close);
      client.once("error", close);
      upstream.once("close", () => client.end());
      client.once("close", () => upstream.end());
    });
  };
  client.on("data", onData);
  client.on("error", () => client.destroy());
}

try {
  unlinkSync(socketPath);
} catch {
  /* not there */
}
const server = createServer({ pauseOnConnect: false }, handle);
server.listen(socketPath, () => process.stdout.write("ready\n"));
process.stdin.resume();
process.stdin.on("end", () => process.exit(0));
process.stdin.on("error", () => process.exit(0));
