/**
 * Test clients for the upgrade routes: a raw `Connection: Upgrade` request
 * (tunnel, shell) that yields the switched socket or the JSON refusal, shell
 * frame helpers, and a tiny screen that waits for text.
 */
import { request } from "node:http";
import type { Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { encodeShellFrame } from "../../src/api/upgrade/shell-frame-decoder.js";

export type UpgradeResult =
  | { status: 101; socket: Socket; headers: Record<string, string | string[] | undefined> }
  | { status: number; json: any; headers: Record<string, string | string[] | undefined> };

/** POSTs an Upgrade request; resolves with the switched socket (101) or the refusal. */
export function upgrade(
  baseUrl: string,
  path: string,
  opts: { key?: string | null; upgrade?: string; method?: string; headers?: Record<string, string> } = {},
): Promise<UpgradeResult> {
  const u = new URL(path, baseUrl);
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { Connection: "Upgrade", Upgrade: opts.upgrade ?? "tcp-tunnel", ...opts.headers };
    if (opts.key) headers["x-api-key"] = opts.key;
    const req = request({ host: u.hostname, port: u.port, path: u.pathname + u.search, method: opts.method ?? "POST", headers });
    req.on("upgrade", (res, socket, head) => {
      if (head.length) socket.unshift(head);
      resolve({ status: 101, socket, headers: res.headers });
    });
    req.on("response", (res) => {
      let text = "";
      res.on("data", (c: Buffer) => (text += c.toString()));
      res.on("end", () => {
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = text;
        }
        resolve({ status: res.statusCode ?? 0, json, headers: res.headers });
      });
    });
    req.on("error", reject);
    req.end();
  });
}

/** Like `upgrade`, but fails the test unless it switched. */
export async function mustUpgrade(baseUrl: string, path: string, key: string): Promise<Socket> {
  const r = await upgrade(baseUrl, path, { key });
  if (r.status !== 101 || !("socket" in r)) throw new Error(`expected 101, got ${r.status}: ${JSON.stringify((r as { json: unknown }).json)}`);
  return r.socket;
}

export const dataFrame = (text: string | Buffer) => encodeShellFrame({ type: "data", data: Buffer.isBuffer(text) ? text : Buffer.from(text) });
export const resizeFrame = (rows: number, cols: number) => encodeShellFrame({ type: "resize", rows, cols });

/** Everything a stream printed, with a wait for a pattern. */
export class Screen {
  text = "";
  constructor(stream: NodeJS.EventEmitter) {
    stream.on("data", (c: Buffer) => (this.text += c.toString("utf8")));
    stream.on("message", (c: Buffer) => (this.text += c.toString("utf8")));
  }
  async waitFor(re: RegExp, timeoutMs = 15_000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.text.match(re);
      if (m) return m;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${re}; screen:\n${this.text.slice(-2000)}`);
      await sleep(20);
    }
  }
}

/** Reads a stream to its end. */
export async function readAll(s: NodeJS.ReadableStream): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c as Buffer);
  return Buffer.concat(parts);
}
