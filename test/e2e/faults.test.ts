/**
 * Faults with the jailed VMM: a QEMU SIGKILLed from outside, and a guest
 * that writes garbage into the agent's channel. The affected sandbox ends
 * `failed`, the server and the other sandboxes are untouched, and the dead
 * VM leaves no process, directory, tap, cgroup or jail record behind.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type { Sandbox } from "@nodeops-createos/sandbox";
import { api, startServer, waitFor, type TestServer } from "./support/server.js";
import { VmHost } from "./support/vm-host.js";

const run = promisify(execFile);
const MINIMAL = { shape: "s-1vcpu-256mb", rootfs: "minimal:1", disk_mib: 1024 } as const;

/**
 * Runs inside the guest as root: takes the agent's (PID 1's) open virtio
 * port with pidfd_getfd (a second open() of a port is EBUSY) and writes
 * random bytes into it, as a broken or hostile agent would.
 */
const GARBAGE_C = `
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(void) {
  int pidfd = syscall(434 /* pidfd_open */, 1, 0);
  if (pidfd < 0) { perror("pidfd_open"); return 1; }
  DIR *d = opendir("/proc/1/fd");
  struct dirent *e;
  int target = -1;
  char p[64], l[256];
  while (d && (e = readdir(d))) {
    snprintf(p, sizeof p, "/proc/1/fd/%s", e->d_name);
    ssize_t n = readlink(p, l, sizeof l - 1);
    if (n > 0) { l[n] = 0; if (strncmp(l, "/dev/vport", 10) == 0) { target = atoi(e->d_name); break; } }
  }
  if (target < 0) { fprintf(stderr, "no vport fd in pid 1\\n"); return 1; }
  int fd = syscall(438 /* pidfd_getfd */, pidfd, target, 0);
  if (fd < 0) { perror("pidfd_getfd"); return 1; }
  int r = open("/dev/urandom", O_RDONLY);
  char buf[4096];
  long total = 0;
  for (int i = 0; i < 2000 && total < (1 << 20); i++) {
    if (read(r, buf, sizeof buf) != sizeof buf) break;
    ssize_t w = write(fd, buf, sizeof buf);
    if (w > 0) total += w; else usleep(1000);
  }
  printf("wrote %ld bytes of garbage\\n", total);
  return 0;
}
`;

describe("faults (minimal:1, jailed)", () => {
  let server: TestServer;
  let killed: Sandbox;
  let garbled: Sandbox;
  let bystander: Sandbox;
  let work: string;
  let vm: VmHost;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), "hutch-faults-"));
    await writeFile(join(work, "garbage.c"), GARBAGE_C);
    await run("gcc", ["-static", "-O1", "-o", join(work, "garbage"), join(work, "garbage.c")]);
    server = await startServer();
    vm = new VmHost(server);
    const made = await Promise.all([0, 1, 2].map(() => server.client.createSandbox(MINIMAL)));
    [killed, garbled, bystander] = made as [Sandbox, Sandbox, Sandbox];
  });
  after(async () => {
    await server?.dispose();
    await rm(work, { recursive: true, force: true });
  });

  test("SIGKILL of one QEMU: that sandbox fails and leaves nothing; the others work on", async () => {
    const pid = await vm.pidOf(killed.id);
    const tap = await vm.tapOf(killed.id);
    const mem = await vm.memCgroupOf(pid);
    process.kill(pid, "SIGKILL");
    await waitFor(async () => ((await vm.status(killed.id)) === "failed" ? true : undefined), 15_000, "failed");
    await vm.assertNoLeftovers(killed.id, pid, tap, mem);
    assert.equal((await bystander.sh("echo still-here")).result.stdout.trim(), "still-here");
    assert.equal((await garbled.sh("echo me-too")).result.stdout.trim(), "me-too");
  });

  test("a guest writing garbage into the agent channel: that sandbox fails, the server and the others are unaffected", async () => {
    const pid = await vm.pidOf(garbled.id);
    const tap = await vm.tapOf(garbled.id);
    const mem = await vm.memCgroupOf(pid);
    await garbled.files.upload("/tmp/garbage", await readFile(join(work, "garbage")));
    // In the background, after the exec's answer went out: only garbage follows it.
    await garbled.sh("chmod +x /tmp/garbage; (sleep 0.3; /tmp/garbage > /tmp/garbage.log 2>&1) &");
    await new Promise((r) => setTimeout(r, 3000));
    assert.equal(server.proc.exitCode, null, "the server is alive");
    assert.equal((await fetch(`${server.url}/readyz`)).status, 200);
    assert.equal((await bystander.sh("echo unaffected")).result.stdout.trim(), "unaffected");
    // A broken agent channel leaves a VM nobody can use: it is ended and the sandbox failed.
    await waitFor(async () => ((await vm.status(garbled.id)) === "failed" ? true : undefined), 30_000, "failed");
    await vm.assertNoLeftovers(garbled.id, pid, tap, mem);
    const late = await api(server, "POST", `/v1/sandboxes/${garbled.id}/exec`, { cmd: "true" });
    assert.equal(late.status, 409, "exec on the failed sandbox");
    assert.equal((await bystander.sh("echo still-unaffected")).result.stdout.trim(), "still-unaffected");
  });
});
