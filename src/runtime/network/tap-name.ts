import { createHash } from "node:crypto";

/** Longest interface name Linux accepts (IFNAMSIZ - 1). */
export const MAX_IFNAME = 15;

const ID_RE = /^sb_[0-9A-HJKMNP-TV-Z]{26}$/i;

/**
 * The tap name for sandbox `id` (`sb_<ULID>`): "hv" + the last 10 characters
 * of the ULID's random part, lower-cased (12 chars). The last characters are
 * used because ULIDs made in the same millisecond by a monotonic factory
 * differ only at the end of the random part. 50 random bits make a clash
 * unlikely; `HostNetwork.createTap` detects one (the tap's alias holds the
 * owning id) and then falls back to `fallbackTapName`.
 */
export function tapName(id: string): string {
  if (!ID_RE.test(id)) throw new Error(`invalid sandbox id: ${id}`);
  return `hv${id.slice(-10).toLowerCase()}`;
}

/**
 * Second-choice tap name when `tapName(id)` is taken by another sandbox:
 * "hx" + 10 hex chars of SHA-256(id). A clash on both names is an error.
 */
export function fallbackTapName(id: string): string {
  return `hx${createHash("sha256").update(id).digest("hex").slice(0, 10)}`;
}
