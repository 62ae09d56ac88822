/**
 * The Debian mirror this host's apt uses, so debootstrap fetches from the
 * same place (the only network these hosts may reach).
 */
import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";

/** Used when no apt source names a Debian archive. */
export const FALLBACK_MIRROR = "http://deb.debian.org/debian";

/**
 * Finds the first URI of a source serving `suite` in deb822 files
 * (sources.list.d/*.sources) or one-line sources.list files.
 */
export async function hostMirror(suite: string, aptDir = "/etc/apt"): Promise<string> {
  const files: string[] = [];
  try {
    for (const f of (await readdir(join(aptDir, "sources.list.d"))).sort()) files.push(join(aptDir, "sources.list.d", f));
  } catch {
    // no sources.list.d
  }
  files.push(join(aptDir, "sources.list"));
  for (const file of files) {
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch {
      continue;
    }
    const found = file.endsWith(".sources") ? fromDeb822(text, suite) : fromOneLine(text, suite);
    if (found) return found;
  }
  return FALLBACK_MIRROR;
}

/** Parses deb822 stanzas: `URIs:` of a stanza whose `Suites:` has `suite` and `Types:` has deb. */
export function fromDeb822(text: string, suite: string): string | undefined {
  for (const stanza of text.split(/\n\s*\n/)) {
    const field = (name: string) =>
      new RegExp(`^${name}:\\s*(.+)$`, "mi").exec(stanza.replace(/^#.*$/gm, ""))?.[1]?.trim().split(/\s+/) ?? [];
    if (field("Types").includes("deb") && field("Suites").includes(suite)) return field("URIs")[0];
  }
  return undefined;
}

/** Parses `deb [opts] URI suite components` lines. */
export function fromOneLine(text: string, suite: string): string | undefined {
  for (const line of text.split("\n")) {
    const m = /^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)/.exec(line);
    if (m?.[2] === suite) return m[1];
  }
  return undefined;
}
