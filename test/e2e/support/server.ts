/**
 * Starts the real Hutch server (`node dist/cli/main.js serve`) as a child
 * process on a fresh data dir, the way a user would, and hands tests a URL,
 * an API key and an SDK client. Images come from the shared cache
 * (HUTCH_CACHE_DIR), built once by `hutch images build` before the suite.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, readdir, readFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { CreateosSandboxClient } from "@nodeops-createos/sandbox";

const ROOT = resolve(fileURLToPath(import.meta.url), "../../../..");
export const CLI = join(ROOT, "dist/cli/main.js");

export interface TestServer {
  url: string;
  apiKey: string;
  dataDir: string;
  /** This server's own network namespace (HUTCH_NETNS), removed by dispose. */
  netns: string;
  /** Base URL of the ingress listener (HUTCH_INGRESS_LISTEN on a free port). */
  ingressUrl: string;
  client: CreateosSandboxClient;
  proc: ChildProcess;
  /** Everything the server printed so far (stdout + stderr). */
  output(): string;
  /** Graceful stop (SIGTERM); VMs keep running unless destroyed. */
  stop(): Promise<void>;
  /** SIGKILL the server process, as a crash would. */
  kill(): Promise<void>;
  /** Starts the server again on the same data dir and port. */
  restart(): Promise<void>;
  /** Stop, then remove the data dir. Call from `after`. */
  dispose(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once("error", rej);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => res(port));
    });
  });
}

export async function startServer(env: Record<string, string> = {}): Promise<TestServer> {
  const dataDir = await mkdtemp(join(tmpdir(), "hutch-e2e-"));
  const port = await freePort();
  const apiKey = `hk_test_${randomBytes(16).toString("hex")}`;
  const url = `http://127.0.0.1:${port}`;
  // Own netns (and so bridge, veth, link /30, nft tables) and ingress port
  // per server: suites can run side by side, and dispose removes it all.
  const netns = env.HUTCH_NETNS ?? `ht${randomBytes(3).toString("hex")}`;
  const ingressPort = await freePort();
  const ingressUrl = `http://127.0.0.1:${ingressPort}`;
  let out = "";
  let proc!: ChildProcess;

  const launch = async () => {
    proc = spawn(process.execPath, [CLI, "serve"], {
      env: {
        ...process.env,
        HUTCH_LISTEN: `127.0.0.1:${port}`,
        HUTCH_DATA_DIR: dataDir,
        HUTCH_API_KEY: apiKey,
        HUTCH_LOG_LEVEL: process.env.HUTCH_LOG_LEVEL ?? "info",
        HUTCH_NETNS: netns,
        HUTCH_INGRESS_LISTEN: `127.0.0.1:${ingressPort}`,
        // No warm pool and no template builds unless a test asks (test/e2e/snapshots.test.ts
        // does): each costs full VM boots and CI has 2 cores. Creates then cold boot.
        HUTCH_POOL_SIZE: "0",
        HUTCH_TEMPLATES: "off",
        ...env,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    proc.stdout!.on("data", (b: Buffer) => (out += b.toString()));
    proc.stderr!.on("data", (b: Buffer) => (out += b.toString()));
    const deadline = Date.now() + 180_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`server exited ${proc.exitCode}:\n${out.slice(-4000)}`);
      try {
        const r = await fetch(`${url}/readyz`);
        if (r.status === 200) return;
      } catch {
        /* not listening yet */
      }
      if (Date.now() > deadline) throw new Error(`server not ready in time:\n${out.slice(-4000)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };

  const waitExit = () =>
    proc.exitCode !== null || proc.signalCode !== null
      ? Promise.resolve()
      : new Promise<void>((r) => proc.once("exit", () => r()));

  await launch();
  const server: TestServer = {
    url,
    apiKey,
    dataDir,
    netns,
    ingressUrl,
    get proc() {
      return proc;
    },
    client: new CreateosSandboxClient({ apiKey, baseUrl: url, timeoutMs: 180_000 }),
    output: () => out,
    async stop() {
      proc.kill("SIGTERM");
      await waitExit();
    },
    async kill() {
      proc.kill("SIGKILL");
      await waitExit();
    },
    async restart() {
      await launch();
    },
    async dispose() {
      await destroyAll(server).catch(() => undefined);
      proc.kill("SIGTERM");
      await waitExit();
      await networkDown(netns, env);
      await rm(dataDir, { recursive: true, force: true });
    },
  };
  return server;
}

/** `hutch network down` for `netns`: nothing of that server's network remains. */
export async function networkDown(netns: string, env: Record<string, string> = {}): Promise<void> {
  await new Promise<void>((res) => {
    const p = spawn(process.execPath, [CLI, "network", "down"], { env: { ...process.env, ...env, HUTCH_NETNS: netns }, stdio: "ignore" });
    p.once("exit", () => res());
    p.once("error", () => res());
  });
}

/** Raw HTTP helper for what the SDK does not expose (status codes, headers). */
export async function api(
  server: Pick<TestServer, "url" | "apiKey">,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Headers; json: any; text: string }> {
  const r = await fetch(`${server.url}${path}`, {
    method,
    headers: {
      "x-api-key": server.apiKey,
      ...(body !== undefined ? { "content-type": "application/json" } : {}),
      ...headers,
    },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await r.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: r.status, headers: r.headers, json, text };
}

async function destroyAll(server: TestServer): Promise<void> {
  const r = await api(server, "GET", "/v1/sandboxes?limit=500");
  const rows: { id: string; status: string }[] = r.json?.data?.data ?? [];
  await Promise.all(
    rows.filter((s) => s.status !== "destroyed" && s.status !== "failed").map((s) => api(server, "DELETE", `/v1/sandboxes/${s.id}`)),
  );
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const l = await api(server, "GET", "/v1/sandboxes?limit=500");
    const live = (l.json?.data?.data ?? []).filter((s: any) => s.status === "destroying");
    if (live.length === 0) return;
    await new Promise((res) => setTimeout(res, 200));
  }
}

/** Host pids whose command line mentions `needle` (e.g. a sandbox id), excluding ourselves. */
export async function pidsMentioning(needle: string): Promise<number[]> {
  const pids: number[] = [];
  for (const ent of await readdir("/proc")) {
    if (!/^\d+$/.test(ent)) continue;
    const pid = Number(ent);
    if (pid === process.pid) continue;
    try {
      const cmd = (await readFile(`/proc/${pid}/cmdline`)).toString().replace(/\0/g, " ");
      if (cmd.includes(needle) && !cmd.includes("--test")) pids.push(pid);
    } catch {
      /* gone */
    }
  }
  return pids;
}

export async function waitFor<T>(fn: () => Promise<T | undefined>, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Resolves once paused sandbox `id`'s RAM is its own file (bundle.json
 * "owned") and no QEMU works in its directory: after a first pause the
 * server moves the streamed RAM there in the background (own-ram.ts).
 */
export async function ramOwned(server: Pick<TestServer, "dataDir">, id: string, timeoutMs = 60_000): Promise<void> {
  const dir = join(server.dataDir, "sandboxes", id);
  const mem = async () => JSON.parse(await readFile(join(dir, "bundle.json"), "utf8")).mem as string;
  await waitFor(async () => ((await mem()) === "owned" && (await pidsMentioning(dir)).length === 0 ? true : undefined), timeoutMs, `${id}: RAM owned`);
}

/**
 * Resolves once the template of `shape` (its directory key without the
 * inputs fingerprint, e.g. "minimal-1_1c256m10240d") is built in `dataDir`.
 */
export async function templateBuilt(dataDir: string, shape: string, timeoutMs = 180_000): Promise<string> {
  const dir = join(dataDir, "templates");
  return waitFor(async () => {
    const names = await readdir(dir).catch(() => [] as string[]);
    const name = names.find((n) => n.startsWith(`${shape}-`) && existsSync(join(dir, n, "meta.json")));
    return name ? join(dir, name) : undefined;
  }, timeoutMs, `template ${shape}`);
}
