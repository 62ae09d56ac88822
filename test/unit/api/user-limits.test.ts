/**
 * Per-user limits over real HTTP with the fake runtime: the live sandbox and
 * memory caps (402), the create rate (429 + Retry-After), their exactness
 * under concurrent creates, slots freed by destroy and by a failed create,
 * other users untouched, the SDK's typed errors, and the configuration.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { CreateosSandboxClient, CreateosSandboxPaymentRequiredError, CreateosSandboxRateLimitError } from "@nodeops-createos/sandbox";
import { loadConfig } from "../../../src/config.js";
import { FakeRuntime } from "../../support/fake-runtime.js";
import { startTestServer, type ApiResponse, type TestServer } from "../../support/test-server.js";

const SHAPE = "s-1vcpu-256mb";

async function waitStatus(s: TestServer, id: string, want: string, key?: string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    const r = await s.api("GET", `/v1/sandboxes/${id}`, undefined, key ? { key } : {});
    if (r.json.data.status === want) return;
    await new Promise((res) => setTimeout(res, 10));
  }
  throw new Error(`${id} never ${want}`);
}

function create(s: TestServer, key: string, shape = SHAPE): Promise<ApiResponse> {
  return s.api("POST", "/v1/sandboxes", { shape }, { key });
}

function assertQuota(r: ApiResponse, quota: string | RegExp): void {
  assert.equal(r.status, 402, r.text);
  assert.equal(r.json.status, "fail");
  if (typeof quota === "string") assert.deepEqual(r.json.data, { quota });
  else assert.match(r.json.data.quota, quota);
  assert.equal(r.headers.get("retry-after"), null);
}

function assertRateLimited(r: ApiResponse, maxWaitS: number): number {
  assert.equal(r.status, 429, r.text);
  assert.equal(r.json.status, "fail");
  assert.match(r.json.data.rate_limit, /^creates per minute: \d+ allowed; next one in \d+ s$/);
  const after = r.headers.get("retry-after");
  assert.match(after ?? "", /^[1-9]\d*$/, "Retry-After is whole seconds ≥ 1");
  const secs = Number(after);
  assert.ok(secs <= maxWaitS, `Retry-After ${secs} ≤ ${maxWaitS}`);
  assert.equal(r.json.data.rate_limit, r.json.data.rate_limit.replace(/\d+ s$/, `${secs} s`), "the message says the same wait");
  return secs;
}

async function liveCount(s: TestServer, key: string): Promise<number> {
  const r = await s.api("GET", "/v1/sandboxes?limit=500", undefined, { key });
  return (r.json.data.data as Array<{ status: string }>).filter((x) => x.status !== "destroyed" && x.status !== "failed").length;
}

describe("cap on live sandboxes per user (HUTCH_USER_MAX_SANDBOXES=3)", () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ runtime: new FakeRuntime(), env: { HUTCH_USER_MAX_SANDBOXES: "3", HUTCH_USER_CREATES_PER_MINUTE: "off" } });
  });
  after(() => s.dispose());

  test("three creates succeed, the fourth is a 402 fail naming the quota; nothing is inserted", async () => {
    const key = await s.newUser("alice");
    for (let i = 0; i < 3; i++) assert.equal((await create(s, key)).status, 200);
    assertQuota(await create(s, key), "live sandboxes: 3 of 3 in use");
    const all = await s.api("GET", "/v1/sandboxes", undefined, { key });
    assert.equal(all.json.data.pagination.total, 3);
  });

  test("another user is not affected", async () => {
    const key = await s.newUser("bob");
    for (let i = 0; i < 3; i++) assert.equal((await create(s, key)).status, 200);
    assertQuota(await create(s, key), "live sandboxes: 3 of 3 in use");
  });

  test("10 concurrent creates against a cap of 3: exactly 3 succeed, 7 get 402", async () => {
    const key = await s.newUser("carol");
    s.runtime.opts.createDelayMs = 30;
    try {
      const rs = await Promise.all(Array.from({ length: 10 }, () => create(s, key)));
      assert.deepEqual(rs.map((r) => r.status).sort(), [200, 200, 200, 402, 402, 402, 402, 402, 402, 402]);
      for (const r of rs.filter((x) => x.status === 402)) assertQuota(r, "live sandboxes: 3 of 3 in use");
    } finally {
      s.runtime.opts.createDelayMs = 0;
    }
    assert.equal(await liveCount(s, key), 3);
  });

  test("exact even when all 10 pass the early check: creates started in one tick on the service", async () => {
    // Over HTTP the requests arrive a little apart; here every create's early
    // check reads 0 live before any row is in, so only the check made where
    // rows are inserted can hold the cap.
    const key = await s.newUser("carol2");
    const userId = (await s.api("GET", "/v1/whoami", undefined, { key })).json.data.user_id as string;
    const rs = await Promise.allSettled(Array.from({ length: 10 }, () => s.services.sandboxes.create(userId, { shape: SHAPE })));
    assert.equal(rs.filter((r) => r.status === "fulfilled").length, 3);
    for (const r of rs) if (r.status === "rejected") assert.equal((r.reason as { status?: number }).status, 402, String(r.reason));
    assert.equal(await liveCount(s, key), 3);
  });

  test("a destroyed sandbox frees its slot once destroyed (destroying still holds it)", async () => {
    const key = await s.newUser("dave");
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await create(s, key)).json.data.id);
    s.runtime.opts.destroyDelayMs = 100;
    try {
      assert.equal((await s.api("DELETE", `/v1/sandboxes/${ids[0]}`, undefined, { key })).status, 200);
      assertQuota(await create(s, key), "live sandboxes: 3 of 3 in use");
      await waitStatus(s, ids[0]!, "destroyed", key);
    } finally {
      s.runtime.opts.destroyDelayMs = 0;
    }
    assert.equal((await create(s, key)).status, 200);
    assertQuota(await create(s, key), "live sandboxes: 3 of 3 in use");
  });

  test("a create that fails frees its slot", async () => {
    const key = await s.newUser("erin");
    assert.equal((await create(s, key)).status, 200);
    assert.equal((await create(s, key)).status, 200);
    s.runtime.failCreate = new Error("boom");
    try {
      for (let i = 0; i < 3; i++) assert.equal((await create(s, key)).status, 500);
    } finally {
      s.runtime.failCreate = undefined;
    }
    assert.equal((await create(s, key)).status, 200, "failed creates hold no slot");
    assertQuota(await create(s, key), "live sandboxes: 3 of 3 in use");
  });

  test("paused sandboxes count; a fork past the cap is a 402 and leaves its source paused", async () => {
    const key = await s.newUser("frank");
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await create(s, key)).json.data.id);
    const src = ids[0]!;
    assert.equal((await s.api("POST", `/v1/sandboxes/${src}/pause`, undefined, { key })).status, 202);
    await waitStatus(s, src, "paused", key);
    assertQuota(await create(s, key), "live sandboxes: 3 of 3 in use");
    assertQuota(await s.api("POST", `/v1/sandboxes/${src}/fork`, {}, { key }), "live sandboxes: 3 of 3 in use");
    const got = await s.api("GET", `/v1/sandboxes/${src}`, undefined, { key });
    assert.equal(got.json.data.status, "paused");
    // Room for one: the fork takes it.
    await s.api("DELETE", `/v1/sandboxes/${ids[1]}`, undefined, { key });
    await waitStatus(s, ids[1]!, "destroyed", key);
    const child = await s.api("POST", `/v1/sandboxes/${src}/fork`, {}, { key });
    assert.equal(child.status, 200, child.text);
    assert.equal(child.json.data.forked_from, src);
    assertQuota(await s.api("POST", `/v1/sandboxes/${src}/fork`, {}, { key }), "live sandboxes: 3 of 3 in use");
  });
});

describe("cap on guest memory per user (HUTCH_USER_MAX_MEM_MIB=1024)", () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ env: { HUTCH_USER_MAX_MEM_MIB: "1024", HUTCH_USER_MAX_SANDBOXES: "off", HUTCH_USER_CREATES_PER_MINUTE: "0" } });
  });
  after(() => s.dispose());

  test("creates up to the cap succeed; past it a 402 says what is used and asked", async () => {
    const key = await s.newUser("alice");
    assert.equal((await create(s, key, "s-1vcpu-512mb")).status, 200);
    assert.equal((await create(s, key)).status, 200);
    assertQuota(await create(s, key, "s-1vcpu-512mb"), "guest memory: 768 of 1024 MiB in use, 512 MiB more asked");
    assert.equal((await create(s, key)).status, 200);
    assertQuota(await create(s, key), "guest memory: 1024 of 1024 MiB in use, 256 MiB more asked");
  });

  test("one sandbox bigger than the cap is refused; another user is not affected", async () => {
    const key = await s.newUser("bob");
    assertQuota(await create(s, key, "s-2vcpu-2gb"), "guest memory: 0 of 1024 MiB in use, 2048 MiB more asked");
    assert.equal((await create(s, key, "s-1vcpu-1gb")).status, 200);
  });

  test("10 concurrent creates of 256 MiB against 1024 MiB: exactly 4 succeed", async () => {
    const key = await s.newUser("carol");
    s.runtime.opts.createDelayMs = 30;
    try {
      const rs = await Promise.all(Array.from({ length: 10 }, () => create(s, key)));
      assert.equal(rs.filter((r) => r.status === 200).length, 4);
      for (const r of rs.filter((x) => x.status !== 200)) assertQuota(r, /^guest memory: 1024 of 1024 MiB in use/);
    } finally {
      s.runtime.opts.createDelayMs = 0;
    }
  });
});

describe("create rate per user (HUTCH_USER_CREATES_PER_MINUTE=3)", () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ env: { HUTCH_USER_CREATES_PER_MINUTE: "3" } });
  });
  after(() => s.dispose());

  test("a burst of 3, then 429 with Retry-After: the seconds until the next create (one per 20 s)", async () => {
    const key = await s.newUser("alice");
    for (let i = 0; i < 3; i++) assert.equal((await create(s, key)).status, 200);
    const secs = assertRateLimited(await create(s, key), 20);
    assert.ok(secs >= 19, `a token takes 20 s to come back, got ${secs}`);
    assert.equal(await liveCount(s, key), 3);
  });

  test("invalid requests spend nothing; another user has a bucket of their own", async () => {
    const key = await s.newUser("bob");
    for (let i = 0; i < 5; i++) assert.equal((await s.api("POST", "/v1/sandboxes", { shape: "s-nope" }, { key })).status, 400);
    for (let i = 0; i < 3; i++) assert.equal((await create(s, key)).status, 200);
    assertRateLimited(await create(s, key), 20);
  });

  test("forks count as creates", async () => {
    const key = await s.newUser("carol");
    const id = (await create(s, key)).json.data.id as string;
    await s.api("POST", `/v1/sandboxes/${id}/pause`, undefined, { key });
    await waitStatus(s, id, "paused", key);
    assert.equal((await s.api("POST", `/v1/sandboxes/${id}/fork`, { start_paused: true }, { key })).status, 200);
    assert.equal((await create(s, key)).status, 200);
    const forked = await s.api("POST", `/v1/sandboxes/${id}/fork`, { start_paused: true }, { key });
    assertRateLimited(forked, 20);
    assertRateLimited(await create(s, key), 20);
    const src = await s.api("GET", `/v1/sandboxes/${id}`, undefined, { key });
    assert.equal(src.json.data.status, "paused", "a refused fork leaves its source as it was");
  });

  test("10 concurrent creates: exactly 3 pass, 7 get 429", async () => {
    const key = await s.newUser("dave");
    const rs = await Promise.all(Array.from({ length: 10 }, () => create(s, key)));
    assert.deepEqual(rs.map((r) => r.status).sort(), [200, 200, 200, 429, 429, 429, 429, 429, 429, 429]);
    for (const r of rs.filter((x) => x.status === 429)) assertRateLimited(r, 20);
  });
});

describe("the official SDK surfaces the limits as its typed errors", () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ env: { HUTCH_USER_MAX_SANDBOXES: "1", HUTCH_USER_CREATES_PER_MINUTE: "2" } });
  });
  after(() => s.dispose());

  test("402 → CreateosSandboxPaymentRequiredError, 429 → CreateosSandboxRateLimitError with retryAfterSeconds", async () => {
    // retry: false — the SDK otherwise retries a 429 after Retry-After (here up to 30 s).
    const key = await s.newUser("sdk");
    const client = new CreateosSandboxClient({ apiKey: key, baseUrl: s.url, retry: false });
    const sb = await client.createSandbox({ shape: SHAPE });
    await assert.rejects(client.createSandbox({ shape: SHAPE }), (err: unknown) => {
      assert.ok(err instanceof CreateosSandboxPaymentRequiredError, String(err));
      assert.equal(err.statusCode, 402);
      assert.match(err.message, /live sandboxes: 1 of 1 in use/);
      return true;
    });
    await sb.destroy();
    await waitStatus(s, sb.id, "destroyed", key);
    // The 402 spent no token: the second of 2 per minute is still there.
    const second = await client.createSandbox({ shape: SHAPE });
    await second.destroy();
    await waitStatus(s, second.id, "destroyed", key);
    await assert.rejects(client.createSandbox({ shape: SHAPE }), (err: unknown) => {
      assert.ok(err instanceof CreateosSandboxRateLimitError, String(err));
      assert.equal(err.statusCode, 429);
      assert.ok(err.retryAfterSeconds !== undefined && err.retryAfterSeconds >= 1 && err.retryAfterSeconds <= 30, String(err.retryAfterSeconds));
      assert.match(err.message, /creates per minute: 2 allowed/);
      return true;
    });
  });
});

describe("configuration of the limits", () => {
  const base = { HUTCH_API_KEY: "k" };

  test("defaults: 50 live sandboxes, 120 creates per minute, no memory cap", () => {
    assert.deepEqual(loadConfig({}, base).userLimits, { maxSandboxes: 50, createsPerMinute: 120 });
  });

  test("values, and 0 / off / empty", () => {
    const c = loadConfig({}, { ...base, HUTCH_USER_MAX_SANDBOXES: "7", HUTCH_USER_MAX_MEM_MIB: "4096", HUTCH_USER_CREATES_PER_MINUTE: " 30 " });
    assert.deepEqual(c.userLimits, { maxSandboxes: 7, maxMemMib: 4096, createsPerMinute: 30 });
    const off = loadConfig({}, { ...base, HUTCH_USER_MAX_SANDBOXES: "off", HUTCH_USER_MAX_MEM_MIB: "0", HUTCH_USER_CREATES_PER_MINUTE: "0" });
    assert.deepEqual(off.userLimits, {});
    assert.deepEqual(loadConfig({}, { ...base, HUTCH_USER_MAX_SANDBOXES: "" }).userLimits.maxSandboxes, 50);
  });

  test("anything else is refused with the variable's name", () => {
    for (const [name, value] of [
      ["HUTCH_USER_MAX_SANDBOXES", "-1"],
      ["HUTCH_USER_MAX_SANDBOXES", "2.5"],
      ["HUTCH_USER_MAX_MEM_MIB", "lots"],
      ["HUTCH_USER_CREATES_PER_MINUTE", "1e400"],
      ["HUTCH_USER_CREATES_PER_MINUTE", "on"],
    ] as const) {
      assert.throws(() => loadConfig({}, { ...base, [name]: value }), new RegExp(`${name} must be a positive integer, 0 or off`), `${name}=${value}`);
    }
  });
});
