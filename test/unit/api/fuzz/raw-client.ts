/**
 * A raw HTTP/1.1 client over node:net for the fuzzer: it sends exactly the
 * bytes it is given (lying headers, broken encodings, bodies cut short,
 * bytes dribbled with pauses) and reads the answer until the server closes.
 * fetch/undici would refuse or repair most of these requests.
 */
import { connect } from "node:net";

export interface RawResponse {
  /** 0 when the server closed without answering. */
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  /** Time from connect to the end of the answer (or the close), ms. */
  ms: number;
  /** The client gave up waiting (the server neither answered nor closed in time). */
  timedOut: boolean;
}

export interface RawSendOptions {
  /** Give up after this many ms (a hang). */
  timeoutMs: number;
  /** Pause between the pieces of `parts`, ms. */
  gapMs?: number;
  /** After sending every part: "stall" keeps the socket open, "end" half-closes, "destroy" drops it. */
  after?: "wait" | "stall" | "end" | "destroy";
  /** Stop reading once the status line is in (for 101 upgrades and long streams). */
  headOnly?: boolean;
}

/** Sends the parts in order and resolves with the parsed answer. */
export function rawSend(port: number, parts: Buffer[], opts: RawSendOptions): Promise<RawResponse> {
  const started = performance.now();
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let done = false;
    const sock = connect(port, "127.0.0.1");
    const finish = (timedOut: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve({ ...parseResponse(Buffer.concat(chunks)), ms: performance.now() - started, timedOut });
    };
    const timer = setTimeout(() => finish(true), opts.timeoutMs);
    sock.on("data", (c: Buffer) => {
      chunks.push(c);
      if (opts.headOnly && Buffer.concat(chunks).includes("\r\n\r\n")) finish(false);
    });
    sock.on("error", () => finish(false));
    sock.on("close", () => finish(false));
    sock.once("connect", async () => {
      for (let i = 0; i < parts.length && !done; i++) {
        if (i > 0 && opts.gapMs) await new Promise((r) => setTimeout(r, opts.gapMs));
        if (!sock.destroyed) sock.write(parts[i]!);
      }
      if (opts.after === "end") sock.end();
      else if (opts.after === "destroy") finish(false);
    });
  });
}

/** Splits status line, headers and body (de-chunked when chunked); skips interim 1xx answers (100 Continue). */
export function parseResponse(buf: Buffer): Omit<RawResponse, "ms" | "timedOut"> {
  while (/^HTTP\/1\.[01] 1(?!01)\d\d /.test(buf.subarray(0, 16).toString("latin1"))) {
    const end = buf.indexOf("\r\n\r\n");
    if (end < 0) break;
    buf = buf.subarray(end + 4);
  }
  const headEnd = buf.indexOf("\r\n\r\n");
  if (headEnd < 0) return { status: 0, headers: {}, body: Buffer.alloc(0) };
  const lines = buf.subarray(0, headEnd).toString("latin1").split("\r\n");
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? "")?.[1] ?? 0);
  const headers: Record<string, string> = {};
  for (const l of lines.slice(1)) {
    const i = l.indexOf(":");
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  let body = buf.subarray(headEnd + 4);
  if (/chunked/i.test(headers["transfer-encoding"] ?? "")) body = dechunk(body);
  return { status, headers, body };
}

function dechunk(buf: Buffer): Buffer {
  const out: Buffer[] = [];
  let at = 0;
  for (;;) {
    const eol = buf.indexOf("\r\n", at);
    if (eol < 0) break;
    const size = parseInt(buf.subarray(at, eol).toString("latin1"), 16);
    if (!Number.isFinite(size) || size === 0) break;
    out.push(buf.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
  return Buffer.concat(out);
}

/** Builds request bytes: request line, header lines as given (duplicates kept), blank line, body. */
export function requestBytes(method: string, target: string, headers: Array<[string, string]>, body?: Buffer): Buffer {
  const head = [`${method} ${target} HTTP/1.1`, ...headers.map(([k, v]) => `${k}: ${v}`)].join("\r\n") + "\r\n\r\n";
  // latin1: header bytes go out as given (a UTF-8 string is pre-encoded by the caller).
  return Buffer.concat([Buffer.from(head, "latin1"), body ?? Buffer.alloc(0)]);
}
