/**
 * The read-only catalogs: shapes, rootfs images and hosts.
 */
import type { Runtime } from "../runtime/runtime.js";
import type { HostRepository } from "./repositories.js";
import type { Scheduler } from "./scheduler.js";
import { SHAPES, type Shape } from "./shapes.js";

export interface RootfsCatalog {
  names: string[];
  default: string;
  entries: Array<{ name: string; description?: string }>;
}

export interface HostSummary {
  id: string;
  status: "active" | "draining" | "dead";
  freeMib: number;
  vmCount: number;
  rootfses: string[];
}

export class CatalogService {
  readonly #runtime: Runtime;
  readonly #hosts: HostRepository;
  readonly #scheduler: Scheduler;
  readonly #disabled: readonly string[];

  constructor(deps: { runtime: Runtime; hosts: HostRepository; scheduler: Scheduler; disabledRootfs: readonly string[] }) {
    this.#runtime = deps.runtime;
    this.#hosts = deps.hosts;
    this.#scheduler = deps.scheduler;
    this.#disabled = deps.disabledRootfs;
  }

  shapes(): readonly Shape[] {
    return SHAPES;
  }

  /** Built images minus the disabled ones. */
  async rootfs(): Promise<RootfsCatalog> {
    const { images, default: def } = await this.#runtime.images();
    const usable = images.filter((i) => !this.#disabled.includes(i.name));
    return {
      names: usable.map((i) => i.name),
      default: def,
      entries: usable.map((i) => (i.description ? { name: i.name, description: i.description } : { name: i.name })),
    };
  }

  async hosts(): Promise<HostSummary[]> {
    const rootfs = (await this.rootfs()).names;
    const out: HostSummary[] = [];
    for (const h of await this.#hosts.list()) {
      const { freeMib, vmCount } = await this.#scheduler.freeMib(h.id);
      out.push({ id: h.id, status: h.status, freeMib, vmCount, rootfses: h.id === this.#scheduler.localHostId ? rootfs : [] });
    }
    return out;
  }
}
