/**
 * A writer for the "newc" cpio format the kernel unpacks as initramfs.
 * Written here (instead of calling cpio) so entries get root ownership and
 * fixed timestamps without fakeroot, and the archive is byte-reproducible.
 */

/** One entry of an initramfs archive. Paths are relative ("bin/busybox"). */
export type CpioEntry =
  | { type: "dir"; path: string; mode?: number }
  | { type: "file"; path: string; data: Buffer; mode?: number }
  | { type: "symlink"; path: string; target: string }
  | { type: "char"; path: string; major: number; minor: number; mode?: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;
const MAGIC = "070701";
const TRAILER = "TRAILER!!!";

function hex8(n: number): string {
  return n.toString(16).padStart(8, "0");
}

function pad4(len: number): Buffer {
  return Buffer.alloc((4 - (len % 4)) % 4);
}

function record(ino: number, mode: number, nlink: number, data: Buffer, name: string, rdev = [0, 0]): Buffer[] {
  const nameBuf = Buffer.from(`${name}\0`, "utf8");
  const header =
    MAGIC +
    [ino, mode, 0, 0, nlink, 0, data.length, 0, 0, rdev[0] ?? 0, rdev[1] ?? 0, nameBuf.length, 0].map(hex8).join("");
  const head = Buffer.concat([Buffer.from(header, "latin1"), nameBuf]);
  return [head, pad4(head.length), data, pad4(data.length)];
}

/**
 * Serializes entries, in the given order (parents before children), into a
 * newc archive owned by root with mtime 0, ending with the TRAILER record.
 */
export function writeCpioNewc(entries: CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  for (const e of entries) {
    const name = e.path.replace(/^\/+/, "");
    switch (e.type) {
      case "dir":
        parts.push(...record(ino++, S_IFDIR | (e.mode ?? 0o755), 2, Buffer.alloc(0), name));
        break;
      case "file":
        parts.push(...record(ino++, S_IFREG | (e.mode ?? 0o644), 1, e.data, name));
        break;
      case "symlink":
        parts.push(...record(ino++, S_IFLNK | 0o777, 1, Buffer.from(e.target, "utf8"), name));
        break;
      case "char":
        parts.push(...record(ino++, S_IFCHR | (e.mode ?? 0o600), 1, Buffer.alloc(0), name, [e.major, e.minor]));
        break;
    }
  }
  parts.push(...record(0, 0, 1, Buffer.alloc(0), TRAILER));
  return Buffer.concat(parts);
}
