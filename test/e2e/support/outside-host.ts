/**
 * A fake "outside world" for network e2e tests: a network namespace the test
 * creates, joined to the host by a veth pair, with a few addresses, a Python
 * HTTP server (port 8000 and 9000), a TCP sink (port 9100: answers the
 * bytes it got and the ms from first byte to EOF) and a tiny DNS
 * server answering A records for names the test chooses. Sandbox traffic
 * reaches it through Hutch's NAT and the host's routing, like any remote
 * host; nothing leaves the machine.
 */
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface OutsideHost {
  netns: string;
  /** The outside's addresses: ips[0] also runs DNS. */
  ips: string[];
  /** The /24 the addresses are in. */
  cidr: string;
  dnsIp: string;
  /** Bytes the TCP sink (port 9100) received on its latest connection so far. */
  sinkBytes(): number;
  close(): void;
}

const DNS_PY = `
import socket, struct, sys, json
names = json.loads(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 53))
while True:
    q, addr = s.recvfrom(512)
    if len(q) < 12: continue
    tid, flags, qd = struct.unpack(">HHH", q[:6])
    i = 12; labels = []
    while i < len(q) and q[i] != 0:
        n = q[i]; labels.append(q[i+1:i+1+n].decode(errors="replace")); i += 1 + n
    qend = i + 5
    qtype = struct.unpack(">H", q[i+1:i+3])[0] if len(q) >= i + 3 else 0
    name = ".".join(labels).lower()
    ip = names.get(name)
    question = q[12:qend]
    if ip and qtype == 1:
        ans = b"\\xc0\\x0c" + struct.pack(">HHIH", 1, 1, 5, 4) + socket.inet_aton(ip)
        hdr = struct.pack(">HHHHHH", tid, 0x8180, 1, 1, 0, 0)
        s.sendto(hdr + question + ans, addr)
    else:
        rcode = 0 if ip else 3
        hdr = struct.pack(">HHHHHH", tid, 0x8180 | rcode, 1, 0, 0, 0)
        s.sendto(hdr + question, addr)
`;

const SINK_PY = `
import socketserver, sys, time
class H(socketserver.BaseRequestHandler):
    def handle(self):
        n = 0
        t0 = None
        while True:
            b = self.request.recv(65536)
            if not b: break
            if t0 is None: t0 = time.monotonic()
            n += len(b)
            # Also on disk as it goes: a stream cut off mid-way never ends.
            with open("sink.last", "w") as f: f.write(str(n))
        ms = 0 if t0 is None else (time.monotonic() - t0) * 1000
        # Bytes received, and ms from the first byte to the sender's EOF.
        self.request.sendall(b"%d %.1f\\n" % (n, ms))
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer(("0.0.0.0", int(sys.argv[1])), H).serve_forever()
`;

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: "utf8" });
}

/** Creates the outside host; `names` maps DNS names to one of its addresses. */
export function startOutsideHost(names: (ips: string[]) => Record<string, string>): OutsideHost {
  const tag = randomBytes(3).toString("hex");
  const netns = `ho${tag}`;
  const hostIf = `ho${tag}-h`;
  // 10.213.X.0/24: X from the tag; checked free on the host below.
  const x = 1 + (parseInt(tag.slice(0, 2), 16) % 250);
  const net = `10.213.${x}`;
  if (sh("ip", ["-4", "route"]).includes(`${net}.`)) throw new Error(`${net}.0/24 is in use on this host`);
  const ips = [`${net}.2`, `${net}.3`, `${net}.4`];
  sh("ip", ["netns", "add", netns]);
  const procs: ChildProcess[] = [];
  const dir = mkdtempSync(join(tmpdir(), "hutch-outside-"));
  const close = () => {
    for (const p of procs) p.kill("SIGKILL");
    try {
      execFileSync("ip", ["link", "del", hostIf], { stdio: "ignore" });
    } catch {
      /* gone with the netns */
    }
    try {
      execFileSync("ip", ["netns", "del", netns], { stdio: "ignore" });
    } catch {
      /* already gone */
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    sh("ip", ["link", "add", hostIf, "type", "veth", "peer", "name", "eth0", "netns", netns]);
    sh("ip", ["addr", "add", `${net}.1/24`, "dev", hostIf]);
    sh("ip", ["link", "set", hostIf, "up"]);
    const inNs = ["netns", "exec", netns];
    sh("ip", [...inNs, "ip", "link", "set", "lo", "up"]);
    for (const ip of ips) sh("ip", [...inNs, "ip", "addr", "add", `${ip}/24`, "dev", "eth0"]);
    sh("ip", [...inNs, "ip", "link", "set", "eth0", "up"]);
    sh("ip", [...inNs, "ip", "route", "add", "default", "via", `${net}.1`]);
    writeFileSync(join(dir, "index.html"), "hello from outside\n");
    writeFileSync(join(dir, "big.bin"), Buffer.alloc(8 * 1024 * 1024, 7));
    writeFileSync(join(dir, "dns.py"), DNS_PY);
    writeFileSync(join(dir, "sink.py"), SINK_PY);
    const run = (args: string[]) => {
      const p = spawn("ip", [...inNs, ...args], { cwd: dir, stdio: "ignore" });
      procs.push(p);
    };
    run(["python3", "-m", "http.server", "8000", "--bind", "0.0.0.0"]);
    run(["python3", "-m", "http.server", "9000", "--bind", "0.0.0.0"]);
    run(["python3", join(dir, "sink.py"), "9100"]);
    run(["python3", join(dir, "dns.py"), ips[0]!, JSON.stringify(names(ips))]);
  } catch (err) {
    close();
    throw err;
  }
  const sinkBytes = () => {
    try {
      return Number(readFileSync(join(dir, "sink.last"), "utf8")) || 0;
    } catch {
      return 0;
    }
  };
  return { netns, ips, cidr: `${net}.0/24`, dnsIp: ips[0]!, sinkBytes, close };
}
