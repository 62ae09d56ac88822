/**
 * Starts the real API over HTTP on 127.0.0.1:0 with a FakeRuntime and a
 * temp SQLite data dir, and helps tests make requests as different users.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import type { FastifyInstance } from "fastify";
import { sql, type Kysely } from "kysely";
import type { Logger } from "pino";
import { buildApp } from "../../src/api/app.js";
import { createLogger } from "../../src/api/logger.js";
import { listen } from "../../src/api/server.js";
import { coreConfig, loadConfig, type Config } from "../../src/config.js";
import { SecretBox } from "../../src/core/secret-box.js";
import { createServices, registerLocalHost, type Services } from "../../src/core/services.js";
import type { DiskAdmission } from "../../src/core/disk-admission.js";
import { kyselyRepositories } from "../../src/store/kysely-repositories.js";
import { openDatabase } from "../../src/store/open-database.js";
import type { Database } from "../../src/store/schema.js";
import { FakeRuntime } from "./fake-runtime.js";

export interface TestServer {
  url: string;
  app: FastifyInstance;
  services: Services;
  runtime: FakeRuntime;
  db: Kysely<Database>;
  dataDir: string;
  config: Config;
  /** The bootstrap user's key. */
  apiKey: string;
  /** Every log line written so far (JSON text). */
  logs(): string;
  /** Creates another user with a key. */
  newUser(name: string): Promise<string>;
  /** fetch against the server with the given key (default: bootstrap key). */
  api(method: string, path: string, body?: unknown, opts?: { key?: string | null; headers?: Record<string, string> }): Promise<ApiResponse>;
  /** Closes the app and the database; keeps the data dir. */
  close(): Promise<void>;
  /** close() and remove the data dir. */
  dispose(): Promise<void>;
}

export interface ApiResponse {
  status: number;
  headers: Headers;
  text: string;
  json: any;
}

export interface StartOptions {
  dataDir?: string;
  runtime?: FakeRuntime;
  env?: Record<string, string>;
  execHeartbeatMs?: number;
  maxFileBytes?: number;
  logLevel?: string;
  /** Request/headers receive bounds, ms (the config's defaults otherwise). */
  requestTimeoutMs?: number;
  headersTimeoutMs?: number;
  /** The data dir's free-space admission (none by default). */
  disk?: DiskAdmission;
}

/** Boots a server; reuse `dataDir` to simulate a restart. */
export async function startTestServer(opts: StartOptions = {}): Promise<TestServer> {
  const dataDir = opts.dataDir ?? (await mkdtemp(join(tmpdir(), "hutch-test-")));
  const config = loadConfig(
    { listen: "127.0.0.1:0", dataDir, cacheDir: join(dataDir, "cache") },
    {
      HUTCH_API_KEY: "hk_test_bootstrap",
      HUTCH_DISABLED_ROOTFS: "old:1",
      HUTCH_INGRESS_DOMAIN: "sb.test",
      HUTCH_HOST_ID: "local",
      ...opts.env,
    },
  );
  let logText = "";
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logText += chunk.toString();
      cb();
    },
  });
  const logger: Logger = createLogger(opts.logLevel ?? "info", sink);
  const runtime = opts.runtime ?? new FakeRuntime();
  // HUTCH_TEST_DATABASE_URL runs the suite on PostgreSQL: a fresh server
  // starts from empty tables, a restart (same dataDir) keeps them.
  const pgUrl = process.env.HUTCH_TEST_DATABASE_URL;
  if (pgUrl && !opts.dataDir) await resetPostgres(dataDir, pgUrl);
  const { db } = await openDatabase({ dataDir, databaseUrl: pgUrl ?? config.databaseUrl });
  const repos = kyselyRepositories(db);
  const secrets = await SecretBox.fromKeyFile(join(dataDir, "secret.key"));
  const services = createServices({ repos, runtime, secrets, config: coreConfig(config), log: logger, ...(opts.disk ? { disk: opts.disk } : {}) });
  await registerLocalHost(services);
  await services.auth.ensureBootstrapKey(config.apiKey);
  await services.sandboxes.recover();
  const app = await buildApp({
    services,
    logger,
    settings: {
      ingress: { domain: config.ingressDomain, scheme: config.ingressScheme },
      maxFileBytes: opts.maxFileBytes ?? config.maxFileBytes,
      execHeartbeatMs: opts.execHeartbeatMs ?? 5000,
      bodyLimit: 1024 * 1024,
      requestTimeoutMs: opts.requestTimeoutMs ?? config.requestTimeoutMs,
      headersTimeoutMs: opts.headersTimeoutMs ?? config.headersTimeoutMs,
    },
  });
  const url = await listen(app, "127.0.0.1", 0);
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await app.close();
    await services.sandboxes.close();
    await db.destroy();
  };
  const apiKey = config.apiKey!;
  return {
    url,
    app,
    services,
    runtime,
    db,
    dataDir,
    config,
    apiKey,
    logs: () => logText,
    newUser: async (name) => (await services.auth.createKey(name)).key,
    api: async (method, path, body, o = {}) => {
      const headers: Record<string, string> = { ...o.headers };
      const key = o.key === undefined ? apiKey : o.key;
      if (key !== null) headers["x-api-key"] = key;
      let payload: string | undefined;
      if (body !== undefined) {
        payload = typeof body === "string" ? body : JSON.stringify(body);
        headers["content-type"] ??= "application/json";
      }
      const res = await fetch(url + path, { method, headers, ...(payload !== undefined ? { body: payload } : {}) });
      const text = await res.text();
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      return { status: res.status, headers: res.headers, text, json };
    },
    close,
    dispose: async () => {
      await close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

async function resetPostgres(dataDir: string, url: string): Promise<void> {
  const { db } = await openDatabase({ dataDir, databaseUrl: url });
  for (const t of ["api_keys", "sandboxes", "hosts", "users", "kysely_migration", "kysely_migration_lock"]) {
    await sql`drop table if exists ${sql.table(t)} cascade`.execute(db);
  }
  await db.destroy();
}

/** A syntactically valid ed25519 OpenSSH public key (random blob). */
export function sshKey(comment = "test@hutch"): string {
  const type = "ssh-ed25519";
  const blob = Buffer.alloc(4 + type.length + 4 + 32);
  blob.writeUInt32BE(type.length, 0);
  blob.write(type, 4, "latin1");
  blob.writeUInt32BE(32, 4 + type.length);
  for (let i = 0; i < 32; i++) blob[8 + type.length + i] = (i * 37) & 255;
  return `${type} ${blob.toString("base64")} ${comment}`;
}
