/** What the API layer needs besides the services (derived from Config). */
import type { IngressSettings } from "./views/sandbox-views.js";

export interface ApiSettings {
  ingress: IngressSettings;
  /** Largest file PUT /files accepts, bytes. */
  maxFileBytes: number;
  /** Interval of `{"hb":true}` frames on streaming exec, ms (5000). */
  execHeartbeatMs: number;
  /**
   * Most output (stdout + stderr bytes) a buffered exec collects; past it the
   * command is killed and the result truncated (default EXEC_MAX_OUTPUT_BYTES).
   */
  execMaxOutputBytes?: number;
  /**
   * Most NDJSON a streaming exec holds for a client that reads slower than
   * the command prints; past it the command is killed (default EXEC_STREAM_BACKLOG_BYTES).
   * A safety net for agents without exec credit (older images): with credit a
   * slow client holds the command and the backlog stays within a window.
   */
  execStreamBacklogBytes?: number;
  /** Largest JSON body, bytes (1 MiB). */
  bodyLimit: number;
  /** A request (headers and body) not fully received in this many ms is cut with a 408 (default 600000). */
  requestTimeoutMs?: number;
  /** Request headers not received in this many ms are cut with a 408 (default 15000). */
  headersTimeoutMs?: number;
}
