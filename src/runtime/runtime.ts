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
import type { Readable } from "node:stream";

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
}

export interface ExecOutcome {
  /** Exit code; 128+N when killed by signal N; non-zero when `error` is set. */
  exitCode: number;
  /** Set when the command could not be started (e.g. no such file). */
  error?: string;
  /** Signal number when the command was killed by a signal. */
  signal?: number;
}

/** One VMM process found running on the host (for reconciliation). */
export interface RunningMachine {
  id: string;
  pid: number;
}

export type MachineExitListener = (id: string, reason: string) => void;

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
   * Called once at server start: finds VMs still running from a previous
   * server process, re-attaches to those in `ids`, and kills and cleans up
   * any VMM process or directory that is not in `ids`. Returns those of `ids`
   * that are alive; the rest are gone (core marks them failed).
   */
  reconcile(ids: string[]): Promise<RunningMachine[]>;

  /** Registers a listener for VMs that die without `destroy` (crash, SIGKILL). */
  onExit(listener: MachineExitListener): void;

  /** Images built on this host, and the default. */
  images(): Promise<{ images: ImageInfo[]; default: string }>;

  capacity(): RuntimeCapacity;

  /** Detaches from all VMs without stopping them (server shutdown). */
  close(): Promise<void>;
}
