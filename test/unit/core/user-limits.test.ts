/** UserLimits alone: the caps' arithmetic and the token bucket's Retry-After on a fake clock. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { AppError } from "../../../src/core/errors.js";
import { UserLimits, type UserUsage } from "../../../src/core/user-limits.js";

function limits(config: ConstructorParameters<typeof UserLimits>[0]["config"], usage: Record<string, UserUsage> = {}) {
  const clock = { t: 1_000_000 };
  const l = new UserLimits({ config, usage: async (u) => usage[u] ?? { sandboxes: 0, memMib: 0 }, now: () => clock.t });
  return { l, clock };
}

function refused(fn: () => unknown, status: number, check: (e: AppError) => void = () => {}): void {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof AppError, String(err));
    assert.equal(err.status, status);
    check(err);
    return;
  }
  assert.fail("expected a refusal");
}

describe("UserLimits", () => {
  test("live sandbox cap: the n-th is allowed, one more is 402 naming the quota", async () => {
    const { l } = limits({ maxSandboxes: 3 }, { a: { sandboxes: 2, memMib: 512 }, b: { sandboxes: 3, memMib: 768 } });
    await l.checkQuota("a", 256);
    await assert.rejects(l.checkQuota("b", 256), (e: AppError) => {
      assert.equal(e.status, 402);
      assert.equal(e.code, "quota_exceeded");
      assert.deepEqual(e.fields, { quota: "live sandboxes: 3 of 3 in use" });
      assert.equal(e.retryAfterS, undefined);
      return true;
    });
  });

  test("memory cap counts the asked size; one sandbox bigger than the cap is refused too", async () => {
    const { l } = limits({ maxMemMib: 1024 }, { a: { sandboxes: 2, memMib: 768 } });
    await l.checkQuota("a", 256);
    await assert.rejects(l.checkQuota("a", 512), (e: AppError) => e.status === 402 && e.fields.quota === "guest memory: 768 of 1024 MiB in use, 512 MiB more asked");
    await assert.rejects(l.checkQuota("nobody", 2048), (e: AppError) => e.status === 402 && /guest memory: 0 of 1024/.test(e.fields.quota!));
  });

  test("no caps configured: the store is not even asked", async () => {
    const l = new UserLimits({ config: {}, usage: () => assert.fail("asked") });
    await l.checkQuota("a", 8192);
    for (let i = 0; i < 1000; i++) l.takeCreate("a");
  });

  test("rate: a burst of N, then 429 with the whole seconds until the next token", () => {
    const { l, clock } = limits({ createsPerMinute: 3 });
    for (let i = 0; i < 3; i++) l.takeCreate("a");
    // 3 per minute = one every 20 s.
    refused(() => l.takeCreate("a"), 429, (e) => {
      assert.equal(e.code, "rate_limited");
      assert.equal(e.retryAfterS, 20);
      assert.match(e.fields.rate_limit!, /^creates per minute: 3 allowed; next one in 20 s$/);
    });
    clock.t += 5_000;
    refused(() => l.takeCreate("a"), 429, (e) => assert.equal(e.retryAfterS, 15));
    clock.t += 14_500;
    refused(() => l.takeCreate("a"), 429, (e) => assert.equal(e.retryAfterS, 1, "rounds up, never 0"));
    clock.t += 500;
    l.takeCreate("a");
    refused(() => l.takeCreate("a"), 429, (e) => assert.equal(e.retryAfterS, 20));
    // Another user has a bucket of their own.
    l.takeCreate("b");
  });

  test("rate: a refused attempt costs nothing; an idle minute refills the burst but no more", () => {
    const { l, clock } = limits({ createsPerMinute: 2 });
    l.takeCreate("a");
    l.takeCreate("a");
    for (let i = 0; i < 50; i++) refused(() => l.takeCreate("a"), 429);
    clock.t += 30_000;
    l.takeCreate("a");
    clock.t += 10 * 60_000;
    l.takeCreate("a");
    l.takeCreate("a");
    refused(() => l.takeCreate("a"), 429);
  });

  test("admitCreate: a capped user gets 402 without spending a rate token", async () => {
    const usage = { a: { sandboxes: 1, memMib: 256 } };
    const { l } = limits({ maxSandboxes: 1, createsPerMinute: 1 }, usage);
    for (let i = 0; i < 5; i++) await assert.rejects(l.admitCreate("a", 256), (e: AppError) => e.status === 402);
    usage.a = { sandboxes: 0, memMib: 0 };
    await l.admitCreate("a", 256);
    await assert.rejects(l.admitCreate("a", 256), (e: AppError) => e.status === 429);
  });
});
