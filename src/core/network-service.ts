/**
 * Sandbox networking in core: the egress allowlist (GET/PUT), bandwidth
 * metering against the quota (a 1 s loop adding the kernel's counters to
 * the row, capping and uncapping), recharge, and the ingress proxy's lookup
 * of `<ulid>-<port>.<domain>` to a running sandbox.
 */
import type { Duplex } from "node:stream";
import type { Logger } from "pino";
import { isRuntimeError } from "../runtime/errors.js";
import type { Runtime } from "../runtime/runtime.js";
import { validateEgressRule } from "./egress-rule.js";
import { AppError, invalid, notFound } from "./errors.js";
import { bandwidthOf, isCapped, networkPolicyOf, UNMETERED } from "./network-policy-of.js";
import type { Repositories } from "./repositories.js";
import type { SandboxRecord } from "./sandbox-record.js";
import type { SandboxService } from "./sandbox-service.js";
import { MAX_EGRESS_RULES } from "./sandbox-validator.js";
import { SANDBOX_STATUSES, isTerminal } from "./sandbox-state.js";

export interface NetworkServiceDeps {
  repos: Repositories;
  runtime: Runtime;
  sandboxes: SandboxService;
  log: Logger;
  /** Metering period, ms (default 1000). */
  meterMs?: number;
}

/** Called on sandbox activity that is not exec/files/tunnel (ingress requests). */
export type ActivityListener = (id: string) => void;

const ULID_RE = /^[0-9a-hjkmnp-tv-z]{26}$/i;
const MAX_RECHARGE = Number.MAX_SAFE_INTEGER;

export class NetworkService {
  readonly #repos: Repositories;
  readonly #runtime: Runtime;
  readonly #log: Logger;
  readonly #meterMs: number;
  readonly #activity: ActivityListener[] = [];
  /** Ids whose policy was last installed capped. */
  readonly #capped = new Set<string>();
  #timer: NodeJS.Timeout | undefined;
  #metering: Promise<void> | undefined;

  constructor(deps: NetworkServiceDeps) {
    this.#repos = deps.repos;
    this.#runtime = deps.runtime;
    this.#log = deps.log;
    this.#meterMs = deps.meterMs ?? 1000;
    // A sandbox that ended loses its rules and counters.
    deps.sandboxes.onStatus((rec) => {
      if (!isTerminal(rec.status)) return;
      this.#capped.delete(rec.id);
      this.#runtime.setNetworkPolicy(rec.id, null).catch((err: unknown) => this.#log.warn({ err, sandbox: rec.id }, "could not remove network policy"));
    });
  }

  /**
   * Installs the kernel policy of `rec` (egress rules, cap). Call it for a
   * new sandbox before its VM starts (create does) and for a fork's child
   * (issue 4) before it runs; safe to repeat.
   */
  async install(rec: SandboxRecord): Promise<void> {
    const policy = networkPolicyOf(rec);
    await this.#runtime.setNetworkPolicy(rec.id, policy);
    if (policy.capped) this.#capped.add(rec.id);
    else this.#capped.delete(rec.id);
  }

  /** At start-up: re-installs the policy of every live sandbox and starts metering. */
  async start(): Promise<void> {
    const live = await this.#repos.sandboxes.listByStatus(SANDBOX_STATUSES.filter((s) => !isTerminal(s)));
    for (const rec of live) {
      await this.install(rec).catch((err: unknown) => this.#log.error({ err, sandbox: rec.id }, "could not install network policy"));
    }
    this.#timer ??= setInterval(() => {
      this.#metering ??= this.meterOnce()
        .catch((err: unknown) => this.#log.warn({ err }, "bandwidth metering failed"))
        .finally(() => (this.#metering = undefined));
    }, this.#meterMs);
    this.#timer.unref();
  }

  /** Stops metering after a last read of the counters. */
  async close(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#metering;
    await this.meterOnce().catch(() => undefined);
  }

  /** Adds the kernel's counters to the rows; caps or uncaps where the quota says so. */
  async meterOnce(): Promise<void> {
    const usage = await this.#runtime.takeNetworkUsage();
    for (const [id, u] of usage) {
      await this.#repos.sandboxes.addBandwidthUsage(id, u.egressBytes, u.ingressBytes);
      const rec = await this.#repos.sandboxes.get(id);
      if (rec && !isTerminal(rec.status) && isCapped(rec) !== this.#capped.has(id)) {
        this.#log.info({ sandbox: id, used: rec.bandwidthUsedBytes, quota: rec.bandwidthQuotaBytes }, "bandwidth quota used up: capped");
        await this.install(rec);
      }
    }
  }

  /** GET .../egress */
  async getEgress(userId: string, id: string): Promise<{ id: string; egress: string[] }> {
    const rec = await this.#owned(userId, id);
    return { id, egress: rec.egress };
  }

  /** PUT .../egress: validates, stores, and applies to the live sandbox at once. */
  async putEgress(userId: string, id: string, egress: unknown): Promise<{ id: string; egress: string[] }> {
    const rec = await this.#owned(userId, id);
    if (isTerminal(rec.status)) throw new AppError("conflict", "sandbox has ended", { status: `sandbox is ${rec.status}` });
    const rules = validateEgressList(egress);
    await this.#repos.sandboxes.updateSettings(id, { egress: rules }, new Date().toISOString());
    await this.install({ ...rec, egress: rules });
    return { id, egress: rules };
  }

  /** GET .../bandwidth */
  async bandwidth(userId: string, id: string) {
    return bandwidthOf(await this.#owned(userId, id));
  }

  /** POST .../bandwidth/recharge: adds to the quota and lifts the cap at once. */
  async recharge(userId: string, id: string, addBytes: unknown) {
    if (typeof addBytes !== "number" || !Number.isSafeInteger(addBytes) || addBytes <= 0) {
      throw invalid("add_bytes", "must be a positive integer");
    }
    const rec = await this.#owned(userId, id);
    if (isTerminal(rec.status)) throw new AppError("conflict", "sandbox has ended", { status: `sandbox is ${rec.status}` });
    if (rec.bandwidthQuotaBytes === UNMETERED) return bandwidthOf(rec);
    const quota = Math.min(MAX_RECHARGE, rec.bandwidthQuotaBytes + addBytes);
    await this.#repos.sandboxes.updateSettings(id, { bandwidthQuotaBytes: quota }, new Date().toISOString());
    const next = { ...rec, bandwidthQuotaBytes: quota };
    if (isCapped(next) !== this.#capped.has(id)) await this.install(next);
    return bandwidthOf(next);
  }

  /** Registers a listener for ingress activity (auto-pause counts it). */
  onActivity(listener: ActivityListener): void {
    this.#activity.push(listener);
  }

  /** Reports activity on `id` to the listeners. */
  touch(id: string): void {
    for (const l of this.#activity) {
      try {
        l(id);
      } catch (err) {
        this.#log.warn({ err, sandbox: id }, "activity listener threw");
      }
    }
  }

  /**
   * The sandbox an ingress host name `<ulid>-<port>.<domain>` designates,
   * only while it runs with ingress enabled; 404 otherwise.
   */
  async ingressTarget(hostHeader: string | undefined, domain: string): Promise<{ rec: SandboxRecord; port: number }> {
    const host = (hostHeader ?? "").toLowerCase().replace(/:\d+$/, "").replace(/\.$/, "");
    const suffix = `.${domain.toLowerCase()}`;
    if (!host.endsWith(suffix)) throw notFound();
    const m = /^([0-9a-z]{26})-(\d{1,5})$/.exec(host.slice(0, -suffix.length));
    if (!m || !ULID_RE.test(m[1]!)) throw notFound();
    const port = Number(m[2]);
    if (port < 1 || port > 65535) throw notFound();
    const rec = await this.#repos.sandboxes.get(`sb_${m[1]!.toUpperCase()}`);
    if (!rec || rec.status !== "running" || !rec.ingressEnabled) throw notFound();
    return { rec, port };
  }

  /** Connects to `port` of the sandbox over its network (ingress). 502-style errors reject. */
  async dial(rec: SandboxRecord, port: number): Promise<Duplex> {
    try {
      return await this.#runtime.dialGuest(rec.ip, port);
    } catch (err) {
      if (isRuntimeError(err, "not_running")) throw new AppError("bad_gateway", `nothing answers on port ${port}`, {}, { cause: err });
      throw err;
    }
  }

  async #owned(userId: string, id: string): Promise<SandboxRecord> {
    const rec = await this.#repos.sandboxes.getOwned(userId, id);
    if (!rec) throw notFound();
    return rec;
  }
}

/** Validates a PUT body's `egress`: null → [], else a list of valid entries. */
export function validateEgressList(egress: unknown): string[] {
  if (egress === null || egress === undefined) return [];
  if (!Array.isArray(egress) || egress.some((r) => typeof r !== "string")) throw invalid("egress", "must be a list of strings or null");
  if (egress.length > MAX_EGRESS_RULES) throw invalid("egress", `at most ${MAX_EGRESS_RULES} entries`);
  const rules = (egress as string[]).map((r) => r.trim());
  for (const r of rules) {
    const why = validateEgressRule(r);
    if (why) throw invalid("egress", why);
  }
  return [...new Set(rules)];
}
