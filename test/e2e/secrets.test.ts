/**
 * Secrets on a real server with real VMs (issue 7): env values and the API
 * key reach only where they belong (the guest's processes, the client's
 * header) and never the server's logs (at trace level), error answers, the
 * host's process arguments (`ps`), or API responses; not after a pause,
 * resume and fork either.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import type { Sandbox } from "@nodeops-createos/sandbox";
import { runCommand } from "../../src/runtime/run-command.js";
import { api, startServer, waitFor, type TestServer } from "./support/server.js";

const SECRET = `sk-live-${randomBytes(12).toString("hex")}`;
const EXEC_SECRET = `tok-${randomBytes(12).toString("hex")}`;

/** Every host process's arguments, as `ps` shows them. */
async function hostArgs(): Promise<string> {
  return (await runCommand("ps", ["-eo", "args", "--no-headers", "-ww"])).stdout;
}

describe("secrets (minimal:1)", () => {
  let server: TestServer;
  let sb: Sandbox;
  const answers: string[] = [];

  before(async () => {
    server = await startServer({ HUTCH_LOG_LEVEL: "trace" });
    sb = await server.client.createSandbox({ shape: "s-1vcpu-256mb", rootfs: "minimal:1", envs: { API_TOKEN: SECRET } });
    answers.push(JSON.stringify(sb.data));
  });
  after(async () => {
    await server?.dispose();
  });

  test("the guest gets the values; answers, logs and ps do not", async () => {
    assert.equal((await sb.runCommand("sh", ["-c", "echo $API_TOKEN"])).result.stdout.trim(), SECRET);
    // A per-exec override of a declared env (the SDK's runCommand has none; the API has).
    const seen = await api(server, "POST", `/v1/sandboxes/${sb.id}/exec`, { cmd: "sh", args: ["-c", "echo $API_TOKEN"], env: { API_TOKEN: EXEC_SECRET } });
    assert.equal(seen.status, 200);
    assert.equal(seen.json.data.result.stdout.trim(), EXEC_SECRET);
    for (const [method, path] of [["GET", `/v1/sandboxes/${sb.id}`], ["GET", "/v1/sandboxes"], ["GET", `/v1/sandboxes/${sb.id}/egress`], ["GET", `/v1/sandboxes/${sb.id}/bandwidth`]] as const) {
      const r = await api(server, method, path);
      assert.equal(r.status, 200);
      answers.push(r.text);
    }
    // The env names are listed, never their values.
    assert.deepEqual((await api(server, "GET", `/v1/sandboxes/${sb.id}`)).json.data.envs, ["API_TOKEN"]);
    const ps = await hostArgs();
    assert.ok(!ps.includes(SECRET) && !ps.includes(EXEC_SECRET), "no env value in any host process's arguments");
    assert.ok(!ps.includes(server.apiKey), "the API key is in no process's arguments");
  });

  test("errors do not echo a secret: a wrong key, a bad env next to a good one", async () => {
    const wrong = `${server.apiKey}x`;
    const r = await fetch(`${server.url}/v1/sandboxes`, { headers: { authorization: `Bearer ${wrong}` } });
    assert.equal(r.status, 401);
    const body = await r.text();
    assert.ok(!body.includes(wrong) && !body.includes(server.apiKey));
    const bad = await api(server, "POST", "/v1/sandboxes", { shape: "s-1vcpu-256mb", rootfs: "minimal:1", envs: { GOOD: SECRET, "not a name": SECRET } });
    assert.equal(bad.status, 400);
    assert.ok(!bad.text.includes(SECRET));
    const patch = await api(server, "PATCH", `/v1/sandboxes/${sb.id}`, { envs: { X: SECRET } });
    assert.ok(patch.status < 500);
    assert.ok(!patch.text.includes(SECRET));
  });

  test("pause, resume and fork carry the envs without showing them", async () => {
    await api(server, "POST", `/v1/sandboxes/${sb.id}/pause`);
    await waitFor(async () => ((await api(server, "GET", `/v1/sandboxes/${sb.id}`)).json.data.status === "paused" ? true : undefined), 120_000, "paused");
    const child = await sb.fork({});
    answers.push(JSON.stringify(child.data));
    assert.equal((await child.runCommand("sh", ["-c", "echo $API_TOKEN"])).result.stdout.trim(), SECRET);
    const resumed = await api(server, "POST", `/v1/sandboxes/${sb.id}/resume`);
    answers.push(resumed.text);
    await waitFor(async () => ((await api(server, "GET", `/v1/sandboxes/${sb.id}`)).json.data.status === "running" ? true : undefined), 120_000, "running");
    assert.equal((await sb.runCommand("sh", ["-c", "echo $API_TOKEN"])).result.stdout.trim(), SECRET);
    const ps = await hostArgs();
    assert.ok(!ps.includes(SECRET), "no env value in any host process's arguments after resume and fork");
    await child.destroy();
  });

  test("nothing the server answered or logged holds a secret", () => {
    assert.ok(answers.length >= 7);
    for (const a of answers) assert.ok(!a.includes(SECRET), `an API answer shows the env value: ${a.slice(0, 200)}`);
    const log = server.output();
    assert.ok(log.length > 1000, "the server logged (trace level)");
    for (const s of [SECRET, EXEC_SECRET, server.apiKey]) assert.ok(!log.includes(s), "a secret is in the server's log");
  });
});
