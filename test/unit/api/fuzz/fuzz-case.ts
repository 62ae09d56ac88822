/**
 * One fuzzed request: a route from the table, then mutations of its id,
 * method, query, body, framing and headers. A case built with no mutation
 * but one broken body field or query value records that name in `expect`.
 */
import fc from "fast-check";
import { brokenJsonBody, deepJsonText, hostileQuery, hostileString, junkSegment, pathSafe, wrongTypeFor } from "./hostile.js";
import { requestBytes } from "./raw-client.js";
import { ROUTES, type FuzzRoute } from "./route-table.js";

/** What the fuzzer needs of the live server to aim requests. */
export interface FuzzTargets {
  victimId: () => string;
  victimIp: () => string;
  otherId: () => string;
  key: string;
  otherKey: string;
}

export interface FuzzCase {
  /** A short description for fast-check's counterexample (the bytes can be megabytes). */
  [fc.toStringMethod]: () => string;
  route: FuzzRoute;
  method: string;
  target: string;
  bytes: Buffer;
  /** The single broken field/parameter a 4xx must name (only on single-fault cases). */
  expect?: string;
  /** Whose key went out (for cleaning up what a valid create made). */
  as: "key" | "other" | "none";
  /** An upgrade was asked: stop reading at the status line. */
  upgrade: boolean;
  /**
   * Bytes follow the declared body (a Content-Length lie): they parse as a
   * second, malformed request whose 400 may be the answer the client sees
   * while the first request was accepted.
   */
  pipelined: boolean;
}

const WRONG_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "TRACE", "PROPFIND", "get", "FOO", "G\u00e9T"];
const CONTENT_TYPES = [
  "text/plain",
  "application/octet-stream",
  "multipart/form-data; boundary=x",
  "application/x-www-form-urlencoded",
  "application/json; charset=utf-16",
  "application/json; charset=latin1",
  "APPLICATION/JSON",
  "application/json, text/plain",
  "application/jsonx",
  "json",
  ";;;",
  "",
];

type Seg = { kind: "victim" | "other" | "junk"; text: string };

function segmentArb(t: FuzzTargets, kind: "id" | "ip" | "port", onlyValid = false): fc.Arbitrary<Seg> {
  const good: fc.Arbitrary<Seg> =
    kind === "id" ? fc.constant(null).map(() => ({ kind: "victim" as const, text: t.victimId() }))
    : kind === "ip" ? fc.constant(null).map(() => ({ kind: "victim" as const, text: t.victimIp() }))
    : fc.constantFrom("22", "80", "8080").map((p) => ({ kind: "victim" as const, text: p }));
  if (onlyValid) return good;
  return fc.oneof(
    { weight: 6, arbitrary: good },
    { weight: 1, arbitrary: fc.constant(null).map(() => ({ kind: "other" as const, text: t.otherId() })) },
    { weight: 3, arbitrary: junkSegment.map((text) => ({ kind: "junk" as const, text })) },
  );
}

interface BodyChoice {
  bytes?: Buffer;
  /** The one field made wrong, the rest valid. */
  broken?: string;
  contentType: string;
}

function bodyArb(route: FuzzRoute): fc.Arbitrary<BodyChoice> {
  const json = (v: unknown): BodyChoice => ({ bytes: Buffer.from(JSON.stringify(v)), contentType: "application/json" });
  if (route.body === "bytes") {
    return fc.oneof(
      fc.uint8Array({ maxLength: 2048 }).map((a) => ({ bytes: Buffer.from(a), contentType: "application/octet-stream" })),
      // Around the fuzz server's 64 KiB file limit.
      fc.integer({ min: 60_000, max: 70_000 }).map((n) => ({ bytes: Buffer.alloc(n, 0x61), contentType: "application/octet-stream" })),
      fc.constant({ contentType: "application/octet-stream" }),
    );
  }
  if (route.body === "none") {
    return fc.oneof(
      { weight: 4, arbitrary: fc.constant({ contentType: "" }) },
      { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }).map(json) },
      { weight: 1, arbitrary: brokenJsonBody("{}").map((bytes) => ({ bytes, contentType: "application/json" })) },
    );
  }
  const valid = route.valid!();
  const fields = Object.entries(route.fields ?? {});
  const validText = JSON.stringify(valid);
  return fc.oneof(
    { weight: 2, arbitrary: fc.constant(json(valid)) },
    {
      weight: 6,
      arbitrary: fc
        .constantFrom(...fields)
        .chain(([name, kinds]) => wrongTypeFor(kinds).map((v) => ({ ...json({ ...valid, [name]: v }), broken: name }))),
    },
    {
      weight: 3,
      arbitrary: fc.tuple(fc.constantFrom(...fields), hostileString).map(([[name], v]) => json({ ...valid, [name]: v })),
    },
    { weight: 1, arbitrary: fc.constantFrom(...fields).map(([name]) => json(Object.fromEntries(Object.entries(valid).filter(([k]) => k !== name)))) },
    { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 4 }).map(json) },
    { weight: 1, arbitrary: fc.dictionary(hostileString, fc.jsonValue({ maxDepth: 2 }), { maxKeys: 8 }).map((extra) => json({ ...valid, ...extra })) },
    {
      weight: 1,
      arbitrary: fc.tuple(fc.constantFrom(...fields), deepJsonText).map(([[name], deep]) => ({
        bytes: Buffer.from(`${validText.slice(0, -1)}${validText.length > 2 ? "," : ""}"${name}":${deep}}`),
        contentType: "application/json",
      })),
    },
    { weight: 1, arbitrary: deepJsonText.map((d) => ({ bytes: Buffer.from(d), contentType: "application/json" })) },
    { weight: 2, arbitrary: brokenJsonBody(validText).map((bytes) => ({ bytes, contentType: "application/json" })) },
    // Over the 1 MiB JSON limit.
    { weight: 1, arbitrary: fc.constant(null).map(() => json({ ...valid, pad: "x".repeat(1024 * 1024 + 10) })) },
  );
}

/** The route's valid query with one parameter given a hostile value (named in `broken`). */
function brokenQueryArb(route: FuzzRoute): fc.Arbitrary<{ text: string; broken?: string }> {
  return fc.tuple(fc.constantFrom(...Object.keys(route.query!)), hostileString).map(([name, v]) => {
    const q = new URLSearchParams({ ...route.query, [name]: v.replace(/[\ud800-\udfff]/g, "\ufffd") });
    return { text: q.toString(), broken: name };
  });
}

/** Single-fault bodies: one field of the wrong type on JSON routes; a small valid body or none elsewhere. */
function singleBodyArb(route: FuzzRoute): fc.Arbitrary<BodyChoice> {
  if (route.body === "bytes") return fc.uint8Array({ maxLength: 1024 }).map((a) => ({ bytes: Buffer.from(a), contentType: "application/octet-stream" }));
  if (route.body === "none") return fc.constant({ contentType: "" });
  const valid = route.valid!();
  return fc
    .constantFrom(...Object.entries(route.fields ?? {}))
    .chain(([name, kinds]) => wrongTypeFor(kinds).map((v) => ({ bytes: Buffer.from(JSON.stringify({ ...valid, [name]: v })), contentType: "application/json", broken: name })));
}

type Framing = "honest" | "chunked" | "short-length" | "dup-length" | "conflict-length" | "te-and-cl" | "bad-te" | "no-length" | "junk-length";

/**
 * Builds the cases: one route at a time, each part mutated or left valid.
 * `single`: only one body field (or, on routes without a body, one query
 * parameter) is broken and everything else is valid, so the 4xx must name it.
 */
export function fuzzCaseArb(t: FuzzTargets, mode: "any" | "single" = "any"): fc.Arbitrary<FuzzCase> {
  const single = mode === "single";
  /** In single-fault mode the valid choice, else the hostile one. */
  const knob = <T>(valid: fc.Arbitrary<T>, hostile: fc.Arbitrary<T>): fc.Arbitrary<T> => (single ? valid : hostile);
  const routes = single ? ROUTES.filter((r) => r.fields || r.query) : ROUTES;
  return fc.constantFrom(...routes).chain((route) =>
    fc
      .record({
        id: knob(segmentArb(t, "id", true), segmentArb(t, "id")),
        ip: knob(segmentArb(t, "ip", true), segmentArb(t, "ip")),
        port: knob(segmentArb(t, "port", true), segmentArb(t, "port")),
        method: knob(fc.constant(route.method), fc.oneof({ weight: 8, arbitrary: fc.constant(route.method) }, { weight: 1, arbitrary: fc.constantFrom(...WRONG_METHODS) })),
        pathTrick: knob(fc.constant((p: string) => p), fc.oneof(
          { weight: 8, arbitrary: fc.constant((p: string) => p) },
          {
            weight: 1,
            arbitrary: fc.constantFrom(
              (p: string) => p.replace("/v1/", "//v1//"),
              (p: string) => p + "/",
              (p: string) => p + "/..",
              (p: string) => p.replace("/v1/", "/v1/./"),
              (p: string) => p.replace("/v1/", "/v1/%2e/"),
              (p: string) => p.replace("/v1/", "/V1/"),
              (p: string) => `http://127.0.0.1${p}`,
              (p: string) => p + "%00",
              (p: string) => p + "/" + "x".repeat(5000),
              (p: string) => p + "#frag",
            ),
          },
        )),
        query: knob(route.fields || !route.query ? fc.constant({ text: route.query ? new URLSearchParams(route.query).toString() : "" }) : brokenQueryArb(route), fc.oneof(
          { weight: 3, arbitrary: fc.constant({ text: route.query ? new URLSearchParams(route.query).toString() : "" }) },
          { weight: 1, arbitrary: fc.constant({ text: "" }) },
          { weight: 3, arbitrary: route.query ? brokenQueryArb(route) : hostileQuery([]).map((text) => ({ text })) },
          { weight: 1, arbitrary: hostileQuery(Object.keys(route.query ?? {})).map((text) => ({ text })) },
        )),
        body: knob(singleBodyArb(route), bodyArb(route)),
        contentType: knob(fc.constant(undefined), fc.oneof({ weight: 6, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.constantFrom(...CONTENT_TYPES) })),
        framing: knob(fc.constant<Framing>("honest"), fc.oneof(
          { weight: 10, arbitrary: fc.constant<Framing>("honest") },
          { weight: 2, arbitrary: fc.constant<Framing>("chunked") },
          {
            weight: 2,
            arbitrary: fc.constantFrom<Framing>("short-length", "dup-length", "conflict-length", "te-and-cl", "bad-te", "no-length", "junk-length"),
          },
        )),
        auth: knob(fc.constant<[string, string][]>([["X-Api-Key", t.key]]), fc.oneof(
          { weight: 12, arbitrary: fc.constant<[string, string][]>([["X-Api-Key", t.key]]) },
          {
            weight: 2,
            arbitrary: fc.constantFrom<[string, string][]>(
              [],
              [["X-Api-Key", ""]],
              [["X-Api-Key", "hk_wrong"]],
              [["X-Api-Key", t.otherKey]],
              [["Authorization", `Bearer ${t.key}`]],
              [["Authorization", "Bearer "]],
              [["Authorization", `Basic ${t.key}`]],
              [["X-Api-Key", t.key], ["X-Api-Key", t.key]],
              [["X-Api-Key", t.key], ["X-Api-Key", t.otherKey]],
              [["X-Api-Key", `${t.key}\u00e9`]],
              [["X-Api-Key", "k".repeat(5000)]],
              [["X-Api-Key", "k".repeat(20_000)]],
            ),
          },
        )),
        extra: knob(fc.constant<[string, string][]>([]), fc.oneof(
          { weight: 8, arbitrary: fc.constant<[string, string][]>([]) },
          {
            weight: 2,
            arbitrary: fc.array(
              fc.tuple(
                fc.oneof(fc.constantFrom("X-Request-Id", "Accept", "Accept-Encoding", "Expect", "Cookie", "Origin", "X-Forwarded-For", "Upgrade", "Connection"), fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,30}$/)),
                fc.oneof(hostileString.map((v) => Buffer.from(v).toString("latin1")), fc.constantFrom("100-continue", "gzip, br", "close", "keep-alive, Upgrade", "h2c")),
              ),
              { maxLength: 6 },
            ),
          },
          { weight: 1, arbitrary: fc.integer({ min: 50, max: 300 }).map((n) => Array.from({ length: n }, (_, i): [string, string] => [`X-Many-${i}`, "v"])) },
          { weight: 1, arbitrary: fc.constantFrom<[string, string][]>([["Host", "a"], ["Host", "b"]], [["Bad Header", "x"]], [["X-Nul", "a\u0000b"]], [["X-Cr", "a\rb"]], [["X-Big", "v".repeat(17_000)]]) },
        )),
        upgradeHeaders: knob(fc.constant<[string, string][]>([]), fc.oneof(
          { weight: 10, arbitrary: fc.constant<[string, string][]>([]) },
          {
            weight: route.upgrade ? 20 : 1,
            arbitrary: fc.constantFrom<[string, string][]>(
              [["Connection", "Upgrade"], ["Upgrade", route.upgrade ?? "tcp-tunnel"]],
              [["Connection", "Upgrade"], ["Upgrade", "websocket"], ["Sec-WebSocket-Version", "13"], ["Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="]],
              [["Connection", "Upgrade"], ["Upgrade", "websocket"]],
              [["Connection", "Upgrade"], ["Upgrade", "websocket"], ["Sec-WebSocket-Version", "99"], ["Sec-WebSocket-Key", "short"]],
              [["Connection", "Upgrade"], ["Upgrade", "websocket"], ["Sec-WebSocket-Version", "13"], ["Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="], ["Sec-WebSocket-Protocol", ",,bad proto"]],
              [["Connection", "Upgrade"], ["Upgrade", ""]],
              [["Connection", "Upgrade"], ["Upgrade", "h2c"]],
            ),
          },
        )),
        omitHost: knob(fc.constant(false), fc.oneof({ weight: 20, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) })),
      })
      .map((c): FuzzCase => {
        let path = route.path
          .replace(":id", c.id.kind === "junk" ? c.id.text : pathSafe(c.id.text))
          .replace(":ip", c.ip.kind === "junk" ? c.ip.text : c.ip.text)
          .replace(":port", c.port.text);
        path = c.pathTrick(path);
        const target = c.query.text ? `${path}?${c.query.text}` : path;
        const headers: [string, string][] = [];
        if (!c.omitHost) headers.push(["Host", "127.0.0.1"]);
        headers.push(["Connection", "close"], ...c.auth, ...c.extra, ...c.upgradeHeaders);
        const ct = c.contentType ?? c.body.contentType;
        const body = c.body.bytes;
        if (ct && body !== undefined) headers.push(["Content-Type", ct]);
        let payload = body;
        if (body !== undefined) {
          switch (c.framing) {
            case "honest":
              headers.push(["Content-Length", String(body.length)]);
              break;
            case "chunked": {
              headers.push(["Transfer-Encoding", "chunked"]);
              const mid = Math.floor(body.length / 2);
              const chunk = (b: Buffer) => (b.length ? Buffer.concat([Buffer.from(`${b.length.toString(16)}\r\n`), b, Buffer.from("\r\n")]) : Buffer.alloc(0));
              payload = Buffer.concat([chunk(body.subarray(0, mid)), chunk(body.subarray(mid)), Buffer.from("0\r\n\r\n")]);
              break;
            }
            case "short-length":
              headers.push(["Content-Length", String(Math.max(0, body.length - 3))]);
              break;
            case "dup-length":
              headers.push(["Content-Length", String(body.length)], ["Content-Length", String(body.length)]);
              break;
            case "conflict-length":
              headers.push(["Content-Length", String(body.length)], ["Content-Length", String(body.length + 1)]);
              break;
            case "te-and-cl":
              headers.push(["Content-Length", String(body.length)], ["Transfer-Encoding", "chunked"]);
              break;
            case "bad-te":
              headers.push(["Transfer-Encoding", "gzip"], ["Content-Length", String(body.length)]);
              break;
            case "junk-length":
              headers.push(["Content-Length", "-1"]);
              break;
            case "no-length":
              break;
          }
        }
        const allValid =
          c.method === route.method && c.id.kind === "victim" && c.ip.kind === "victim" && c.port.kind === "victim" &&
          c.auth.length === 1 && c.auth[0]![1] === t.key && c.extra.length === 0 && c.upgradeHeaders.length === 0 &&
          !c.omitHost && c.contentType === undefined && c.framing === "honest";
        const pathUntouched = c.pathTrick("/v1/a") === "/v1/a";
        const queryValid = !("broken" in c.query);
        let expect: string | undefined;
        if (allValid && pathUntouched) {
          if (c.body.broken && queryValid) expect = c.body.broken;
          else if (
            "broken" in c.query && !c.body.broken &&
            (route.body === "json" ? c.body.bytes?.toString() === JSON.stringify(route.valid!()) : (c.body.bytes?.length ?? 0) < 60_000)
          ) {
            expect = (c.query as { broken: string }).broken;
          }
        }
        const summary = `${c.method} ${target.length > 160 ? `${target.slice(0, 160)}…(${target.length})` : target} [${payload?.length ?? 0} body bytes, ${c.framing}]`;
        return {
          [fc.toStringMethod]: () => summary,
          route,
          method: c.method,
          target,
          bytes: requestBytes(c.method, target, headers, payload),
          ...(expect ? { expect } : {}),
          as: c.auth.length === 1 && c.auth[0]![1] === t.key ? "key" : c.auth.some(([, v]) => v === t.otherKey) ? "other" : "none",
          upgrade: c.upgradeHeaders.length > 0,
          // Without a length a body is not one (PUT/POST/PATCH), so it too parses as a next request.
          pipelined: (c.framing === "short-length" || c.framing === "no-length") && (body?.length ?? 0) > 0,
        };
      }),
  );
}
