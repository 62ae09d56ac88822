/**
 * Black-box tests of hutch-agent's file channels: the real binary on the
 * host (--no-init), files under a temp directory.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";

import type { AgentClient } from "../../src/runtime/agent/agent-client.js";
import { isRuntimeError } from "../../src/runtime/errors.js";
import { AgentHarness } from "./agent-harness.js";

async function readAll(s: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

describe("hutch-agent files", () => {
  const h = new AgentHarness();
  let client: AgentClient;
  let root: string;

  before(async () => {
    await h.start();
    client = await h.client();
    root = path.join(h.dir, "files");
    mkdirSync(root);
  });
  after(async () => {
    client?.close();
    await h.stop();
  });

  it("round-trips a 5 MiB file in chunks, creating parents", async () => {
    const data = randomBytes(5 * 1024 * 1024);
    const target = path.join(root, "a/b/c/data.bin");
    // Many small chunks from a stream, as an HTTP body would arrive.
    const chunks = Array.from({ length: 80 }, (_, i) => data.subarray(i * 65536, (i + 1) * 65536));
    await client.writeFile(target, Readable.from(chunks));
    assert.equal(sha(readFileSync(target)), sha(data));
    assert.equal(statSync(path.join(root, "a/b")).mode & 0o777, 0o755);
    assert.equal(statSync(target).mode & 0o777, 0o644);
    assert.deepEqual(readdirSync(path.dirname(target)), ["data.bin"], "no temp file left");
    const back = await readAll(await client.readFile(target));
    assert.equal(sha(back), sha(data));
  });

  it("writes with a mode and replaces an existing file", async () => {
    const target = path.join(root, "script.sh");
    writeFileSync(target, "old contents that are longer\n");
    await client.writeFile(target, Readable.from([Buffer.from("#!/bin/sh\necho hi\n")]), 0o755);
    assert.equal(readFileSync(target, "utf8"), "#!/bin/sh\necho hi\n");
    assert.equal(statSync(target).mode & 0o777, 0o755);
  });

  it("writes and reads an empty file", async () => {
    const target = path.join(root, "empty");
    await client.writeFile(target, Readable.from([]));
    assert.equal(statSync(target).size, 0);
    assert.equal((await readAll(await client.readFile(target))).length, 0);
  });

  it("rejects a missing file with not_found", async () => {
    await assert.rejects(client.readFile(path.join(root, "nope")), (e) => isRuntimeError(e, "not_found"));
  });

  it("rejects relative paths with invalid_path", async () => {
    await assert.rejects(client.writeFile("relative/x", Readable.from([Buffer.from("x")])), (e) => isRuntimeError(e, "invalid_path"));
    await assert.rejects(client.readFile("relative/x"), (e) => isRuntimeError(e, "invalid_path"));
  });

  it("rejects reading or writing a directory with invalid_path", async () => {
    await assert.rejects(client.readFile(root), (e) => isRuntimeError(e, "invalid_path"));
    await assert.rejects(client.writeFile(root, Readable.from([Buffer.from("x")])), (e) => isRuntimeError(e, "invalid_path"));
  });

  it("rejects a path through a regular file with invalid_path", async () => {
    writeFileSync(path.join(root, "plain"), "x");
    await assert.rejects(client.writeFile(path.join(root, "plain/child"), Readable.from([Buffer.from("x")])), (e) => isRuntimeError(e, "invalid_path"));
  });

  it("reads at the consumer's pace (credit) without stalling other channels", async () => {
    const data = randomBytes(3 * 1024 * 1024);
    const target = path.join(root, "slow.bin");
    writeFileSync(target, data);
    const stream = await client.readFile(target);
    // Nobody reads for a while: the agent stops at its window; others still work.
    await new Promise((r) => setTimeout(r, 200));
    await client.ping(2000);
    const other = await readAll(await client.readFile(path.join(root, "script.sh")));
    assert.equal(other.toString(), "#!/bin/sh\necho hi\n");
    assert.equal(sha(await readAll(stream)), sha(data));
  });

  it("cancels a read when the stream is destroyed", async () => {
    const target = path.join(root, "cancel.bin");
    writeFileSync(target, randomBytes(2 * 1024 * 1024));
    const stream = await client.readFile(target);
    stream.destroy();
    await client.ping(2000);
  });

  it("does not leave a temp file when the source stream fails", async () => {
    const dir = path.join(root, "failing");
    const source = new Readable({ read() {} });
    const p = client.writeFile(path.join(dir, "f"), source);
    source.push(Buffer.alloc(1000));
    setTimeout(() => source.destroy(new Error("client went away")), 50);
    await assert.rejects(p, /client went away/);
    await client.ping(2000);
    assert.deepEqual(readdirSync(dir), []);
  });
});
