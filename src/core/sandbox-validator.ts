/**
 * The create/patch rules of the seed, each failing with a 400 that names
 * the offending field. Messages never include env values.
 */
import { validateEgressRule } from "./egress-rule.js";
import { invalid } from "./errors.js";
import { isDnsLabel } from "./name-generator.js";
import type { CreateSandboxInput, PatchSandboxInput } from "./sandbox-input.js";
import { DEFAULT_DISK_MIB, findShape, type Shape } from "./shapes.js";
import { isOpenSshPublicKey } from "./ssh-public-key.js";

export const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;
export const MAX_ENVS = 64;
export const MAX_ENV_VALUE_BYTES = 4096;
export const MAX_ENVS_TOTAL_BYTES = 65536;
export const DISK_MIB_RANGE = [256, 1048576] as const;
export const AUTO_PAUSE_RANGE = [60, 86400] as const;
export const MAX_SSH_KEYS = 64;
export const MAX_EGRESS_RULES = 256;

/** What the create rules need to know about this server. */
export interface CreateContext {
  region: string;
  /** Rootfs names built on this host. */
  rootfs: readonly string[];
  defaultRootfs: string;
  disabledRootfs: readonly string[];
}

/** A create request after every rule passed, with defaults applied. */
export interface ValidCreate {
  shape: Shape;
  rootfs: string;
  name?: string;
  diskMib: number;
  sshPubkeys: string[];
  envs: Record<string, string>;
  ingressEnabled: boolean;
  egress: string[];
  autoPauseAfterSeconds: number | null;
  hostId?: string;
  region: string;
}

/** Checks the envs rules (keys, count, sizes). */
export function validateEnvs(envs: Record<string, string>, field = "envs"): void {
  const keys = Object.keys(envs);
  if (keys.length > MAX_ENVS) throw invalid(field, `at most ${MAX_ENVS} entries`);
  let total = 0;
  for (const key of keys) {
    if (!ENV_KEY.test(key)) throw invalid(field, `invalid key "${key.slice(0, 64)}": must match ^[A-Za-z_][A-Za-z0-9_]*$`);
    const value = envs[key];
    if (typeof value !== "string") throw invalid(field, `value of ${key} must be a string`);
    const bytes = Buffer.byteLength(value, "utf8");
    if (bytes > MAX_ENV_VALUE_BYTES) throw invalid(field, `value of ${key} exceeds ${MAX_ENV_VALUE_BYTES} bytes`);
    total += bytes + Buffer.byteLength(key, "utf8");
  }
  if (total > MAX_ENVS_TOTAL_BYTES) throw invalid(field, `envs exceed ${MAX_ENVS_TOTAL_BYTES} bytes in total`);
}

function validateAutoPause(value: number): void {
  const [min, max] = AUTO_PAUSE_RANGE;
  if (!Number.isInteger(value) || value < min || value > max) {
    throw invalid("auto_pause_after_seconds", `must be an integer between ${min} and ${max}`);
  }
}

/** Checks every create rule; throws the first failure as a 400 naming its field. */
export function validateCreate(input: CreateSandboxInput, ctx: CreateContext): ValidCreate {
  if (input.bandwidth_quota_bytes !== undefined) {
    throw invalid("bandwidth_quota_bytes", "not settable at create; every sandbox starts with the default quota");
  }
  if (typeof input.shape !== "string" || input.shape === "") throw invalid("shape", "required");
  const shape = findShape(input.shape);
  if (!shape) throw invalid("shape", `unknown shape "${input.shape}" (see GET /v1/shapes)`);

  const rootfs = input.rootfs === undefined || input.rootfs === "" ? ctx.defaultRootfs : input.rootfs;
  if (ctx.disabledRootfs.includes(rootfs)) throw invalid("rootfs", `rootfs "${rootfs}" is disabled`);
  if (!ctx.rootfs.includes(rootfs)) throw invalid("rootfs", `unknown rootfs "${rootfs}" (see GET /v1/rootfs)`);

  if (input.name !== undefined && input.name !== "" && !isDnsLabel(input.name)) {
    throw invalid("name", "must be a DNS label: 1-63 of [a-z0-9-], not starting or ending with '-'");
  }

  let diskMib = shape.defaultDiskMib;
  if (input.disk_mib !== undefined) {
    const [min, max] = DISK_MIB_RANGE;
    const d = input.disk_mib;
    if (!Number.isInteger(d) || d < 0 || (d !== 0 && (d < min || d > max))) {
      throw invalid("disk_mib", `must be 0 (default ${DEFAULT_DISK_MIB}) or between ${min} and ${max}`);
    }
    if (d !== 0) diskMib = d;
  }

  const sshPubkeys = input.ssh_pubkeys ?? [];
  if (sshPubkeys.length > MAX_SSH_KEYS) throw invalid("ssh_pubkeys", `at most ${MAX_SSH_KEYS} keys`);
  sshPubkeys.forEach((key, i) => {
    if (!isOpenSshPublicKey(key)) throw invalid("ssh_pubkeys", `entry ${i} is not an OpenSSH public key`);
  });

  const envs = input.envs ?? {};
  validateEnvs(envs);

  const egress = input.egress ?? [];
  if (egress.length > MAX_EGRESS_RULES) throw invalid("egress", `at most ${MAX_EGRESS_RULES} entries`);
  for (const rule of egress) {
    const why = validateEgressRule(rule);
    if (why) throw invalid("egress", why);
  }

  let autoPause: number | null = null;
  if (input.auto_pause_after_seconds !== undefined && input.auto_pause_after_seconds !== null) {
    validateAutoPause(input.auto_pause_after_seconds);
    autoPause = input.auto_pause_after_seconds;
  }

  if (input.region !== undefined && input.region !== "" && input.region !== ctx.region) {
    throw invalid("region", `this control plane serves region "${ctx.region}"`);
  }

  // Neither private networks nor disks exist yet: any reference is unknown.
  const net = input.networks?.[0];
  if (net) throw invalid("networks", `unknown network "${String(net.id).slice(0, 80)}"`);
  const disk = input.disks?.[0];
  if (disk) throw invalid("disks", `unknown disk "${String(disk.disk_id).slice(0, 80)}"`);

  const result: ValidCreate = {
    shape,
    rootfs,
    diskMib,
    sshPubkeys: [...new Set(sshPubkeys.map((k) => k.trim()))],
    envs,
    ingressEnabled: input.ingress_enabled ?? false,
    egress,
    autoPauseAfterSeconds: autoPause,
    region: ctx.region,
  };
  if (input.name) result.name = input.name;
  if (input.host_id) result.hostId = input.host_id;
  return result;
}

/** The settings a PATCH changes; `disable_auto_pause: true` wins over a timeout. */
export function validatePatch(input: PatchSandboxInput): { ingressEnabled?: boolean; autoPauseAfterSeconds?: number | null } {
  const out: { ingressEnabled?: boolean; autoPauseAfterSeconds?: number | null } = {};
  if (input.ingress_enabled !== undefined) out.ingressEnabled = input.ingress_enabled;
  if (input.disable_auto_pause === true) {
    out.autoPauseAfterSeconds = null;
  } else if (input.auto_pause_after_seconds !== undefined) {
    validateAutoPause(input.auto_pause_after_seconds);
    out.autoPauseAfterSeconds = input.auto_pause_after_seconds;
  }
  return out;
}

/** An absolute guest path without `..` segments; else a 400 naming `path`. */
export function validateGuestPath(path: unknown): string {
  if (typeof path !== "string" || path === "") throw invalid("path", "required (absolute path)");
  if (!path.startsWith("/")) throw invalid("path", "must be absolute");
  if (path.length > 4096 || path.includes("\0")) throw invalid("path", "invalid path");
  if (path.split("/").some((seg) => seg === "..")) throw invalid("path", "must not contain '..'");
  return path;
}
