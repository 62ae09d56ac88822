import assert from "node:assert/strict";
import { test } from "node:test";
import { ulid, monotonicFactory } from "ulid";
import { MAX_IFNAME, fallbackTapName, tapName } from "../../../src/runtime/network/tap-name.js";

test("tap name: hv + last 10 chars of the ULID, lower case, fits IFNAMSIZ", () => {
  assert.equal(tapName("sb_01JABCDEFGHJKMNPQRSTVWXYZ0"), "hvqrstvwxyz0");
  const n = tapName(`sb_${ulid()}`);
  assert.ok(n.length <= MAX_IFNAME && /^hv[0-9a-z]{10}$/.test(n));
});

test("ULIDs from the same millisecond get different taps", () => {
  const next = monotonicFactory();
  const t = Date.now();
  const names = new Set(Array.from({ length: 1000 }, () => tapName(`sb_${next(t)}`)));
  assert.equal(names.size, 1000);
});

test("fallback name differs, is stable and fits", () => {
  const id = "sb_01JABCDEFGHJKMNPQRSTVWXYZ0";
  const f = fallbackTapName(id);
  assert.equal(f, fallbackTapName(id));
  assert.notEqual(f, tapName(id));
  assert.match(f, /^hx[0-9a-f]{10}$/);
});

test("rejects ids that are not sb_<ULID>", () => {
  for (const bad of ["sb_short", "01JABCDEFGHJKMNPQRSTVWXYZ0", "sb_01JABCDEFGHJKMNPQRSTVWXYZ!", "sb_01JABCDEFGHJKMNPQRSTVWXYU0"]) {
    assert.throws(() => tapName(bad), bad);
  }
});
