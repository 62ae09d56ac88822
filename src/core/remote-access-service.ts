/**
 * Reaching into a running sandbox the way one reaches a machine of one's
 * own: TCP tunnels to any guest port (also loopback-only services), an
 * interactive shell on a PTY, and SSH (keys for root, sshd started on demand
 * when a tunnel asks for port 22). Checks ownership (404), status (409) and
 * input (400) before anything reaches the guest; runtime errors map here.
 */
import type { Duplex } from "node:stream";
import type { Logger } from "pino";
import { isRuntimeError } from "../runtime/errors.js";
import type { Runtime, ShellSession } from "../runtime/runtime.js";
import { AppError, conflict, fromRuntimeError, invalid } from "./errors.js";
import { Mutex } from "./mutex.js";
import type { Repositories } from "./repositories.js";
import type { SandboxRecord } from "./sandbox-record.js";
import type { SandboxService } from "./sandbox-service.js";
import { MAX_SSH_KEYS } from "./sandbox-validator.js";
import { isOpenSshPublicKey } from "./ssh-public-key.js";
import { SSHD_START_SCRIPT, SSHD_MISSING_EXIT } from "./sshd-start-script.js";

/** The guest port that makes sure sshd runs before relaying. */
export const SSH_PORT = 22;

/** Terminal size used until the client sends one. */
export const DEFAULT_TERMINAL = { rows: 24, cols: 80 } as const;

export interface RemoteAccessDeps {
  sandboxes: SandboxService;
  runtime: Runtime;
  repos: Repositories;
  log: Logger;
}

/** Statuses whose keys may still change (they may run again). */
const KEY_STATUSES = new Set(["creating", "running", "pausing", "paused", "resuming", "forking", "error"]);

export class RemoteAccessService {
  readonly #sandboxes: SandboxService;
  readonly #runtime: Runtime;
  readonly #repos: Repositories;
  readonly #log: Logger;
  /** The sshd start in flight per sandbox; one key update at a time. */
  readonly #sshdStarting = new Map<string, Promise<void>>();
  readonly #keysLock = new Mutex();

  constructor(deps: RemoteAccessDeps) {
    this.#sandboxes = deps.sandboxes;
    this.#runtime = deps.runtime;
    this.#repos = deps.repos;
    this.#log = deps.log;
  }

  /**
   * Opens a TCP connection to 127.0.0.1:`port` in the sandbox (for port 22,
   * after making sure sshd runs). 400 bad port, 404, 409 not running, 502
   * when nothing accepts the connection in the guest.
   */
  async openTunnel(userId: string, id: string, port: unknown): Promise<Duplex> {
    const p = typeof port === "string" && /^\d{1,5}$/.test(port) ? Number(port) : port;
    if (typeof p !== "number" || !Number.isInteger(p) || p < 1 || p > 65535) {
      throw invalid("port", "must be an integer from 1 to 65535");
    }
    await this.#running(userId, id);
    if (p === SSH_PORT) await this.#ensureSshd(id);
    try {
      const stream = await this.#runtime.openTunnel(id, p);
      this.touch(id);
      return stream;
    } catch (err) {
      if (isRuntimeError(err, "agent_error")) {
        // Typically ECONNREFUSED: nothing listens there. Safe to say so.
        throw new AppError("bad_gateway", `nothing accepted the connection on port ${p} in the sandbox`, { port: `connection to port ${p} failed` }, { cause: err });
      }
      throw fromRuntimeError(err, "port");
    }
  }

  /** Starts a login shell on a PTY in the sandbox. 404, 409 not running, 502. */
  async openShell(userId: string, id: string, size: { rows?: number; cols?: number } = {}): Promise<ShellSession> {
    await this.#running(userId, id);
    try {
      const session = await this.#runtime.openShell(id, {
        rows: size.rows ?? DEFAULT_TERMINAL.rows,
        cols: size.cols ?? DEFAULT_TERMINAL.cols,
      });
      this.touch(id);
      return session;
    } catch (err) {
      throw fromRuntimeError(err, "shell");
    }
  }

  /**
   * Adds OpenSSH keys for root (deduplicated by type and key, the first
   * comment kept); persists them and, when running, installs the whole set in
   * the guest's /root/.ssh/authorized_keys at once. Returns the total count.
   */
  async addSshPubkeys(userId: string, id: string, keys: unknown): Promise<number> {
    if (!Array.isArray(keys) || keys.length === 0) throw invalid("keys", "a non-empty array of OpenSSH public keys is required");
    keys.forEach((k, i) => {
      if (typeof k !== "string" || !isOpenSshPublicKey(k)) throw invalid("keys", `entry ${i} is not an OpenSSH public key`);
    });
    return this.#keysLock.run(async () => {
      const rec = await this.#sandboxes.get(userId, id);
      if (!KEY_STATUSES.has(rec.status)) throw conflict("status", `sandbox is ${rec.status}`);
      const merged = dedupKeys([...rec.sshPubkeys, ...(keys as string[])]);
      if (merged.length > MAX_SSH_KEYS) throw invalid("keys", `at most ${MAX_SSH_KEYS} keys per sandbox`);
      if (merged.length !== rec.sshPubkeys.length) {
        await this.#repos.sandboxes.updateSettings(id, { sshPubkeys: merged }, new Date().toISOString());
      }
      if (rec.status === "running") await this.#installKeys(id, merged);
      return merged.length;
    });
  }

  /** Activity on a sandbox (tunnel or shell traffic): see SandboxService.touch. */
  touch(id: string): void {
    this.#sandboxes.touch(id);
  }

  async #running(userId: string, id: string): Promise<SandboxRecord> {
    const rec = await this.#sandboxes.get(userId, id);
    if (rec.status !== "running") throw conflict("status", `sandbox is ${rec.status}, not running`);
    return rec;
  }

  /** Writes authorized_keys through an exec (0700 dir, 0600 file, atomic rename). */
  async #installKeys(id: string, keys: string[]): Promise<void> {
    const script =
      "umask 077 && mkdir -p /root/.ssh && chmod 700 /root/.ssh && " +
      "cat > /root/.ssh/authorized_keys.hutch && mv -f /root/.ssh/authorized_keys.hutch /root/.ssh/authorized_keys";
    const stderr: Buffer[] = [];
    try {
      const out = await this.#runtime.exec(
        id,
        { cmd: "/bin/sh", args: ["-c", script], stdin: Buffer.from(keys.map((k) => `${k}\n`).join("")) },
        { onStdout: () => {}, onStderr: (c) => stderr.push(c) },
      );
      if (out.exitCode !== 0) {
        throw new AppError("bad_gateway", "could not install the keys in the sandbox", {}, { cause: new Error(Buffer.concat(stderr).toString().slice(0, 500)) });
      }
    } catch (err) {
      throw fromRuntimeError(err, "keys");
    }
  }

  /**
   * Starts sshd in the guest unless it runs (the script is idempotent).
   * Concurrent tunnels to port 22 of one sandbox share one run.
   */
  #ensureSshd(id: string): Promise<void> {
    let p = this.#sshdStarting.get(id);
    if (!p) {
      p = this.#startSshd(id).finally(() => this.#sshdStarting.delete(id));
      this.#sshdStarting.set(id, p);
    }
    return p;
  }

  async #startSshd(id: string): Promise<void> {
    const stderr: Buffer[] = [];
    let code: number;
    try {
      const out = await this.#runtime.exec(
        id,
        { cmd: "/bin/sh", args: ["-c", SSHD_START_SCRIPT] },
        { onStdout: () => {}, onStderr: (c) => stderr.push(c) },
      );
      code = out.exitCode;
    } catch (err) {
      throw fromRuntimeError(err, "port");
    }
    if (code === SSHD_MISSING_EXIT) throw conflict("port", "this sandbox's image has no SSH server (use devbox:1)");
    if (code !== 0) {
      const detail = Buffer.concat(stderr).toString().slice(0, 500);
      this.#log.warn({ sandbox: id, code, stderr: detail }, "sshd did not start");
      throw new AppError("bad_gateway", "the SSH server did not start in the sandbox", { port: "sshd did not start" });
    }
  }
}

/** Keeps the first of keys equal in type and key material (comments ignored). */
export function dedupKeys(keys: string[]): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const raw of keys) {
    const k = raw.trim();
    const [type, blob] = k.split(/\s+/);
    const id = `${type} ${blob}`;
    if (seen.has(id)) continue;
    seen.add(id);
    out.push(k);
  }
  return out;
}
