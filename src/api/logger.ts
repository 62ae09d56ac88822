/**
 * The pino logger of the server. Credentials and env values are redacted
 * wherever they could appear in a logged object.
 */
import { pino, type DestinationStream, type Logger } from "pino";

/** Paths pino censors: API keys in headers, envs anywhere near the top. */
export const REDACT_PATHS = [
  'req.headers["x-api-key"]',
  'req.headers["x-auth-token"]',
  'req.headers["x-access-token"]',
  "req.headers.authorization",
  "envs",
  "*.envs",
  "*.*.envs",
  "env",
  "*.env",
  "stdin",
  "*.stdin",
  "apiKey",
  "*.apiKey",
];

/** Creates the server logger writing JSON lines to `stream` (stdout by default). */
export function createLogger(level: string, stream?: DestinationStream): Logger {
  const opts = { level, redact: { paths: REDACT_PATHS, censor: "[redacted]" } };
  return stream ? pino(opts, stream) : pino(opts);
}
