/**
 * A full data disk, for real: the server's data dir is a small tmpfs of its
 * own, filled from the host until little is left; a guest then writes more
 * than that. Its VM stops (werror=enospc: the write waits, nothing is lost),
 * the sandbox goes `error`, another sandbox and the API work on, creates are
 * refused with a clear 503. With the space back, resume continues the same
 * VM: its file is complete and it runs. Destroying both leaves nothing of
 * theirs on the tmpfs.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { statfsSync } from "node:fs";
import { mkdir, readdir, rm, rmdir } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import type { Sandbox } from "@nodeops-createos/sandbox";
import { api, startServer, waitFor, type TestServer } from "./support/server.js";

const run = promisify(execFile);
const MIB = 1024 * 1024;
const MINIMAL = { shape: "s-1vcpu-256mb", rootfs: "minimal:1", disk_mib: 1024 } as const;
/** Left free on the tmpfs by the filler: less than the guest writes, less than a create needs. */
const LEFT_MIB = 8;
/** What the guest writes (then syncs): more than is left, and more than the first bit of space given back. */
const WRITE_MIB = 40;
/** The floor (HUTCH_MIN_FREE_MIB) and the database's reserve (HUTCH_DISK_RESERVE_MIB). */
const FLOOR_MIB = 16;
const RESERVE_MIB = 4;

describe("full data disk (minimal:1, tmpfs data dir)", () => {
  const mnt = `/tmp/hdf-${randomBytes(3).toString("hex")}`;
  const data = join(mnt, "d");
  const filler = join(mnt, "filler");
  let mounted = false;
  let server: TestServer | undefined;
  let filling: Sandbox;
  let bystander: Sandbox;
  const status = async (id: string) => (await api(server!, "GET", `/v1/sandboxes/${id}`)).json?.data?.status as string;
  const freeMib = () => {
    const s = statfsSync(mnt);
    return (s.bavail * s.bsize) / MIB;
  };

  before(async () => {
    await mkdir(mnt, { mode: 0o700 });
    await run("mount", ["-t", "tmpfs", "-o", "size=160m,mode=0700", "hutch-disk-full", mnt]);
    mounted = true;
    server = await startServer({
      HUTCH_DATA_DIR: data,
      HUTCH_MIN_FREE_MIB: String(FLOOR_MIB),
      HUTCH_DISK_RESERVE_MIB: String(RESERVE_MIB),
      HUTCH_POOL_SIZE: "0",
      HUTCH_TEMPLATES: "off",
    });
    [filling, bystander] = (await Promise.all([0, 1].map(() => server!.client.createSandbox(MINIMAL)))) as [Sandbox, Sandbox];
  });

  after(async () => {
    await server?.dispose();
    await rm(filler, { force: true });
    if (mounted) await run("umount", [mnt]).catch(() => run("umount", ["-l", mnt]));
    await rmdir(mnt).catch(() => {});
  });

  test("a guest filling the disk: error with nothing lost, others untouched, creates refused; kept over a restart; resume with space back", async () => {
    const s = server!;
    // The data, made in guest RAM (/run is a tmpfs) before the disk is full: its checksum is known.
    const made = await filling.sh(`head -c ${WRITE_MIB * MIB} /dev/urandom > /run/src && sha256sum /run/src`);
    const sum = made.result.stdout.split(/\s+/)[0]!;
    assert.match(sum, /^[0-9a-f]{64}$/);
    // Leave LEFT_MIB free (the reserve is held besides).
    await run("fallocate", ["-l", String(Math.floor((freeMib() - LEFT_MIB) * MIB)), filler]);
    assert.ok(freeMib() <= LEFT_MIB + 1, `${freeMib()} MiB free`);

    // In the background of the guest: it outlives the exec (and the server restart below).
    await filling.sh("(cp /run/src /root/big && sync && echo done > /run/done) > /dev/null 2>&1 &");
    await waitFor(async () => ((await status(filling.id)) === "error" ? true : undefined), 30_000, "error");
    assert.match(s.output(), /the host's data disk is full/, "the reason is logged");
    const ex = await api(s, "POST", `/v1/sandboxes/${filling.id}/exec`, { cmd: "true" });
    assert.equal(ex.status, 409);
    assert.equal(ex.json.status, "fail");

    // Everything else works on: the other VM, the API, the database.
    assert.equal((await bystander.sh("echo unaffected")).result.stdout.trim(), "unaffected");
    assert.equal((await fetch(`${s.url}/readyz`)).status, 200);
    assert.equal((await api(s, "GET", "/v1/sandboxes")).status, 200);
    const refused = await api(s, "POST", "/v1/sandboxes", MINIMAL);
    assert.equal(refused.status, 503);
    assert.deepEqual(refused.json, { status: "error", message: "no host capacity: not enough free disk space on the host", code: 503 });

    // Still full: a resume is refused before anything is tried.
    const early = await api(s, "POST", `/v1/sandboxes/${filling.id}/resume`);
    assert.equal(early.status, 503);
    assert.equal(await status(filling.id), "error");
    // Some space back, less than the waiting writes need: continued, it stalls again.
    const stalls = () => s.output().split("its disk write found the data dir full").length;
    const stallsBefore = stalls();
    await run("truncate", ["-s", `-${FLOOR_MIB + RESERVE_MIB + 8}M`, filler]);
    const again = await api(s, "POST", `/v1/sandboxes/${filling.id}/resume`);
    assert.equal(again.status, 202, again.text);
    await waitFor(async () => (stalls() > stallsBefore ? true : undefined), 30_000, "a second stall");
    await waitFor(async () => ((await status(filling.id)) === "error" ? true : undefined), 30_000, "error again");

    // A server restart finds the VM stopped on its full disk and keeps it so.
    await s.stop();
    await s.restart();
    assert.match(s.output(), /re-attached VM is stopped on a full disk/);
    assert.equal(await status(filling.id), "error");
    assert.equal((await bystander.sh("echo after-restart")).result.stdout.trim(), "after-restart");

    // Space back: resume continues the same VM, the waiting writes land.
    await rm(filler);
    const r = await api(s, "POST", `/v1/sandboxes/${filling.id}/resume`);
    assert.equal(r.status, 202, r.text);
    await waitFor(async () => ((await status(filling.id)) === "running" ? true : undefined), 30_000, "running");
    await waitFor(async () => ((await filling.sh("cat /run/done 2>/dev/null")).result.stdout.includes("done") ? true : undefined), 30_000, "the copy synced");
    // Read back from the disk, not the page cache.
    const reread = (await filling.sh("echo 3 > /proc/sys/vm/drop_caches; sha256sum /root/big; stat -c %s /root/big")).result.stdout;
    assert.equal(reread.split(/\s+/)[0], sum, "the file is complete");
    assert.match(reread, new RegExp(`^${WRITE_MIB * MIB}$`, "m"));
    assert.equal((await filling.sh("echo works")).result.stdout.trim(), "works");
  });

  test("destroying both leaves nothing of theirs on the tmpfs", async () => {
    const s = server!;
    for (const sb of [filling, bystander]) await api(s, "DELETE", `/v1/sandboxes/${sb.id}`);
    for (const sb of [filling, bystander]) {
      await waitFor(async () => ((await status(sb.id)) === "destroyed" ? true : undefined), 30_000, `${sb.id} destroyed`);
    }
    assert.deepEqual(await readdir(join(data, "sandboxes")), []);
    assert.deepEqual((await readdir(join(data, "jail")).catch(() => [])).filter((f) => f.startsWith("sb_")), []);
    // The database, the server's key files, the ingress socket and the disk reserve remain.
    const left = (await readdir(data)).filter((f) => !/^(hutch\.db(-wal|-shm)?|secret\.key|api-key|ingress\.sock|disk-reserve|sandboxes|jail)$/.test(f));
    assert.deepEqual(left, []);
    assert.deepEqual(await readdir(mnt), ["d"]);
  });
});
