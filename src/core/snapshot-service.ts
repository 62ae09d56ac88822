/**
 * Pause, resume, fork and auto-pause of sandboxes (issue 4), on top of the
 * runtime's snapshots. Every status change goes through
 * `SandboxService.transition` (the one transition function): persist the
 * in-between status (`pausing`, `resuming`, `forking`), act, persist the
 * result (or `running`/`error`/`failed` when the act failed).
 */
import type { Logger } from "pino";
import { isRuntimeError } from "../runtime/errors.js";
import type { Runtime } from "../runtime/runtime.js";
import { diskNeedMib } from "./disk-admission.js";
import { validateEgressRule } from "./egress-rule.js";
import { AppError, conflict, internal, invalid, noCapacity } from "./errors.js";
import { networkPolicyOf } from "./network-policy-of.js";
import type { Repositories } from "./repositories.js";
import type { SandboxRecord } from "./sandbox-record.js";
import { nowIso, type SandboxService } from "./sandbox-service.js";
import { MAX_EGRESS_RULES, MAX_SSH_KEYS, validateEnvs, type ValidCreate } from "./sandbox-validator.js";
import { findShape } from "./shapes.js";
import { isOpenSshPublicKey } from "./ssh-public-key.js";

/** Body of POST /v1/sandboxes/{id}/fork (wire names; all optional, omitted fields inherit). */
export interface ForkSandboxInput {
  start_paused?: boolean;
  ssh_pubkeys?: string[];
  egress?: string[];
  ingress_enabled?: boolean;
  envs?: Record<string, string>;
  bandwidth_quota_bytes?: number;
}

/** Outcome of pause/resume: `accepted` (202, in progress) or already there (200). */
export interface LifecycleResult {
  accepted: boolean;
  record: SandboxRecord;
}

export interface SnapshotServiceDeps {
  sandboxes: SandboxService;
  runtime: Runtime;
  repos: Repositories;
  log: Logger;
  /** How often auto-pause looks for idle sandboxes, ms (default 5000; 0 disables). */
  autoPauseCheckMs?: number;
}

/** Attempts of one resume before the sandbox is `error` (a new POST resume tries again). */
const RESUME_ATTEMPTS = 3;

export class SnapshotService {
  readonly #sandboxes: SandboxService;
  readonly #runtime: Runtime;
  readonly #repos: Repositories;
  readonly #log: Logger;
  readonly #background = new Set<Promise<unknown>>();
  readonly #timer: NodeJS.Timeout | undefined;
  #checking = false;

  constructor(deps: SnapshotServiceDeps) {
    this.#sandboxes = deps.sandboxes;
    this.#runtime = deps.runtime;
    this.#repos = deps.repos;
    this.#log = deps.log;
    const every = deps.autoPauseCheckMs ?? 5000;
    if (every > 0) {
      this.#timer = setInterval(() => void this.checkIdle(), every);
      this.#timer.unref();
    }
  }

  /**
   * Starts pausing a running sandbox (202 `pausing`; `paused` once its
   * snapshot is written). Already `paused`/`pausing`: returned as is. 409 otherwise.
   */
  async pause(userId: string, id: string): Promise<LifecycleResult> {
    const rec = await this.#sandboxes.get(userId, id);
    if (rec.status === "paused") return { accepted: false, record: rec };
    if (rec.status === "pausing") return { accepted: true, record: rec };
    if (rec.status !== "running") throw conflict("status", `sandbox is ${rec.status}, not running`);
    return { accepted: true, record: await this.#startPause(rec) };
  }

  /**
   * Starts resuming a `paused` or `error` sandbox (202 `resuming`; `running`
   * once its guest answers). Admitted like a create (503 when the host is
   * full). Already `running`/`resuming`: returned as is. 409 otherwise.
   */
  async resume(userId: string, id: string): Promise<LifecycleResult> {
    const rec = await this.#sandboxes.get(userId, id);
    if (rec.status === "running") return { accepted: false, record: rec };
    if (rec.status === "resuming") return { accepted: true, record: rec };
    if (rec.status !== "paused" && rec.status !== "error") throw conflict("status", `sandbox is ${rec.status}; only a paused sandbox can be resumed`);
    // A VM stalled on a full disk is only continued (no new files), once
    // there is at least the floor free; if its waiting writes need more, it
    // stalls again and ends `error` again.
    if (this.#sandboxes.stallReason(rec.id)) this.#sandboxes.admitDisk(0, "continuing a VM stopped on a full disk");
    else this.#sandboxes.admitDisk(diskNeedMib.resume(rec.memMib), "a resume");
    const next = await this.#admitResume(rec);
    this.#track(this.#runResume(next));
    return { accepted: true, record: next };
  }

  /**
   * Forks a paused sandbox: the source shows `forking` while its snapshot is
   * shared, then `paused` again; the child (new id, name, IP; `forked_from`;
   * overrides applied, the rest inherited) runs unless `start_paused`.
   * Returns the child.
   */
  async fork(userId: string, id: string, input: ForkSandboxInput): Promise<SandboxRecord> {
    const src = await this.#sandboxes.get(userId, id);
    if (src.status !== "paused") throw conflict("status", `sandbox is ${src.status}; only a paused sandbox can be forked`);
    const valid = this.#childSettings(src, input);
    // A fork is a create for the per-user caps (402) and create rate (429).
    await this.#sandboxes.limits.admitCreate(userId, valid.shape.memMib);
    if (!input.start_paused && (await this.#sandboxes.scheduler.freeMib(src.hostId)).freeMib < src.memMib) throw noCapacity();
    this.#sandboxes.admitDisk(diskNeedMib.fork(src.memMib, input.start_paused === true), "a fork");
    const quota = input.bandwidth_quota_bytes ?? src.bandwidthQuotaBytes;
    const forking = await this.#sandboxes.transition(src, "forking");
    // A child that runs at once starts in a VMM made ahead of need, if the runtime has one (its id is the child's).
    const spare = input.start_paused
      ? undefined
      : this.#runtime.claimSpare?.({ rootfs: src.rootfs, vcpu: src.vcpu, memMib: src.memMib, diskMib: src.diskMib });
    let child: SandboxRecord;
    try {
      child = await this.#sandboxes.insertChild(userId, valid, (base) => ({
        ...base,
        status: "forking",
        forkedFrom: src.id,
        bandwidthQuotaBytes: quota,
        autoPauseAfterSeconds: src.autoPauseAfterSeconds,
      }), spare);
    } catch (err) {
      if (spare) await this.#runtime.destroy(spare).catch((e: unknown) => this.#log.warn({ err: e, spare }, "could not stop a claimed spare VMM"));
      await this.#sandboxes.transition(forking, "paused").catch((e: unknown) => this.#log.error({ err: e, sandbox: id }, "could not settle fork source"));
      throw err;
    }
    try {
      await this.#runtime.fork(src.id, this.#sandboxes.specOf(child), { startPaused: true });
    } catch (err) {
      this.#log.error({ err, sandbox: id, child: child.id }, "fork failed");
      await this.#sandboxes.transition(child, "failed").catch(() => {});
      await this.#sandboxes.transition(forking, "paused").catch(() => {});
      throw internal("fork failed", err);
    }
    await this.#sandboxes.transition(forking, "paused");
    child = await this.#sandboxes.transition(child, "paused", { pausedAt: nowIso() });
    // Egress rules and counters before the child's first packet.
    await this.#runtime.setNetworkPolicy(child.id, networkPolicyOf(child));
    if (input.start_paused) return child;
    let resuming: SandboxRecord;
    try {
      resuming = await this.#admitResume(child);
    } catch (err) {
      // Filled up meanwhile: the child exists, paused; it can be resumed later.
      this.#log.warn({ err, sandbox: child.id }, "fork child left paused");
      return child;
    }
    return this.#runResume(resuming);
  }

  /**
   * One auto-pause pass: pauses every running sandbox with
   * `auto_pause_after_seconds` that saw no activity (exec, files, tunnel,
   * shell, ingress: `SandboxService.touch`) for that long. The timeout is
   * read from the row each pass, so a PATCH applies at once.
   */
  async checkIdle(): Promise<void> {
    if (this.#checking || !this.#sandboxes.ready) return;
    this.#checking = true;
    try {
      const now = Date.now();
      for (const rec of await this.#repos.sandboxes.listByStatus(["running"])) {
        if (rec.autoPauseAfterSeconds === null) continue;
        const since = Math.max(
          this.#sandboxes.lastActivity.get(rec.id) ?? 0,
          Date.parse(rec.lastResumedAt ?? rec.runningAt ?? rec.createdAt),
        );
        if (now - since < rec.autoPauseAfterSeconds * 1000) continue;
        this.#log.info({ sandbox: rec.id, idleS: Math.round((now - since) / 1000) }, "auto-pausing idle sandbox");
        await this.#startPause(rec).catch((err: unknown) => this.#log.warn({ err, sandbox: rec.id }, "auto-pause failed"));
      }
    } catch (err) {
      this.#log.error({ err }, "auto-pause pass failed");
    } finally {
      this.#checking = false;
    }
  }

  /** Stops auto-pause and waits for pauses/resumes in flight. */
  async close(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    while (this.#background.size > 0) await Promise.allSettled([...this.#background]);
  }

  async #startPause(rec: SandboxRecord): Promise<SandboxRecord> {
    // The pause writes the guest's memory to the data dir: refused (503) before it starts when that does not fit.
    this.#sandboxes.admitDisk(diskNeedMib.pause(rec.memMib), "a pause");
    const next = await this.#sandboxes.transition(rec, "pausing");
    this.#track(this.#runPause(next));
    return next;
  }

  async #runPause(rec: SandboxRecord): Promise<void> {
    try {
      await this.#runtime.pause(rec.id);
    } catch (err) {
      this.#log.error({ err, sandbox: rec.id }, "pause failed");
      // The runtime leaves a VM that could not be paused running; one that
      // died was already reported (onExit → failed).
      const cur = await this.#repos.sandboxes.get(rec.id);
      // A VM that stalled on a full disk meanwhile goes on to `error`.
      if (cur?.status === "pausing") await this.#sandboxes.settleStall(await this.#sandboxes.transition(cur, "running"));
      return;
    }
    this.#sandboxes.clearStall(rec.id);
    await this.#sandboxes.transition(rec, "paused", { pausedAt: nowIso() });
    this.#sandboxes.lastActivity.delete(rec.id);
  }

  /** Admits `rec`'s memory (503 when full) and moves it to `resuming`. */
  #admitResume(rec: SandboxRecord): Promise<SandboxRecord> {
    return this.#sandboxes.scheduler.admitExisting({ memMib: rec.memMib, hostId: rec.hostId }, () => this.#sandboxes.transition(rec, "resuming"));
  }

  /** Resumes `rec` (status `resuming`), retrying; `running`, or `error` when every attempt failed. */
  async #runResume(rec: SandboxRecord): Promise<SandboxRecord> {
    const spec = this.#sandboxes.specOf(rec);
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#runtime.resume(rec.id, spec);
        break;
      } catch (err) {
        this.#log.error({ err, sandbox: rec.id, attempt }, "resume failed");
        // A full disk (the VM stalled again) does not get better by retrying now.
        if (attempt >= RESUME_ATTEMPTS || isRuntimeError(err, "no_capacity") || isRuntimeError(err, "disk_full")) {
          const cur = await this.#repos.sandboxes.get(rec.id);
          return cur?.status === "resuming" ? this.#sandboxes.transition(cur, "error") : (cur ?? rec);
        }
        await new Promise((r) => setTimeout(r, 250 * attempt));
      }
    }
    const now = nowIso();
    this.#sandboxes.touch(rec.id);
    // Continued (or resumed): a stall reported from now on is a new one.
    this.#sandboxes.clearStall(rec.id);
    const running = await this.#sandboxes.transition(rec, "running", { lastResumedAt: now, ...(rec.runningAt === null ? { runningAt: now } : {}) });
    return this.#sandboxes.settleStall(running);
  }

  /** The child's settings: the source's, with the fork's overrides checked and applied. */
  #childSettings(src: SandboxRecord, input: ForkSandboxInput): ValidCreate {
    const shape = findShape(src.shape);
    if (!shape) throw internal(`unknown shape ${src.shape}`);
    const sshPubkeys = input.ssh_pubkeys ?? src.sshPubkeys;
    if (sshPubkeys.length > MAX_SSH_KEYS) throw invalid("ssh_pubkeys", `at most ${MAX_SSH_KEYS} keys`);
    sshPubkeys.forEach((key, i) => {
      if (!isOpenSshPublicKey(key)) throw invalid("ssh_pubkeys", `entry ${i} is not an OpenSSH public key`);
    });
    const egress = input.egress ?? src.egress;
    if (egress.length > MAX_EGRESS_RULES) throw invalid("egress", `at most ${MAX_EGRESS_RULES} entries`);
    for (const rule of egress) {
      const why = validateEgressRule(rule);
      if (why) throw invalid("egress", why);
    }
    // Values are re-sealed for the child (insert seals `envs`).
    const envs = input.envs ?? this.#sandboxes.envsOf(src);
    validateEnvs(envs);
    const q = input.bandwidth_quota_bytes;
    if (q !== undefined && (!Number.isSafeInteger(q) || q < -1)) throw invalid("bandwidth_quota_bytes", "must be an integer ≥ 0, or -1 (unmetered)");
    return {
      shape,
      rootfs: src.rootfs,
      diskMib: src.diskMib,
      sshPubkeys: [...new Set(sshPubkeys.map((k) => k.trim()))],
      envs,
      ingressEnabled: input.ingress_enabled ?? src.ingressEnabled,
      egress,
      autoPauseAfterSeconds: src.autoPauseAfterSeconds,
      region: src.region,
      hostId: src.hostId,
    };
  }

  #track(p: Promise<unknown>): void {
    const tracked = p
      .catch((err: unknown) => {
        if (!(err instanceof AppError)) this.#log.error({ err }, "background lifecycle task failed");
      })
      .finally(() => this.#background.delete(tracked));
    this.#background.add(tracked);
  }
}
