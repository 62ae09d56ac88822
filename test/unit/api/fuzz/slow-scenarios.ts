/**
 * Requests that arrive slowly or not at all: bodies cut short then silence,
 * a close or a half-close, headers byte by byte or cut short, uploads that
 * dribble or stop, a chunked body with no last chunk, an upgrade cut short.
 * Each says what the server must answer: 408 within its request timeout,
 * a normal answer, anything, or nothing (the client left).
 */
import { rawSend, requestBytes, type RawResponse } from "./raw-client.js";
import { ROUTES, type FuzzRoute } from "./route-table.js";

export interface SlowOutcome {
  res: RawResponse;
  expect: "408" | "ok" | "any" | "none";
  route: FuzzRoute;
  method: string;
}

export interface SlowScenario {
  name: string;
  run: () => Promise<SlowOutcome>;
}

/** The scenarios against a server on `port`, aimed at the running sandbox `victim()`. */
export function slowScenarios(port: number, key: string, victim: () => string, boundMs: number): SlowScenario[] {
  const head = (): [string, string][] => [["Host", "127.0.0.1"], ["Connection", "close"], ["X-Api-Key", key]];
  const route = (path: string, method: string) => ROUTES.find((r) => r.path === path && r.method === method)!;
  const createBody = Buffer.from(JSON.stringify({ shape: "s-1vcpu-256mb", name: "slow" }));
  return [
    {
      name: "half a JSON body, then silence",
      run: async () => {
        const bytes = requestBytes("POST", "/v1/sandboxes", [...head(), ["Content-Type", "application/json"], ["Content-Length", String(createBody.length + 50)]], createBody.subarray(0, 10));
        return { res: await rawSend(port, [bytes], { timeoutMs: boundMs, after: "stall" }), expect: "408", route: route("/v1/sandboxes", "POST"), method: "POST" };
      },
    },
    {
      name: "half a JSON body, then the client closes",
      run: async () => {
        const bytes = requestBytes("POST", `/v1/sandboxes/${victim()}/exec`, [...head(), ["Content-Type", "application/json"], ["Content-Length", "200"]], Buffer.from('{"cmd":"ec'));
        return { res: await rawSend(port, [bytes], { timeoutMs: boundMs, after: "destroy" }), expect: "none", route: route("/v1/sandboxes/:id/exec", "POST"), method: "POST" };
      },
    },
    {
      name: "half a JSON body, then half-close",
      run: async () => {
        const bytes = requestBytes("PATCH", `/v1/sandboxes/${victim()}`, [...head(), ["Content-Type", "application/json"], ["Content-Length", "200"]], Buffer.from('{"ingress_enabled":tr'));
        return { res: await rawSend(port, [bytes], { timeoutMs: boundMs, after: "end" }), expect: "any", route: route("/v1/sandboxes/:id", "PATCH"), method: "PATCH" };
      },
    },
    {
      name: "headers byte by byte",
      run: async () => {
        const bytes = requestBytes("GET", "/v1/whoami", head());
        const parts = [...bytes].map((b) => Buffer.from([b]));
        return { res: await rawSend(port, parts, { timeoutMs: boundMs, gapMs: 1 }), expect: "ok", route: route("/v1/whoami", "GET"), method: "GET" };
      },
    },
    {
      name: "headers cut short, then silence",
      run: async () => {
        const bytes = requestBytes("GET", `/v1/sandboxes/${victim()}`, head()).subarray(0, 40);
        return { res: await rawSend(port, [bytes], { timeoutMs: boundMs, after: "stall" }), expect: "408", route: route("/v1/sandboxes/:id", "GET"), method: "GET" };
      },
    },
    {
      name: "an upload dribbled in pieces",
      run: async () => {
        const body = Buffer.alloc(4096, 0x62);
        const h = requestBytes("PUT", `/v1/sandboxes/${victim()}/files?path=/tmp/dribble`, [...head(), ["Content-Length", String(body.length)]]);
        const parts = [h, ...Array.from({ length: 8 }, (_, i) => body.subarray(i * 512, (i + 1) * 512))];
        return { res: await rawSend(port, parts, { timeoutMs: boundMs, gapMs: 20 }), expect: "ok", route: route("/v1/sandboxes/:id/files", "PUT"), method: "PUT" };
      },
    },
    {
      name: "an upload that stops half way",
      run: async () => {
        const h = requestBytes("PUT", `/v1/sandboxes/${victim()}/files?path=/tmp/stalled`, [...head(), ["Content-Length", "50000"]], Buffer.alloc(1000, 0x63));
        return { res: await rawSend(port, [h], { timeoutMs: boundMs, after: "stall" }), expect: "408", route: route("/v1/sandboxes/:id/files", "PUT"), method: "PUT" };
      },
    },
    {
      name: "a chunked body with no last chunk",
      run: async () => {
        const h = requestBytes("PUT", `/v1/sandboxes/${victim()}/egress`, [...head(), ["Content-Type", "application/json"], ["Transfer-Encoding", "chunked"]], Buffer.from("5\r\n{\"egr\r\n"));
        return { res: await rawSend(port, [h], { timeoutMs: boundMs, after: "stall" }), expect: "408", route: route("/v1/sandboxes/:id/egress", "PUT"), method: "PUT" };
      },
    },
    {
      name: "an upgrade request cut short",
      run: async () => {
        const bytes = requestBytes("POST", `/v1/sandboxes/${victim()}/shell`, [...head(), ["Connection", "Upgrade"], ["Upgrade", "tcp-tunnel"]]);
        return { res: await rawSend(port, [bytes.subarray(0, bytes.length - 3)], { timeoutMs: boundMs, after: "stall" }), expect: "408", route: route("/v1/sandboxes/:id/shell", "POST"), method: "POST" };
      },
    },
  ];
}
