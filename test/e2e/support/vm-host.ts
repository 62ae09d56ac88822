/**
 * A sandbox's VM as the host sees it, for fault tests: its directory, QEMU
 * pid, tap, memory cgroup and jail record, and the check that none of them
 * is left once the VM is gone.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { api, waitFor, type TestServer } from "./server.js";

const run = promisify(execFile);

/** Host-side views of `server`'s sandboxes. */
export class VmHost {
  constructor(private readonly server: TestServer) {}

  dir(id: string): string {
    return join(this.server.dataDir, "sandboxes", id);
  }

  async pidOf(id: string): Promise<number> {
    return Number((await readFile(join(this.dir(id), "qemu.pid"), "utf8")).trim());
  }

  async tapOf(id: string): Promise<string> {
    return (JSON.parse(await readFile(join(this.dir(id), "meta.json"), "utf8")) as { tap: string }).tap;
  }

  async status(id: string): Promise<string> {
    return (await api(this.server, "GET", `/v1/sandboxes/${id}`)).json?.data?.status as string;
  }

  /** The v1 memory cgroup directory of process `pid`. */
  async memCgroupOf(pid: number): Promise<string> {
    const line = (await readFile(`/proc/${pid}/cgroup`, "utf8")).split("\n").find((l) => l.split(":")[1] === "memory");
    return join("/sys/fs/cgroup/memory", line!.split(":")[2]!);
  }

  /** Nothing of a dead VM is left: process, directory, tap, cgroup, jail record. */
  async assertNoLeftovers(id: string, pid: number, tap: string, memCgroup: string): Promise<void> {
    await waitFor(async () => (existsSync(this.dir(id)) ? undefined : true), 10_000, `${id}'s directory removed`);
    await waitFor(async () => (existsSync(`/proc/${pid}`) ? undefined : true), 5000, `VMM ${pid} gone`);
    const link = await run("ip", ["-n", this.server.netns, "link", "show", "dev", tap]).then(() => "present", () => "gone");
    assert.equal(link, "gone", `tap ${tap}`);
    assert.ok(!existsSync(memCgroup), `cgroup ${memCgroup}`);
    assert.ok(!(await readdir(join(this.server.dataDir, "jail"))).some((f) => f.startsWith(id)), "no jail record");
  }
}
