/**
 * Every route of the API as the fuzzer sees it: method, path template,
 * the kind of body, a valid body (so one mutated field is the only fault),
 * the JSON kinds each field accepts, and the query parameters.
 * fuzz.test.ts checks this table against the app's own route list.
 */
import type { JsonKind } from "./hostile.js";

export interface FuzzRoute {
  method: string;
  /** `:id`, `:ip` and `:port` are filled in by the fuzzer. */
  path: string;
  body: "none" | "json" | "bytes";
  /** A valid body for the victim sandbox (fields the fuzzer breaks one at a time). */
  valid?: () => Record<string, unknown>;
  /** Top-level body fields and the JSON kinds they accept. */
  fields?: Record<string, readonly JsonKind[]>;
  /** Query parameters and a valid value of each. */
  query?: Record<string, string>;
  /** Upgrade token the route wants (tunnel/shell/shell-ws). */
  upgrade?: string;
  /** A valid request may change the victim (status, settings) or create sandboxes. */
  mutates?: boolean;
}

/** A syntactically valid ed25519 OpenSSH public key. */
export const SSH_KEY = `ssh-ed25519 ${Buffer.concat([
  Buffer.from([0, 0, 0, 11]),
  Buffer.from("ssh-ed25519"),
  Buffer.from([0, 0, 0, 32]),
  Buffer.alloc(32, 7),
]).toString("base64")} fuzz@hutch`;

const S: readonly JsonKind[] = ["string"];
const I: readonly JsonKind[] = ["integer"];
const B: readonly JsonKind[] = ["boolean"];
const A: readonly JsonKind[] = ["array"];
const O: readonly JsonKind[] = ["object"];

export const ROUTES: FuzzRoute[] = [
  { method: "GET", path: "/healthz", body: "none" },
  { method: "GET", path: "/readyz", body: "none" },
  { method: "GET", path: "/v1/shapes", body: "none", query: { limit: "2", offset: "0" } },
  { method: "GET", path: "/v1/rootfs", body: "none" },
  { method: "GET", path: "/v1/hosts", body: "none", query: { limit: "2", offset: "0" } },
  { method: "GET", path: "/v1/whoami", body: "none" },
  {
    method: "POST",
    path: "/v1/sandboxes",
    body: "json",
    mutates: true,
    valid: () => ({ shape: "s-1vcpu-256mb", envs: { FOO: "bar" }, egress: ["example.com"], ingress_enabled: false }),
    fields: {
      shape: S, rootfs: S, name: S, disk_mib: I, ssh_pubkeys: A, envs: O, ingress_enabled: B, networks: A, disks: A,
      egress: A, auto_pause_after_seconds: ["integer", "null"], host_id: S, region: S, node_selector: O,
      // Not settable at create: any value is refused, naming it.
      bandwidth_quota_bytes: [],
    },
  },
  { method: "GET", path: "/v1/sandboxes", body: "none", query: { limit: "5", offset: "0", status: "running" } },
  { method: "GET", path: "/v1/sandboxes/by-ip/:ip", body: "none" },
  { method: "GET", path: "/v1/sandboxes/:id", body: "none" },
  {
    method: "PATCH",
    path: "/v1/sandboxes/:id",
    body: "json",
    mutates: true,
    valid: () => ({ ingress_enabled: true, auto_pause_after_seconds: 600 }),
    fields: { ingress_enabled: B, auto_pause_after_seconds: I, disable_auto_pause: B },
  },
  { method: "DELETE", path: "/v1/sandboxes/:id", body: "none", mutates: true },
  {
    method: "POST",
    path: "/v1/sandboxes/:id/exec",
    body: "json",
    valid: () => ({ cmd: "echo", args: ["hi"], env: { FOO: "x" }, cwd: "/", stdin: "", stream: false }),
    fields: { cmd: S, args: A, stdin: S, env: O, cwd: S, stream: B },
    query: { stream: "false" },
  },
  { method: "PUT", path: "/v1/sandboxes/:id/files", body: "bytes", query: { path: "/tmp/fuzz.txt" }, mutates: true },
  { method: "GET", path: "/v1/sandboxes/:id/files", body: "none", query: { path: "/tmp/fuzz.txt" } },
  { method: "POST", path: "/v1/sandboxes/:id/pause", body: "none", mutates: true },
  { method: "POST", path: "/v1/sandboxes/:id/resume", body: "none", mutates: true },
  {
    method: "POST",
    path: "/v1/sandboxes/:id/fork",
    body: "json",
    mutates: true,
    valid: () => ({ start_paused: false, egress: ["example.com"], ingress_enabled: false }),
    fields: { start_paused: B, ssh_pubkeys: A, egress: A, ingress_enabled: B, envs: O, bandwidth_quota_bytes: I },
  },
  { method: "GET", path: "/v1/sandboxes/:id/egress", body: "none" },
  {
    method: "PUT",
    path: "/v1/sandboxes/:id/egress",
    body: "json",
    mutates: true,
    valid: () => ({ egress: ["example.com", "10.1.2.0/24"] }),
    fields: { egress: ["array", "null"] },
  },
  { method: "GET", path: "/v1/sandboxes/:id/bandwidth", body: "none" },
  {
    method: "POST",
    path: "/v1/sandboxes/:id/bandwidth/recharge",
    body: "json",
    mutates: true,
    valid: () => ({ add_bytes: 1024 }),
    fields: { add_bytes: I },
  },
  {
    method: "POST",
    path: "/v1/sandboxes/:id/ssh-pubkeys",
    body: "json",
    mutates: true,
    valid: () => ({ keys: [SSH_KEY] }),
    fields: { keys: A },
  },
  { method: "POST", path: "/v1/sandboxes/:id/tunnel/:port", body: "none", upgrade: "tcp-tunnel" },
  { method: "POST", path: "/v1/sandboxes/:id/shell", body: "none", upgrade: "tcp-tunnel" },
  { method: "GET", path: "/v1/sandboxes/:id/shell-ws", body: "none", upgrade: "websocket" },
];

/** Every name a 4xx `data` may use: body fields, params, query, headers and the generic parts of a request. */
export const NAMEABLE = new Set<string>([
  ...ROUTES.flatMap((r) => [...Object.keys(r.fields ?? {}), ...Object.keys(r.query ?? {})]),
  "id", "ip", "port", "keys", "path", "body", "route", "url", "request", "headers", "method", "version",
  "api_key", "content-length", "transfer-encoding", "content-type", "host", "upgrade", "status", "expect", "quota", "rate_limit",
  "sec-websocket-key", "sec-websocket-version",
]);
