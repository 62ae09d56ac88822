/** Env values: encrypted at rest, never returned, never logged. */
import assert from "node:assert/strict";
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { describe, test } from "node:test";
import { startTestServer } from "../../support/test-server.js";

const SECRET = "sk-ant-SUPERSECRET-4f9a2c";

describe("env secrets", () => {
  test("values are not in the database files, the API or the logs; runtime gets them decrypted", async () => {
    const s = await startTestServer({ logLevel: "trace" });
    try {
      const c = await s.api("POST", "/v1/sandboxes", { shape: "s-1vcpu-256mb", envs: { ANTHROPIC_API_KEY: SECRET } });
      assert.equal(c.status, 200);
      assert.ok(!c.text.includes(SECRET));
      const id = c.json.data.id;
      const g = await s.api("GET", `/v1/sandboxes/${id}`);
      assert.deepEqual(g.json.data.envs, ["ANTHROPIC_API_KEY"]);
      assert.ok(!g.text.includes(SECRET));
      assert.ok(!(await s.api("GET", "/v1/sandboxes")).text.includes(SECRET));
      // Also a failing create whose envs are invalid elsewhere must not echo values.
      const bad = await s.api("POST", "/v1/sandboxes", { shape: "s-1vcpu-256mb", envs: { OK: SECRET, "bad-key": SECRET } });
      assert.equal(bad.status, 400);
      assert.ok(!bad.text.includes(SECRET));
      // Exec with an env override: value not logged either.
      await s.api("POST", `/v1/sandboxes/${id}/exec`, { cmd: "echo", args: ["hi"], env: { ANTHROPIC_API_KEY: `${SECRET}-2` } });

      assert.equal(s.runtime.created[0]!.envs.ANTHROPIC_API_KEY, SECRET);
      await s.close();
      for (const f of await readdir(s.dataDir)) {
        const p = join(s.dataDir, f);
        if (!(await stat(p)).isFile()) continue;
        assert.ok(!(await readFile(p)).includes(SECRET), `${f} contains the secret`);
      }
      const logs = s.logs();
      assert.ok(logs.length > 0);
      assert.ok(!logs.includes(SECRET), "logs contain the secret");
      const keyStat = await stat(join(s.dataDir, "secret.key"));
      assert.equal(keyStat.mode & 0o777, 0o600);
      assert.equal(keyStat.size, 32);
    } finally {
      await s.dispose();
    }
  });
});
