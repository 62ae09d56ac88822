/**
 * Work inside a running sandbox: exec and file transfer, checked against
 * ownership (404), status (409) and the sandbox's declared env keys (400),
 * then handed to the runtime. Runtime errors map to API errors here.
 */
import type { Readable } from "node:stream";
import type { ExecOutcome, ExecOutput, Runtime } from "../runtime/runtime.js";
import { conflict, fromRuntimeError, invalid } from "./errors.js";
import type { SandboxRecord } from "./sandbox-record.js";
import type { ExecInput } from "./sandbox-input.js";
import type { SandboxService } from "./sandbox-service.js";
import { validateGuestPath } from "./sandbox-validator.js";

/** Runs a prepared command; aborting `signal` kills it. */
export type ExecRunner = (out: ExecOutput, signal: AbortSignal) => Promise<ExecOutcome>;

export class GuestService {
  readonly #sandboxes: SandboxService;
  readonly #runtime: Runtime;

  constructor(deps: { sandboxes: SandboxService; runtime: Runtime }) {
    this.#sandboxes = deps.sandboxes;
    this.#runtime = deps.runtime;
  }

  /**
   * Checks an exec request and returns the function that runs it, so the API
   * can answer errors as JSON before it starts a stream.
   */
  async prepareExec(userId: string, id: string, input: ExecInput): Promise<ExecRunner> {
    const rec = await this.#running(userId, id);
    const env = input.env ?? {};
    for (const key of Object.keys(env)) {
      if (!rec.envKeys.includes(key)) {
        throw invalid("env", `key "${key.slice(0, 64)}" is not among the sandbox's declared envs`);
      }
    }
    if (input.cwd !== undefined && !input.cwd.startsWith("/")) throw invalid("cwd", "must be absolute");
    const req = {
      cmd: input.cmd,
      args: input.args ?? [],
      ...(Object.keys(env).length > 0 ? { env } : {}),
      ...(input.cwd !== undefined ? { cwd: input.cwd } : {}),
      ...(input.stdin !== undefined ? { stdin: Buffer.from(input.stdin, "utf8") } : {}),
    };
    return async (out, signal) => {
      // Activity for auto-pause: when it starts, and when it ends (a long command is activity too).
      this.#sandboxes.touch(id);
      try {
        return await this.#runtime.exec(id, req, out, signal);
      } catch (err) {
        throw fromRuntimeError(err, "cmd");
      } finally {
        this.#sandboxes.touch(id);
      }
    };
  }

  /** Streams `data` into a file of a running sandbox. */
  async writeFile(userId: string, id: string, path: unknown, data: Readable): Promise<void> {
    const p = validateGuestPath(path);
    await this.#running(userId, id);
    this.#sandboxes.touch(id);
    try {
      await this.#runtime.writeFile(id, p, data);
    } catch (err) {
      throw fromRuntimeError(err, "path");
    }
  }

  /** Opens a file of a running sandbox for reading. */
  async readFile(userId: string, id: string, path: unknown): Promise<Readable> {
    const p = validateGuestPath(path);
    await this.#running(userId, id);
    this.#sandboxes.touch(id);
    try {
      return await this.#runtime.readFile(id, p);
    } catch (err) {
      throw fromRuntimeError(err, "path");
    }
  }

  async #running(userId: string, id: string): Promise<SandboxRecord> {
    const rec = await this.#sandboxes.get(userId, id);
    if (rec.status !== "running") throw conflict("status", `sandbox is ${rec.status}, not running`);
    return rec;
  }
}
