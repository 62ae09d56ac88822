/**
 * Bench-only server entry: the real API with the fake runtime on a temp data
 * dir, seeded with 1,000 sandbox rows. Prints one JSON line
 * `{url, apiKey, id}` on stdout once listening; exits on SIGTERM.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { monotonicFactory } from "ulid";
import { buildApp } from "../src/api/app.js";
import { createLogger } from "../src/api/logger.js";
import { listen } from "../src/api/server.js";
import { coreConfig, loadConfig } from "../src/config.js";
import { IpPool, intToIpv4, ipv4ToInt, macForIp } from "../src/core/ip-pool.js";
import { SecretBox } from "../src/core/secret-box.js";
import { createServices, registerLocalHost } from "../src/core/services.js";
import { kyselyRepositories } from "../src/store/kysely-repositories.js";
import { openDatabase } from "../src/store/open-database.js";
import { FakeRuntime } from "../test/support/fake-runtime.js";

const ROWS = 1000;
const dataDir = await mkdtemp(join(tmpdir(), "hutch-bench-"));
const config = loadConfig({ listen: "127.0.0.1:0", dataDir }, { HUTCH_API_KEY: "hk_bench_key", HUTCH_HOST_ID: "local" });
const log = createLogger("warn");
const { db } = await openDatabase({ dataDir });
const repos = kyselyRepositories(db);
const secrets = await SecretBox.fromKeyFile(join(dataDir, "secret.key"));
const services = createServices({ repos, runtime: new FakeRuntime(), secrets, config: coreConfig(config), log });
await registerLocalHost(services);
await services.auth.ensureBootstrapKey(config.apiKey);
const user = (await repos.users.findByName("admin"))!;

const ulid = monotonicFactory();
const pool = new IpPool(config.networkCidr);
let firstId = "";
await db.transaction().execute(async (trx) => {
  const trxRepos = kyselyRepositories(trx);
  for (let i = 0; i < ROWS; i++) {
    const now = new Date().toISOString();
    const ip = intToIpv4(ipv4ToInt(pool.gateway) + 1 + i);
    const id = `sb_${ulid()}`;
    if (i === ROWS / 2) firstId = id;
    await trxRepos.sandboxes.insert({
      id, userId: user.id, hostId: "local", name: `bench-${i}`, status: "running", shape: "s-1vcpu-256mb", rootfs: "devbox:1",
      vcpu: 1, memMib: 256, diskMib: 10240, ip, mac: macForIp(ip), region: "local", ingressEnabled: i % 2 === 0,
      autoPauseAfterSeconds: i % 3 === 0 ? 600 : null, envKeys: ["API_TOKEN"], envsSealed: secrets.seal('{"API_TOKEN":"x"}'),
      sshPubkeys: [], egress: ["*"], bandwidthQuotaBytes: 5368709120, bandwidthIngressBytes: 0, bandwidthUsedBytes: 0, spawnMs: 42.1, forkedFrom: null,
      createdAt: now, runningAt: now, pausedAt: null, lastResumedAt: null, destroyedAt: null, updatedAt: now,
    });
  }
});
await services.sandboxes.recover();
const app = await buildApp({
  services,
  logger: log,
  settings: { ingress: { domain: "sb.bench", scheme: "http" }, maxFileBytes: 1 << 20, execHeartbeatMs: 5000, bodyLimit: 1 << 20 },
});
const url = await listen(app, "127.0.0.1", 0);
process.stdout.write(`${JSON.stringify({ url, apiKey: config.apiKey, id: firstId })}\n`);

process.on("SIGTERM", () => {
  void (async () => {
    await app.close();
    await db.destroy();
    await rm(dataDir, { recursive: true, force: true });
    process.exit(0);
  })();
});
