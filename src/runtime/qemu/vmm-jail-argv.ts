/**
 * The command line and mount table of the VMM jail (see vmm-jail.ts): one
 * `hutch-jailer` process (jailer/jailer.c) that does every step itself and
 * execs QEMU, or, without it, two root shell scripts, then prlimit → chroot
 * → setpriv before QEMU's binary (a dozen execs: 70–280 ms per launch on
 * this 2-core host under load). Pure except for reading device numbers and
 * the host's /usr links.
 */
import { statSync } from "node:fs";
import { lstat, readlink } from "node:fs/promises";
import path from "node:path";
import type { Accel } from "../host-info.js";
import type { TapSpec } from "../network/host-network.js";

/**
 * Runs first, as root, in the host's mount namespace: joins the cgroups
 * (`ip netns exec` then mounts a fresh /sys, without /sys/fs/cgroup).
 */
const CGROUP_SCRIPT = `set -e
n=$1; shift
while [ "$n" -gt 0 ]; do echo $$ > "$1/cgroup.procs"; shift; n=$((n - 1)); done
exec "$@"`;

/** Runs in the netns's private mount namespace, as root; see the module comment. */
const JAIL_SCRIPT = `set -e
root=$1; fstab=$2; links=$3; devs=$4; nodes=$5; owner=$6; shift 6
mount -t tmpfs -o mode=0755,size=1m,nosuid hutch-jail "$root"
mkdir -p "$root/dev/net"
for d in $devs; do : > "$root$d"; done
for n in $nodes; do
  p=\${n%%:*}; mm=\${n#*:}
  mknod -m 0600 "$root$p" c "\${mm%%:*}" "\${mm#*:}"; chown "$owner" "$root$p"
done
for l in $links; do ln -s "\${l#*=}" "$root/\${l%%=*}"; done
mount -a -T "$fstab"
exec "$@"`;

/**
 * Where QEMU finds the tap that `hutch-jailer --tap` made (`-netdev
 * tap,fd=N`): above stdio and the fds a launch passes on (3: a migration stream).
 */
export const JAIL_TAP_FD = 8;

/** Devices every user may open anyway: bound into the jail as they are. */
const BOUND_DEVICES = ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"];

/** What `jailArgv` needs. */
export interface JailArgvInput {
  /** The jail's mount point (a tmpfs is mounted there in the VMM's mount namespace). */
  root: string;
  /** Its mount table (`jailFstab`), in a root-only directory. */
  fstab: string;
  /** "name=target" symlinks of / into /usr (`mergedUsrLinks`). */
  links: string[];
  uid: number;
  gid: number;
  accel: Accel;
  /** cgroup directories to join. */
  cgroups: string[];
  nofile: number;
  nproc: number;
  /** The `hutch-jailer` binary; the shell chain without it. */
  jailer?: string;
  /**
   * The tap for the jailer to create in the netns and leave open at
   * JAIL_TAP_FD (needs `jailer`): the jail then has no /dev/net/tun.
   */
  tap?: TapSpec;
}

/**
 * The argv before QEMU's binary, as a function of the netns prefix it wraps:
 * `hutch-jailer … --netns NAME … --` when there is a jailer and the prefix is
 * `ip netns exec NAME`; else [join cgroups] → netns prefix → [mounts] →
 * prlimit → chroot → setpriv.
 */
export function jailArgv(i: JailArgvInput): (netnsPrefix: string[]) => string[] {
  if (i.tap && !i.jailer) throw new Error("only hutch-jailer makes a jail's tap");
  // World-usable devices are bound; the tun (unless QEMU inherits its tap) and KVM devices are nodes of the jail's own, owned by its uid.
  const nodes = [...(i.tap ? [] : ["/dev/net/tun"]), ...(i.accel === "kvm" ? ["/dev/kvm"] : [])].map((d) => `${d}:${deviceNumbers(d)}`);
  if (i.jailer) {
    const jailer = i.jailer;
    const tail = [
      ...(i.tap ? ["--tap", tapArg(i.tap), "--tap-fd", String(JAIL_TAP_FD)] : []),
      "--root", i.root, "--fstab", i.fstab,
      ...i.links.flatMap((l) => ["--link", l]), ...BOUND_DEVICES.flatMap((d) => ["--dev", d]), ...nodes.flatMap((n) => ["--node", n]),
      "--uid", String(i.uid), "--gid", String(i.gid), "--nofile", String(i.nofile), "--nproc", String(i.nproc), "--",
    ];
    const cgroups = i.cgroups.flatMap((c) => ["--cgroup", c]);
    return (netns) => {
      const [ip, sub, exec, name, ...rest] = netns;
      if (ip === "ip" && sub === "netns" && exec === "exec" && name && rest.length === 0) return [jailer, ...cgroups, "--netns", name, ...tail];
      // Another way into the namespace: it wraps the jailer.
      return [...netns, jailer, ...cgroups, ...tail];
    };
  }
  const jail = [
    "/bin/sh", "-c", JAIL_SCRIPT, "hutch-jail", i.root, i.fstab, i.links.join(" "), BOUND_DEVICES.join(" "), nodes.join(" "), `${i.uid}:${i.gid}`,
    "prlimit", `--nofile=${i.nofile}`, `--nproc=${i.nproc}`, "--core=0", "--",
    "chroot", i.root,
    "setpriv", "--reuid", String(i.uid), "--regid", String(i.gid), "--clear-groups",
    "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--",
  ];
  const join = i.cgroups.length ? ["/bin/sh", "-c", CGROUP_SCRIPT, "hutch-cgroup", String(i.cgroups.length), ...i.cgroups] : [];
  return (netns) => [...join, ...netns, ...jail];
}

/** What one VM's jail shows, for `jailFstab`. */
export interface JailView {
  /** Its own directory (read-write). */
  dir: string;
  /** Bound read-only. */
  readOnly: string[];
  /** Bound read-write (templates: their files' modes decide). */
  shared: string[];
}

/** The jail's mount table: /usr and devices, read-only images, shared templates, its own directory; same paths as on the host. */
export function jailFstab(root: string, v: JailView): string {
  const r = (p: string) => path.join(root, p);
  const lines: string[][] = [["/usr", r("/usr"), "bind,ro,nosuid,X-mount.mkdir"]];
  for (const d of BOUND_DEVICES) lines.push([d, r(d), "bind,nosuid"]);
  for (const p of new Set(v.readOnly)) if (!p.startsWith("/usr/")) lines.push([p, r(p), "bind,ro,nosuid,nodev,X-mount.mkdir"]);
  for (const p of new Set(v.shared)) lines.push([p, r(p), "bind,nosuid,nodev,X-mount.mkdir"]);
  lines.push([v.dir, r(v.dir), "bind,nosuid,nodev,X-mount.mkdir"]);
  return lines.map(([src, dst, o]) => `${fstabEscape(src!)} ${fstabEscape(dst!)} none ${o} 0 0`).join("\n") + "\n";
}

/** Merged /usr: /bin, /lib… are symlinks into it; the jail gets the same links ("name=target"). */
export async function mergedUsrLinks(): Promise<string[]> {
  const links: string[] = [];
  for (const name of ["bin", "sbin", "lib", "lib64", "lib32", "libx32"]) {
    try {
      const st = await lstat(`/${name}`);
      if (st.isSymbolicLink()) links.push(`${name}=${await readlink(`/${name}`)}`);
      else if (st.isDirectory()) throw new Error(`/${name} is a directory (no merged /usr): not supported by the VMM jail`);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
  }
  return links;
}

/** `--tap NAME[,NAME]...:BRIDGE:ALIAS` (jailer/tap.c). */
function tapArg(t: TapSpec): string {
  for (const n of [...t.names, t.bridge]) {
    if (!/^[A-Za-z0-9_.-]{1,15}$/.test(n)) throw new Error(`invalid interface name: ${n}`);
  }
  if (t.names.length === 0 || !/^[^:]{0,255}$/.test(t.alias)) throw new Error(`invalid tap spec: ${JSON.stringify(t)}`);
  return `${t.names.join(",")}:${t.bridge}:${t.alias}`;
}

/** "major:minor" of character device `dev` (Linux's encoding of st_rdev). */
function deviceNumbers(dev: string): string {
  const rdev = BigInt(statSync(dev).rdev);
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}

/** fstab fields escape whitespace and backslashes as octal. */
function fstabEscape(p: string): string {
  return p.replace(/[\\ \t\n]/g, (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, "0")}`);
}
