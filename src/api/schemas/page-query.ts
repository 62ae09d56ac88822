/**
 * The `limit`/`offset` query of every paginated list. They are taken as
 * strings and parsed here: the schema layer's conversion would silently
 * truncate "1.5" to 1.
 */
import { Type } from "typebox";
import { invalid } from "../../core/errors.js";

export const PageQuery = Type.Object({
  limit: Type.Optional(Type.String()),
  offset: Type.Optional(Type.String()),
});

export const DEFAULT_LIMIT = 50;
export const MAX_LIMIT = 500;

function parseCount(field: string, text: string | undefined, min: number): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d{1,15}$/.test(text) || Number(text) < min) throw invalid(field, `must be an integer >= ${min}`);
  return Number(text);
}

/** Parsed paging values: limit default 50, clamped to 500; offset default 0. */
export function pageOf(q: { limit?: string | undefined; offset?: string | undefined }): { limit: number; offset: number } {
  const limit = parseCount("limit", q.limit, 1) ?? DEFAULT_LIMIT;
  return { limit: Math.min(limit, MAX_LIMIT), offset: parseCount("offset", q.offset, 0) ?? 0 };
}

/** The paginated list envelope `{data, pagination}`. */
export function page<T>(items: T[], total: number, p: { limit: number; offset: number }) {
  return { data: items, pagination: { total, limit: p.limit, offset: p.offset, count: items.length } };
}
