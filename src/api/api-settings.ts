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
}
