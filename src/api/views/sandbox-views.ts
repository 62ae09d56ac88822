/**
 * Wire views of a sandbox: the create response, the full SandboxView (GET,
 * by-ip, PATCH) and list items, exactly the fields of the seed. Envs are
 * key names only.
 */
import type { SandboxRecord, SandboxSummary } from "../../core/sandbox-record.js";

/** How ingress URLs are formed; off when `domain` is unset. */
export interface IngressSettings {
  domain: string | undefined;
  scheme: "http" | "https";
}

/** `<scheme>://<ulid lowercase>-<port>.<domain>` with a literal `<port>`. */
export function ingressTemplate(rec: SandboxRecord, ingress: IngressSettings): string | undefined {
  if (!rec.ingressEnabled || !ingress.domain) return undefined;
  return `${ingress.scheme}://${rec.id.replace(/^sb_/, "").toLowerCase()}-<port>.${ingress.domain}`;
}

/** Body of POST /v1/sandboxes. */
export function createView(rec: SandboxRecord, ingress: IngressSettings) {
  const view: Record<string, unknown> = {
    id: rec.id,
    name: rec.name,
    ip: rec.ip,
    shape: rec.shape,
    rootfs: rec.rootfs,
    vcpu: rec.vcpu,
    mem_mib: rec.memMib,
    disk_mib: rec.diskMib,
    spawn_ms: rec.spawnMs ?? 0,
    egress: rec.egress,
    bandwidth_quota_bytes: rec.bandwidthQuotaBytes,
  };
  const tpl = ingressTemplate(rec, ingress);
  if (tpl) view.ingress_url_template = tpl;
  return view;
}

/** One item of GET /v1/sandboxes. */
export function listItemView(rec: SandboxSummary) {
  const view: Record<string, unknown> = {
    id: rec.id,
    name: rec.name,
    status: rec.status,
    ip: rec.ip,
    vcpu: rec.vcpu,
    mem_mib: rec.memMib,
    disk_mib: rec.diskMib,
    shape: rec.shape,
    rootfs: rec.rootfs,
    region: rec.region,
    ingress_enabled: rec.ingressEnabled,
  };
  if (rec.autoPauseAfterSeconds !== null) view.auto_pause_after_seconds = rec.autoPauseAfterSeconds;
  view.created_at = rec.createdAt;
  return view;
}

/** The SandboxView of GET /v1/sandboxes/{id}, by-ip and PATCH. */
export function sandboxView(rec: SandboxRecord, ingress: IngressSettings) {
  // The list item's fields (seed order), then what only the full view carries.
  const view = listItemView(rec);
  view.bandwidth_ingress_bytes = rec.bandwidthIngressBytes;
  view.envs = rec.envKeys;
  view.ssh_pubkeys = rec.sshPubkeys;
  view.egress = rec.egress;
  if (rec.runningAt !== null) view.running_at = rec.runningAt;
  view.paused_at = rec.pausedAt;
  view.last_resumed_at = rec.lastResumedAt;
  view.forked_from = rec.forkedFrom;
  if (rec.spawnMs !== null) view.spawn_ms = rec.spawnMs;
  view.bandwidth_quota_bytes = rec.bandwidthQuotaBytes;
  if (rec.destroyedAt !== null) view.destroyed_at = rec.destroyedAt;
  const tpl = ingressTemplate(rec, ingress);
  if (tpl) view.ingress_url_template = tpl;
  return view;
}
