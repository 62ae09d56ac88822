/**
 * `hutch shell` in a real terminal (tmux) and `hutch tunnel` through the real
 * server to a real VM (minimal:1). Needs the tunnel and shell endpoints.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import { rm } from "node:fs/promises";
import { connect } from "node:net";
import { cliRunner, expectCode } from "./cli-runner.js";
import { CLI, startServer, waitFor, type TestServer } from "./support/server.js";

function tmux(...args: string[]): string {
  return execFileSync("tmux", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

describe("hutch shell and hutch tunnel (minimal:1)", () => {
  let server: TestServer;
  let cli: ReturnType<typeof cliRunner>;
  let id = "";
  const session = `hutch-cli-${process.pid}`;
  const tunnels: ChildProcess[] = [];

  before(async () => {
    server = await startServer();
    cli = cliRunner(server);
    id = expectCode(await cli.run(["create", "--rootfs", "minimal:1", "--name", "cli-remote"]), 0, "create").stdout.trim();
  });
  after(async () => {
    for (const t of tunnels) t.kill("SIGKILL");
    try {
      tmux("kill-session", "-t", session);
    } catch {
      /* already gone */
    }
    await server?.dispose();
    if (cli) await rm(cli.home, { recursive: true, force: true });
  });

  test("an interactive hutch shell in tmux: type a command, read its output, resize, exit", async () => {
    const env = Object.entries({ HUTCH_URL: server.url, HUTCH_API_KEY: server.apiKey, HOME: cli.home })
      .map(([k, v]) => `${k}=${v}`)
      .join(" ");
    // `; echo EXITED $?` shows the CLI's own exit code once the shell ends; `sleep` keeps the pane readable.
    tmux("new-session", "-d", "-s", session, "-x", "100", "-y", "30", `env ${env} ${process.execPath} ${CLI} shell cli-remote; echo "EXITED $?"; sleep 600`);
    const screen = () => tmux("capture-pane", "-p", "-t", session);
    await waitFor(async () => (/[#$] ?$/m.test(screen()) ? true : undefined), 60_000, `a prompt in:\n${screen()}`);
    tmux("send-keys", "-t", session, "echo $((6*7))-marker", "Enter");
    await waitFor(async () => (/^42-marker/m.test(screen()) ? true : undefined), 20_000, `the command's output in:\n${screen()}`);
    tmux("send-keys", "-t", session, "stty size", "Enter");
    await waitFor(async () => (/^30 100\s*$/m.test(screen()) ? true : undefined), 20_000, `stty size 30 100 in:\n${screen()}`);
    tmux("resize-window", "-t", session, "-x", "120", "-y", "40");
    await new Promise((r) => setTimeout(r, 500));
    tmux("send-keys", "-t", session, "clear; stty size", "Enter");
    await waitFor(async () => (/^40 120\s*$/m.test(screen()) ? true : undefined), 20_000, `stty size 40 120 after a resize in:\n${screen()}`);
    tmux("send-keys", "-t", session, "exit", "Enter");
    await waitFor(async () => (/^EXITED 0\s*$/m.test(screen()) ? true : undefined), 20_000, `the CLI exiting 0 in:\n${screen()}`);
    // The terminal is cooked again: typed text echoes.
    tmux("send-keys", "-t", session, "cooked-echo");
    await waitFor(async () => (/cooked-echo/.test(screen()) ? true : undefined), 5_000, `echo restored in:\n${screen()}`);
  });

  test("hutch tunnel: parallel local connections reach an HTTP server bound to 127.0.0.1 in the guest", async () => {
    const blob = randomBytes(1024 * 1024);
    const sha = createHash("sha256").update(blob).digest("hex");
    const { writeFile, mkdtemp } = await import("node:fs/promises");
    const { join } = await import("node:path");
    const { tmpdir } = await import("node:os");
    const dir = await mkdtemp(join(tmpdir(), "hutch-tunnel-"));
    await writeFile(join(dir, "blob.bin"), blob);
    expectCode(await cli.run(["push", id, join(dir, "blob.bin"), "/www/blob.bin"]), 0, "push blob");
    await rm(dir, { recursive: true, force: true });
    // busybox httpd, loopback only: reachable through a tunnel, not from the host network.
    expectCode(await cli.run(["exec", id, "--", "httpd", "-p", "127.0.0.1:7000", "-h", "/www"]), 0, "start httpd");

    const t = spawn(process.execPath, [CLI, "tunnel", id, "7000", "--local", "0"], { env: { ...cli.env } as NodeJS.ProcessEnv, stdio: ["ignore", "pipe", "pipe"] });
    tunnels.push(t);
    let out = "";
    t.stdout!.on("data", (b: Buffer) => (out += b.toString()));
    t.stderr!.on("data", (b: Buffer) => (out += b.toString()));
    const port = await waitFor(async () => Number(/127\.0\.0\.1:(\d+) ->/.exec(out)?.[1]) || undefined, 20_000, `the tunnel's port: ${out}`);
    const get = async () => {
      const s = connect(port, "127.0.0.1");
      const chunks: Buffer[] = [];
      s.on("data", (b: Buffer) => chunks.push(b));
      s.write("GET /blob.bin HTTP/1.0\r\nHost: x\r\n\r\n");
      await once(s, "close");
      const res = Buffer.concat(chunks);
      const head = res.indexOf("\r\n\r\n");
      assert.match(res.subarray(0, head).toString(), /^HTTP\/1\.[01] 200/);
      assert.equal(createHash("sha256").update(res.subarray(head + 4)).digest("hex"), sha);
    };
    await Promise.all([get(), get(), get(), get(), get()]);
    t.kill("SIGINT");
    const [code] = (await once(t, "exit")) as [number];
    assert.equal(code, 0);

    // --stdio: one tunnel over stdin/stdout, as ssh's ProxyCommand uses it.
    const stdio = expectCode(await cli.run(["tunnel", "--stdio", "cli-remote", "7000"], { input: "GET /blob.bin HTTP/1.0\r\n\r\n" }), 0, "tunnel --stdio");
    const raw = stdio.stdoutBytes;
    const head = raw.indexOf("\r\n\r\n");
    assert.match(raw.subarray(0, head).toString(), /^HTTP\/1\.[01] 200/);
    assert.equal(createHash("sha256").update(raw.subarray(head + 4)).digest("hex"), sha, "the whole body came through stdout");
  });
});

describe("hutch shell --ssh (devbox:1, OpenSSH client through hutch tunnel --stdio)", () => {
  let server: TestServer;
  let cli: ReturnType<typeof cliRunner>;
  let keys = "";

  before(async () => {
    server = await startServer();
    cli = cliRunner(server);
    const { mkdtemp } = await import("node:fs/promises");
    const { join } = await import("node:path");
    const { tmpdir } = await import("node:os");
    keys = await mkdtemp(join(tmpdir(), "hutch-ssh-keys-"));
    for (const k of ["good", "other"]) execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(keys, k)]);
    expectCode(await cli.run(["create", "--rootfs", "devbox:1", "--name", "cli-ssh", "--ssh-key", join(keys, "good.pub")]), 0, "create devbox");
    // The server starts sshd on demand (issue 6, part A); starting it here too keeps this test about the CLI.
    expectCode(await cli.run(["exec", "cli-ssh", "--", "bash", "-c", "ssh-keygen -A >/dev/null; mkdir -p /run/sshd; pgrep -x sshd >/dev/null || /usr/sbin/sshd"]), 0, "sshd");
  });
  after(async () => {
    await server?.dispose();
    if (cli) await rm(cli.home, { recursive: true, force: true });
    if (keys) await rm(keys, { recursive: true, force: true });
  });

  test("logs in with the authorized key, runs a command, passes its exit code; another key is refused", async () => {
    const { join } = await import("node:path");
    const ok = expectCode(await cli.run(["shell", "--ssh", "-i", join(keys, "good"), "cli-ssh", "--", "hostname; exit 5"], { timeoutMs: 60_000 }), 5, "ssh");
    assert.equal(ok.stdout.trim(), "cli-ssh");
    const refused = await cli.run(["shell", "--ssh", "-i", join(keys, "other"), "cli-ssh", "--", "true"], { timeoutMs: 60_000 });
    assert.equal(refused.code, 255);
    assert.match(refused.stderr, /Permission denied \(publickey/);
  });
});
