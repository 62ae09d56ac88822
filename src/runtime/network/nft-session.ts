/**
 * nftables commands inside Hutch's network namespace, through one long-lived
 * libnftables context instead of an `nft` process per command.
 *
 * Why: an `nft -f` process costs ~17 ms of CPU here (start-up, then a fetch
 * of the ruleset cache) whatever its script, and the firewall runs one per
 * create, destroy, egress change and every second for the meters; on a
 * warm-pool create it was most of the hand-over. A helper started once in
 * the namespace (python3's ctypes on Debian's libnftables.so.1, the library
 * the `nft` tool is built on, so the command language and error messages are
 * the same) answers a command in about a millisecond.
 *
 * Protocol: one JSON request per line on the helper's stdin
 * (`{"cmd": "...", "json": bool}`), one JSON answer per line on its stdout
 * (`{"rc": n, "out": "...", "err": "..."}`), strictly in order. A command
 * buffer runs as one nft transaction, as with `nft -f`.
 *
 * When the helper cannot start (no python3 or libnftables) the session falls
 * back to the `nft` tool for good; when it dies, the commands it held fail
 * and the next one starts a new helper.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { RuntimeError } from "../errors.js";
import type { NetLogger } from "./host-network.js";
import { runCommand } from "./run-command.js";

/** What an nft command answered (the shape of `runCommand`'s result). */
export interface NftResult {
  code: number;
  stdout: string;
  stderr: string;
}

const HELPER = String.raw`
import ctypes, json, sys
lib = ctypes.CDLL("libnftables.so.1")
lib.nft_ctx_new.restype = ctypes.c_void_p
lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
for f in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
    getattr(lib, f).argtypes = [ctypes.c_void_p]
for f in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
    getattr(lib, f).restype = ctypes.c_char_p
    getattr(lib, f).argtypes = [ctypes.c_void_p]
lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
def context():
    ctx = lib.nft_ctx_new(0)
    if not ctx or lib.nft_ctx_buffer_output(ctx) or lib.nft_ctx_buffer_error(ctx):
        sys.exit(3)
    return ctx
lib.nft_ctx_free(context())
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    # A context per command, as the nft tool has: a context keeps its
    # ruleset cache, and a reused one prints stale counters for a reset.
    ctx = context()
    lib.nft_ctx_output_set_flags(ctx, 16 if req.get("json") else 0)
    rc = lib.nft_run_cmd_from_buffer(ctx, req["cmd"].encode())
    out = (lib.nft_ctx_get_output_buffer(ctx) or b"").decode(errors="replace")
    err = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode(errors="replace")
    lib.nft_ctx_free(ctx)
    print(json.dumps({"rc": rc, "out": out, "err": err}), flush=True)
`;

/** An answer that has not come in this long means the helper is stuck. */
const TIMEOUT_MS = 15_000;

interface Pending {
  resolve(r: NftResult): void;
  reject(e: Error): void;
}

interface Helper {
  child: ChildProcess;
  ready: Promise<boolean>;
  pending: Pending[];
}

export class NftSession {
  #helper: Helper | undefined;
  /** The helper could not start here: use the `nft` tool. */
  #fallback = false;
  #closed = false;

  constructor(
    private readonly netns: string,
    private readonly log?: NetLogger,
  ) {}

  /**
   * Runs `cmd` (one or more nft commands, one transaction) and answers what
   * nft would: code 0 and its output, or non-zero and its error message.
   * `json` asks for JSON output (`nft -j`).
   */
  async run(cmd: string, opts: { json?: boolean } = {}): Promise<NftResult> {
    if (this.#closed) throw new RuntimeError("internal", "nft session is closed");
    const h = this.#fallback ? undefined : this.#start();
    if (!h || !(await h.ready)) return this.#viaTool(cmd, opts.json ?? false);
    return new Promise<NftResult>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#fail(h, new RuntimeError("internal", `nft helper did not answer in ${TIMEOUT_MS} ms`));
      }, TIMEOUT_MS);
      h.pending.push({
        resolve: (r) => (clearTimeout(timer), resolve(r)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
      h.child.stdin!.write(JSON.stringify({ cmd, json: opts.json ?? false }) + "\n");
    });
  }

  /** Ends the helper (commands still queued fail). */
  close(): void {
    this.#closed = true;
    if (this.#helper) this.#fail(this.#helper, new RuntimeError("internal", "nft session closed"));
  }

  #start(): Helper {
    if (this.#helper) return this.#helper;
    const child = spawn("ip", ["netns", "exec", this.netns, "python3", "-c", HELPER], { stdio: ["pipe", "pipe", "pipe"] });
    let stderr = "";
    child.stderr!.on("data", (b: Buffer) => (stderr = (stderr + b.toString()).slice(-2000)));
    const h: Helper = { child, pending: [], ready: Promise.resolve(false) };
    h.ready = new Promise<boolean>((resolveReady) => {
      const lines = createInterface({ input: child.stdout! });
      let started = false;
      lines.on("line", (line) => {
        if (!started) {
          started = true;
          resolveReady(true);
          return;
        }
        const p = h.pending.shift();
        if (!p) return;
        try {
          const a = JSON.parse(line) as { rc: number; out: string; err: string };
          p.resolve({ code: a.rc, stdout: a.out, stderr: a.err });
        } catch (err) {
          p.reject(new RuntimeError("internal", `nft helper answered garbage: ${(err as Error).message}`));
        }
      });
      const gone = (why: string) => {
        if (!started) {
          // Never came up: python3 or libnftables is missing here.
          this.#fallback = true;
          this.log?.warn({ why, stderr: stderr.trim() }, "nft helper unavailable; running the nft tool per command");
          resolveReady(false);
        }
        this.#fail(h, new RuntimeError("internal", `nft helper ended: ${why} ${stderr.trim()}`.trim()));
      };
      child.once("exit", (code, sig) => gone(sig ? `killed by ${sig}` : `exit ${code}`));
      child.once("error", (e) => gone(e.message));
    });
    child.stdin!.on("error", () => {}); // a dead helper: "exit" reports it
    this.#helper = h;
    return h;
  }

  /** Forgets helper `h` (killing it) and fails what it held. */
  #fail(h: Helper, err: Error): void {
    if (this.#helper === h) this.#helper = undefined;
    if (h.child.exitCode === null && h.child.signalCode === null) h.child.kill("SIGKILL");
    for (const p of h.pending.splice(0)) p.reject(err);
  }

  async #viaTool(cmd: string, json: boolean): Promise<NftResult> {
    const r = await runCommand("ip", ["netns", "exec", this.netns, "nft", ...(json ? ["-j"] : []), "-f", "-"], { input: cmd, allowFail: true });
    return { code: r.code, stdout: r.stdout, stderr: r.stderr };
  }
}
