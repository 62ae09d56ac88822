/**
 * What every answer to a fuzzed request must satisfy: no hang, no 5xx
 * (save the documented 502 of a tunnel to a closed guest port), and every
 * 4xx a JSend `fail` whose `data` names fields the API knows.
 */
import type { FuzzCase } from "./fuzz-case.js";
import type { RawResponse } from "./raw-client.js";
import { NAMEABLE } from "./route-table.js";

/** The problems with one answer (empty when it is fine). */
export function problemsOf(c: { method: string; route: FuzzCase["route"]; expect?: string }, res: RawResponse, boundMs: number): string[] {
  const p: string[] = [];
  if (res.timedOut) return [`no answer within ${boundMs} ms (hang)`];
  if (res.status === 0) return ["connection closed without an answer"];
  if (res.status >= 500) {
    const tunnel502 = res.status === 502 && c.route.path.endsWith("/tunnel/:port");
    if (!tunnel502) p.push(`status ${res.status}: ${res.body.toString().slice(0, 200)}`);
  }
  if (res.status >= 400 && res.status < 500 && c.method !== "HEAD") {
    if (!/^application\/json/.test(res.headers["content-type"] ?? "")) p.push(`4xx content-type ${res.headers["content-type"]}`);
    let json: { status?: unknown; data?: unknown } | undefined;
    try {
      json = JSON.parse(res.body.toString("utf8")) as typeof json;
    } catch {
      p.push(`4xx body is not JSON: ${JSON.stringify(res.body.toString().slice(0, 120))}`);
    }
    if (json) {
      if (json.status !== "fail") p.push(`4xx status field ${JSON.stringify(json.status)}`);
      const data = json.data;
      if (typeof data !== "object" || data === null || Array.isArray(data) || Object.keys(data).length === 0) {
        p.push(`4xx data is not a non-empty object: ${JSON.stringify(data)}`);
      } else {
        for (const [k, v] of Object.entries(data)) {
          if (typeof v !== "string" || v === "") p.push(`4xx data.${k} is not a message: ${JSON.stringify(v)}`);
          if (!NAMEABLE.has(k)) p.push(`4xx names "${k}", not a field, parameter or header of the API`);
        }
        // A head over the size limit is refused as a whole (431) before any field is looked at.
        if (c.expect && res.status !== 431 && !(c.expect in data)) p.push(`4xx does not name the broken "${c.expect}": ${JSON.stringify(data)}`);
      }
    }
  }
  if (c.expect && c.route.body === "json" && res.status < 400 && c.method === c.route.method) {
    // `expect` on a body field means a value of the wrong type: never accepted.
    if (c.route.fields && c.expect in c.route.fields) p.push(`wrong-typed "${c.expect}" accepted with ${res.status}`);
  }
  if (res.status >= 200 && res.status < 300 && /^application\/json/.test(res.headers["content-type"] ?? "") && c.method !== "HEAD") {
    try {
      const json = JSON.parse(res.body.toString("utf8")) as { status?: unknown };
      if (json.status !== "success") p.push(`2xx status field ${JSON.stringify(json.status)}`);
    } catch {
      p.push("2xx JSON body does not parse");
    }
  }
  return p;
}
