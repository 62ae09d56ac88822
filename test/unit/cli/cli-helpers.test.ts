/** Pure helpers of the client CLI: flags → requests, frames, config, errors, decoding. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, mkdir, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { buffer } from "node:stream/consumers";
import { CreateosSandboxClient } from "@nodeops-createos/sandbox";
import { InvalidArgumentError } from "commander";
import { CliError, errorLine, exitCodeOf } from "../../../src/cli/client/cli-error.js";
import { configPath, loadClientConfig, writeConfigFile } from "../../../src/cli/client/client-config.js";
import { collectEnv, collectSshKeys, onOff, port } from "../../../src/cli/client/flag-parsers.js";
import { table } from "../../../src/cli/client/output.js";
import { dataFrame, resizeFrame } from "../../../src/cli/client/shell-frames.js";
import { tarCreate } from "../../../src/cli/client/host-tar.js";
import { estimateTarSize } from "../../../src/cli/client/tar-size.js";
import { createRequest } from "../../../src/cli/commands/create.js";
import { autoPauseValue } from "../../../src/cli/commands/edit.js";
import { processExitCode } from "../../../src/cli/commands/exec.js";
import { forkRequest } from "../../../src/cli/commands/lifecycle.js";
import { Base64Decoder, parseKind } from "../../../src/cli/commands/pull.js";
import { pushTarget } from "../../../src/cli/commands/push.js";
import { shellQuote, sshArgs } from "../../../src/cli/commands/shell.js";

const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl user@host";

test("create flags map onto every create field, omitting what was not given", () => {
  assert.deepEqual(createRequest({ shape: "s-1vcpu-256mb" }), { shape: "s-1vcpu-256mb" });
  assert.deepEqual(
    createRequest({
      shape: "s-2vcpu-2gb",
      rootfs: "minimal:1",
      name: "box",
      diskMib: 2048,
      sshKey: [KEY],
      env: { A: "1" },
      ingress: true,
      egress: ["example.com:443"],
      autoPause: 300,
      hostId: "h1",
      region: "local",
      network: ["net-1"],
    }),
    {
      shape: "s-2vcpu-2gb",
      rootfs: "minimal:1",
      name: "box",
      disk_mib: 2048,
      ssh_pubkeys: [KEY],
      envs: { A: "1" },
      ingress_enabled: true,
      egress: ["example.com:443"],
      auto_pause_after_seconds: 300,
      host_id: "h1",
      region: "local",
      networks: [{ id: "net-1" }],
    },
  );
  assert.deepEqual(forkRequest({}), {});
  assert.deepEqual(forkRequest({ startPaused: true, ingress: false, bandwidthQuota: 10, env: { X: "y" } }), {
    start_paused: true,
    ingress_enabled: false,
    bandwidth_quota_bytes: 10,
    envs: { X: "y" },
  });
});

test("flag parsers: K=V, ports, on/off, ssh keys literal or from a file", async () => {
  assert.deepEqual(collectEnv("B=x=y", collectEnv("A=1")), { A: "1", B: "x=y" });
  assert.throws(() => collectEnv("nokey"), InvalidArgumentError);
  assert.throws(() => collectEnv("=v"), InvalidArgumentError);
  assert.equal(port("0"), 0);
  assert.throws(() => port("70000"), InvalidArgumentError);
  assert.throws(() => port("-1"), InvalidArgumentError);
  assert.equal(onOff("on"), true);
  assert.equal(onOff("OFF"), false);
  assert.throws(() => onOff("maybe"), InvalidArgumentError);
  assert.equal(autoPauseValue("off"), null);
  assert.equal(autoPauseValue("600"), 600);
  assert.throws(() => autoPauseValue("soon"), CliError);

  const dir = await mkdtemp(join(tmpdir(), "hutch-cli-"));
  try {
    const file = join(dir, "keys.pub");
    await writeFile(file, `# comment\n${KEY}\n\nssh-rsa AAAAB3Nza other\n`);
    assert.deepEqual(collectSshKeys(file, collectSshKeys(KEY)), [KEY, KEY, "ssh-rsa AAAAB3Nza other"]);
    assert.throws(() => collectSshKeys(join(dir, "missing.pub")), InvalidArgumentError);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("shell frames: [type u8][len u32 BE][payload]; resize carries rows then cols as u16 BE", () => {
  assert.deepEqual(dataFrame(Buffer.from("ls\r")), Buffer.from([0, 0, 0, 0, 3, 0x6c, 0x73, 0x0d]));
  assert.deepEqual(resizeFrame(40, 132), Buffer.from([1, 0, 0, 0, 4, 0, 40, 0, 132]));
  assert.deepEqual(resizeFrame(0, 99999).subarray(5), Buffer.from([0, 1, 0xff, 0xff]));
});

test("login's config file is 0600 and the environment wins over it", async () => {
  const home = await mkdtemp(join(tmpdir(), "hutch-home-"));
  try {
    const env = { HOME: home } as NodeJS.ProcessEnv;
    assert.equal(configPath(env), join(home, ".config/hutch/config.json"));
    assert.deepEqual(await loadClientConfig(env), { url: "http://127.0.0.1:8080", apiKey: undefined });
    const prev = process.umask(0o022);
    try {
      await writeConfigFile({ url: "http://example.test:9/", apiKey: "hk_file" }, configPath(env));
    } finally {
      process.umask(prev);
    }
    assert.equal((await stat(configPath(env))).mode & 0o777, 0o600);
    assert.equal((await stat(join(home, ".config/hutch"))).mode & 0o777, 0o700);
    assert.deepEqual(JSON.parse(await readFile(configPath(env), "utf8")), { url: "http://example.test:9/", api_key: "hk_file" });
    assert.deepEqual(await loadClientConfig(env), { url: "http://example.test:9", apiKey: "hk_file" });
    assert.deepEqual(await loadClientConfig({ ...env, HUTCH_API_KEY: "hk_env" }), { url: "http://example.test:9", apiKey: "hk_env" });
    assert.deepEqual(await loadClientConfig({ ...env, HUTCH_URL: "http://127.0.0.1:1" }), { url: "http://127.0.0.1:1", apiKey: "hk_file" });
    await writeFile(configPath(env), "{oops");
    await assert.rejects(loadClientConfig(env), /not valid JSON/);
  } finally {
    await rm(home, { recursive: true, force: true });
  }
});

test("SDK errors become one line with the server's message and the HTTP status", async () => {
  const fake = (status: number, body: unknown) =>
    new CreateosSandboxClient({
      apiKey: "k",
      baseUrl: "http://127.0.0.1:9",
      retry: false,
      fetch: async () => new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } }),
    });
  const fail = await fake(400, { status: "fail", data: { shape: 'unknown shape "x"' } }).createSandbox({ shape: "x" }).catch((e: unknown) => e);
  assert.equal(errorLine(fail), 'shape: unknown shape "x" (HTTP 400)');
  const err = await fake(503, { status: "error", message: "no host capacity", code: 503 }).listSandboxes().catch((e: unknown) => e);
  assert.equal(errorLine(err), "no host capacity (HTTP 503)");
  assert.equal(exitCodeOf(err), 1);
  assert.equal(errorLine(new Error("two\nlines")), "two lines");
  assert.equal(exitCodeOf(new CliError("x", 7)), 7);
});

test("exit codes map into 0..255; a command that could not start is never 0", () => {
  assert.equal(processExitCode(3, false), 3);
  assert.equal(processExitCode(0, true), 127);
  assert.equal(processExitCode(-1, true), 255);
  assert.equal(processExitCode(300, false), 255);
});

test("push targets, path probes, quoting and the ssh command line", () => {
  assert.equal(pushTarget("/a/b.txt", "/root/"), "/root/b.txt");
  assert.equal(pushTarget("/a/b.txt", "/root/c.txt"), "/root/c.txt");
  assert.deepEqual(parseKind("file 123\n"), { kind: "file", size: 123 });
  assert.deepEqual(parseKind("dir 4\n"), { kind: "dir", size: 4096 });
  assert.deepEqual(parseKind("none\n"), { kind: "none", size: undefined });
  assert.equal(shellQuote("plain/path-1.js"), "plain/path-1.js");
  assert.equal(shellQuote("it's here"), `'it'\\''s here'`);
  const args = sshArgs("sb_X", { user: "root", identity: "/k" }, ["uname"], ["/usr/bin/node", "/opt/hutch main.js"], true);
  assert.ok(!args.includes("BatchMode=yes"));
  assert.ok(sshArgs("sb_X", { user: "root" }, [], ["n"], false).includes("BatchMode=yes"), "no prompts without a terminal");
  assert.deepEqual(args.slice(0, 2), ["-o", "ProxyCommand=/usr/bin/node '/opt/hutch main.js' tunnel --stdio sb_X 22"]);
  assert.ok(args.includes("HostKeyAlias=hutch-sb_X"));
  assert.deepEqual(args.slice(-6), ["-i", "/k", "-l", "root", "sb_X", "uname"]);
});

test("Base64Decoder decodes a stream split anywhere, line breaks included", async () => {
  const data = Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 7) % 256));
  const text = data.toString("base64").replace(/(.{76})/g, "$1\n");
  const pieces: string[] = [];
  for (let i = 0; i < text.length; i += 37) pieces.push(text.slice(i, i + 37));
  const out = await buffer(Readable.from(pieces).pipe(new Base64Decoder()));
  assert.deepEqual(out, data);
  await assert.rejects(buffer(Readable.from(["QUJD", "R"]).pipe(new Base64Decoder())), /truncated/);
});

test("the tar size estimate is close to what tar writes", async () => {
  const dir = await mkdtemp(join(tmpdir(), "hutch-tar-"));
  try {
    await mkdir(join(dir, "a/b"), { recursive: true });
    await writeFile(join(dir, "a/b/f1"), Buffer.alloc(100_000, 1));
    await writeFile(join(dir, "f2"), "x");
    await symlink("f2", join(dir, "l"));
    const real = execFileSync("tar", ["-c", "-f", "-", "-C", dir, "."], { maxBuffer: 1 << 24 }).length;
    const est = await estimateTarSize(dir);
    assert.ok(Math.abs(est - real) <= 10240, `estimate ${est} vs tar ${real}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("tables align columns", () => {
  assert.equal(table(["A", "BB"], [["xxx", "y"], ["z", ""]]), "A    BB\nxxx  y\nz\n");
});

test("tarCreate keeps the archive when tar exits before anyone reads it", async () => {
  // A small archive fits in the socket buffer of tar's stdout, so tar exits
  // at once; the archive must still be there for a reader that comes later
  // (push awaits the size estimate before it starts the upload).
  const dir = await mkdtemp(join(tmpdir(), "hutch-tar-"));
  try {
    await mkdir(join(dir, "sub"));
    await writeFile(join(dir, "sub/a.txt"), "hello\n");
    const tar = tarCreate(dir);
    await tar.done; // tar exited and its stdout closed
    await new Promise((r) => setTimeout(r, 20));
    const archive = await buffer(tar.out);
    assert.equal(archive.length % 512, 0);
    assert.ok(archive.length >= 2048, `archive of ${archive.length} bytes`);
    const listed = execFileSync("tar", ["-t", "-f", "-"], { input: archive }).toString().split("\n").sort();
    assert.deepEqual(listed, ["", "./", "./sub/", "./sub/a.txt"]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
