/**
 * Runs the DNS forwarder (dns-forwarder-main.ts) inside Hutch's network
 * namespace for the sandboxes that have `*.host` egress rules, and keeps it
 * told which those are.
 *
 * Why its own process, not part of the netns dialer: it parses packets from
 * untrusted guests and upstream, so a fault there must not take ingress and
 * tunnels down with it (nor the other way round); it is needed only while
 * some sandbox has a wildcard rule, so it starts with the first one; and it
 * is restarted at once when it dies (the dialer restarts lazily, on the
 * next dial), with the whole table sent again. The server is the source of
 * truth (the firewall re-applies every live sandbox's policy at start-up),
 * so nothing is kept on disk: a restarted server or forwarder rebuilds it.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import type { NetLogger } from "./host-network.js";
import type { WildcardClients } from "./wildcard-learner.js";

export interface DnsForwarderOptions {
  netns: string;
  /** The nft table (family ip) holding the clients' sets. */
  table: string;
  /** Where it listens (the bridge's address) and the port the DNAT points at. */
  listenIp: string;
  port: number;
  /** The sandbox CIDR: the only clients it answers. */
  cidr: string;
  /** Upstream resolvers (the guests' own). */
  resolvers: string[];
  log?: NetLogger;
}

/** A start or a table update not answered in this long failed. */
const ANSWER_TIMEOUT_MS = 15_000;
const RESTART_MIN_MS = 500;
const START_TRIES = 3;
const RESTART_MAX_MS = 30_000;

interface Child {
  proc: ChildProcess;
  ready: Promise<boolean>;
}

export class DnsForwarder {
  #child: Child | undefined;
  #clients: WildcardClients = {};
  #seq = 0;
  readonly #acks = new Map<number, (ok: boolean) => void>();
  #closed = false;
  #restartMs = RESTART_MIN_MS;
  #restartTimer: NodeJS.Timeout | undefined;

  constructor(private readonly opts: DnsForwarderOptions) {}

  /**
   * Replaces the table of clients (sandbox IP → wildcard rules), starting
   * the forwarder if it is not running and some client needs it. Resolves
   * true once the forwarder answers with this table, false when it cannot
   * run (the caller then leaves those sandboxes' DNS as it is).
   */
  async setClients(clients: WildcardClients): Promise<boolean> {
    this.#clients = clients;
    if (this.#closed) return false;
    if (!this.#child && Object.keys(clients).length === 0) return true;
    // A few tries: the forwarder of a server that just died may still hold
    // the port for a moment.
    for (let attempt = 0; attempt < START_TRIES && !this.#closed; attempt++) {
      if (attempt > 0) await new Promise((r) => setTimeout(r, RESTART_MIN_MS * attempt));
      const child = this.#start();
      if (await child.ready) return this.#send(child);
    }
    return false;
  }

  /** Stops the forwarder for good. */
  close(): void {
    this.#closed = true;
    if (this.#restartTimer) clearTimeout(this.#restartTimer);
    this.#child?.proc.kill("SIGTERM");
    this.#child = undefined;
    for (const done of [...this.#acks.values()]) done(false);
  }

  #send(child: Child): Promise<boolean> {
    const seq = ++this.#seq;
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => finish(false), ANSWER_TIMEOUT_MS);
      const finish = (ok: boolean) => {
        clearTimeout(timer);
        this.#acks.delete(seq);
        resolve(ok);
      };
      this.#acks.set(seq, finish);
      child.proc.stdin!.write(JSON.stringify({ seq, clients: this.#clients }) + "\n");
    });
  }

  #start(): Child {
    if (this.#child) return this.#child;
    const o = this.opts;
    const js = fileURLToPath(new URL("./dns-forwarder-main.js", import.meta.url));
    // Under tsx (tests run from src) only the .ts file exists.
    const entry = existsSync(js) ? [js] : ["--import", "tsx", fileURLToPath(new URL("./dns-forwarder-main.ts", import.meta.url))];
    const args = [o.netns, o.table, o.listenIp, String(o.port), o.cidr, o.resolvers.join(",")];
    const proc = spawn("ip", ["netns", "exec", o.netns, process.execPath, ...entry, ...args], { stdio: ["pipe", "pipe", "pipe"] });
    proc.stdin!.on("error", () => {}); // a dead child: "exit" reports it
    let stderr = "";
    proc.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr = (stderr + d).slice(-2000)));
    const child: Child = { proc, ready: Promise.resolve(false) };
    child.ready = new Promise<boolean>((resolveReady) => {
      const timer = setTimeout(() => {
        o.log?.warn({ stderr: stderr.trim() }, "dns forwarder did not start in time");
        proc.kill("SIGKILL");
      }, ANSWER_TIMEOUT_MS);
      createInterface({ input: proc.stdout! }).on("line", (line) => {
        let m: { ready?: boolean; ack?: number; learned?: object; warn?: string };
        try {
          m = JSON.parse(line) as typeof m;
        } catch {
          return;
        }
        if (m.ready) {
          clearTimeout(timer);
          this.#restartMs = RESTART_MIN_MS;
          resolveReady(true);
        } else if (typeof m.ack === "number") {
          this.#acks.get(m.ack)?.(true);
        } else if (m.learned) {
          o.log?.info(m.learned, "egress wildcard learned");
        } else if (m.warn) {
          o.log?.warn({ warn: m.warn }, "dns forwarder");
        }
      });
      proc.once("error", (e) => o.log?.warn({ err: e.message }, "dns forwarder could not start"));
      proc.once("exit", (code, sig) => {
        clearTimeout(timer);
        resolveReady(false);
        if (this.#child === child) this.#child = undefined;
        for (const done of [...this.#acks.values()]) done(false);
        if (this.#closed) return;
        o.log?.warn({ code, sig, stderr: stderr.trim() }, "dns forwarder exited");
        this.#scheduleRestart();
      });
    });
    this.#child = child;
    return child;
  }

  /** Starts it again (with the table) after a growing pause, while a client needs it. */
  #scheduleRestart(): void {
    if (this.#restartTimer || Object.keys(this.#clients).length === 0) return;
    const wait = this.#restartMs;
    this.#restartMs = Math.min(RESTART_MAX_MS, wait * 2);
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = undefined;
      void this.setClients(this.#clients);
    }, wait);
    this.#restartTimer.unref();
  }
}
