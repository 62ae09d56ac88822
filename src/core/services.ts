/**
 * Wires core's services from a runtime, repositories and a secret box: the
 * single object the API and the CLI receive.
 */
import type { Logger } from "pino";
import type { Runtime } from "../runtime/runtime.js";
import { AuthService } from "./auth-service.js";
import { CachedSandboxRepository } from "./cached-sandbox-repository.js";
import { CatalogService } from "./catalog-service.js";
import type { CoreConfig } from "./core-config.js";
import type { DiskAdmission } from "./disk-admission.js";
import { GuestService } from "./guest-service.js";
import { NetworkService } from "./network-service.js";
import { RemoteAccessService } from "./remote-access-service.js";
import type { Repositories } from "./repositories.js";
import { SandboxService } from "./sandbox-service.js";
import type { SecretBox } from "./secret-box.js";
import { SnapshotService } from "./snapshot-service.js";

export interface Services {
  sandboxes: SandboxService;
  /** Pause, resume, fork, auto-pause (issue 4). */
  snapshots: SnapshotService;
  guest: GuestService;
  /** Tunnels, shells and SSH keys (issue 6). */
  remoteAccess: RemoteAccessService;
  catalog: CatalogService;
  /** Egress allowlist, bandwidth metering, ingress lookup (issue 5); call `network.start()` after recover. */
  network: NetworkService;
  auth: AuthService;
  repos: Repositories;
  config: CoreConfig;
}

/** Builds every core service; call `sandboxes.recover()` before serving. */
export function createServices(deps: {
  repos: Repositories;
  runtime: Runtime;
  secrets: SecretBox;
  config: CoreConfig;
  log: Logger;
  authCacheTtlMs?: number;
  /** Auto-pause check interval, ms (default 5000). */
  autoPauseCheckMs?: number;
  /** The data dir's free space (src/runtime/disk-space.ts); no disk admission without it. */
  disk?: DiskAdmission;
}): Services {
  // The service reads rows by id on every GET: serve those from memory.
  const repos: Repositories = { ...deps.repos, sandboxes: new CachedSandboxRepository(deps.repos.sandboxes) };
  const sandboxes = new SandboxService({ ...deps, repos });
  const network = new NetworkService({ repos, runtime: deps.runtime, sandboxes, log: deps.log });
  // Ingress traffic is activity for auto-pause.
  network.onActivity((id) => sandboxes.touch(id));
  return {
    sandboxes,
    snapshots: new SnapshotService({
      sandboxes, runtime: deps.runtime, repos, log: deps.log,
      ...(deps.autoPauseCheckMs !== undefined ? { autoPauseCheckMs: deps.autoPauseCheckMs } : {}),
    }),
    guest: new GuestService({ sandboxes, runtime: deps.runtime }),
    remoteAccess: new RemoteAccessService({ sandboxes, runtime: deps.runtime, repos, log: deps.log }),
    catalog: new CatalogService({
      runtime: deps.runtime,
      hosts: deps.repos.hosts,
      scheduler: sandboxes.scheduler,
      disabledRootfs: deps.config.disabledRootfs,
    }),
    network,
    auth: new AuthService(deps.repos.users, deps.authCacheTtlMs !== undefined ? { cacheTtlMs: deps.authCacheTtlMs } : {}),
    repos,
    config: deps.config,
  };
}

/** Registers this server's host row (single local host for now). */
export async function registerLocalHost(services: Services): Promise<void> {
  await services.repos.hosts.upsert({
    id: services.config.hostId,
    region: services.config.region,
    status: "active",
    createdAt: new Date().toISOString(),
  });
}
