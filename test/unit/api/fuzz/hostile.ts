/**
 * fast-check arbitraries of hostile input: strings (NUL, lone surrogates,
 * RTL overrides, path tricks, very long), JSON values of the wrong type,
 * deeply nested and huge JSON, malformed JSON text, and junk path segments.
 */
import fc from "fast-check";

/** Strings an API sees from attackers: control bytes, broken UTF-16, traversal, injection. */
export const NASTY_STRINGS = [
  "",
  " ",
  "\u0000",
  "a\u0000b",
  "\ud800",
  "\udfff",
  "x\ud83d",
  "\u202eevil\u202c",
  "\u200f\u05d0\u05d1",
  "\ufeff",
  "\uffff",
  "😀",
  "../../../../etc/passwd",
  "/../../etc/shadow",
  "/tmp/../../etc/passwd",
  "..",
  "%2e%2e/%2e%2e/",
  "/tmp/%00",
  "C:\\Windows\\system32",
  "\r\nX-Injected: 1",
  "${process.exit()}",
  "' OR 1=1 --",
  "<script>alert(1)</script>",
  "sb_",
  "sb_00000000000000000000000000",
  "__proto__",
  "constructor",
  "NaN",
  "-1",
  "1e309",
  "0x10",
];

/** Any string: arbitrary code points, nasty constants, or long runs. */
export const hostileString: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.string({ unit: "binary", maxLength: 40 }) },
  { weight: 3, arbitrary: fc.constantFrom(...NASTY_STRINGS) },
  { weight: 1, arbitrary: fc.nat({ max: 70_000 }).map((n) => "A".repeat(n)) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom(...NASTY_STRINGS), fc.string({ maxLength: 10 })).map(([a, b]) => a + b) },
);

/** JSON kinds, to pick a value of a type a field does not accept. */
export type JsonKind = "string" | "integer" | "number" | "boolean" | "null" | "array" | "object";

const BY_KIND: Record<JsonKind, fc.Arbitrary<unknown>> = {
  string: hostileString,
  integer: fc.oneof(fc.integer(), fc.constantFrom(0, -1, 2 ** 53, -(2 ** 53), Number.MAX_SAFE_INTEGER)),
  number: fc.oneof(fc.double({ noNaN: true, noDefaultInfinity: true }), fc.constantFrom(0.5, -1e308, 1e308, 5e-324)),
  boolean: fc.boolean(),
  null: fc.constant(null),
  array: fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 5 }),
  object: fc.dictionary(hostileString, fc.jsonValue({ maxDepth: 2 }), { maxKeys: 5 }),
};

/** A value of none of the `accepted` kinds ("number" that is not an integer when integer is accepted). */
export function wrongTypeFor(accepted: readonly JsonKind[]): fc.Arbitrary<unknown> {
  const kinds = (Object.keys(BY_KIND) as JsonKind[]).filter((k) => !accepted.includes(k));
  return fc.oneof(
    ...kinds.map((k) =>
      k === "number" && accepted.includes("integer") ? fc.constantFrom(0.5, -1.25, 1e-9) : BY_KIND[k],
    ),
  );
}

/** Nested arrays/objects `depth` deep, as JSON text (built as text: no recursion). */
export function nestedJson(depth: number, kind: "array" | "object"): string {
  return kind === "array" ? "[".repeat(depth) + "]".repeat(depth) : '{"a":'.repeat(depth) + "1" + "}".repeat(depth);
}

/** A deep or wide JSON value as text: from a few levels to near the 1 MiB body limit. */
export const deepJsonText: fc.Arbitrary<string> = fc.oneof(
  fc.tuple(fc.integer({ min: 1, max: 150_000 }), fc.constantFrom("array" as const, "object" as const)).map(([d, k]) => nestedJson(d, k)),
  fc.integer({ min: 1, max: 100_000 }).map((n) => `[${Array(n).fill("0").join(",")}]`),
  fc.integer({ min: 1, max: 20_000 }).map((n) => `{${Array.from({ length: n }, (_, i) => `"k${i}":${i}`).join(",")}}`),
);

/** Bodies that are not JSON at all, or JSON cut, flipped or wrongly encoded. */
export function brokenJsonBody(valid: string): fc.Arbitrary<Buffer> {
  const bytes = Buffer.from(valid);
  return fc.oneof(
    fc.nat({ max: Math.max(0, bytes.length - 1) }).map((n) => bytes.subarray(0, n)),
    fc.tuple(fc.nat({ max: Math.max(0, bytes.length - 1) }), fc.integer({ min: 0, max: 255 })).map(([i, b]) => {
      const c = Buffer.from(bytes);
      if (c.length > 0) c[i] = b;
      return c;
    }),
    fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a)),
    fc.constant(Buffer.from(valid, "utf16le")),
    fc.constant(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), bytes])),
    fc.constantFrom(
      Buffer.from('{"__proto__":{"admin":true}}'),
      Buffer.from('{"constructor":{"prototype":{"admin":true}}}'),
      Buffer.from("null"),
      Buffer.from("NaN"),
      Buffer.from('"\\ud800"'),
      Buffer.from("{'single':1}"),
      Buffer.from('{"a":1,}'),
      Buffer.from("\u0000"),
    ),
  );
}

/** Percent-encodes every UTF-8 byte of `s` (a lone surrogate becomes U+FFFD, as a browser would send). */
export function encodeAll(s: string): string {
  return [...Buffer.from(s, "utf8")].map((b) => `%${b.toString(16).padStart(2, "0")}`).join("");
}

/** Encodes what must be encoded for a request line, leaving tricks like `%2e` and `../` as they are. */
export function pathSafe(s: string): string {
  return [...Buffer.from(s, "utf8")]
    .map((b) => (b > 0x20 && b < 0x7f && b !== 0x3f && b !== 0x23 ? String.fromCharCode(b) : `%${b.toString(16).padStart(2, "0")}`))
    .join("");
}

/** Raw path segments where an id (or ip, port) goes: traversal, encodings, junk, very long. */
export const junkSegment: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    "..",
    "%2e%2e",
    "%2E%2E%2F%2E%2E",
    "..%2f..%2fetc%2fpasswd",
    "%00",
    "sb_%00",
    "%E0%A4%A",
    "%",
    "%zz",
    "%C0%AE%C0%AE",
    "%ED%A0%80",
    "sb_../../whoami",
    "sb_" + "Z".repeat(26),
    "sb_0000000000000000000000000%2F",
    "%u0041",
    "sb_%F0%9F%98%80",
    "%E2%80%AE",
    ".",
    "~",
    "*",
    "null",
    "-1",
    "0",
    "65536",
    "99999999999999999999",
    "127.0.0.1",
    "::1",
    "192.168.0.1%00",
  ),
  fc.nat({ max: 300 }).map((n) => "a".repeat(n + 1)),
  fc.integer({ min: 1, max: 70 }).map((n) => "sb_" + "9".repeat(n)),
  hostileString.filter((s) => s.length > 0 && s.length < 200).map(encodeAll),
  hostileString.filter((s) => s.length > 0 && s.length < 200).map(pathSafe),
);

/** Query string tails that abuse the parser: arrays, objects, duplicates, junk. */
export function hostileQuery(names: readonly string[]): fc.Arbitrary<string> {
  const name = names.length > 0 ? fc.constantFrom(...names, "__proto__", "constructor") : fc.constantFrom("x", "__proto__");
  return fc.oneof(
    fc.tuple(name, hostileString).map(([n, v]) => `${n}=${encodeAll(v)}`),
    fc.tuple(name, fc.string({ maxLength: 5 }), fc.string({ maxLength: 5 })).map(([n, a, b]) => `${n}=${encodeAll(a)}&${n}=${encodeAll(b)}`),
    name.map((n) => `${n}[]=1&${n}[]=2`),
    name.map((n) => `${n}[a]=1`),
    name.map((n) => `${n}`),
    name.map((n) => `${n}=`),
    name.map((n) => `${n}=%`),
    name.map((n) => `${n}=%E0%A4%A`),
    name.map((n) => `${n}=1;${n}=2`),
    fc.constantFrom("&&&", "=", "==", "a=b=c", "%00=%00", "?", "#frag"),
  );
}
