/**
 * Tunnels, the interactive shell and SSH on demand, end to end: the real
 * server (child process), a real devbox:1 VM under TCG, and clients speaking
 * the wire contract of API.md ("Network surface") as a user's tool would.
 */
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { once } from "node:events";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import type { Sandbox } from "@nodeops-createos/sandbox";
import WebSocket from "ws";
import { Screen, dataFrame, mustUpgrade, readAll, resizeFrame, upgrade } from "../support/upgrade-client.js";
import { startServer, waitFor, type TestServer } from "./support/server.js";

const run = promisify(execFile);
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const TUNNELS = 20;
/** Bytes each parallel tunnel moves; see the report for what TCG sustains. */
const BIG = Number(process.env.HUTCH_E2E_TUNNEL_BYTES ?? 10 * 1024 * 1024);

/** One HTTP/1.0 GET through a fresh tunnel: the raw response. */
async function httpGet(server: TestServer, id: string, port: number, path: string): Promise<Buffer> {
  const sock = await mustUpgrade(server.url, `/v1/sandboxes/${id}/tunnel/${port}`, server.apiKey);
  const all = readAll(sock);
  sock.write(`GET ${path} HTTP/1.0\r\nHost: localhost\r\n\r\n`);
  return all;
}

function bodyOf(res: Buffer): Buffer {
  const i = res.indexOf("\r\n\r\n");
  assert.ok(i > 0, `no HTTP header in ${res.subarray(0, 200).toString()}`);
  return res.subarray(i + 4);
}

describe("tunnels, shell and ssh into a devbox:1 sandbox", () => {
  let server: TestServer;
  let sb: Sandbox;
  let keyDir: string;
  let keyA: string;
  let keyB: string;
  const sockets = new Set<net.Socket>();

  before(async () => {
    keyDir = await mkdtemp(join(tmpdir(), "hutch-e2e-ssh-"));
    for (const k of ["a", "b"]) await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", `e2e-${k}`, "-f", join(keyDir, k)]);
    keyA = (await readFile(join(keyDir, "a.pub"), "utf8")).trim();
    keyB = (await readFile(join(keyDir, "b.pub"), "utf8")).trim();
    server = await startServer();
    sb = await server.client.createSandbox({ shape: "s-1vcpu-1gb", rootfs: "devbox:1", ssh_pubkeys: [keyA] });
    // An HTTP server that only the guest's loopback can reach, and a file to fetch.
    const started = await sb.sh(
      "mkdir -p /root/www && cd /root/www && echo hello-through-tunnel > hello.txt && " +
        `head -c ${BIG} /dev/urandom > big.bin && sha256sum big.bin && ` +
        "(nohup python3 -m http.server 8000 --bind 127.0.0.1 >/tmp/http.log 2>&1 &)",
    );
    assert.equal(started.result.exit_code, 0, started.result.stderr);
  });
  after(async () => {
    for (const s of sockets) s.destroy();
    await server?.dispose();
    if (keyDir) await rm(keyDir, { recursive: true, force: true });
  });

  test("a tunnel reaches an HTTP server bound to 127.0.0.1 in the guest", async () => {
    const body = await waitFor(
      async () => {
        try {
          const res = await httpGet(server, sb.id, 8000, "/hello.txt");
          return res.toString().startsWith("HTTP/1.0 200") ? bodyOf(res) : undefined;
        } catch {
          return undefined; // not listening yet (502 before switching)
        }
      },
      60_000,
      "python http.server in the guest",
    );
    assert.equal(body.toString(), "hello-through-tunnel\n");
    // Nothing on that port: refused before switching.
    const refused = await upgrade(server.url, `/v1/sandboxes/${sb.id}/tunnel/8999`, { key: server.apiKey });
    assert.equal(refused.status, 502);
  });

  test(`${TUNNELS} tunnels in parallel each move ${BIG} bytes intact`, async () => {
    const want = (await sb.sh("sha256sum /root/www/big.bin")).result.stdout.split(" ")[0];
    const started = Date.now();
    const got = await Promise.all(
      Array.from({ length: TUNNELS }, async () => {
        const body = bodyOf(await httpGet(server, sb.id, 8000, "/big.bin"));
        return `${body.length} bytes, sha256 ${sha(body)}`;
      }),
    );
    const secs = (Date.now() - started) / 1000;
    console.log(`# ${TUNNELS} tunnels × ${BIG} bytes in ${secs.toFixed(1)} s (${((TUNNELS * BIG) / 1048576 / secs).toFixed(1)} MiB/s total)`);
    assert.deepEqual(got, Array(TUNNELS).fill(`${BIG} bytes, sha256 ${want}`));
    // The guest's kernel reset no socket for want of TCP memory (the relay's
    // own buffers once pushed it there: servers' orphaned sockets were reset).
    const aborts = (await sb.sh("nstat -az TcpExtTCPAbortOnMemory")).result.stdout;
    assert.match(aborts, /TcpExtTCPAbortOnMemory\s+0\s/, aborts);
  });

  test("shell: stty size shows the size after a resize, and exit ends the session", async () => {
    const sock = await mustUpgrade(server.url, `/v1/sandboxes/${sb.id}/shell`, server.apiKey);
    const scr = new Screen(sock);
    const closed = once(sock, "close");
    sock.write(resizeFrame(40, 120));
    // Split markers so the echoed command line does not match.
    sock.write(dataFrame('stty size; echo "S""1"\n'));
    await scr.waitFor(/40 120\r?\nS1/, 30_000);
    sock.write(resizeFrame(33, 99));
    sock.write(dataFrame('stty size; echo "$TERM" "S""2"\n'));
    await scr.waitFor(/33 99\r?\nxterm-256color S2/, 30_000);
    sock.write(dataFrame("exit\n"));
    await closed;
  });

  test("shell-ws: the same over a WebSocket", async () => {
    const ws = new WebSocket(`${server.url.replace("http", "ws")}/v1/sandboxes/${sb.id}/shell-ws`, { headers: { "x-api-key": server.apiKey } });
    await once(ws, "open");
    const scr = new Screen(ws);
    const closed = once(ws, "close");
    ws.send(Buffer.concat([resizeFrame(41, 121), dataFrame('stty size; echo "W""S"\n')]));
    await scr.waitFor(/41 121\r?\nWS/, 30_000);
    ws.send(dataFrame("exit 7\n"));
    const [code, reason] = (await closed) as [number, Buffer];
    assert.equal(code, 1000);
    assert.equal(reason.toString(), "exit 7");
  });

  /** A local TCP listener that pipes each connection into a tunnel to guest port 22. */
  async function sshGateway(): Promise<number> {
    const gw = net.createServer(async (local) => {
      sockets.add(local);
      try {
        const remote = await mustUpgrade(server.url, `/v1/sandboxes/${sb.id}/tunnel/22`, server.apiKey);
        sockets.add(remote);
        local.pipe(remote).pipe(local);
        local.on("error", () => remote.destroy());
        remote.on("error", () => local.destroy());
        local.on("close", () => remote.destroy());
        remote.on("close", () => local.destroy());
      } catch {
        local.destroy();
      }
    });
    gw.listen(0, "127.0.0.1");
    await once(gw, "listening");
    after(() => gw.close());
    return (gw.address() as net.AddressInfo).port;
  }

  function ssh(port: number, key: string): Promise<{ code: number; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      const p = spawn("ssh", [
        "-i", join(keyDir, key), "-p", String(port),
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
        "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=120", "-o", "LogLevel=ERROR",
        "root@127.0.0.1", "echo ssh-ok $(whoami) $(hostname)",
      ], { stdio: ["ignore", "pipe", "pipe"] });
      let stdout = "";
      let stderr = "";
      p.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
      p.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
      p.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
    });
  }

  test("ssh logs in through a tunnel with an authorized key, is refused with another; ssh-pubkeys adds it", async () => {
    const port = await sshGateway();
    const ok = await ssh(port, "a");
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, new RegExp(`^ssh-ok root ${sb.data.name}`));
    const denied = await ssh(port, "b");
    assert.equal(denied.code, 255);
    assert.match(denied.stderr, /Permission denied/);
    // Added live (deduplicated), then B gets in too.
    assert.deepEqual(await sb.addSSHPubkeys([keyB, keyB, keyA]), { count: 2 });
    const okB = await ssh(port, "b");
    assert.equal(okB.code, 0, okB.stderr);
    // sshd was started once (idempotent on later tunnels to port 22).
    const procs = await sb.sh("ls /proc/*/comm | xargs cat 2>/dev/null | grep -c '^sshd$' || true");
    assert.ok(Number(procs.result.stdout.trim()) >= 1);
  });
});
