/**
 * Network benchmark on real VMs (run once: `npm run build && node --import
 * tsx bench/network.ts`):
 *  1. the ingress proxy: requests/s and latency percentiles of autocannon
 *     against a small HTTP server in a devbox:1 sandbox, through
 *     `<ulid>-8080.sb.localhost` on the ingress listener;
 *  2. sandbox → outside TCP throughput: a minimal:1 sandbox streams zeros
 *     with busybox nc to a sink in a network namespace this script creates
 *     (the sink times it from first byte to EOF).
 * Prints one JSON line of results. Traffic stays on loopback and inside
 * namespaces this script creates.
 */
import { startServer } from "../test/e2e/support/server.js";
import { startOutsideHost } from "../test/e2e/support/outside-host.js";

/** The part of autocannon's (untyped) API used here. */
interface CannonResult {
  requests: { average: number };
  latency: { p50: number; p99: number };
  non2xx: number;
  errors: number;
}
type Cannon = (opts: { url: string; connections: number; duration: number; headers: Record<string, string> }) => Promise<CannonResult>;
const moduleName = "autocannon";
const autocannon = ((await import(moduleName)) as { default: Cannon }).default;

const outside = startOutsideHost(() => ({}));
const server = await startServer({ HUTCH_DNS: outside.dnsIp, HUTCH_LOG_LEVEL: "warn" });
const results: Record<string, unknown> = {};
try {
  // 1. Ingress proxy.
  const web = await server.client.createSandbox({ shape: "s-1vcpu-1gb", rootfs: "devbox:1", ingress_enabled: true });
  // A tiny keep-alive server (python's http.server closes every connection).
  const serverPy = [
    "import http.server",
    "class H(http.server.BaseHTTPRequestHandler):",
    "    protocol_version = 'HTTP/1.1'",
    "    def do_GET(self):",
    "        b = b'ok\\n'",
    "        self.send_response(200); self.send_header('content-length', str(len(b))); self.end_headers(); self.wfile.write(b)",
    "    def log_message(self, *a): pass",
    "http.server.ThreadingHTTPServer(('0.0.0.0', 8080), H).serve_forever()",
  ].join("\n");
  await web.files.upload("/srv/bench.py", serverPy);
  await web.sh("(nohup python3 /srv/bench.py >/dev/null 2>&1 &)");
  const host = new URL(web.previewUrl(8080, { scheme: "http" })).host;
  for (let i = 0; i < 100; i++) {
    const r = await fetch(server.ingressUrl, { headers: { host } }).catch(() => undefined);
    if (r?.status === 200) break;
    await new Promise((res) => setTimeout(res, 300));
  }
  const ac = await autocannon({ url: server.ingressUrl, headers: { host }, connections: 10, duration: 10 });
  results.ingress = {
    connections: 10,
    durationS: 10,
    requestsPerSec: ac.requests.average,
    latencyP50Ms: ac.latency.p50,
    latencyP99Ms: ac.latency.p99,
    errors: ac.errors,
    non2xx: ac.non2xx,
  };
  await web.destroy();

  // 2. Sandbox → outside TCP throughput.
  const sb = await server.client.createSandbox({ shape: "s-1vcpu-256mb", rootfs: "minimal:1" });
  const mib = 128;
  // The sink times the stream itself (first byte to EOF): busybox's date has no %N.
  const script = `dd if=/dev/zero bs=65536 count=${mib * 16} 2>/dev/null | nc -w 10 ${outside.ips[0]} 9100`;
  const out = (await sb.runCommand("sh", ["-c", script])).result.stdout.trim().split(/\s+/);
  const bytes = Number(out[0]);
  const ms = Number(out[1]);
  const bw = await sb.getBandwidth();
  results.egressTcp = { bytes, ms, mbitPerSec: Math.round((bytes * 8) / (ms / 1000) / 1e6 * 10) / 10, countedEgressBytes: bw.used_bytes };
  await sb.destroy();
} finally {
  await server.dispose();
  outside.close();
}
process.stdout.write(JSON.stringify(results) + "\n");
