/**
 * Black-box tests of hutch-agent's port relay: the agent (on the host, in
 * --no-init mode) connects to a TCP server on 127.0.0.1 that the test runs.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { execFile } from "node:child_process";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";

import type { AgentClient } from "../../src/runtime/agent/agent-client.js";
import { HP_TCP_WINDOW } from "../../src/runtime/agent/protocol.js";
import { isRuntimeError } from "../../src/runtime/errors.js";
import { AgentHarness } from "./agent-harness.js";

const run = promisify(execFile);
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

function listen(handler: (s: net.Socket) => void): Promise<{ server: net.Server; port: number }> {
  const server = net.createServer(handler);
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve({ server, port: (server.address() as net.AddressInfo).port })));
}

async function readAll(s: NodeJS.ReadableStream): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

describe("hutch-agent port relay", () => {
  const h = new AgentHarness();
  let client: AgentClient;
  const servers: net.Server[] = [];

  before(async () => {
    await h.start();
    client = await h.client();
  });
  after(async () => {
    client?.close();
    for (const s of servers) s.close();
    await h.stop();
  });

  it("relays 5 MiB both ways through an echo server", async () => {
    const { server, port } = await listen((s) => s.pipe(s));
    servers.push(server);
    const conn = await client.tcpConnect(port);
    const data = randomBytes(5 * 1024 * 1024);
    const back = readAll(conn);
    conn.end(data);
    assert.equal(sha(await back), sha(data));
  });

  it("half-closes: the server sees EOF and still answers", async () => {
    const { server, port } = await listen((s) => {
      let n = 0;
      s.on("data", (c: Buffer) => (n += c.length));
      s.on("end", () => s.end(`got ${n}`));
    });
    servers.push(server);
    const conn = await client.tcpConnect(port);
    conn.end(Buffer.alloc(123_456));
    assert.equal((await readAll(conn)).toString(), "got 123456");
  });

  it("holds back a reader that does not read, without stalling others", async () => {
    const big = randomBytes(8 * 1024 * 1024);
    const { server, port } = await listen((s) => s.end(big));
    servers.push(server);
    const conn = await client.tcpConnect(port);
    await new Promise((r) => setTimeout(r, 300));
    await client.ping(2000);
    conn.end();
    assert.equal(sha(await readAll(conn)), sha(big));
  });

  it("keeps its own socket buffers to the credit window, both ways", async () => {
    // Autotuned loopback buffers grew to MiBs per relayed connection; a few
    // parallel downloads then passed the guest's tcp_mem and the kernel reset
    // servers' orphaned sockets mid-answer (truncated tunnel bodies).
    const big = randomBytes(8 * 1024 * 1024);
    const { server, port } = await listen((s) => s.pipe(s));
    servers.push(server);
    const conn = await client.tcpConnect(port);
    const back = readAll(conn);
    conn.write(big);
    // Mid-transfer: the agent's socket is the one whose peer is the server's port.
    await new Promise((r) => setTimeout(r, 200));
    const { stdout } = await run("ss", ["-tnmH", "state", "established", "dport", "=", `:${port}`]);
    conn.end();
    assert.equal(sha(await back), sha(big));
    const rb = Number(/\brb(\d+)/.exec(stdout)?.[1]);
    const tb = Number(/\btb(\d+)/.exec(stdout)?.[1]);
    // The kernel doubles what SO_RCVBUF/SO_SNDBUF ask for (bookkeeping overhead).
    assert.ok(rb > 0 && rb <= 2 * HP_TCP_WINDOW, `receive buffer ${rb} (ss: ${stdout.trim()})`);
    assert.ok(tb > 0 && tb <= 2 * HP_TCP_WINDOW, `send buffer ${tb} (ss: ${stdout.trim()})`);
  });

  it("rejects a closed port with agent_error", async () => {
    const { server, port } = await listen(() => {});
    await new Promise((r) => server.close(r));
    await assert.rejects(client.tcpConnect(port), (e) => isRuntimeError(e, "agent_error") && /refused/i.test(e.message));
  });

  it("aborts when the host destroys the stream; the server sees the close", async () => {
    let serverSaw: Promise<void> = Promise.resolve();
    const { server, port } = await listen((s) => {
      serverSaw = new Promise((r) => s.on("close", () => r()));
      s.on("error", () => {});
      s.resume();
    });
    servers.push(server);
    const conn = await client.tcpConnect(port);
    conn.write("hello");
    await new Promise((r) => setTimeout(r, 100));
    conn.destroy();
    await serverSaw;
    await client.ping(2000);
  });
});
