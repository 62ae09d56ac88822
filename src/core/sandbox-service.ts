/**
 * The sandbox lifecycle: create, read, list, patch, destroy, crash handling
 * and start-up recovery. `#transition` is the one place a status changes:
 * it asserts the move, persists it, then reports it.
 */
import { performance } from "node:perf_hooks";
import type { Logger } from "pino";
import { monotonicFactory } from "ulid";
import { isRuntimeError } from "../runtime/errors.js";
import type { MachineSpec, Runtime } from "../runtime/runtime.js";
import type { CoreConfig } from "./core-config.js";
import { admitDisk, diskNeedMib, type DiskAdmission } from "./disk-admission.js";
import { AppError, conflict, internal, invalid, noCapacity, notFound } from "./errors.js";
import { IpPool } from "./ip-pool.js";
import { generateName } from "./name-generator.js";
import { newSandboxRecord } from "./new-sandbox-record.js";
import { UniqueViolationError, type Repositories } from "./repositories.js";
import type { SandboxRecord, StatusPatch } from "./sandbox-record.js";
import type { CreateSandboxInput, PatchSandboxInput } from "./sandbox-input.js";
import { assertTransition, type SandboxStatus } from "./sandbox-state.js";
import { validateCreate, validatePatch, type ValidCreate } from "./sandbox-validator.js";
import { Scheduler, type Reservation } from "./scheduler.js";
import { networkPolicyOf, newSandboxPolicy } from "./network-policy-of.js";
import type { SecretBox } from "./secret-box.js";
import { UserLimits } from "./user-limits.js";

const ulid = monotonicFactory();
const NAME_ATTEMPTS = 8;
const DESTROY_ATTEMPTS = 3;

export interface SandboxServiceDeps {
  repos: Repositories;
  runtime: Runtime;
  secrets: SecretBox;
  config: CoreConfig;
  log: Logger;
  /** The data dir's free space: creates, pauses, forks and resumes are refused (503) when it is short. */
  disk?: DiskAdmission;
}

/** Listener for every persisted status change. */
export type StatusListener = (record: SandboxRecord, from: SandboxStatus) => void;

export class SandboxService {
  readonly scheduler: Scheduler;
  /** Per-user caps and create rate; the fork path admits through it too. */
  readonly limits: UserLimits;
  readonly #repos: Repositories;
  readonly #runtime: Runtime;
  readonly #secrets: SecretBox;
  readonly #config: CoreConfig;
  readonly #log: Logger;
  readonly #pool: IpPool;
  readonly #background = new Set<Promise<unknown>>();
  readonly #listeners: StatusListener[] = [];
  readonly #disk: DiskAdmission | undefined;
  /** Sandboxes whose VM stands still on a full disk (runtime `onStall`), with the reason. */
  readonly #stalled = new Map<string, string>();
  #ready = false;

  constructor(deps: SandboxServiceDeps) {
    this.#repos = deps.repos;
    this.#runtime = deps.runtime;
    this.#secrets = deps.secrets;
    this.#config = deps.config;
    this.#log = deps.log;
    this.#disk = deps.disk;
    this.#pool = new IpPool(deps.config.networkCidr);
    this.scheduler = new Scheduler({
      sandboxes: deps.repos.sandboxes,
      localHostId: deps.config.hostId,
      capacity: () => deps.runtime.capacity(),
      pool: this.#pool,
    });
    this.limits = new UserLimits({ config: deps.config.userLimits, usage: (userId) => deps.repos.sandboxes.liveUsage(userId) });
    // Warm pool VMs wait with an address of this network, held for them: the create that claims one keeps it.
    deps.runtime.useWarmAddresses?.({
      reserve: async () => {
        const r = await this.scheduler.reserve();
        return r && {
          token: r.token, net: { ip: r.ip, mac: r.mac, prefixLen: this.#pool.prefixLen, gateway: this.#pool.gateway, dns: this.#config.dns },
          policy: newSandboxPolicy(r.ip, this.#config.defaultBandwidthQuotaBytes),
        };
      },
      release: (a) => this.scheduler.release({ ip: a.net.ip, token: a.token }),
    });
    deps.runtime.onExit((id, reason) => this.#track(this.#onExit(id, reason)));
    deps.runtime.onStall((id, reason) => this.#track(this.#onStall(id, reason)));
  }

  /** True once {@link recover} finished (readyz). */
  get ready(): boolean {
    return this.#ready;
  }

  /** Registers a listener called after each persisted transition. */
  onStatus(listener: StatusListener): void {
    this.#listeners.push(listener);
  }

  /**
   * Creates a sandbox synchronously: admits and inserts it as `creating`,
   * boots it, and returns it `running`. On a runtime failure the row becomes
   * `failed` and a generic 500 is thrown (the cause is logged).
   */
  async create(userId: string, input: CreateSandboxInput): Promise<SandboxRecord> {
    const started = performance.now();
    const images = await this.#runtime.images();
    const valid = validateCreate(input, {
      region: this.#config.region,
      rootfs: images.images.map((i) => i.name),
      defaultRootfs: images.default,
      disabledRootfs: this.#config.disabledRootfs,
    });
    if (valid.hostId !== undefined && !(await this.#repos.hosts.get(valid.hostId))) {
      throw invalid("host_id", `unknown host "${valid.hostId.slice(0, 80)}"`);
    }
    // Per-user caps (402) and create rate (429), before any VM is claimed.
    await this.limits.admitCreate(userId, valid.shape.memMib);
    // Room for the VM's files in the data dir (503), before a row exists.
    this.admitDisk(diskNeedMib.create(), "a new sandbox");
    // A warm pool VM of this shape, if any, lends its id (its files and tap
    // are named after it) and the address it already has.
    const shape = { rootfs: valid.rootfs, vcpu: valid.shape.vcpu, memMib: valid.shape.memMib, diskMib: valid.diskMib };
    const warm = this.#runtime.claimWarm(shape);
    // Else a VMM started ahead of need, if the runtime keeps one (its id too): the restore skips its start.
    const spare = warm ? undefined : this.#runtime.claimSpare?.(shape);
    const warmId = warm?.id ?? spare;
    let record: SandboxRecord;
    const t: Record<string, number> = {};
    const lap = (what: string) => (t[what] = Math.round((performance.now() - started) * 10) / 10);
    try {
      const reserved = warm?.address ? { ip: warm.address.net.ip, mac: warm.address.net.mac, token: warm.address.token } : undefined;
      record = await this.#insert(userId, valid, warmId ? { id: warmId, ...(reserved ? { reserved } : {}) } : {});
      lap("insertedMs");
    } catch (err) {
      if (warmId) void this.#runtime.destroy(warmId).catch(() => {});
      throw err;
    }
    const spec: MachineSpec = {
      id: record.id,
      name: record.name,
      vcpu: record.vcpu,
      memMib: record.memMib,
      diskMib: record.diskMib,
      rootfs: record.rootfs,
      net: { ip: record.ip, mac: record.mac, prefixLen: this.#pool.prefixLen, gateway: this.#pool.gateway, dns: this.#config.dns },
      envs: valid.envs,
      sshPubkeys: record.sshPubkeys,
    };
    try {
      // Egress rules and counters go in while the VM starts: the guest takes
      // its address only with its identity at the end of create, and runs
      // nothing of the user's before create returns, by when both are done.
      const [policy, started] = await Promise.allSettled([
        this.#runtime.setNetworkPolicy(record.id, networkPolicyOf(record)).then(() => lap("policyMs")),
        this.#runtime.create(spec).then(() => lap("startedMs")),
      ]);
      if (started.status === "rejected") throw started.reason;
      if (policy.status === "rejected") {
        await this.#runtime.destroy(record.id).catch((e: unknown) => this.#log.warn({ err: e, sandbox: record.id }, "could not stop the VM"));
        throw policy.reason;
      }
    } catch (err) {
      this.#log.error({ err, sandbox: record.id }, "sandbox failed to start");
      await this.#transition(record, "failed").catch((e: unknown) => this.#log.error({ err: e, sandbox: record.id }, "could not mark failed"));
      if (isRuntimeError(err, "no_capacity")) throw noCapacity(err);
      throw internal("sandbox failed to start", err);
    }
    const spawnMs = Math.round((performance.now() - started) * 10) / 10;
    const running = await this.settleStall(await this.#transition(record, "running", { runningAt: nowIso(), spawnMs }));
    this.#log.info({ sandbox: record.id, warm: warm !== undefined, ...(spare ? { spare: true } : {}), ...t, spawnMs, doneMs: lap("doneMs") }, "sandbox created");
    return running;
  }

  /** A sandbox the user owns; 404 otherwise. */
  async get(userId: string, id: string): Promise<SandboxRecord> {
    const rec = await this.#repos.sandboxes.getOwned(userId, id);
    if (!rec) throw notFound();
    return rec;
  }

  /** The user's sandboxes, newest first. */
  list(userId: string, q: { status?: SandboxStatus; limit: number; offset: number }) {
    return this.#repos.sandboxes.list({ userId, ...q });
  }

  /** The user's live sandbox with that IP, else the most recent one; 404 when none. */
  async getByIp(userId: string, ip: string): Promise<SandboxRecord> {
    const rows = await this.#repos.sandboxes.findByIp(userId, ip);
    const rec = rows.find((r) => r.status !== "destroyed" && r.status !== "failed") ?? rows[0];
    if (!rec) throw notFound();
    return rec;
  }

  /** Changes only the sent settings; returns the updated sandbox. */
  async patch(userId: string, id: string, input: PatchSandboxInput): Promise<SandboxRecord> {
    const rec = await this.get(userId, id);
    const changes = validatePatch(input);
    if (Object.keys(changes).length === 0) return rec;
    const now = nowIso();
    await this.#repos.sandboxes.updateSettings(id, changes, now);
    return { ...rec, ...changes, updatedAt: now };
  }

  /**
   * Starts destroying a sandbox and answers at once (`destroying`); the VM is
   * removed in the background and the row ends `destroyed`. Idempotent.
   */
  async destroy(userId: string, id: string): Promise<{ id: string; status: "destroying" | "destroyed" }> {
    const rec = await this.get(userId, id);
    switch (rec.status) {
      case "destroyed":
      case "destroying":
        return { id, status: rec.status };
      case "failed": {
        // Nothing runs; clean up leftovers and close the record.
        await this.#runtime.destroy(id).catch((err: unknown) => this.#log.warn({ err, sandbox: id }, "cleanup of failed sandbox"));
        await this.#transition(rec, "destroyed", { destroyedAt: nowIso() });
        return { id, status: "destroyed" };
      }
      case "creating":
      case "forking":
        throw conflict("status", `sandbox is ${rec.status}; retry once it settles`);
      default: {
        const next = await this.#transition(rec, "destroying");
        this.#track(this.#finishDestroy(next));
        return { id, status: "destroying" };
      }
    }
  }

  /**
   * Records activity on a running sandbox (exec, files, tunnel, shell or
   * ingress traffic). Auto-pause (issue 4) counts idle time from the last
   * call; until then it does nothing. Cheap and synchronous: callers may call
   * it per chunk, but throttle when they can.
   */
  touch(id: string): void {
    this.lastActivity.set(id, Date.now());
  }

  /** Time of the last {@link touch} per sandbox id (ms since epoch): auto-pause reads it. */
  readonly lastActivity = new Map<string, number>();

  /**
   * The shared status change (assert, persist if still `rec.status`,
   * report), for the other core services that drive a lifecycle
   * (pause/resume/fork in snapshot-service.ts). Throws a 409 AppError when
   * the row moved meanwhile.
   */
  transition(rec: SandboxRecord, to: SandboxStatus, patch: StatusPatch = {}): Promise<SandboxRecord> {
    return this.#transition(rec, to, patch);
  }

  /** What the runtime needs to (re)start `rec`: its shape and identity, envs decrypted. */
  specOf(rec: SandboxRecord): MachineSpec {
    return {
      id: rec.id,
      name: rec.name,
      vcpu: rec.vcpu,
      memMib: rec.memMib,
      diskMib: rec.diskMib,
      rootfs: rec.rootfs,
      net: { ip: rec.ip, mac: rec.mac, prefixLen: this.#pool.prefixLen, gateway: this.#pool.gateway, dns: this.#config.dns },
      envs: this.envsOf(rec),
      sshPubkeys: rec.sshPubkeys,
    };
  }

  /**
   * Throws a 503 (`no_disk_space`) unless the data dir has `needMib` free
   * above its floor for `what`. No check when the server has none configured.
   */
  admitDisk(needMib: number, what: string): void {
    admitDisk(this.#disk, needMib, what);
  }

  /** Why sandbox `id`'s VM stands still (its disk write found the host's disk full), if it does. */
  stallReason(id: string): string | undefined {
    return this.#stalled.get(id);
  }

  /** Forgets `id`'s stall: its VM was continued (a later stall is reported again). */
  clearStall(id: string): void {
    this.#stalled.delete(id);
  }

  /**
   * A sandbox that just became `running` but whose VM stalled meanwhile
   * (reported while it was creating/resuming) moves on to `error`.
   */
  async settleStall(rec: SandboxRecord): Promise<SandboxRecord> {
    if (rec.status !== "running" || !this.#stalled.has(rec.id)) return rec;
    this.#log.warn({ sandbox: rec.id, reason: this.#stalled.get(rec.id) }, "sandbox stalled: its disk is full");
    return this.#transition(rec, "error");
  }

  /**
   * Admits and inserts the row of a fork's child (a new name and IP, no
   * memory admitted: it starts paused), built by `build` from its placement.
   */
  insertChild(userId: string, valid: ValidCreate, build: (base: SandboxRecord) => SandboxRecord, id?: string): Promise<SandboxRecord> {
    return this.#insert(userId, valid, { admitMib: 0, build, ...(id !== undefined ? { id } : {}) });
  }

  /** Per-status counts for whoami. */
  async stats(userId: string): Promise<{ running: number; paused: number; other: number; total: number }> {
    const counts = await this.#repos.sandboxes.countByStatus(userId);
    let running = 0;
    let paused = 0;
    let other = 0;
    for (const [status, n] of Object.entries(counts) as Array<[SandboxStatus, number]>) {
      if (status === "running") running += n;
      else if (status === "paused") paused += n;
      else if (status !== "destroyed") other += n;
    }
    return { running, paused, other, total: running + paused + other };
  }

  /**
   * Called once at start-up: re-attaches to VMs that should exist and settles
   * every transient status, so nothing stays stuck after a restart.
   */
  async recover(): Promise<void> {
    const rows = await this.#repos.sandboxes.listByStatus(["creating", "running", "pausing", "resuming", "forking", "destroying", "paused", "error"]);
    // Everything whose VM (or its files: a paused bundle) should still exist;
    // the runtime removes whatever else it finds.
    const keep = rows.filter((r) => r.status !== "creating" && r.status !== "destroying");
    const found = await this.#runtime.reconcile(keep.map((r) => r.id));
    const alive = new Set(found.filter((m) => !m.paused).map((m) => m.id));
    // Complete snapshots on disk (a pause or fork that finished, a resume that did not start).
    const paused = new Set(found.filter((m) => m.paused).map((m) => m.id));
    // VMs alive but standing still on a full disk: `error` until resumed.
    for (const m of found) if (m.stalled) this.#stalled.set(m.id, m.stalled);
    for (const rec of rows) {
      try {
        switch (rec.status) {
          case "creating":
            await this.#runtime.destroy(rec.id);
            await this.#transition(rec, "failed");
            break;
          case "destroying":
            await this.#finishDestroy(rec);
            break;
          case "running":
            if (!alive.has(rec.id)) await this.#transition(rec, "failed");
            else await this.settleStall(rec);
            break;
          case "pausing":
          case "resuming":
            if (paused.has(rec.id)) await this.#transition(rec, "paused", rec.status === "pausing" ? { pausedAt: nowIso() } : {});
            else if (!alive.has(rec.id)) await this.#transition(rec, "failed");
            // Stalled on a full disk: it did not resume (or stopped since).
            else if (this.#stalled.has(rec.id)) await this.#transition(rec, "error");
            else await this.#transition(rec, "running", rec.status === "resuming" ? { lastResumedAt: nowIso() } : {});
            break;
          case "forking":
            // A source (its snapshot intact) or a whole child is paused; a half-made child is gone.
            await this.#transition(rec, paused.has(rec.id) ? "paused" : "failed", paused.has(rec.id) && !rec.pausedAt ? { pausedAt: nowIso() } : {});
            break;
          case "paused":
          case "error":
            if (!paused.has(rec.id) && !alive.has(rec.id)) await this.#transition(rec, "failed");
            break;
          default:
            break;
        }
      } catch (err) {
        this.#log.error({ err, sandbox: rec.id, status: rec.status }, "recovery of sandbox failed");
      }
    }
    this.#log.info({ checked: rows.length, alive: alive.size }, "recovered sandboxes");
    this.#ready = true;
  }

  /** Waits for background work (destroys, exit handling) to finish. */
  async close(): Promise<void> {
    while (this.#background.size > 0) await Promise.allSettled([...this.#background]);
  }

  /** Decrypted envs of a sandbox (only for the runtime; never log them). */
  envsOf(rec: SandboxRecord): Record<string, string> {
    return rec.envsSealed ? (JSON.parse(this.#secrets.open(rec.envsSealed)) as Record<string, string>) : {};
  }

  async #insert(
    userId: string,
    valid: ValidCreate,
    opts: { id?: string; admitMib?: number; reserved?: Reservation; build?: (base: SandboxRecord) => SandboxRecord } = {},
  ): Promise<SandboxRecord> {
    const envKeys = Object.keys(valid.envs);
    const envsSealed = envKeys.length > 0 ? this.#secrets.seal(JSON.stringify(valid.envs)) : null;
    for (let attempt = 0; ; attempt++) {
      const name = valid.name ?? generateName(attempt >= 3);
      try {
        const req = { memMib: opts.admitMib ?? valid.shape.memMib, ...(valid.hostId ? { hostId: valid.hostId } : {}), ...(opts.reserved ? { reserved: opts.reserved } : {}) };
        return await this.scheduler.admit(req, async (p) => {
          // The exact per-user cap check: inside the one serialization that inserts rows.
          await this.limits.checkQuota(userId, valid.shape.memMib);
          const base = newSandboxRecord({
            id: opts.id ?? `sb_${ulid()}`,
            userId,
            name,
            valid,
            placement: p,
            envKeys,
            envsSealed,
            bandwidthQuotaBytes: this.#config.defaultBandwidthQuotaBytes,
            now: nowIso(),
          });
          const record = opts.build ? opts.build(base) : base;
          await this.#repos.sandboxes.insert(record);
          this.#log.info({ sandbox: record.id, name, ip: record.ip, user: userId }, "sandbox status creating");
          return record;
        });
      } catch (err) {
        if (!(err instanceof UniqueViolationError)) throw err;
        if (err.target === "name" && valid.name !== undefined) throw conflict("name", `name "${valid.name}" is already in use`);
        if (attempt + 1 >= NAME_ATTEMPTS) throw internal("could not allocate a unique name/IP", err);
      }
    }
  }

  /** The only place a status changes: assert, persist (if still `from`), report. */
  async #transition(rec: SandboxRecord, to: SandboxStatus, patch: StatusPatch = {}): Promise<SandboxRecord> {
    assertTransition(rec.status, to);
    const now = nowIso();
    const ok = await this.#repos.sandboxes.updateStatus(rec.id, rec.status, to, patch, now);
    if (!ok) {
      const current = await this.#repos.sandboxes.get(rec.id);
      throw new AppError("conflict", `sandbox moved to ${current?.status ?? "unknown"}`, { status: `sandbox is ${current?.status ?? "gone"}` });
    }
    const next: SandboxRecord = { ...rec, ...patch, status: to, updatedAt: now };
    this.#log.info({ sandbox: rec.id, from: rec.status, to }, `sandbox status ${to}`);
    for (const l of this.#listeners) l(next, rec.status);
    return next;
  }

  async #finishDestroy(rec: SandboxRecord): Promise<void> {
    this.#stalled.delete(rec.id);
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#runtime.destroy(rec.id);
        break;
      } catch (err) {
        this.#log.error({ err, sandbox: rec.id, attempt }, "runtime destroy failed");
        if (attempt >= DESTROY_ATTEMPTS) {
          await this.#transition(rec, "failed");
          return;
        }
        await new Promise((r) => setTimeout(r, 200 * attempt));
      }
    }
    await this.#transition(rec, "destroyed", { destroyedAt: nowIso() });
  }

  async #onExit(id: string, reason: string): Promise<void> {
    const rec = await this.#repos.sandboxes.get(id);
    // An `error` sandbox whose VM stood still on a full disk had only that VM: it is gone now.
    const stalled = this.#stalled.delete(id);
    if (!rec) return;
    if (rec.status === "running" || rec.status === "pausing" || rec.status === "resuming" || (rec.status === "error" && stalled)) {
      this.#log.warn({ sandbox: id, reason }, "sandbox VM exited unexpectedly");
      await this.#transition(rec, "failed");
    }
  }

  /**
   * The runtime's VM stands still because its disk write found the host's
   * data dir full: a running sandbox moves to `error` (exec and files answer
   * 409). One still creating or resuming is settled when that ends
   * (`settleStall`); a pausing one when its pause fails.
   */
  async #onStall(id: string, reason: string): Promise<void> {
    this.#stalled.set(id, reason);
    const rec = await this.#repos.sandboxes.get(id);
    if (!rec) return;
    this.#log.warn({ sandbox: id, status: rec.status, reason }, "sandbox VM stopped: the host's data disk is full");
    if (rec.status === "running") await this.#transition(rec, "error");
  }

  #track(p: Promise<unknown>): void {
    const tracked = p
      .catch((err: unknown) => this.#log.error({ err }, "background task failed"))
      .finally(() => this.#background.delete(tracked));
    this.#background.add(tracked);
  }
}

/** Current time, RFC 3339 UTC with milliseconds. */
export function nowIso(): string {
  return new Date().toISOString();
}
