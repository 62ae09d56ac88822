/**
 * The upgrade routes (tunnel, shell, shell-ws) and ssh-pubkeys over real
 * HTTP against the fake runtime: what is answered before switching (401,
 * 404, 400, 409, 502, 426), pipes with half-close, shell frames, hang-up.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import type { Duplex } from "node:stream";
import { once } from "node:events";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import WebSocket from "ws";
import { startTestServer, type TestServer } from "../../support/test-server.js";
import { Screen, dataFrame, mustUpgrade, readAll, resizeFrame, upgrade } from "../../support/upgrade-client.js";

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

/** A valid ed25519 OpenSSH key with random key material. */
function randomKey(comment = "k@test"): string {
  const type = "ssh-ed25519";
  const blob = Buffer.alloc(4 + type.length + 4 + 32);
  blob.writeUInt32BE(type.length, 0);
  blob.write(type, 4, "latin1");
  blob.writeUInt32BE(32, 4 + type.length);
  randomBytes(32).copy(blob, 8 + type.length);
  return `${type} ${blob.toString("base64")} ${comment}`;
}

describe("tunnel, shell and ssh-pubkeys routes", () => {
  let s: TestServer;
  let id: string;
  before(async () => {
    s = await startTestServer();
    id = (await s.api("POST", "/v1/sandboxes", { shape: "s-1vcpu-256mb" })).json.data.id;
    // Guest port 7: echo. Port 8: reads to the end, then answers with the byte count.
    s.runtime.guestPorts.set(7, (c: Duplex) => c.pipe(c));
    s.runtime.guestPorts.set(8, (c: Duplex) => {
      let n = 0;
      c.on("data", (b: Buffer) => (n += b.length));
      c.on("end", () => c.end(`got ${n}`));
    });
  });
  after(() => s.dispose());

  test("refusals come as plain JSend before switching", async () => {
    const noKey = await upgrade(s.url, `/v1/sandboxes/${id}/tunnel/7`, { key: null });
    assert.equal(noKey.status, 401);
    assert.equal((noKey as any).json.status, "fail");
    assert.ok(noKey.headers["x-request-id"]);
    const other = await s.newUser("mallory");
    assert.equal((await upgrade(s.url, `/v1/sandboxes/${id}/tunnel/7`, { key: other })).status, 404);
    assert.equal((await upgrade(s.url, `/v1/sandboxes/${id}/shell`, { key: other })).status, 404);
    assert.equal((await upgrade(s.url, `/v1/sandboxes/sb_nope/tunnel/7`, { key: s.apiKey })).status, 404);
    const bad = await upgrade(s.url, `/v1/sandboxes/${id}/tunnel/70000`, { key: s.apiKey });
    assert.equal(bad.status, 400);
    assert.deepEqual(Object.keys((bad as any).json.data), ["port"]);
    const refused = await upgrade(s.url, `/v1/sandboxes/${id}/tunnel/9`, { key: s.apiKey });
    assert.equal(refused.status, 502);
    assert.equal((refused as any).json.status, "error");
    // Without Connection: Upgrade the routes exist but want one.
    const plain = await s.api("POST", `/v1/sandboxes/${id}/tunnel/7`);
    assert.equal(plain.status, 426);
    assert.equal((await s.api("GET", `/v1/sandboxes/${id}/shell-ws`)).status, 426);
    // Another path with an upgrade: 404, connection not left hanging.
    assert.equal((await upgrade(s.url, `/v1/whoami`, { key: s.apiKey })).status, 404);
  });

  test("a tunnel is a raw pipe: 2 MiB echoed intact", async () => {
    const sock = await mustUpgrade(s.url, `/v1/sandboxes/${id}/tunnel/7`, s.apiKey);
    const data = randomBytes(2 * 1024 * 1024);
    const back = readAll(sock);
    sock.end(data);
    assert.equal(sha(await back), sha(data));
    assert.deepEqual(s.runtime.tunnels.at(-1), { id, port: 7 });
  });

  test("half-close: the guest sees the end and still answers", async () => {
    const sock = await mustUpgrade(s.url, `/v1/sandboxes/${id}/tunnel/8`, s.apiKey);
    sock.end(Buffer.alloc(12_345));
    assert.equal((await readAll(sock)).toString(), "got 12345");
  });

  test("20 tunnels at once stay separate", async () => {
    const results = await Promise.all(
      Array.from({ length: 20 }, async () => {
        const sock = await mustUpgrade(s.url, `/v1/sandboxes/${id}/tunnel/7`, s.apiKey);
        const data = randomBytes(256 * 1024);
        const back = readAll(sock);
        sock.end(data);
        return sha(await back) === sha(data);
      }),
    );
    assert.deepEqual(results, Array(20).fill(true));
  });

  test("the client going away ends the guest side; the guest closing closes the client", async () => {
    let guestSide: Duplex | undefined;
    let guestEnded = false;
    s.runtime.guestPorts.set(10, (c) => {
      guestSide = c;
      c.on("end", () => (guestEnded = true));
      c.resume();
    });
    const sock = await mustUpgrade(s.url, `/v1/sandboxes/${id}/tunnel/10`, s.apiKey);
    sock.write("x");
    await sleep(50);
    sock.destroy();
    for (let i = 0; i < 50 && !guestEnded; i++) await sleep(20);
    assert.equal(guestEnded, true);

    const sock2 = await mustUpgrade(s.url, `/v1/sandboxes/${id}/tunnel/10`, s.apiKey);
    const closed = once(sock2, "close");
    await sleep(50);
    guestSide!.destroy(); // a reset, not a clean end
    await closed;
  });

  test("shell: frames in, raw output out; resize; exit closes the connection", async () => {
    const sock = await mustUpgrade(s.url, `/v1/sandboxes/${id}/shell?rows=30&cols=100`, s.apiKey);
    const scr = new Screen(sock);
    const closed = once(sock, "close");
    sock.write(dataFrame("size\n"));
    await scr.waitFor(/30 100\r\n/);
    // One write holding a resize and data frames, the last split in two writes.
    const buf = Buffer.concat([resizeFrame(50, 132), dataFrame("si"), dataFrame("ze\n")]);
    sock.write(buf.subarray(0, 12));
    await sleep(20);
    sock.write(buf.subarray(12));
    await scr.waitFor(/50 132\r\n/);
    sock.write(dataFrame("exit 3\n"));
    await closed;
    const rec = s.runtime.shells.at(-1)!;
    assert.deepEqual(rec.sizes, [[30, 100], [50, 132]]);
  });

  test("shell: closing the client hangs the terminal up; a bad frame closes", async () => {
    const sock = await mustUpgrade(s.url, `/v1/sandboxes/${id}/shell`, s.apiKey);
    sock.write(dataFrame("size\n"));
    await new Screen(sock).waitFor(/24 80/);
    const rec = s.runtime.shells.at(-1)!;
    sock.destroy();
    for (let i = 0; i < 50 && !rec.hungUp; i++) await sleep(20);
    assert.equal(rec.hungUp, true);

    const sock2 = await mustUpgrade(s.url, `/v1/sandboxes/${id}/shell`, s.apiKey);
    const closed = once(sock2, "close");
    sock2.write(Buffer.from([9, 0, 0, 0, 0]));
    await closed;
  });

  test("shell-ws: the same PTY over a WebSocket", async () => {
    const ws = new WebSocket(`${s.url.replace("http", "ws")}/v1/sandboxes/${id}/shell-ws?rows=20&cols=70`, { headers: { "x-api-key": s.apiKey } });
    await once(ws, "open");
    const scr = new Screen(ws);
    const closed = once(ws, "close");
    ws.send(dataFrame("size\n"));
    await scr.waitFor(/20 70\r\n/);
    ws.send(Buffer.concat([resizeFrame(40, 120), dataFrame("size\n")]));
    await scr.waitFor(/40 120\r\n/);
    ws.send(dataFrame("exit 0\n"));
    const [code, reason] = (await closed) as [number, Buffer];
    assert.equal(code, 1000);
    assert.equal(reason.toString(), "exit 0");
    // Refused before the handshake: the same JSend codes.
    const denied = new WebSocket(`${s.url.replace("http", "ws")}/v1/sandboxes/${id}/shell-ws`);
    const [, res] = (await once(denied, "unexpected-response")) as [unknown, { statusCode: number }];
    assert.equal(res.statusCode, 401);
  });

  test("ssh-pubkeys: dedup, count, persisted, installed in the running guest, 400 naming keys", async () => {
    const installs: string[] = [];
    s.runtime.execHandler = async (req) => {
      installs.push(req.stdin?.toString() ?? "");
      return { exitCode: 0 };
    };
    try {
      const a = randomKey("a");
      const b = randomKey("b");
      const r1 = await s.api("POST", `/v1/sandboxes/${id}/ssh-pubkeys`, { keys: [a, b, a] });
      assert.equal(r1.status, 200);
      assert.deepEqual(r1.json.data, { count: 2 });
      // The same key with another comment is the same key.
      const r2 = await s.api("POST", `/v1/sandboxes/${id}/ssh-pubkeys`, { keys: [`${a.split(" ").slice(0, 2).join(" ")} other`, randomKey("c")] });
      assert.deepEqual(r2.json.data, { count: 3 });
      const got = await s.api("GET", `/v1/sandboxes/${id}`);
      assert.equal(got.json.data.ssh_pubkeys.length, 3);
      assert.equal(installs.at(-1)!.trim().split("\n").length, 3);
      for (const body of [{ keys: ["not a key"] }, { keys: [] }, { keys: "x" }, {}]) {
        const bad = await s.api("POST", `/v1/sandboxes/${id}/ssh-pubkeys`, body);
        assert.equal(bad.status, 400, JSON.stringify(body));
        assert.deepEqual(Object.keys(bad.json.data), ["keys"]);
      }
    } finally {
      s.runtime.execHandler = undefined;
    }
  });

  test("409 once the sandbox is not running", async () => {
    const id2 = (await s.api("POST", "/v1/sandboxes", { shape: "s-1vcpu-256mb" })).json.data.id;
    s.runtime.crash(id2);
    for (let i = 0; i < 50 && (await s.api("GET", `/v1/sandboxes/${id2}`)).json.data.status !== "failed"; i++) await sleep(20);
    assert.equal((await upgrade(s.url, `/v1/sandboxes/${id2}/tunnel/7`, { key: s.apiKey })).status, 409);
    assert.equal((await upgrade(s.url, `/v1/sandboxes/${id2}/shell`, { key: s.apiKey })).status, 409);
  });
});
