/**
 * Host binaries copied into the images: busybox (must be static, it runs
 * before any library is there) and Debian's bash with its libraries.
 */
import { access } from "node:fs/promises";
import { runCommand } from "../run-command.js";

/** Where Debian's busybox-static puts its binary. */
export const BUSYBOX_PATH = "/bin/busybox";

/** Throws unless `path` is a statically linked executable. */
export async function assertStatic(path: string): Promise<void> {
  await access(path);
  const dynamic = await runCommand("ldd", [path]).then(
    (r) => r.stdout.includes("=>") || r.stdout.includes("ld-linux"),
    () => false, // ldd fails with "not a dynamic executable"
  );
  if (dynamic) throw new Error(`${path} is dynamically linked; it must be static (busybox: apt-get install busybox-static)`);
}

/** Applets busybox offers, with their install paths ("usr/bin/env", "sbin/ip", ...). */
export async function busyboxApplets(busybox = BUSYBOX_PATH): Promise<string[]> {
  const { stdout } = await runCommand(busybox, ["--list-full"]);
  return stdout
    .split("\n")
    .map((s) => s.trim())
    .filter((s) => s.length > 0 && !s.includes(".."));
}

/**
 * The shared libraries `binary` loads on this host, as absolute paths
 * (including the dynamic loader), read from `ldd`.
 */
export async function sharedLibraries(binary: string): Promise<string[]> {
  const { stdout } = await runCommand("ldd", [binary]);
  const libs: string[] = [];
  for (const line of stdout.split("\n")) {
    // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
    const m = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m?.[1]) libs.push(m[1]);
  }
  return libs;
}
