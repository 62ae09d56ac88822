/**
 * `hutch serve`: config → store (migrated) → bootstrap key → images →
 * host network → QEMU runtime → services (recovered) → API listening.
 */
import { writeFile, chmod, mkdir } from "node:fs/promises";
import { join } from "node:path";
import cliProgress from "cli-progress";
import type { Logger } from "pino";
import { buildApp } from "../../api/app.js";
import { createLogger } from "../../api/logger.js";
import { closeOnSignals, listen } from "../../api/server.js";
import { AuthService } from "../../core/auth-service.js";
import { SecretBox } from "../../core/secret-box.js";
import { createServices, registerLocalHost } from "../../core/services.js";
import { coreConfig, loadConfig, type ConfigFlags } from "../../config.js";
import { ImageStore } from "../../runtime/images/image-store.js";
import type { BuildProgress } from "../../runtime/images/build-progress.js";
import { startIngressProxy } from "../../api/ingress-proxy.js";
import { SANDBOX_STATUSES, isTerminal } from "../../core/sandbox-state.js";
import { DEFAULT_DISK_MIB } from "../../core/shapes.js";
import { HostNetwork, NS_VETH } from "../../runtime/network/host-network.js";
import { NetnsDialer } from "../../runtime/network/netns-dialer.js";
import { netnsNames } from "../../runtime/network/netns-names.js";
import { SandboxFirewall } from "../../runtime/network/sandbox-firewall.js";
import { QemuRuntime } from "../../runtime/qemu/qemu-runtime.js";
import { DiskSpace } from "../../runtime/disk-space.js";
import { VmmJail } from "../../runtime/qemu/vmm-jail.js";
import { VmmSpawner } from "../../runtime/qemu/vmm-spawner.js";
import { kyselyRepositories } from "../../store/kysely-repositories.js";
import { openDatabase } from "../../store/open-database.js";
import { AGENT_DIR } from "./package-root.js";

/** Progress of image builds: bars on a TTY, one log line per step otherwise. */
function progressReporter(log: Logger): { update: (p: BuildProgress) => void; stop: () => void } {
  if (!process.stderr.isTTY) {
    const last = new Map<string, string>();
    return {
      update: (p) => {
        const key = `${p.step}:${p.done}`;
        if (last.get(p.image) === key) return;
        last.set(p.image, key);
        log.info({ image: p.image, step: p.step, done: p.done, total: p.total }, "building image");
      },
      stop: () => undefined,
    };
  }
  const bars = new cliProgress.MultiBar({ format: "{image} [{bar}] {value}/{total} {step}", hideCursor: true, stream: process.stderr }, cliProgress.Presets.shades_classic);
  const byImage = new Map<string, cliProgress.SingleBar>();
  return {
    update: (p) => {
      let bar = byImage.get(p.image);
      if (!bar) {
        bar = bars.create(p.total, 0, { image: p.image, step: p.step });
        byImage.set(p.image, bar);
      }
      bar.setTotal(p.total);
      bar.update(p.done, { image: p.image, step: p.step });
    },
    stop: () => bars.stop(),
  };
}

/** Runs the server until SIGINT/SIGTERM. */
export async function serve(flags: ConfigFlags): Promise<void> {
  const config = loadConfig(flags);
  const log = createLogger(config.logLevel);
  await mkdir(config.dataDir, { recursive: true, mode: 0o700 });

  const { db, dialect } = await openDatabase({ dataDir: config.dataDir, databaseUrl: config.databaseUrl });
  log.info({ dialect, dataDir: config.dataDir }, "store ready");
  const repos = kyselyRepositories(db);

  const boot = await new AuthService(repos.users).ensureBootstrapKey(config.apiKey);
  if (boot?.generated) {
    const path = join(config.dataDir, "api-key");
    await writeFile(path, `${boot.key}\n`, { mode: 0o600 });
    await chmod(path, 0o600);
    // Printed once, on stdout (not the log), so it is easy to copy.
    process.stdout.write(`Generated the first API key (also saved to ${path}):\n${boot.key}\n`);
  }

  const images = new ImageStore({ cacheDir: config.cacheDir, agentDir: AGENT_DIR, log: (msg: string) => log.info({ component: "images" }, msg) });
  const progress = progressReporter(log);
  try {
    await images.ensure(undefined, progress.update);
  } finally {
    progress.stop();
  }

  const netLog = log.child({ component: "network" });
  const network = new HostNetwork({ nsName: config.netns, cidr: config.networkCidr, dns: config.dns, log: netLog });
  await network.ensure();
  // Egress rules, bandwidth counters and the ingress dialer live in the netns.
  const firewall = new SandboxFirewall({ netns: config.netns, table: netnsNames(config.netns).table, bridge: network.bridge, uplink: NS_VETH, cidr: network.cidr, dns: config.dns, log: netLog });
  await firewall.init();
  const dialer = new NetnsDialer({ netns: config.netns, socketPath: join(config.dataDir, "ingress.sock"), cidr: network.cidr, log: netLog });
  await dialer.start();

  const runtimeLog = log.child({ component: "runtime" });
  if (config.jail && process.getuid?.() !== 0) throw new Error("HUTCH_JAIL=on needs root (per-VM uids, chroot, cgroups)");
  if (!config.jail) runtimeLog.warn({}, `VMM jail off (${process.env.HUTCH_JAIL ? "HUTCH_JAIL=off" : "not running as root"}): QEMU runs with the server's privileges`);
  // Free space of the data dir (VM disks, snapshots and the database share it): admission and a reserve for the database.
  const disk = new DiskSpace({ dir: config.dataDir, minFreeMib: config.minFreeMib, reserveMib: config.diskReserveMib, log: runtimeLog });
  await disk.ensureReserve();
  disk.start();
  const jail = config.jail ? await VmmJail.create({ dataDir: config.dataDir, netns: config.netns, log: runtimeLog }) : undefined;
  const spawner = config.spawnHelper ? await VmmSpawner.create(runtimeLog) : undefined;
  const runtime = new QemuRuntime({
    dataDir: config.dataDir,
    images,
    network,
    ...(config.accel ? { accel: config.accel } : {}),
    ...(config.hostMemMib ? { memBudgetMib: config.hostMemMib } : {}),
    log: runtimeLog,
    ...(jail ? { jail } : {}),
    ...(spawner ? { spawner } : {}),
    firewall,
    dialer,
    templates: config.templates,
    ownStreams: config.ownStreams,
    spares: config.spares,
    disk,
    ...(config.agentLiveness ? { liveness: config.agentLiveness } : {}),
    consoleMaxBytes: config.consoleMaxBytes,
    // The default rootfs and smallest shape: template built at start, warm pool kept.
    warm: [{ shape: { rootfs: config.poolRootfs ?? images.defaultImage, vcpu: 1, memMib: 256, diskMib: DEFAULT_DISK_MIB }, size: config.poolSize }],
  });
  const secrets = await SecretBox.fromKeyFile(join(config.dataDir, "secret.key"));
  const services = createServices({ repos, runtime, secrets, config: coreConfig(config), log, autoPauseCheckMs: config.autoPauseCheckMs, disk });
  await registerLocalHost(services);
  await services.sandboxes.recover();
  await services.network.start();
  const live = await services.repos.sandboxes.listByStatus(SANDBOX_STATUSES.filter((s) => !isTerminal(s)));
  await firewall.prune(live.map((r) => r.id));
  const ingress = config.ingressListen && config.ingressDomain
    ? await startIngressProxy({ network: services.network, domain: config.ingressDomain, ...config.ingressListen, log: log.child({ component: "ingress" }) })
    : undefined;
  if (ingress) log.info({ url: ingress.url, domain: config.ingressDomain }, "ingress listening");

  const app = await buildApp({
    services,
    logger: log,
    settings: {
      ingress: { domain: config.ingressDomain, scheme: config.ingressScheme },
      maxFileBytes: config.maxFileBytes,
      execHeartbeatMs: 5000,
      execMaxOutputBytes: config.execMaxOutputBytes,
      execStreamBacklogBytes: config.execStreamBacklogBytes,
      bodyLimit: 1024 * 1024,
      requestTimeoutMs: config.requestTimeoutMs,
      headersTimeoutMs: config.headersTimeoutMs,
    },
  });
  const url = await listen(app, config.listenHost, config.listenPort);
  process.stdout.write(`hutch listening on ${url}\n`);
  log.info({ url, region: config.region, host: config.hostId }, "listening");

  closeOnSignals(async () => {
    await app.close();
    await ingress?.close();
    await services.network.close();
    firewall.close();
    dialer.close();
    await services.snapshots.close();
    await services.sandboxes.close();
    await runtime.close();
    spawner?.close();
    await disk.stop();
    await db.destroy();
  }, (msg) => log.info(msg));
}
