/**
 * `hutch pause`, `resume` and `fork` through the real server (minimal:1).
 * Kept apart from cli.test.ts because it depends on issue 4's endpoints
 * (POST .../pause, .../resume, .../fork); without them it fails, never skips.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import { cliRunner, expectCode } from "./cli-runner.js";
import { startServer, type TestServer } from "./support/server.js";

describe("hutch CLI: pause → resume → fork → rm (needs issue 4)", () => {
  let server: TestServer;
  let cli: ReturnType<typeof cliRunner>;
  let id = "";
  const children: string[] = [];

  before(async () => {
    server = await startServer();
    cli = cliRunner(server);
    id = expectCode(await cli.run(["create", "--rootfs", "minimal:1", "--name", "cli-life"]), 0, "create").stdout.trim();
    expectCode(await cli.run(["exec", id, "--", "sh", "-c", "echo remembered > /root/state"]), 0, "write state");
  });
  after(async () => {
    await server?.dispose();
    if (cli) await rm(cli.home, { recursive: true, force: true });
  });

  const status = async (ref: string) => JSON.parse(expectCode(await cli.run(["get", ref, "--json"]), 0, "get").stdout).status as string;

  test("pause waits until paused and prints the id", async () => {
    const r = expectCode(await cli.run(["pause", "cli-life"]), 0, "pause");
    assert.equal(r.stdout.trim(), id);
    assert.equal(await status(id), "paused");
    const exec = await cli.run(["exec", id, "--", "true"]);
    assert.equal(exec.code, 1, "no exec while paused");
    assert.match(exec.stderr, /^hutch: .*\(HTTP 409\)\n$/);
  });

  test("resume waits until running; the disk and memory state are back", async () => {
    const r = expectCode(await cli.run(["resume", id]), 0, "resume");
    assert.equal(r.stdout.trim(), id);
    assert.equal(await status(id), "running");
    assert.equal(expectCode(await cli.run(["exec", id, "--", "cat", "/root/state"]), 0, "cat").stdout, "remembered\n");
  });

  test("fork of a paused sandbox prints the child's id; the child runs with the source's files", async () => {
    expectCode(await cli.run(["pause", id]), 0, "pause again");
    const r = expectCode(await cli.run(["fork", id]), 0, "fork");
    const child = r.stdout.trim();
    children.push(child);
    assert.match(child, /^sb_[0-9A-Z]{26}$/);
    assert.notEqual(child, id);
    const view = JSON.parse(expectCode(await cli.run(["get", child, "--json"]), 0, "get child").stdout);
    assert.equal(view.forked_from, id);
    assert.equal(view.status, "running");
    assert.equal(expectCode(await cli.run(["exec", child, "--", "cat", "/root/state"]), 0, "cat in child").stdout, "remembered\n");
    const paused = JSON.parse(expectCode(await cli.run(["fork", id, "--start-paused", "--json"]), 0, "fork --start-paused").stdout);
    children.push(paused.id);
    assert.equal(await status(paused.id), "paused");
    assert.equal(await status(id), "paused", "the source is paused again after the fork");
  });

  test("rm --wait removes the source and its children", async () => {
    const r = expectCode(await cli.run(["rm", "--wait", id, ...children]), 0, "rm");
    assert.deepEqual(r.stdout.trim().split("\n"), [id, ...children]);
    for (const s of [id, ...children]) assert.equal(await status(s), "destroyed");
  });
});
