/** What the API layer needs besides the services (derived from Config). */
import type { IngressSettings } from "./views/sandbox-views.js";

export interface ApiSettings {
  ingress: IngressSettings;
  /** Largest file PUT /files accepts, bytes. */
  maxFileBytes: number;
  /** Interval of `{"hb":true}` frames on streaming exec, ms (5000). */
  execHeartbeatMs: number;
  /** Largest JSON body, bytes (1 MiB). */
  bodyLimit: number;
  /** A request (headers and body) not fully received in this many ms is cut with a 408 (default 600000). */
  requestTimeoutMs?: number;
  /** Request headers not received in this many ms are cut with a 408 (default 15000). */
  headersTimeoutMs?: number;
}
