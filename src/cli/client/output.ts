/** Plain output helpers: JSON, aligned tables, key/value blocks. */

/** Prints `value` as pretty JSON on stdout. */
export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Renders rows as a left-aligned table with a header row. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n") + "\n";
}

/** Renders an object as `key: value` lines (arrays joined, objects as JSON). */
export function keyValues(obj: Record<string, unknown>): string {
  const keys = Object.keys(obj);
  const width = Math.max(...keys.map((k) => k.length));
  return (
    keys
      .map((k) => {
        const v = obj[k];
        const s = v === null || v === undefined ? "-" : Array.isArray(v) ? v.join(", ") || "-" : typeof v === "object" ? JSON.stringify(v) : String(v);
        return `${`${k}:`.padEnd(width + 1)} ${s}`;
      })
      .join("\n") + "\n"
  );
}
