/**
 * Property-based fuzzing of every route of the real API (fake runtime, real
 * HTTP over raw sockets): generated and mutated requests (wrong types, huge
 * and deep JSON, unicode, path tricks, bogus headers and framing, wrong
 * methods, hostile query strings), slow and truncated requests, and
 * over-limit uploads. Properties: no 5xx, no hang, no crash, every 4xx a
 * JSend `fail` naming what is wrong, and no sandbox changed by a rejected
 * request. FUZZ_RUNS=<n> multiplies the runs and time caps (default 1: at
 * most ~50 s; the counts sent are printed at the end).
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import fc from "fast-check";
import { startTestServer, type TestServer } from "../../support/test-server.js";
import { fuzzCaseArb, type FuzzCase } from "./fuzz/fuzz-case.js";
import { problemsOf } from "./fuzz/oracle.js";
import { rawSend, requestBytes, type RawResponse } from "./fuzz/raw-client.js";
import { ROUTES } from "./fuzz/route-table.js";
import { slowScenarios } from "./fuzz/slow-scenarios.js";

const SCALE = Number(process.env.FUZZ_RUNS ?? "1") || 1;
const runs = (n: number) => Math.max(1, Math.round(n * SCALE));
/**
 * Wall-clock cap of a property, ms (scaled like the runs): on a loaded CI
 * machine the run stops early (and passes) rather than overrun the suite.
 */
const budget = (ms: number) => Math.round(ms * SCALE);
/** FUZZ_SEED replays a failing run (fast-check prints the seed). */
const SEED = process.env.FUZZ_SEED ? { seed: Number(process.env.FUZZ_SEED) } : {};
/** No answer may take longer than this (the property "no hang"). */
const BOUND_MS = 5000;
const MAX_FILE = 64 * 1024;
const REQUEST_TIMEOUT_MS = 1500;
const HEADERS_TIMEOUT_MS = 1000;
const SHAPE = "s-1vcpu-256mb";
const STABLE = new Set(["running", "paused", "destroyed", "failed", "error"]);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("API fuzz", () => {
  let s: TestServer;
  let port: number;
  let otherKey: string;
  const ids = { victim: "", victimIp: "", other: "" };
  const users = { key: "", other: "" };
  /** Requests sent, by property (reported for BENCHMARKS.md). */
  const sent: Record<string, number> = {};
  /** Answers of the mutated-request property by status, and how many single-fault cases had their field-naming checked. */
  const statuses: Record<number, number> = {};
  const named = { checked: 0 };
  const uncaught: unknown[] = [];
  const onUncaught = (err: unknown) => uncaught.push(err);

  async function waitStable(id: string): Promise<string> {
    for (let i = 0; i < 300; i++) {
      const rec = await s.services.repos.sandboxes.get(id);
      if (!rec || STABLE.has(rec.status)) return rec?.status ?? "gone";
      await sleep(10);
    }
    throw new Error(`sandbox ${id} never settled`);
  }

  async function createRunning(key: string): Promise<{ id: string; ip: string }> {
    const r = await s.api("POST", "/v1/sandboxes", { shape: SHAPE, envs: { FOO: "bar" } }, { key });
    assert.equal(r.status, 200, r.text);
    const id = r.json.data.id as string;
    assert.equal(await waitStable(id), "running");
    return { id, ip: (await s.services.repos.sandboxes.get(id))!.ip };
  }

  /** The victim's and the other user's sandbox as stored, and what the runtime holds for them. */
  async function snapshot(): Promise<string> {
    const out: unknown[] = [];
    for (const id of [ids.victim, ids.other]) {
      out.push(
        await s.services.repos.sandboxes.get(id),
        s.runtime.machines.has(id),
        [...s.runtime.files].filter(([k]) => k.startsWith(`${id}:`)).map(([k, v]) => [k, v.length]),
        s.runtime.policies.get(id) ?? null,
      );
    }
    return JSON.stringify(out);
  }

  /** After an accepted request: destroy what it created, and bring back a running victim. */
  async function settle(c: FuzzCase, res: RawResponse): Promise<void> {
    if ((c.route.path === "/v1/sandboxes" || c.route.path.endsWith("/fork")) && c.method === "POST" && res.status === 200) {
      const id = (JSON.parse(res.body.toString()) as { data?: { id?: string } }).data?.id;
      const owner = c.as === "other" ? users.other : users.key;
      if (id && (await waitStable(id)) !== "destroyed") await s.services.sandboxes.destroy(owner, id).catch(() => undefined);
    }
    for (const [which, key, user] of [["victim", s.apiKey, users.key], ["other", otherKey, users.other]] as const) {
      const id = which === "victim" ? ids.victim : ids.other;
      const status = await waitStable(id);
      if (status === "running") continue;
      if (status === "paused") {
        await s.services.snapshots.resume(user, id);
        if ((await waitStable(id)) === "running") continue;
      }
      await s.services.sandboxes.destroy(user, id).catch(() => undefined);
      const fresh = await createRunning(key);
      if (which === "victim") {
        ids.victim = fresh.id;
        ids.victimIp = fresh.ip;
      } else ids.other = fresh.id;
    }
  }

  /** Every connection the server accepted is closed again (none left half-open, nobody reading it). */
  async function noConnectionLeft(): Promise<void> {
    let n = -1;
    for (let i = 0; i < 40 && n !== 0; i++) {
      await sleep(50);
      // fetch (s.api) keeps idle keep-alive connections: those are not leaks. Sockets left
      // half-open after an answer, or taken over by an upgrade, are not closed by this.
      s.app.server.closeIdleConnections();
      n = await new Promise<number>((r) => s.app.server.getConnections((_e, count) => r(count)));
    }
    assert.equal(n, 0, "connections left open on the server");
  }

  before(async () => {
    process.on("uncaughtException", onUncaught);
    process.on("unhandledRejection", onUncaught);
    s = await startTestServer({
      maxFileBytes: MAX_FILE,
      requestTimeoutMs: REQUEST_TIMEOUT_MS,
      headersTimeoutMs: HEADERS_TIMEOUT_MS,
      logLevel: "fatal",
      // The fuzzer replaces the sandboxes it breaks: per-user caps would refuse that after a while.
      env: { HUTCH_USER_MAX_SANDBOXES: "off", HUTCH_USER_CREATES_PER_MINUTE: "off" },
    });
    port = Number(new URL(s.url).port);
    otherKey = await s.newUser("fuzz-other");
    users.key = (await s.api("GET", "/v1/whoami")).json.data.user_id;
    users.other = (await s.api("GET", "/v1/whoami", undefined, { key: otherKey })).json.data.user_id;
    const v = await createRunning(s.apiKey);
    ids.victim = v.id;
    ids.victimIp = v.ip;
    ids.other = (await createRunning(otherKey)).id;
    // Open guest ports, so a valid tunnel switches protocols (a closed port is the documented 502).
    for (const p of [22, 80, 8080]) s.runtime.guestPorts.set(p, (conn) => conn.end());
    // A guest where every command works: the key installer and sshd start script (/bin/sh) succeed
    // as in a real guest, and a fuzzed command echoes its arguments.
    s.runtime.execHandler = async (req, out) => {
      if (req.cmd !== "/bin/sh") out.onStdout(Buffer.from(`${req.args.join(" ")}\n`));
      return { exitCode: 0 };
    };
  });

  after(async () => {
    process.off("uncaughtException", onUncaught);
    process.off("unhandledRejection", onUncaught);
    await s?.dispose();
    const total = Object.values(sent).reduce((a, b) => a + b, 0);
    console.log(`# fuzz requests sent: ${total} ${JSON.stringify(sent)} (FUZZ_RUNS=${SCALE})`);
    console.log(`# mutated answers by status: ${JSON.stringify(statuses)}; single-fault naming checked: ${named.checked}`);
  });

  test("the fuzzer's route table is every route of the app", () => {
    const tree = s.app.printRoutes({ commonPrefix: false });
    // "/v1/sandboxes" and its "/" child are one route (the prefix's root): count it once.
    const lines = tree.split("\n").filter((l) => !/── \/ \(/.test(l));
    const methods = lines.flatMap((l) => [...l.matchAll(/\(([A-Z, ]+)\)/g)]).flatMap((m) => m[1]!.split(", ").filter((x) => x !== "HEAD"));
    assert.equal(methods.length, ROUTES.length, `routes in the app:\n${tree}`);
    for (const r of ROUTES) {
      const url = r.path.replace(":id", "sb_x").replace(":ip", "1.2.3.4").replace(":port", "80");
      assert.ok(s.app.hasRoute({ method: r.method as "GET", url: r.path }) || s.app.hasRoute({ method: r.method as "GET", url }), `${r.method} ${r.path}`);
    }
  });

  test("generated and mutated requests to every route: no 5xx, no hang, JSend fail naming the fault, no state change when rejected", async () => {
    sent.mutated = 0;
    const targets = { victimId: () => ids.victim, victimIp: () => ids.victimIp, otherId: () => ids.other, key: s.apiKey, otherKey };
    await fc.assert(
      fc.asyncProperty(fuzzCaseArb(targets), async (c) => {
        const before = await snapshot();
        const res = await rawSend(port, [c.bytes], { timeoutMs: BOUND_MS, headOnly: c.upgrade });
        sent.mutated!++;
        statuses[res.status] = (statuses[res.status] ?? 0) + 1;
        if (c.expect) named.checked++;
        const problems = problemsOf(c, res, BOUND_MS);
        assert.deepEqual(problems, [], `${c.method} ${c.target.slice(0, 300)} → ${res.status} ${res.body.toString().slice(0, 300)}`);
        if (res.status >= 400 && !c.pipelined) assert.equal(await snapshot(), before, `rejected ${c.method} ${c.target.slice(0, 200)} changed a sandbox`);
        else await settle(c, res);
      }),
      { numRuns: runs(4000), interruptAfterTimeLimit: budget(25_000), endOnFailure: true, ...SEED },
    );
    assert.equal((await s.api("GET", "/healthz")).status, 200);
    await noConnectionLeft();
  });

  test("single-fault requests: the 4xx names the one broken body field or query parameter", async () => {
    sent.single = 0;
    const targets = { victimId: () => ids.victim, victimIp: () => ids.victimIp, otherId: () => ids.other, key: s.apiKey, otherKey };
    await fc.assert(
      fc.asyncProperty(fuzzCaseArb(targets, "single"), async (c) => {
        assert.ok(c.expect, "a single-fault case names its fault");
        const before = await snapshot();
        const res = await rawSend(port, [c.bytes], { timeoutMs: BOUND_MS });
        sent.single!++;
        assert.deepEqual(problemsOf(c, res, BOUND_MS), [], `${c.method} ${c.target.slice(0, 300)} → ${res.status} ${res.body.toString().slice(0, 300)}`);
        if (res.status >= 400) assert.equal(await snapshot(), before, `rejected ${c.method} ${c.target.slice(0, 200)} changed a sandbox`);
        else await settle(c, res);
      }),
      { numRuns: runs(800), interruptAfterTimeLimit: budget(6_000), endOnFailure: true, ...SEED },
    );
  });

  test("slow, truncated and dribbled requests are answered or cut by the server's timeouts", async () => {
    sent.slow = 0;
    const scenarios = slowScenarios(port, s.apiKey, () => ids.victim, BOUND_MS);
    await fc.assert(
      fc.asyncProperty(fc.array(fc.constantFrom(...scenarios), { minLength: 3, maxLength: 9 }), async (batch) => {
        const before = await snapshot();
        const results = await Promise.all(batch.map(async (sc) => ({ sc, ...(await sc.run()) })));
        sent.slow! += batch.length;
        for (const { sc, res, expect, route: r, method } of results) {
          assert.ok(!res.timedOut, `${sc.name}: no answer and no close within ${BOUND_MS} ms`);
          if (expect === "none") continue;
          if (expect === "408") {
            assert.equal(res.status, 408, `${sc.name}: ${res.status} ${res.body}`);
            assert.ok(res.ms < REQUEST_TIMEOUT_MS + 1500, `${sc.name}: cut after ${Math.round(res.ms)} ms`);
          }
          if (expect === "ok") assert.ok(res.status >= 200 && res.status < 300, `${sc.name}: ${res.status} ${res.body}`);
          if (res.status !== 0) assert.deepEqual(problemsOf({ method, route: r }, res, BOUND_MS), [], sc.name);
        }
        // Only the dribbled upload may change anything (it writes /tmp/dribble).
        const now = JSON.parse(await snapshot()) as unknown[];
        const then = JSON.parse(before) as unknown[];
        const strip = (x: unknown[]) => x.map((v, i) => (i % 4 === 2 ? (v as [string, number][]).filter(([k]) => !k.endsWith(":/tmp/dribble")) : i % 4 === 0 ? { ...(v as object), updatedAt: 0 } : v));
        assert.deepEqual(strip(now), strip(then));
        assert.ok(![...s.runtime.files.keys()].some((k) => k.endsWith(":/tmp/stalled")), "a stalled upload left a file");
        assert.equal((await s.api("GET", "/healthz")).status, 200);
      }),
      { numRuns: runs(4), endOnFailure: true, ...SEED },
    );
    await noConnectionLeft();
  });

  test("uploads: over the limit a 413 JSend fail and no file left; up to it stored whole", async () => {
    sent.upload = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(fc.integer({ min: MAX_FILE - 16, max: MAX_FILE + 16 }), fc.integer({ min: 0, max: 4 * MAX_FILE })),
        fc.constantFrom("honest", "chunked", "short-length"),
        fc.nat({ max: 1e9 }),
        async (size, framing, n) => {
          const path = `/tmp/up-${n}`;
          const body = Buffer.alloc(size, n % 256);
          const headers: [string, string][] = [["Host", "127.0.0.1"], ["Connection", "close"], ["X-Api-Key", s.apiKey]];
          let payload = body;
          if (framing === "chunked") {
            headers.push(["Transfer-Encoding", "chunked"]);
            payload = Buffer.concat([Buffer.from(`${size.toString(16)}\r\n`), body, Buffer.from("\r\n0\r\n\r\n")]);
            if (size === 0) payload = Buffer.from("0\r\n\r\n");
          } else {
            // short-length: the declared size passes the early check, the rest is a next "request" the server ignores or rejects.
            headers.push(["Content-Length", String(framing === "short-length" ? Math.min(size, MAX_FILE) : size)]);
          }
          const res = await rawSend(port, [requestBytes("PUT", `/v1/sandboxes/${ids.victim}/files?path=${path}`, headers, payload)], { timeoutMs: BOUND_MS });
          sent.upload!++;
          const stored = s.runtime.files.get(`${ids.victim}:${path}`);
          const declared = framing === "short-length" ? Math.min(size, MAX_FILE) : size;
          if (declared > MAX_FILE) {
            assert.equal(res.status, 413, `${framing} ${size}: ${res.status} ${res.body}`);
            assert.deepEqual(JSON.parse(res.body.toString()), { status: "fail", data: { body: `file exceeds ${MAX_FILE} bytes` } });
            assert.equal(stored, undefined, "no partial file left behind");
          } else if (framing === "short-length" && size > declared) {
            // The bytes past the declared length parse as a malformed next request: the connection is
            // answered 400 and closed, possibly before the upload's own answer. What was stored is whole.
            assert.ok(res.status === 200 || (res.status === 400 && "request" in JSON.parse(res.body.toString()).data), `${res.status} ${res.body}`);
            if (stored) assert.equal(stored.length, declared);
            s.runtime.files.delete(`${ids.victim}:${path}`);
          } else {
            assert.equal(res.status, 200, `${framing} ${size}: ${res.status} ${res.body}`);
            assert.equal(stored?.length, declared);
            s.runtime.files.delete(`${ids.victim}:${path}`);
          }
        },
      ),
      { numRuns: runs(150), endOnFailure: true, ...SEED },
    );
  });

  test("what the fuzzer found, pinned: each answered in JSend naming the fault", async () => {
    const PROTO = Buffer.from('{"ingress_enabled":"no","__proto__":{"a":1}}');
    const k = s.apiKey;
    const id = ids.victim;
    const h = (...more: [string, string][]): [string, string][] => [["Host", "127.0.0.1"], ["Connection", "close"], ["X-Api-Key", k], ...more];
    const cases: Array<[string, Buffer, number, string]> = [
      ["malformed percent-encoding in a path (Fastify's own 400 shape)", requestBytes("GET", "/v1/sandboxes/%E0%A4%A", h()), 400, "url"],
      ["a path parameter over the router's limit (Fastify's own 414 shape)", requestBytes("GET", `/v1/sandboxes/${"a".repeat(200)}`, h()), 414, "id"],
      ["headers over 16 KiB (node's plain 431)", requestBytes("GET", "/v1/whoami", h(["X-Big", "v".repeat(17_000)])), 431, "headers"],
      ["two different Content-Length (node's plain 400)", requestBytes("POST", "/v1/sandboxes", h(["Content-Length", "2"], ["Content-Length", "3"]), Buffer.from("{}")), 400, "content-length"],
      ["an invalid method token", requestBytes("G\u00e9T", "/v1/whoami", h()), 400, "method"],
      ["no Host in HTTP/1.1 (node's empty 400)", requestBytes("GET", "/v1/whoami", [["Connection", "close"], ["X-Api-Key", k]]), 400, "host"],
      ["an Expect other than 100-continue (node's empty 417)", requestBytes("GET", "/v1/whoami", h(["Expect", "teapot"])), 417, "expect"],
      ["an upgrade whose path does not decode (crashed the server)", requestBytes("POST", "/v1/sandboxes/%E0/shell", h(["Connection", "Upgrade"], ["Upgrade", "tcp-tunnel"])), 400, "url"],
      ["a WebSocket upgrade without a key (ws's plain 400, after opening a shell)", requestBytes("GET", `/v1/sandboxes/${id}/shell-ws`, h(["Connection", "Upgrade"], ["Upgrade", "websocket"], ["Sec-WebSocket-Version", "13"])), 400, "sec-websocket-key"],
      ["a WebSocket upgrade of a wrong version", requestBytes("GET", `/v1/sandboxes/${id}/shell-ws`, h(["Connection", "Upgrade"], ["Upgrade", "websocket"], ["Sec-WebSocket-Version", "7"], ["Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="])), 400, "sec-websocket-version"],
      ["a WebSocket upgrade ws refuses later (bad subprotocol list)", requestBytes("GET", `/v1/sandboxes/${id}/shell-ws`, h(["Connection", "Upgrade"], ["Upgrade", "websocket"], ["Sec-WebSocket-Version", "13"], ["Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="], ["Sec-WebSocket-Protocol", ",,"])), 400, "headers"],
      ["a body that stalls (held the connection forever)", requestBytes("POST", "/v1/sandboxes", h(["Content-Type", "application/json"], ["Content-Length", "100"]), Buffer.from('{"sh')), 408, "request"],
      ["valid JSON with a __proto__ key (called malformed)", requestBytes("PATCH", `/v1/sandboxes/${id}`, h(["Content-Type", "application/json"], ["Content-Length", String(PROTO.length)]), PROTO), 400, "ingress_enabled"],
    ];
    const shellsBefore = s.runtime.shells.length;
    for (const [what, bytes, status, field] of cases) {
      const res = await rawSend(port, [bytes], { timeoutMs: BOUND_MS, after: "stall" });
      assert.equal(res.status, status, `${what}: ${res.status} ${res.body}`);
      const json = JSON.parse(res.body.toString()) as { status: string; data: Record<string, string> };
      assert.equal(json.status, "fail", what);
      assert.ok(field in json.data, `${what}: ${JSON.stringify(json.data)}`);
    }
    // The refused WebSocket handshakes opened no shell (or closed what ws refused after the fact).
    await sleep(50);
    assert.ok(s.runtime.shells.slice(shellsBefore).every((sh) => sh.hungUp), "no shell left open by a refused handshake");
    await noConnectionLeft();
  });

  test("the server never crashed nor threw outside a request", async () => {
    assert.deepEqual(uncaught, []);
    assert.equal((await s.api("GET", "/readyz")).status, 200);
  });
});
