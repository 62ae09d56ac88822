/** Parsers for repeatable and typed command line flags (commander argParsers). */
import { readFileSync, statSync } from "node:fs";
import { InvalidArgumentError } from "commander";

/** Collects a repeatable flag into an array. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** Collects `K=V` pairs of a repeatable flag into a record. */
export function collectEnv(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const eq = value.indexOf("=");
  if (eq <= 0) throw new InvalidArgumentError(`expected KEY=VALUE, got "${value}"`);
  return { ...previous, [value.slice(0, eq)]: value.slice(eq + 1) };
}

/** A non-negative integer. */
export function integer(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError(`expected a whole number, got "${value}"`);
  return Number(value);
}

/** A TCP port, 0 allowed where the OS should pick. */
export function port(value: string): number {
  const n = integer(value);
  if (n > 65535) throw new InvalidArgumentError(`port out of range: ${value}`);
  return n;
}

/** `on` / `off` (also true/false, yes/no). */
export function onOff(value: string): boolean {
  const v = value.toLowerCase();
  if (["on", "true", "yes", "1"].includes(v)) return true;
  if (["off", "false", "no", "0"].includes(v)) return false;
  throw new InvalidArgumentError(`expected on or off, got "${value}"`);
}

/**
 * An SSH public key given literally (`ssh-ed25519 AAAA…`) or as a file
 * (`~/.ssh/id_ed25519.pub`); a file may hold several keys, one a line.
 */
export function collectSshKeys(value: string, previous: string[] = []): string[] {
  if (/^(ssh-|ecdsa-|sk-)/.test(value.trim())) return [...previous, value.trim()];
  const path = value.replace(/^~(?=\/)/, process.env.HOME ?? "~");
  try {
    if (!statSync(path).isFile()) throw new Error("not a file");
  } catch {
    throw new InvalidArgumentError(`"${value}" is neither an SSH public key nor a readable file`);
  }
  const keys = readFileSync(path, "utf8")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"));
  if (keys.length === 0) throw new InvalidArgumentError(`${value} holds no key`);
  return [...previous, ...keys];
}
