/**
 * Sandbox networking on real VMs: egress allowlist (IP, CIDR:port, domain
 * served by a resolver the test controls, live PUT, `*.host` learned from the
 * guest's own lookups), bandwidth quota and
 * recharge, a warm VM's rules before and after its hand-over, HTTP ingress
 * through the SDK's previewUrl, unique and stable IPs, and that
 * `hutch network down` leaves nothing behind. All traffic goes
 * to a network namespace the test creates (support/outside-host.ts).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { request } from "node:http";
import type { Sandbox } from "@nodeops-createos/sandbox";
import { netnsNames } from "../../src/runtime/network/netns-names.js";
import { api, pidsMentioning, startServer, waitFor, type TestServer } from "./support/server.js";
import { startOutsideHost, type OutsideHost } from "./support/outside-host.js";

const QUOTA = 1_000_000;
const SMALL = "s-1vcpu-256mb";

/** GET through the ingress listener with a given Host (names under .localhost need no DNS). */
function ingressGet(server: TestServer, url: string): Promise<{ status: number; body: string }> {
  const u = new URL(url);
  const ing = new URL(server.ingressUrl);
  return new Promise((resolve, reject) => {
    const req = request({ host: ing.hostname, port: ing.port, path: u.pathname, headers: { host: u.host } }, (res) => {
      let body = "";
      res.setEncoding("utf8").on("data", (d: string) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

function hostHas(args: string[]): boolean {
  try {
    execFileSync(args[0]!, args.slice(1), { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

describe("sandbox networking (real VMs)", { timeout: 900_000 }, () => {
  let server: TestServer;
  let outside: OutsideHost;
  const domain = "web.hutch-e2e.test";

  before(async () => {
    outside = startOutsideHost((ips) => ({
      [domain]: ips[2]!,
      "other.hutch-e2e.test": ips[1]!,
      // Under the wildcard: two names, two addresses (`wild.` itself has none).
      "a.wild.hutch-e2e.test": ips[1]!,
      "b.c.wild.hutch-e2e.test": ips[2]!,
    }));
    server = await startServer({ HUTCH_DNS: outside.dnsIp, HUTCH_BANDWIDTH_QUOTA_BYTES: String(QUOTA) });
  });

  after(async () => {
    await server?.dispose();
    outside?.close();
  });

  /**
   * An HTTP GET with busybox nc (minimal:1's static busybox wget crashes in
   * getaddrinfo): true when the outside's page came back within `waitS`.
   */
  async function reaches(sb: Sandbox, ip: string, port = 8000, waitS = 3): Promise<boolean> {
    const r = await sb.runCommand("sh", ["-c", `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w ${waitS} ${ip} ${port}`]);
    const ok = r.result.stdout.includes("hello from outside");
    if (!ok) console.log(`# ${ip}:${port} not reached: ${JSON.stringify(r.result).slice(0, 300)}`);
    if (!ok && process.env.NETDEBUG) console.log(execFileSync("ip", ["netns", "exec", server.netns, "nft", "list", "ruleset"], { encoding: "utf8" }));
    return ok;
  }

  /** `reaches`, retried: a loaded TCG guest can miss one 3 s window. */
  async function reachesSoon(sb: Sandbox, ip: string, port = 8000): Promise<boolean> {
    for (let i = 0; i < 3; i++) if (await reaches(sb, ip, port)) return true;
    return false;
  }

  /** Bytes of /big.bin (8 MiB) fetched from `ip` with nc. */
  async function download(sb: Sandbox, ip: string): Promise<number> {
    const r = await sb.runCommand("sh", ["-c", `printf 'GET /big.bin HTTP/1.0\\r\\n\\r\\n' | nc -w 5 ${ip} 8000 | wc -c`]);
    return Number(r.result.stdout.trim());
  }

  /** The guest's own DNS lookup (nslookup against its resolv.conf). */
  async function guestResolve(sb: Sandbox, name: string): Promise<string | undefined> {
    const r = await sb.runCommand("nslookup", [name]);
    const addrs = [...r.result.stdout.matchAll(/Address:\s*(\d+\.\d+\.\d+\.\d+)(?!:)\s*$/gm)].map((m) => m[1]);
    if (addrs.length === 0) console.log(`# nslookup ${name}: ${JSON.stringify(r.result).slice(0, 300)}`);
    return addrs.at(-1);
  }

  test("egress allowlist: IP, CIDR with port, domain name; default deny; live PUT", async () => {
    const [a, b, c] = outside.ips as [string, string, string];
    const sb = await server.client.createSandbox({ shape: SMALL, rootfs: "minimal:1", egress: [a] });
    try {
      assert.equal(await reachesSoon(sb, a), true, "allowed IP");
      assert.equal(await reaches(sb, b), false, "other IP denied");

      // CIDR with a port: that port only.
      let eg = await sb.setEgress([`${outside.cidr}:8000`]);
      assert.deepEqual(eg.egress, [`${outside.cidr}:8000`]);
      assert.equal(await reachesSoon(sb, b), true, "CIDR:port allowed");
      assert.equal(await reaches(sb, b, 9000), false, "other port denied");

      // Domain rule: resolved by the host with the guests' resolver; the
      // sandbox's own DNS query keeps working.
      eg = await sb.setEgress([domain]);
      assert.deepEqual((await sb.getEgress()).egress, [domain]);
      const resolved = await guestResolve(sb, domain);
      assert.equal(resolved, c, "the guest's DNS query works under default deny");
      assert.equal(await reachesSoon(sb, c), true, "domain allowed");
      assert.equal(await reaches(sb, b), false, "address not of the domain denied");
      assert.equal(await guestResolve(sb, "other.hutch-e2e.test"), b);

      // Null allows all again, live.
      await sb.setEgress(null);
      assert.equal(await reachesSoon(sb, b, 9000), true, "allow all after PUT null");
      const bad = await api(server, "PUT", `/v1/sandboxes/${sb.id}/egress`, { egress: ["not a rule!"] });
      assert.equal(bad.status, 400);
    } finally {
      await sb.destroy();
    }
  });

  test("*.host egress: subdomains allowed as the guest's own lookups resolve them, nothing else", async () => {
    const [dnsIp, b, c] = outside.ips as [string, string, string];
    const t = `${netnsNames(server.netns).table}_fw`;
    const nft = (...args: string[]) => execFileSync("ip", ["netns", "exec", server.netns, "nft", ...args], { encoding: "utf8" });
    const key = (sb: Sandbox) => sb.id.slice(3).toLowerCase();
    const [wild, plain] = await Promise.all([
      server.client.createSandbox({ shape: SMALL, rootfs: "minimal:1", egress: ["*.wild.hutch-e2e.test"] }),
      server.client.createSandbox({ shape: SMALL, rootfs: "minimal:1", egress: [c] }),
    ]);
    try {
      const withRule = async () => {
        assert.equal(await reaches(wild, b, 8000, 2), false, "a subdomain's address, before any lookup");
        assert.equal(await guestResolve(wild, "a.wild.hutch-e2e.test"), b, "the guest's lookup, answered through the forwarder");
        assert.equal(await reachesSoon(wild, b), true, "a.wild after its lookup");
        assert.equal(await guestResolve(wild, "B.C.Wild.HUTCH-e2e.test"), c, "two levels down, any letter case");
        assert.equal(await reachesSoon(wild, c), true, "b.c.wild after its lookup");
        assert.equal(await reaches(wild, dnsIp, 8000, 2), false, "an address no allowed name resolved to");
        assert.match(nft("list", "set", "ip", t, `w_${key(wild)}`), new RegExp(`${b.replace(/\./g, "\\.")} timeout 1m`));
      };
      // Without a `*.` rule: its DNS goes straight out, nothing is learned.
      const withoutRule = async () => {
        assert.equal(await guestResolve(plain, "a.wild.hutch-e2e.test"), b, "DNS of a sandbox without the rule");
        assert.equal(await reaches(plain, b, 8000, 2), false, "resolving a wildcard name allows nothing there");
        assert.equal(await reachesSoon(plain, c), true, "its own IP rule");
      };
      await Promise.all([withRule(), withoutRule()]);
      const wildDns = nft("list", "set", "ip", t, "wild_dns");
      assert.ok(wildDns.includes(wild.ip!) && !wildDns.includes(plain.ip!), wildDns);
      assert.equal(nft("list", "sets", "ip").includes(`w_${key(plain)}`), false, "no sets for it");

      // A crashed server takes its forwarder along; the restarted one runs a new one.
      await server.kill();
      await server.restart();
      nft("flush", "set", "ip", t, `w_${key(wild)}`);
      assert.equal(await reaches(wild, b, 8000, 2), false, "forgotten");
      assert.equal(await guestResolve(wild, "a.wild.hutch-e2e.test"), b, "a lookup after the restart");
      assert.equal(await reachesSoon(wild, b), true, "learned again");

      // A live PUT without the wildcard takes back what it let in.
      await wild.setEgress([dnsIp]);
      assert.equal(await reaches(wild, b, 8000, 2), false, "learned address gone with the rule");
      assert.equal(nft("list", "sets", "ip").includes(`w_${key(wild)}`), false, "its sets gone");
      assert.equal(nft("list", "set", "ip", t, "wild_dns").includes(wild.ip!), false, "its DNS no longer diverted");
      assert.equal(await guestResolve(wild, "a.wild.hutch-e2e.test"), b, "its DNS still works");
    } finally {
      if (process.env.NETDEBUG) console.log(server.output().split("\n").filter((l) => /wildcard|forwarder/.test(l)).join("\n"));
      await Promise.all([wild.destroy(), plain.destroy()]);
    }
    const after = nft("list", "table", "ip", t);
    assert.doesNotMatch(after, /set w_|set wp_/, "destroy leaves no learned sets");
  });

  test("bandwidth: egress counted, a small quota caps, recharge lifts the cap", async () => {
    const sb = await server.client.createSandbox({ shape: SMALL, rootfs: "minimal:1" });
    try {
      const sink = `${outside.ips[0]} 9100`;
      let bw = await sb.getBandwidth();
      assert.equal(bw.quota_bytes, QUOTA);
      assert.equal(bw.capped, false);
      // A download is mostly ingress; an upload past the quota caps.
      assert.equal(await reachesSoon(sb, outside.ips[0]!), true);
      // The cap stalls this very upload mid-way: bound it with timeout(1).
      await sb.runCommand("timeout", ["15", "sh", "-c", `dd if=/dev/zero bs=1024 count=1500 2>/dev/null | nc -w 5 ${sink}`]);
      bw = await waitFor(async () => {
        const b = await sb.getBandwidth();
        return b.capped ? b : undefined;
      }, 10_000, "capped");
      assert.ok(bw.used_bytes >= QUOTA, `used ${bw.used_bytes}`);
      // The kernel stopped the upload at the quota itself (the meter is read
      // only once a second): the sink got no more than the quota's payload.
      const got = outside.sinkBytes();
      assert.ok(got > QUOTA / 2 && got <= QUOTA, `the sink got ${got} bytes of a ${QUOTA}-byte quota`);
      assert.equal(bw.remaining_bytes, 0);
      assert.equal(await reaches(sb, outside.ips[0]!), false, "capped: outbound dropped");
      assert.equal(await download(sb, outside.ips[0]!), 0, "capped: download fails");

      const t0 = Date.now();
      bw = await sb.rechargeBandwidth(50_000_000);
      assert.equal(bw.capped, false);
      assert.equal(bw.quota_bytes, QUOTA + 50_000_000);
      // Lifted within 5 s (each probe may itself take up to 3 s).
      await waitFor(async () => ((await reaches(sb, outside.ips[0]!)) ? true : undefined), 8000, "uncapped");
      console.log(`# reachable again ${Date.now() - t0} ms after the recharge`);
      assert.ok((await download(sb, outside.ips[0]!)) > 8 * 1024 * 1024, "download works again");
      const after = await waitFor(async () => {
        const b = await sb.getBandwidth();
        return b.ingress_bytes > 8 * 1024 * 1024 ? b : undefined;
      }, 5000, "ingress bytes counted");
      const view = await api(server, "GET", `/v1/sandboxes/${sb.id}`);
      assert.ok(view.json.data.bandwidth_ingress_bytes >= after.ingress_bytes);
      // Counters persist across a server restart.
      await server.stop();
      await server.restart();
      const again = await sb.getBandwidth();
      assert.ok(again.used_bytes >= after.used_bytes && again.ingress_bytes >= after.ingress_bytes);
    } finally {
      await sb.destroy();
    }
  });

  test("ingress: a Python server in the sandbox via previewUrl, 404 once disabled", async () => {
    const sb = await server.client.createSandbox({ shape: "s-1vcpu-1gb", rootfs: "devbox:1", ingress_enabled: true });
    try {
      await sb.sh("mkdir -p /srv && echo ingress-ok > /srv/index.html && cd /srv && (nohup python3 -m http.server 8080 --bind 0.0.0.0 >/dev/null 2>&1 &)");
      const url = sb.previewUrl(8080, { scheme: "http" });
      assert.match(url, new RegExp(`^http://${sb.id.slice(3).toLowerCase()}-8080\\.sb\\.localhost$`));
      const r = await waitFor(async () => {
        const x = await ingressGet(server, url).catch(() => undefined);
        return x && x.status === 200 ? x : undefined;
      }, 30_000, "python server through ingress");
      assert.equal(r.body, "ingress-ok\n");
      // Host names are case-insensitive.
      assert.equal((await ingressGet(server, url.toUpperCase().replace("HTTP:", "http:"))).status, 200);
      // Nothing on that port: 502; unknown sandbox: 404.
      assert.equal((await ingressGet(server, url.replace("-8080.", "-8099."))).status, 502);
      assert.equal((await ingressGet(server, "http://01aaaaaaaaaaaaaaaaaaaaaaaa-8080.sb.localhost/")).status, 404);
      await sb.setIngress(false);
      const off = await ingressGet(server, url);
      assert.equal(off.status, 404);
      assert.equal(JSON.parse(off.body).status, "fail");
    } finally {
      await sb.destroy();
    }
  });

  test("IPs are unique across 10 sandboxes and stable across pause/resume", async () => {
    const made: Sandbox[] = [];
    try {
      for (let i = 0; i < 10; i += 3) {
        const n = Math.min(3, 10 - i);
        made.push(...(await Promise.all(Array.from({ length: n }, () => server.client.createSandbox({ shape: SMALL, rootfs: "minimal:1" })))));
      }
      const ips = made.map((s) => s.ip);
      assert.equal(new Set(ips).size, 10, ips.join(","));
      // Each guest really holds its address.
      const shown = await made[0]!.sh("ip -4 -o addr show eth0");
      assert.match(shown.result.stdout, new RegExp(`inet ${made[0]!.ip!.replace(/\./g, "\\.")}/`));
      const pause = await api(server, "POST", `/v1/sandboxes/${made[1]!.id}/pause`);
      if (pause.status === 404) {
        console.log("# pause/resume not available yet (issue 4): IP stability not checked");
      } else {
        const s = made[1]!;
        await s.waitUntilPaused({ timeoutMs: 120_000 });
        await s.resume();
        await s.waitUntilRunning({ timeoutMs: 120_000 });
        await s.refresh();
        assert.equal(s.ip, ips[1]);
        const again = await s.sh("ip -4 -o addr show eth0");
        assert.match(again.result.stdout, new RegExp(`inet ${ips[1]!.replace(/\./g, "\\.")}/`));
      }
    } finally {
      await Promise.all(made.map((s) => s.destroy().catch(() => undefined)));
    }
  });

  test("a warm VM waits with its sandbox's rules; the hand-over rewrites none and its quota holds", async () => {
    const pooled = await startServer({
      HUTCH_DNS: outside.dnsIp, HUTCH_BANDWIDTH_QUOTA_BYTES: String(QUOTA),
      HUTCH_TEMPLATES: "on", HUTCH_POOL_SIZE: "1", HUTCH_POOL_ROOTFS: "minimal:1", HUTCH_SPARES: "0",
    });
    try {
      const line = await waitFor(async () => pooled.output().split("\n").find((l) => l.includes('"msg":"warm VM ready"')), 300_000, "a warm VM");
      const warmId = String(JSON.parse(line).id);
      const k = warmId.slice(3).toLowerCase();
      const nft = (...what: string[]) => execFileSync("ip", ["netns", "exec", pooled.netns, "nft", "-a", "list", ...what], { encoding: "utf8" });
      const t = `${netnsNames(pooled.netns).table}_fw`;
      // In while it waits: its tap bound to its address, the default quota.
      const ip = String(JSON.parse(line).ip);
      assert.match(nft("chain", "bridge", t, `g_${k}`), new RegExp(`saddr != ${ip.replaceAll(".", "\\.")} drop`));
      assert.match(nft("quota", "ip", t, `q_${k}`), new RegExp(`over ${QUOTA} bytes`));
      const rulesBefore = nft("chain", "ip", t, `n_${k}`) + nft("chain", "ip", t, `m_${k}`);
      const sb = await pooled.client.createSandbox({ shape: SMALL, rootfs: "minimal:1" });
      try {
        assert.equal(sb.id, warmId, "the create was the warm VM's hand-over");
        assert.equal(sb.ip, ip);
        await waitFor(async () => (pooled.output().includes(`"sandbox":"${sb.id}","warm":true`) ? true : undefined), 5000, "the hand-over's log line");
        // The same rules (same handles: none flushed and added again), the quota counting from the hand-over.
        assert.equal(nft("chain", "ip", t, `n_${k}`) + nft("chain", "ip", t, `m_${k}`), rulesBefore);
        assert.doesNotMatch(nft("quota", "ip", t, `q_${k}`), /used/);
        assert.equal(await reachesSoon(sb, outside.ips[0]!), true, "egress works after the hand-over");
        // The kernel cuts an upload at the quota.
        await sb.runCommand("timeout", ["15", "sh", "-c", `dd if=/dev/zero bs=1024 count=1500 2>/dev/null | nc -w 5 ${outside.ips[0]} 9100`]);
        const bw = await waitFor(async () => {
          const b = await sb.getBandwidth();
          return b.capped ? b : undefined;
        }, 10_000, "capped");
        assert.ok(bw.used_bytes >= QUOTA && bw.used_bytes < 2 * QUOTA, `used ${bw.used_bytes}`);
        assert.ok(outside.sinkBytes() <= QUOTA, `the sink got ${outside.sinkBytes()} bytes of a ${QUOTA}-byte quota`);
      } finally {
        await sb.destroy();
      }
    } finally {
      await pooled.dispose();
    }
  });

  test("after the server and `hutch network down`, nothing of Hutch's network remains", async () => {
    const names = netnsNames(server.netns);
    assert.ok(hostHas(["ip", "netns", "exec", server.netns, "true"]), "netns exists while serving");
    await server.dispose();
    assert.equal(hostHas(["ip", "netns", "exec", server.netns, "true"]), false, "netns gone");
    assert.equal(hostHas(["ip", "link", "show", "dev", names.hostVeth]), false, "veth gone");
    assert.equal(hostHas(["ip", "link", "show", "dev", names.bridge]), false, "no bridge on the host");
    assert.equal(hostHas(["nft", "list", "table", "ip", names.table]), false, "host nft table gone");
    assert.equal(execFileSync("ip", ["netns", "list"], { encoding: "utf8" }).includes(server.netns), false);
    assert.deepEqual(await pidsMentioning(`${server.dataDir}/ingress.sock`), [], "dialer process gone");
    assert.deepEqual(await pidsMentioning(`dns-forwarder-main.js ${server.netns} `), [], "dns forwarder gone");
    assert.deepEqual(await pidsMentioning(server.dataDir), [], "no QEMU left");
  });
});
