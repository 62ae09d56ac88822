/**
 * The `hutch` client CLI through the real server and real VMs (minimal:1):
 * create → exec → push → pull → rm with every exit code checked, the read
 * commands' JSON, error lines, login's config file.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile, readlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cliRunner, expectCode } from "./cli-runner.js";
import { startServer, type TestServer } from "./support/server.js";

describe("hutch CLI: create → exec → push → pull → rm (minimal:1)", () => {
  let server: TestServer;
  let cli: ReturnType<typeof cliRunner>;
  let work: string;
  let id = "";

  before(async () => {
    server = await startServer();
    cli = cliRunner(server);
    work = await mkdtemp(join(tmpdir(), "hutch-cli-e2e-"));
  });
  after(async () => {
    await server?.dispose();
    if (work) await rm(work, { recursive: true, force: true });
    if (cli) await rm(cli.home, { recursive: true, force: true });
  });

  test("catalog commands, with and without --json", async () => {
    const shapes = JSON.parse(expectCode(await cli.run(["shapes", "--json"]), 0, "shapes").stdout);
    assert.ok(shapes.some((s: { id: string }) => s.id === "s-1vcpu-256mb"));
    const table = expectCode(await cli.run(["shapes"]), 0, "shapes table").stdout;
    assert.match(table, /^SHAPE\s+VCPU\s+MEMORY\s+DISK\n/);
    const rootfs = JSON.parse(expectCode(await cli.run(["rootfs", "--json"]), 0, "rootfs").stdout);
    assert.ok(rootfs.rootfs.includes("minimal:1"));
  });

  test("a bad shape is one error line on stderr and exit 1; nothing on stdout", async () => {
    const r = await cli.run(["create", "--shape", "s-nope", "--rootfs", "minimal:1"]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, "");
    assert.match(r.stderr, /^hutch: shape: .*\(HTTP 400\)\n$/);
    const noKey = await cli.run(["ls"], { env: { HUTCH_API_KEY: undefined } });
    assert.equal(noKey.code, 1);
    assert.equal(noKey.stderr, "hutch: no API key: set HUTCH_API_KEY or run `hutch login`\n");
    const badKey = await cli.run(["ls"], { env: { HUTCH_API_KEY: "hk_wrong" } });
    assert.equal(badKey.code, 1);
    assert.match(badKey.stderr, /^hutch: .*\(HTTP 401\)\n$/);
  });

  test("create prints the id; ls --json and get (by name) show it", async () => {
    const r = expectCode(
      await cli.run(["create", "--rootfs", "minimal:1", "--name", "cli-e2e", "--disk-mib", "2048", "--env", "GREETING=hello", "--auto-pause", "600"]),
      0,
      "create",
    );
    id = r.stdout.trim();
    assert.match(id, /^sb_[0-9A-Z]{26}$/);
    const list = JSON.parse(expectCode(await cli.run(["ls", "--json"]), 0, "ls").stdout);
    const row = list.find((s: { id: string }) => s.id === id);
    assert.equal(row.status, "running");
    assert.equal(row.name, "cli-e2e");
    const running = JSON.parse(expectCode(await cli.run(["ls", "--json", "--status", "running"]), 0, "ls running").stdout);
    assert.ok(running.every((s: { status: string }) => s.status === "running"));
    const view = JSON.parse(expectCode(await cli.run(["get", "cli-e2e", "--json"]), 0, "get").stdout);
    assert.equal(view.id, id);
    assert.equal(view.disk_mib, 2048);
    assert.deepEqual(view.envs, ["GREETING"]);
    assert.equal(view.auto_pause_after_seconds, 600);
    const table = expectCode(await cli.run(["ls"]), 0, "ls table").stdout;
    assert.match(table, new RegExp(`${id}\\s+cli-e2e\\s+running`));
  });

  test("exec streams output live and exits with the command's code", async () => {
    const r = await cli.run(["exec", "cli-e2e", "--", "sh", "-c", "echo first; sleep 2; echo second; echo oops >&2; exit 3"]);
    assert.equal(r.code, 3);
    assert.equal(r.stdout, "first\nsecond\n");
    assert.equal(r.stderr, "oops\n");
    const first = r.stdoutTimes.find((c) => c.text.includes("first"));
    assert.ok(first && r.ms - first.at > 1500, `"first" arrived ${first?.at} ms in, the run took ${r.ms} ms: streamed, not buffered`);

    const env = expectCode(await cli.run(["exec", id, "--", "sh", "-c", "echo $GREETING"]), 0, "exec env");
    assert.equal(env.stdout, "hello\n");
    const override = expectCode(await cli.run(["exec", id, "--env", "GREETING=override", "--", "sh", "-c", "echo $GREETING"]), 0, "exec --env");
    assert.equal(override.stdout, "override\n");
    const undeclared = await cli.run(["exec", id, "--env", "NOPE=1", "--", "true"]);
    assert.equal(undeclared.code, 1);
    assert.match(undeclared.stderr, /^hutch: .*\(HTTP 400\)\n$/);
    const missing = await cli.run(["exec", id, "--", "/no/such/binary"]);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /^hutch: /);
    const args = expectCode(await cli.run(["exec", id, "--", "echo", "a b", "$HOME", "-n"]), 0, "exec argv");
    assert.equal(args.stdout, "a b $HOME -n\n", "argv is passed as is");
    const stdin = expectCode(await cli.run(["exec", id, "--stdin", "--", "wc", "-c"], { input: "12345" }), 0, "exec --stdin");
    assert.equal(stdin.stdout.trim(), "5");
  });

  test("push and pull a file and a directory; contents come back equal", async () => {
    const blob = randomBytes(3 * 1024 * 1024 + 17);
    await writeFile(join(work, "blob.bin"), blob);
    const tree = join(work, "tree");
    await mkdir(join(tree, "sub/deeper"), { recursive: true });
    await writeFile(join(tree, "top.txt"), "top\n");
    await writeFile(join(tree, "sub/deeper/with space.txt"), "spaced\n");
    await writeFile(join(tree, "sub/rand.bin"), randomBytes(200_000));
    await symlink("../top.txt", join(tree, "sub/link"));

    expectCode(await cli.run(["push", id, join(work, "blob.bin"), "/data/in/blob.bin"]), 0, "push file");
    const sum = expectCode(await cli.run(["exec", id, "--", "sha256sum", "/data/in/blob.bin"]), 0, "sha in guest");
    const { createHash } = await import("node:crypto");
    assert.equal(sum.stdout.split(" ")[0], createHash("sha256").update(blob).digest("hex"));
    expectCode(await cli.run(["push", "cli-e2e", tree, "/data/tree"]), 0, "push dir");
    const ls = expectCode(await cli.run(["exec", id, "--", "sh", "-c", "cat '/data/tree/sub/deeper/with space.txt'; readlink /data/tree/sub/link; ls -A /var/tmp"]), 0, "ls in guest");
    assert.equal(ls.stdout, "spaced\n../top.txt\n", "the tree arrived and the temporary archive is gone");

    const back = join(work, "back.bin");
    expectCode(await cli.run(["pull", id, "/data/in/blob.bin", back]), 0, "pull file");
    assert.deepEqual(await readFile(back), blob);
    const into = join(work, "into");
    await mkdir(into);
    expectCode(await cli.run(["pull", id, "/data/in/blob.bin", into]), 0, "pull file into a dir");
    assert.deepEqual(await readFile(join(into, "blob.bin")), blob);

    const treeBack = join(work, "tree-back");
    expectCode(await cli.run(["pull", id, "/data/tree", treeBack]), 0, "pull dir");
    for (const f of ["top.txt", "sub/deeper/with space.txt", "sub/rand.bin"]) {
      assert.deepEqual(await readFile(join(treeBack, f)), await readFile(join(tree, f)), f);
    }
    assert.equal(await readlink(join(treeBack, "sub/link")), "../top.txt");

    const missing = await cli.run(["pull", id, "/no/such/file", join(work, "x")]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^hutch: .*no such file or directory\n$/);
    await assert.rejects(stat(join(work, "x")));
    const relative = await cli.run(["push", id, back, "relative/path"]);
    assert.equal(relative.code, 1);
  });

  test("edit toggles ingress and auto-pause", async () => {
    const on = JSON.parse(expectCode(await cli.run(["edit", id, "--ingress", "on", "--auto-pause", "off", "--json"]), 0, "edit").stdout);
    assert.equal(on.ingress_enabled, true);
    assert.equal(on.auto_pause_after_seconds, undefined);
    const off = JSON.parse(expectCode(await cli.run(["edit", id, "--ingress", "off", "--auto-pause", "900", "--json"]), 0, "edit").stdout);
    assert.equal(off.ingress_enabled, false);
    assert.equal(off.auto_pause_after_seconds, 900);
    assert.equal((await cli.run(["edit", id])).code, 1, "nothing to change");
  });

  test("rm --wait destroys it; get then says destroyed", async () => {
    const r = expectCode(await cli.run(["rm", "--wait", id]), 0, "rm");
    assert.equal(r.stdout.trim(), id);
    const view = JSON.parse(expectCode(await cli.run(["get", id, "--json"]), 0, "get destroyed").stdout);
    assert.equal(view.status, "destroyed");
    const gone = await cli.run(["rm", "sb_00000000000000000000000000"]);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /\(HTTP 404\)\n$/);
  });

  test("login writes a 0600 config file that later commands use", async () => {
    const home = await mkdtemp(join(tmpdir(), "hutch-login-"));
    try {
      const env = { HOME: home, HUTCH_URL: undefined, HUTCH_API_KEY: undefined };
      const bad = await cli.run(["login", "--url", server.url, "--api-key", "hk_wrong"], { env });
      assert.equal(bad.code, 1);
      await assert.rejects(stat(join(home, ".config/hutch/config.json")), "nothing saved for a rejected key");
      expectCode(await cli.run(["login", "--url", server.url], { env, input: `${server.apiKey}\n` }), 0, "login");
      const path = join(home, ".config/hutch/config.json");
      assert.equal((await stat(path)).mode & 0o777, 0o600);
      assert.deepEqual(JSON.parse(await readFile(path, "utf8")), { url: server.url, api_key: server.apiKey });
      const ls = expectCode(await cli.run(["ls", "--json"], { env }), 0, "ls with the saved config");
      assert.ok(Array.isArray(JSON.parse(ls.stdout)));
      // The environment wins over the file.
      const envWins = await cli.run(["ls"], { env: { HOME: home, HUTCH_API_KEY: "hk_wrong" } });
      assert.equal(envWins.code, 1);
    } finally {
      await rm(home, { recursive: true, force: true });
    }
  });
});
