/**
 * Tunnel and shell clients against a local stand-in for the upgrade
 * endpoints (same wire contract as API.md): headers, 101 handover,
 * half-close, error answers, one tunnel per local connection, shell frames.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import { createServer, type IncomingMessage, type Server } from "node:http";
import { connect, type Socket } from "node:net";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { CliError } from "../../../src/cli/client/cli-error.js";
import { openUpgrade } from "../../../src/cli/client/upgrade-connection.js";

const ROOT = resolve(fileURLToPath(import.meta.url), "../../../..");
const MAIN = join(ROOT, "src/cli/main.ts");
const ID = "sb_01M8GW5KT6GMF0S2A2JJNGDKG2";
const KEY = "hk_unit_key";

let server: Server;
let url: string;
const upgrades: IncomingMessage[] = [];
/** Bytes of shell frames the server received, per session. */
const shellInput: Buffer[] = [];

function view() {
  return { id: ID, name: "box", status: "running", vcpu: 1, mem_mib: 256, disk_mib: 1024, created_at: "2026-01-01T00:00:00Z", ingress_enabled: false };
}

before(async () => {
  server = createServer((req, res) => {
    res.setHeader("content-type", "application/json");
    if (req.headers["x-api-key"] !== KEY) {
      res.statusCode = 401;
      return res.end(JSON.stringify({ status: "fail", data: { api_key: "missing or invalid API key" } }));
    }
    if (req.method === "GET" && /^\/v1\/sandboxes(\?|$)/.test(req.url ?? "")) {
      return res.end(JSON.stringify({ status: "success", data: { data: [view()], pagination: { total: 1, limit: 500, offset: 0, count: 1 } } }));
    }
    if (req.method === "GET" && req.url?.startsWith(`/v1/sandboxes/${ID}`)) return res.end(JSON.stringify({ status: "success", data: view() }));
    res.statusCode = 404;
    res.end(JSON.stringify({ status: "fail", data: { sandbox: "not found" } }));
  });
  server.on("upgrade", (req: IncomingMessage, sock: Socket) => {
    upgrades.push(req);
    const reject = (status: number, body: object) =>
      sock.end(`HTTP/1.1 ${status} No\r\ncontent-type: application/json\r\ncontent-length: ${JSON.stringify(body).length}\r\nconnection: close\r\n\r\n${JSON.stringify(body)}`);
    if (req.headers["x-api-key"] !== KEY) return reject(401, { status: "fail", data: { api_key: "missing or invalid API key" } });
    const tunnel = /^\/v1\/sandboxes\/([^/]+)\/tunnel\/(\d+)$/.exec(req.url ?? "");
    const shell = /^\/v1\/sandboxes\/([^/]+)\/shell(\?|$)/.exec(req.url ?? "");
    if ((!tunnel && !shell) || (tunnel ?? shell)![1] !== ID) return reject(404, { status: "fail", data: { sandbox: "not found" } });
    sock.write("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: tcp-tunnel\r\n\r\n");
    if (tunnel) {
      // An echo service that, on the client's FIN, sends a trailer and closes: half-close both ways.
      const chunks: Buffer[] = [];
      sock.on("data", (c: Buffer) => {
        chunks.push(c);
        sock.write(c);
      });
      sock.on("end", () => sock.end(`|sha:${createHash("sha256").update(Buffer.concat(chunks)).digest("hex")}`));
      return;
    }
    // A pretend PTY: records the frames, answers after the ^D data frame, then closes.
    const mine = Buffer.alloc(0);
    shellInput.push(mine);
    const idx = shellInput.length - 1;
    sock.on("data", (c: Buffer) => {
      shellInput[idx] = Buffer.concat([shellInput[idx]!, c]);
      if (shellInput[idx]!.includes(Buffer.from([0, 0, 0, 0, 1, 4]))) sock.end("shell output\r\n");
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const addr = server.address();
  url = `http://127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}`;
});

after(() => {
  server.closeAllConnections();
  server.close();
});

test("openUpgrade sends the contract's headers and hands over a half-closable pipe", async () => {
  const sock = await openUpgrade({ url, apiKey: KEY }, `/v1/sandboxes/${ID}/tunnel/8080`);
  const req = upgrades.at(-1)!;
  assert.equal(req.method, "POST");
  assert.equal(req.headers.upgrade, "tcp-tunnel");
  assert.match(String(req.headers.connection), /upgrade/i);
  assert.equal(req.headers["x-api-key"], KEY);
  const payload = randomBytes(200_000);
  const got: Buffer[] = [];
  sock.on("data", (c: Buffer) => got.push(c));
  sock.end(payload);
  await once(sock, "end");
  const all = Buffer.concat(got);
  // The server answered after our FIN: data still flows towards us once we half-closed.
  assert.deepEqual(all.subarray(0, payload.length), payload);
  assert.equal(all.subarray(payload.length).toString(), `|sha:${createHash("sha256").update(payload).digest("hex")}`);
});

test("an answer other than 101 is one line with the server's message and status", async () => {
  const e1 = await openUpgrade({ url, apiKey: "wrong" }, `/v1/sandboxes/${ID}/tunnel/22`).catch((e: unknown) => e);
  assert.ok(e1 instanceof CliError);
  assert.equal((e1 as Error).message, "api_key: missing or invalid API key (HTTP 401)");
  const e2 = await openUpgrade({ url, apiKey: KEY }, `/v1/sandboxes/sb_01M8GW5KT6GMF0S2A2JJNGDKGX/tunnel/22`).catch((e: unknown) => e);
  assert.equal((e2 as Error).message, "sandbox: not found (HTTP 404)");
  const e3 = await openUpgrade({ url: "http://127.0.0.1:1", apiKey: KEY }, `/v1/sandboxes/${ID}/tunnel/22`).catch((e: unknown) => e);
  assert.match((e3 as Error).message, /cannot reach the server: .*ECONNREFUSED/);
});

function cli(args: string[], input?: Buffer) {
  const child = spawn(process.execPath, ["--import", "tsx", MAIN, ...args], {
    cwd: ROOT,
    env: { ...process.env, HUTCH_URL: url, HUTCH_API_KEY: KEY, HOME: "/nonexistent" },
    stdio: ["pipe", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
  child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
  if (input) child.stdin.end(input);
  const exit = new Promise<number>((r) => child.on("exit", (code, sig) => r(code ?? (sig ? 128 : -1))));
  return { child, exit, out: () => stdout, err: () => stderr };
}

test("hutch tunnel: each local connection is its own tunnel, both directions intact", async () => {
  const before = upgrades.length;
  const t = cli(["tunnel", "box", "5432", "--local", "0"]);
  let port = 0;
  for (let i = 0; i < 200 && !port; i++) {
    port = Number(/127\.0\.0\.1:(\d+) ->/.exec(t.out())?.[1] ?? 0);
    if (!port) await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(port > 0, `tunnel printed its port: ${t.out()} ${t.err()}`);
  const one = async () => {
    const data = randomBytes(1024 * 1024);
    const s = connect(port, "127.0.0.1");
    const got: Buffer[] = [];
    s.on("data", (c: Buffer) => got.push(c));
    s.end(data);
    await once(s, "close");
    const all = Buffer.concat(got);
    assert.equal(createHash("sha256").update(all.subarray(0, data.length)).digest("hex"), createHash("sha256").update(data).digest("hex"));
    assert.equal(all.subarray(data.length).toString(), `|sha:${createHash("sha256").update(data).digest("hex")}`);
  };
  await Promise.all([one(), one(), one(), one(), one()]);
  assert.equal(upgrades.length - before, 5);
  assert.ok(upgrades.slice(before).every((r) => r.url === `/v1/sandboxes/${ID}/tunnel/5432`));
  t.child.kill("SIGINT");
  assert.equal(await t.exit, 0);
});

test("hutch tunnel --stdio pipes stdin and stdout through one tunnel", async () => {
  const t = cli(["tunnel", "--stdio", ID, "22"], Buffer.from("SSH-2.0-test\r\n"));
  assert.equal(await t.exit, 0, t.err());
  assert.equal(t.out(), `SSH-2.0-test\r\n|sha:${createHash("sha256").update("SSH-2.0-test\r\n").digest("hex")}`);
});

test("hutch shell frames input, says the size first, sends ^D at the end of piped input", async () => {
  const t = cli(["shell", "box"], Buffer.from("echo hi\n"));
  assert.equal(await t.exit, 0, t.err());
  assert.equal(t.out(), "shell output\r\n");
  const req = upgrades.at(-1)!;
  assert.equal(req.url, `/v1/sandboxes/${ID}/shell?rows=24&cols=80`);
  assert.equal(req.headers.upgrade, "tcp-tunnel");
  const frames = shellInput.at(-1)!;
  assert.deepEqual(frames.subarray(0, 9), Buffer.from([1, 0, 0, 0, 4, 0, 24, 0, 80]), "a resize frame first");
  assert.deepEqual(frames.subarray(9), Buffer.concat([Buffer.from([0, 0, 0, 0, 8]), Buffer.from("echo hi\n"), Buffer.from([0, 0, 0, 0, 1, 4])]));
});

test("hutch get of an unknown sandbox: one line, exit 1", async () => {
  const t = cli(["get", "sb_01M8GW5KT6GMF0S2A2JJNGDKGX"]);
  assert.equal(await t.exit, 1);
  assert.equal(t.err(), "hutch: sandbox: not found (HTTP 404)\n");
});
