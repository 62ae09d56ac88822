/**
 * The VM driver interface: everything `core` may ask of a host that runs
 * sandboxes. `core` depends on this file only, never on QEMU, the agent
 * protocol or the network code behind it.
 *
 * Implementations: `QemuRuntime` (src/runtime/qemu/qemu-runtime.ts), and a
 * test double used by unit tests of core and api (test/support/fake-runtime.ts).
 *
 * Every method is keyed by the sandbox id (`sb_<ULID>`). All methods are safe
 * to call concurrently for different ids.
 */
import type { Duplex, Readable } from "node:stream";

/** Network identity of one VM on the host's sandbox network. */
export interface MachineNetwork {
  /** The address inside the guest, e.g. "192.168.0.12". */
  ip: string;
  /** Prefix length of the sandbox network, e.g. 16. */
  prefixLen: number;
  /** Default gateway (the bridge address), e.g. "192.168.0.1". */
  gateway: string;
  /** Locally administered unicast MAC, e.g. "02:fc:c0:a8:00:0c". */
  mac: string;
  /** Resolvers written to the guest's /etc/resolv.conf. */
  dns: string[];
}

/** What a VM is made of: derived from a sandbox row by core. */
export interface MachineSpec {
  /** Sandbox id, `sb_<ULID>`; also names the VM's directory on the host. */
  id: string;
  /** DNS label: the guest's hostname. */
  name: string;
  vcpu: number;
  memMib: number;
  /** Size of the writable disk in MiB (already resolved: never 0). */
  diskMib: number;
  /** Image name from the rootfs catalog, e.g. "devbox:1". */
  rootfs: string;
  net: MachineNetwork;
  /** Exported into every exec. Values are secrets: never log them. */
  envs: Record<string, string>;
  /** Installed into /root/.ssh/authorized_keys. */
  sshPubkeys: string[];
}

/** A sandbox network address held for a warm pool VM until a create takes it. */
export interface WarmAddress {
  net: MachineNetwork;
  /** The holder's proof (see `WarmAddresses.release`). */
  token: string;
  /**
   * The network policy a new sandbox at this address gets (core's default:
   * every destination, the default quota). The runtime applies it to the
   * VM that waits with the address, so a hand-over with that policy changes
   * no rule (`setNetworkPolicy`).
   */
  policy?: NetworkPolicy;
}

/** Hands out sandbox network addresses to warm pool VMs (core's scheduler). */
export interface WarmAddresses {
  /** A free address, held until released or taken by a create; undefined when none is free. */
  reserve(): Promise<WarmAddress | undefined>;
  /** Gives back an address whose VM was never handed over; a no-op once a create took it. */
  release(address: WarmAddress): void;
}

/** A claimed warm pool VM (`Runtime.claimWarm`). */
export interface WarmClaim {
  id: string;
  /** The address the VM already has: a create that uses it spares the hand-over the network change. */
  address?: WarmAddress;
}

/** A VM the runtime knows about. */
export interface MachineInfo {
  id: string;
  /** Host pid of the VMM process. */
  pid: number;
  /** Wall time from the start of `create` to the agent's first answer. */
  bootMs: number;
}

export interface ExecRequest {
  /** Program to run; not through a shell. Resolved against PATH in the guest. */
  cmd: string;
  args: string[];
  /** Extra environment on top of the sandbox envs. */
  env?: Record<string, string>;
  /** Working directory in the guest (absolute); default "/root" or "/". */
  cwd?: string;
  /** Bytes written to the command's stdin, then stdin is closed. */
  stdin?: Buffer;
}

export interface ExecOutput {
  onStdout(chunk: Buffer): void;
  onStderr(chunk: Buffer): void;
  /**
   * Optional backpressure, asked after each chunk: a promise means the
   * consumer is behind, and the command's output is held back (the command
   * blocks on its write in the guest) until it resolves; only what was
   * already under way (a bounded window) still arrives meanwhile. Absent or
   * undefined: output is taken as fast as it comes. A guest whose agent
   * predates this (an older image) ignores it, so callers still bound what
   * they hold.
   */
  ready?(): Promise<void> | undefined;
}

export interface ExecOutcome {
  /** Exit code; 128+N when killed by signal N; non-zero when `error` is set. */
  exitCode: number;
  /** Set when the command could not be started (e.g. no such file). */
  error?: string;
  /** Signal number when the command was killed by a signal. */
  signal?: number;
}

/** Terminal size and extra environment of an interactive shell. */
export interface ShellOptions {
  rows: number;
  cols: number;
  /** Extra environment on top of the sandbox envs (TERM is xterm-256color). */
  env?: Record<string, string>;
}

/** A login shell on a pseudo-terminal in the guest (see `Runtime.openShell`). */
export interface ShellSession {
  /** Terminal bytes: write what the user types, read what the terminal shows.
   *  Destroying it hangs up the terminal (SIGHUP to the shell's session). */
  stream: Duplex;
  /** Sets the terminal size (the foreground job gets SIGWINCH). */
  resize(rows: number, cols: number): void;
  /** The shell's exit code (128+N when killed by signal N); -1 when the
   *  session was hung up or the connection to the guest was lost. Never rejects. */
  exit: Promise<number>;
}

/** What the kernel enforces for one sandbox's traffic (see `Runtime.setNetworkPolicy`). */
export interface NetworkPolicy {
  /** The sandbox's IPv4 address. */
  ip: string;
  /** Egress allowlist as stored; null, empty or containing `*` allows all. */
  egress: readonly string[] | null;
  /** Quota used up: outbound connections are dropped. */
  capped: boolean;
  /**
   * Egress bytes left of the quota (absent: unmetered). The kernel drops
   * what goes past it on its own, without waiting for the next meter read.
   */
  remainingBytes?: number;
}

/** Bytes counted for one sandbox (egress: out of the netns; ingress: towards its tap). */
export interface NetworkUsage {
  egressBytes: number;
  ingressBytes: number;
}

/** One VMM process found running on the host (for reconciliation). */
export interface RunningMachine {
  id: string;
  pid: number;
  /**
   * Set when the VM is not running but paused to disk (a complete snapshot
   * bundle, no VMM process; `pid` is 0). Core keeps such sandboxes `paused`.
   */
  paused?: boolean;
  /**
   * Set when the VMM is alive but the VM stands still because a write to
   * its disk found the host's data dir full (the reason, readable). Core
   * keeps such a sandbox in `error`; `resume` continues it.
   */
  stalled?: string;
}

/** Options of {@link Runtime.fork}. */
export interface ForkOptions {
  /** Leave the child paused (files only); default false: the child runs. */
  startPaused?: boolean;
}

/** The (rootfs, shape, disk) a template or warm pool VM is made for. */
export type MachineShape = Pick<MachineSpec, "rootfs" | "vcpu" | "memMib" | "diskMib">;

export type MachineExitListener = (id: string, reason: string) => void;

/** See {@link Runtime.onStall}; `reason` is readable by the sandbox's owner. */
export type MachineStallListener = (id: string, reason: string) => void;

/** A rootfs image built and ready on this host. */
export interface ImageInfo {
  name: string;
  description: string;
}

export interface RuntimeCapacity {
  /** Memory budget for guests on this host, MiB. */
  memMib: number;
  /** vCPUs this host offers. */
  vcpus: number;
}

/**
 * The VM driver. Errors thrown are `RuntimeError`s (src/runtime/errors.ts).
 */
export interface Runtime {
  /**
   * Boots a VM for `spec` and resolves once its guest agent has answered and
   * applied the spec's identity (hostname, network, envs, keys). On failure
   * everything created for it (process, files, tap) is removed before the
   * promise rejects.
   */
  create(spec: MachineSpec, signal?: AbortSignal): Promise<MachineInfo>;

  /**
   * Stops the VM (if running) and removes everything it had on the host:
   * process, directory, disk, tap. Idempotent: an unknown id resolves.
   */
  destroy(id: string): Promise<void>;

  /** Runs a command; only while running. Aborting `signal` kills it. */
  exec(id: string, req: ExecRequest, out: ExecOutput, signal?: AbortSignal): Promise<ExecOutcome>;

  /** Writes a file (parents created, overwritten). `path` is absolute. */
  writeFile(id: string, path: string, data: Readable): Promise<void>;

  /** Opens a file for reading. Rejects `not_found` / `invalid_path` before any byte is produced. */
  readFile(id: string, path: string): Promise<Readable>;

  /**
   * Opens a TCP connection to 127.0.0.1:`port` inside the guest (also
   * services bound to loopback only); only while running. Ending the stream
   * half-closes, destroying it aborts. Rejects `agent_error` when the guest
   * refuses the connection.
   */
  openTunnel(id: string, port: number): Promise<Duplex>;

  /**
   * Starts a login shell (bash -l, else sh -l) on a new pseudo-terminal in
   * the guest, in /root with the sandbox envs; only while running.
   */
  openShell(id: string, opts: ShellOptions): Promise<ShellSession>;

  /**
   * Installs or replaces sandbox `id`'s network policy in the kernel: its
   * egress allowlist, whether its bandwidth is used up (`capped`: outbound
   * connections dropped), and its byte counters. Keyed by IP and the id's
   * tap names, so it may be called before `create` and survives
   * pause/resume; host-name rules are resolved before it resolves and kept
   * fresh. `null` removes everything of `id` (after destroy).
   */
  setNetworkPolicy(id: string, policy: NetworkPolicy | null): Promise<void>;

  /**
   * Egress/ingress bytes per sandbox counted by the kernel since the
   * previous call (read and zeroed in one step; callers add them up).
   */
  takeNetworkUsage(): Promise<Map<string, NetworkUsage>>;

  /**
   * A TCP connection to `ip:port` on the sandbox network, made from inside
   * the network namespace like any network client (the ingress proxy).
   * Rejects `not_running` when nothing accepts there.
   */
  dialGuest(ip: string, port: number): Promise<Duplex>;

  /**
   * Called once at server start: finds VMs still running from a previous
   * server process, re-attaches to those in `ids`, and kills and cleans up
   * any VMM process or directory that is not in `ids`. Returns those of `ids`
   * that are alive, or paused (`paused: true`: a complete snapshot on disk,
   * kept, never deleted); the rest are gone (core marks them failed). An
   * interrupted pause or resume settles on what exists (see docs/snapshots.md).
   * Warm pool VMs of a previous server are killed; the pool refills after.
   */
  reconcile(ids: string[]): Promise<RunningMachine[]>;

  /**
   * Pauses a running VM to disk: memory, CPU, device state and disk saved
   * under the data dir, then the VMM process and tap are gone (no host
   * memory held). On failure the VM keeps running and the promise rejects.
   * Rejects `not_running` when `id` is not running.
   */
  pause(id: string): Promise<void>;

  /**
   * Resumes a paused VM where it stopped (processes, /dev/shm, open files)
   * and re-applies `spec`'s identity (same name, IP and MAC; fresh clock and
   * RNG seed). On failure the paused snapshot stays intact, so it may be
   * retried. Rejects `no_capacity` when the host has no room. A VM stalled
   * on a full disk (`onStall`) is continued instead; rejects `disk_full`
   * when it stalls again.
   */
  resume(id: string, spec: MachineSpec): Promise<MachineInfo>;

  /**
   * Makes a new VM `child.id` from paused VM `sourceId` (same memory and
   * disk, copy-on-write: no data copied). The source stays paused. The child
   * then runs with `child`'s identity, unless `opts.startPaused` (resolves
   * undefined). On failure nothing of the child remains; the source is intact.
   */
  fork(sourceId: string, child: MachineSpec, opts?: ForkOptions): Promise<MachineInfo | undefined>;

  /**
   * Reserves an already-restored VM of the warm pool for `shape`: the
   * caller must use its id as the new sandbox's id and call `create` with it
   * (which then only hands the VM over), or `destroy` it. When the VM holds
   * an address (`useWarmAddresses`), giving the sandbox that address spares
   * the hand-over a network change. Undefined when the pool for that shape
   * is empty or disabled.
   */
  claimWarm(shape: MachineShape): WarmClaim | undefined;

  /**
   * Reserves a VMM started ahead of need for a VM of `shape` (a fork's
   * child that runs at once, a create the warm pool cannot serve): the
   * caller uses the id as the new VM's and forks or creates it, or
   * `destroy`s it. Undefined when there is none.
   */
  claimSpare?(shape: MachineShape): string | undefined;

  /**
   * Where warm pool VMs get their addresses from before they are claimed
   * (core's scheduler). Without it they wait with a link-local address and
   * the hand-over gives them the sandbox's. Set before `reconcile`.
   */
  useWarmAddresses?(source: WarmAddresses): void;

  /** Registers a listener for VMs that die without `destroy` (crash, SIGKILL). */
  onExit(listener: MachineExitListener): void;

  /**
   * Registers a listener for running VMs that stop on their own but stay
   * alive: a write to the VM's disk found the host's data dir full. Nothing
   * is lost (the write waits); the VM runs nothing until `resume(id, spec)`
   * continues it (which rejects `disk_full`, the VM stalled again, while the
   * disk is still full). Called once per stall, after the runtime made room
   * for the database (its disk reserve).
   */
  onStall(listener: MachineStallListener): void;

  /** Images built on this host, and the default. */
  images(): Promise<{ images: ImageInfo[]; default: string }>;

  capacity(): RuntimeCapacity;

  /** Detaches from all VMs without stopping them (server shutdown). */
  close(): Promise<void>;
}
