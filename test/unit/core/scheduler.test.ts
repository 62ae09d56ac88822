/**
 * Scheduler: addresses held for warm pool VMs are never handed to another
 * sandbox, go to the create that brings the holder's token, and come back
 * on release (only the holder's release counts).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { IpPool } from "../../../src/core/ip-pool.js";
import type { SandboxRepository } from "../../../src/core/repositories.js";
import type { SandboxStatus } from "../../../src/core/sandbox-state.js";
import { Scheduler, type Reservation } from "../../../src/core/scheduler.js";

function setup(cidr = "10.9.0.0/29") {
  const rows: Array<{ ip: string; memMib: number; status: SandboxStatus }> = [];
  const sandboxes = { liveOnHost: async () => rows } as unknown as SandboxRepository;
  const scheduler = new Scheduler({ sandboxes, localHostId: "local", capacity: () => ({ memMib: 100_000, vcpus: 2 }), pool: new IpPool(cidr) });
  const create = (reserved?: Reservation) =>
    scheduler.admit({ memMib: 256, ...(reserved ? { reserved } : {}) }, async (p) => {
      rows.push({ ip: p.ip, memMib: 256, status: "creating" });
      return p;
    });
  return { rows, scheduler, create };
}

describe("Scheduler address reservations", () => {
  it("keeps a held address from other creates and gives it to the holder's", async () => {
    const { scheduler, create } = setup();
    const held = await scheduler.reserve();
    assert.deepEqual(held && { ip: held.ip, mac: held.mac }, { ip: "10.9.0.2", mac: "02:fc:0a:09:00:02" });
    assert.equal((await create()).ip, "10.9.0.3", "another create skips the held address");
    assert.equal((await create(held)).ip, "10.9.0.2", "the holder's create gets it");
    // Taken by a row now: a late release of the holder changes nothing, the row keeps counting.
    scheduler.release(held!);
    assert.equal((await create()).ip, "10.9.0.4");
  });

  it("gives an address back on release; a stale or foreign token neither frees nor takes it", async () => {
    const { scheduler, create } = setup();
    const a = (await scheduler.reserve())!;
    scheduler.release({ ip: a.ip, token: "not-the-holder" });
    assert.equal((await create()).ip, "10.9.0.3", "still held after a foreign release");
    assert.equal((await create({ ...a, token: "forged" })).ip, "10.9.0.4", "a forged token gets a fresh address");
    scheduler.release(a);
    assert.equal((await create()).ip, "10.9.0.2", "free again after the holder's release");
    assert.equal((await create(a)).ip, "10.9.0.5", "a released reservation is not honoured");
  });

  it("returns undefined when the network has no free address, and never double-books", async () => {
    const { scheduler, create } = setup(); // /29: .2 to .6 usable
    const held = await Promise.all([scheduler.reserve(), scheduler.reserve(), scheduler.reserve()]);
    assert.deepEqual(held.map((h) => h?.ip), ["10.9.0.2", "10.9.0.3", "10.9.0.4"]);
    await create();
    await create();
    assert.equal(await scheduler.reserve(), undefined);
    await assert.rejects(create(), /capacity/i);
  });
});
