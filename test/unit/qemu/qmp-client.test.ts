import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { QmpClient, QmpError } from "../../../src/runtime/qemu/qmp-client.js";

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "qmp-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

type Handler = (cmd: { execute: string; arguments?: Record<string, unknown>; id?: unknown }, send: (o: object) => void, sock: net.Socket) => void;

/** A fake QMP server: greets, requires qmp_capabilities first, then calls `handler`. */
async function fakeQmp(name: string, handler: Handler, opts: { greet?: boolean } = {}) {
  const sockPath = path.join(dir, name);
  const received: { execute: string; arguments?: Record<string, unknown>; id?: unknown }[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    sockets.add(sock);
    const send = (o: object) => sock.write(JSON.stringify(o) + "\r\n");
    if (opts.greet !== false) send({ QMP: { version: { qemu: { major: 7, minor: 2, micro: 0 } }, capabilities: [] } });
    let buf = "";
    let negotiated = false;
    sock.on("data", (d) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const cmd = JSON.parse(buf.slice(0, nl)) as { execute: string; id?: unknown };
        buf = buf.slice(nl + 1);
        received.push(cmd);
        if (!negotiated) {
          if (cmd.execute === "qmp_capabilities") {
            negotiated = true;
            send({ return: {}, id: cmd.id });
          } else send({ error: { class: "CommandNotFound", desc: "Expecting capabilities negotiation" }, id: cmd.id });
          continue;
        }
        handler(cmd, send, sock);
      }
    });
  });
  await new Promise<void>((r) => server.listen(sockPath, r));
  return {
    path: sockPath,
    received,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

test("negotiates capabilities, then executes with ids and returns results", async () => {
  const srv = await fakeQmp("a.sock", (cmd, send) => {
    if (cmd.execute === "query-status") send({ return: { status: "running", running: true }, id: cmd.id });
    if (cmd.execute === "echo") send({ return: cmd.arguments, id: cmd.id });
  });
  const c = await QmpClient.connect(srv.path, { timeoutMs: 2000 });
  assert.deepEqual(await c.execute("query-status"), { status: "running", running: true });
  assert.deepEqual(await c.execute("echo", { x: 1 }), { x: 1 });
  assert.equal(srv.received[0]!.execute, "qmp_capabilities");
  const ids = srv.received.map((r) => r.id);
  assert.equal(new Set(ids).size, ids.length, "every command has its own id");
  c.close();
  assert.equal(await c.closed, undefined);
  await srv.close();
});

test("answers out of order are matched by id", async () => {
  const held: { id: unknown; n: unknown }[] = [];
  const srv = await fakeQmp("b.sock", (cmd, send) => {
    held.push({ id: cmd.id, n: cmd.arguments?.n });
    if (held.length === 2) for (const h of held.reverse()) send({ return: h.n, id: h.id });
  });
  const c = await QmpClient.connect(srv.path, { timeoutMs: 2000 });
  const [a, b] = await Promise.all([c.execute("x", { n: 1 }), c.execute("x", { n: 2 })]);
  assert.deepEqual([a, b], [1, 2]);
  c.close();
  await srv.close();
});

test("errors are typed QmpErrors with QEMU's class", async () => {
  const srv = await fakeQmp("c.sock", (cmd, send) =>
    send({ error: { class: "DeviceNotFound", desc: "Device 'x' not found" }, id: cmd.id }),
  );
  const c = await QmpClient.connect(srv.path, { timeoutMs: 2000 });
  await assert.rejects(c.execute("device_del", { id: "x" }), (e: unknown) => {
    assert.ok(e instanceof QmpError);
    assert.equal(e.errorClass, "DeviceNotFound");
    assert.equal(e.command, "device_del");
    return true;
  });
  c.close();
  await srv.close();
});

test("events are emitted and can be awaited; they do not disturb commands", async () => {
  const srv = await fakeQmp("d.sock", (cmd, send) => {
    send({ event: "STOP", timestamp: { seconds: 1, microseconds: 2 } });
    send({ return: {}, id: cmd.id });
  });
  const c = await QmpClient.connect(srv.path, { timeoutMs: 2000 });
  const ev = c.waitEvent("STOP", 1000);
  await c.execute("stop");
  assert.equal((await ev).event, "STOP");
  await assert.rejects(c.waitEvent("RESUME", 50), /no RESUME event/);
  c.close();
  await srv.close();
});

test("a command without an answer times out; the client stays usable", async () => {
  const srv = await fakeQmp("e.sock", (cmd, send) => {
    if (cmd.execute !== "hang") send({ return: "ok", id: cmd.id });
  });
  const c = await QmpClient.connect(srv.path, { timeoutMs: 2000 });
  await assert.rejects(c.execute("hang", undefined, 50), /no answer in 50 ms/);
  assert.equal(await c.execute("fine"), "ok");
  c.close();
  await srv.close();
});

test("pending commands reject when QEMU closes the socket", async () => {
  const srv = await fakeQmp("f.sock", (_cmd, _send, sock) => sock.destroy());
  const c = await QmpClient.connect(srv.path, { timeoutMs: 2000 });
  await assert.rejects(c.execute("quit"), /connection closed/);
  await c.closed;
  await assert.rejects(c.execute("query-status"), /connection closed/);
  await srv.close();
});

test("connect retries until the socket appears, and times out when it never does", async () => {
  const p = path.join(dir, "late.sock");
  const pending = QmpClient.connect(p, { timeoutMs: 3000 });
  await new Promise((r) => setTimeout(r, 200));
  const srv = await fakeQmp("late.sock", (cmd, send) => send({ return: 42, id: cmd.id }));
  const c = await pending;
  assert.equal(await c.execute("x"), 42);
  c.close();
  await srv.close();
  const t = Date.now();
  await assert.rejects(QmpClient.connect(path.join(dir, "never.sock"), { timeoutMs: 200 }), /no answer in 200 ms/);
  assert.ok(Date.now() - t < 1000);
});

test("a server that never greets fails the connect", async () => {
  const srv = await fakeQmp("g.sock", () => {}, { greet: false });
  await assert.rejects(QmpClient.connect(srv.path, { timeoutMs: 200 }), /greeting/);
  await srv.close();
});

test("connect can be aborted", async () => {
  const ac = new AbortController();
  const pending = QmpClient.connect(path.join(dir, "nobody.sock"), { timeoutMs: 5000, signal: ac.signal });
  setTimeout(() => ac.abort(new Error("stop")), 100);
  await assert.rejects(pending);
});
