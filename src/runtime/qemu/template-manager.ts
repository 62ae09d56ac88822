/**
 * Templates of (rootfs, shape, disk) for QemuRuntime: loaded from the data
 * dir when built before, built in the background otherwise, one build at a
 * time (each is a full VM boot; the host is small). A create asks `get`:
 * the template when ready, else undefined (it cold boots) and the build is
 * queued, so later creates of that shape restore in a fraction of the time.
 */
import path from "node:path";
import type { MachineShape } from "../runtime.js";
import { templateKey, templatesDir } from "../snapshot/snapshot-paths.js";
import type { SnapshotDeps } from "../snapshot/snapshot-vm.js";
import { removeStaleTemplates, templateInputs } from "../snapshot/template-inputs.js";
import { buildTemplate, loadTemplate, type Template } from "../snapshot/template.js";

/** What a template build writes besides its RAM file (disk metadata, state), MiB. */
const TEMPLATE_DISK_EXTRA_MIB = 64;

/** A failed build is not retried for this long (ms). */
const RETRY_AFTER_MS = 60_000;

export class TemplateManager {
  readonly #ready = new Map<string, Template>();
  readonly #pending = new Map<string, Promise<Template | undefined>>();
  readonly #failedAt = new Map<string, number>();
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;
  readonly #abort = new AbortController();

  constructor(
    private readonly d: SnapshotDeps,
    private readonly bootTimeoutMs: number,
    /** Throws unless the data dir has room for a build (its RAM file, disk and state); no check without it. */
    private readonly admitDisk?: (needMib: number, what: string) => void,
  ) {}

  /** A name for `shape` alone (rootfs, vCPUs, RAM, disk), e.g. to group warm VMs. */
  static shapeKey(shape: MachineShape): string {
    return `${shape.rootfs}/${shape.vcpu}c${shape.memMib}m${shape.diskMib}d`;
  }

  /**
   * Template directory key of `shape` built from today's images and QEMU;
   * undefined when its image or the kernel is not there (no template can
   * exist: the create's cold boot reports what is missing).
   */
  key(shape: MachineShape): string | undefined {
    try {
      return templateKey(shape.rootfs, shape.vcpu, shape.memMib, shape.diskMib, templateInputs(this.d, shape.rootfs));
    } catch {
      return undefined;
    }
  }

  /**
   * Removes, before any build, templates made from older images or QEMU
   * that no sandbox descends from (call once the runtime has reconciled).
   */
  prune(): Promise<void> {
    const p = this.#queue.then(async () => {
      for (const key of await removeStaleTemplates(this.d)) this.d.log?.info({ key }, "removed outdated template");
    });
    this.#queue = p.catch((err: unknown) => this.d.log?.warn({ err }, "could not prune templates"));
    return this.#queue as Promise<void>;
  }

  /** The ready template of `shape`, or undefined (and a build is queued). */
  get(shape: MachineShape): Template | undefined {
    const key = this.key(shape);
    if (key === undefined) return undefined;
    const t = this.#ready.get(key);
    if (!t) void this.ensure(shape);
    return t;
  }

  /**
   * The template of `shape`: loaded, or built after the builds queued before
   * it. Undefined when the build failed (logged; retried after a minute).
   */
  ensure(shape: MachineShape): Promise<Template | undefined> {
    const key = this.key(shape);
    if (key === undefined) return Promise.resolve(undefined);
    const ready = this.#ready.get(key);
    if (ready) return Promise.resolve(ready);
    const pending = this.#pending.get(key);
    if (pending) return pending;
    const failed = this.#failedAt.get(key);
    if (this.#closed || (failed !== undefined && Date.now() - failed < RETRY_AFTER_MS)) return Promise.resolve(undefined);
    const p = this.#queue.then(() => this.#load(key, shape));
    this.#queue = p;
    this.#pending.set(key, p);
    void p.finally(() => this.#pending.delete(key));
    return p;
  }

  /** Stops queuing builds and aborts the running one (its VM is stopped, its directory removed). */
  async close(): Promise<void> {
    this.#closed = true;
    this.#abort.abort(new Error("runtime closing"));
    await this.#queue.catch(() => {});
  }

  async #load(key: string, shape: MachineShape): Promise<Template | undefined> {
    if (this.#closed) return undefined;
    try {
      const t0 = Date.now();
      const found = await loadTemplate(path.join(templatesDir(this.d.dataDir), key));
      // A build writes the template's whole RAM file, its disk's metadata and its state.
      if (!found) this.admitDisk?.(shape.memMib + TEMPLATE_DISK_EXTRA_MIB, `the template ${key}`);
      const t = found ?? (await buildTemplate(this.d, shape, this.bootTimeoutMs, this.#abort.signal));
      this.#ready.set(key, t);
      this.#failedAt.delete(key);
      if (!found) this.d.log?.info({ key, ms: Date.now() - t0 }, "template ready");
      return t;
    } catch (err) {
      if (this.#closed) return undefined;
      this.#failedAt.set(key, Date.now());
      this.d.log?.error({ key, err }, "template build failed; creates of this shape cold boot");
      return undefined;
    }
  }
}
