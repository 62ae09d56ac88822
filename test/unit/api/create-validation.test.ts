/** Every create rule of the seed answers 400 naming its field. */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { sshKey, startTestServer, type TestServer } from "../../support/test-server.js";

const SHAPE = "s-1vcpu-256mb";

describe("POST /v1/sandboxes validation", () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer();
  });
  after(() => s.dispose());

  const cases: Array<[string, unknown, string]> = [
    ["shape missing", {}, "shape"],
    ["shape unknown", { shape: "s-64vcpu-1tb" }, "shape"],
    ["shape wrong type", { shape: 1 }, "shape"],
    ["rootfs unknown", { shape: SHAPE, rootfs: "nope:1" }, "rootfs"],
    ["rootfs disabled", { shape: SHAPE, rootfs: "old:1" }, "rootfs"],
    ["envs bad key", { shape: SHAPE, envs: { "1BAD": "x" } }, "envs"],
    ["envs key with dash", { shape: SHAPE, envs: { "A-B": "x" } }, "envs"],
    ["envs non-string value", { shape: SHAPE, envs: { A: 1 } }, "envs"],
    ["envs too many", { shape: SHAPE, envs: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`K${i}`, "v"])) }, "envs"],
    ["envs value > 4 KiB", { shape: SHAPE, envs: { A: "x".repeat(4097) } }, "envs"],
    ["envs total > 64 KiB", { shape: SHAPE, envs: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`K${i}`, "x".repeat(4000)])) }, "envs"],
    ["envs not an object", { shape: SHAPE, envs: ["A=1"] }, "envs"],
    ["auto_pause too small", { shape: SHAPE, auto_pause_after_seconds: 59 }, "auto_pause_after_seconds"],
    ["auto_pause too large", { shape: SHAPE, auto_pause_after_seconds: 86401 }, "auto_pause_after_seconds"],
    ["auto_pause not integer", { shape: SHAPE, auto_pause_after_seconds: 60.5 }, "auto_pause_after_seconds"],
    ["auto_pause string", { shape: SHAPE, auto_pause_after_seconds: "600" }, "auto_pause_after_seconds"],
    ["egress bad host", { shape: SHAPE, egress: ["bad host"] }, "egress"],
    ["egress bad port", { shape: SHAPE, egress: ["pypi.org:70000"] }, "egress"],
    ["egress bad cidr", { shape: SHAPE, egress: ["10.0.0.0/40"] }, "egress"],
    ["egress not strings", { shape: SHAPE, egress: [1] }, "egress"],
    ["region mismatch", { shape: SHAPE, region: "eu" }, "region"],
    ["disk_mib negative", { shape: SHAPE, disk_mib: -1 }, "disk_mib"],
    ["disk_mib absurd", { shape: SHAPE, disk_mib: 1e9 }, "disk_mib"],
    ["disk_mib too small", { shape: SHAPE, disk_mib: 10 }, "disk_mib"],
    ["disk_mib float", { shape: SHAPE, disk_mib: 1024.5 }, "disk_mib"],
    ["disk_mib string", { shape: SHAPE, disk_mib: "1024" }, "disk_mib"],
    ["ssh key garbage", { shape: SHAPE, ssh_pubkeys: ["hello"] }, "ssh_pubkeys"],
    ["ssh key type mismatch", { shape: SHAPE, ssh_pubkeys: [`ssh-rsa ${sshKey().split(" ")[1]}`] }, "ssh_pubkeys"],
    ["name uppercase", { shape: SHAPE, name: "MyBox" }, "name"],
    ["name leading dash", { shape: SHAPE, name: "-box" }, "name"],
    ["name too long", { shape: SHAPE, name: "a".repeat(64) }, "name"],
    ["name with dot", { shape: SHAPE, name: "a.b" }, "name"],
    ["bandwidth quota at create", { shape: SHAPE, bandwidth_quota_bytes: 1 }, "bandwidth_quota_bytes"],
    ["ingress_enabled string", { shape: SHAPE, ingress_enabled: "true" }, "ingress_enabled"],
    ["networks unknown", { shape: SHAPE, networks: [{ id: "net-x" }] }, "networks"],
    ["disks unknown", { shape: SHAPE, disks: [{ disk_id: "d1", mount_path: "/mnt/d" }] }, "disks"],
    ["host_id unknown", { shape: SHAPE, host_id: "host-elsewhere" }, "host_id"],
    ["body not an object", [1, 2], "body"],
  ];

  for (const [label, body, field] of cases) {
    test(`${label} → 400 naming ${field}`, async () => {
      const r = await s.api("POST", "/v1/sandboxes", body);
      assert.equal(r.status, 400, r.text);
      assert.equal(r.json.status, "fail");
      assert.equal(typeof r.json.data[field], "string", `expected field ${field} in ${r.text}`);
    });
  }

  test("malformed JSON → 400 naming body", async () => {
    const r = await s.api("POST", "/v1/sandboxes", '{"shape": ');
    assert.equal(r.status, 400);
    assert.deepEqual(Object.keys(r.json.data), ["body"]);
  });

  test("rejected creates leave no rows behind", async () => {
    const r = await s.api("GET", "/v1/sandboxes");
    assert.equal(r.json.data.pagination.total, 0);
  });

  test("valid edge values are accepted: disk_mib 0 = default, auto_pause bounds, egress forms", async () => {
    const r = await s.api("POST", "/v1/sandboxes", {
      shape: SHAPE,
      disk_mib: 0,
      auto_pause_after_seconds: 60,
      egress: ["*.pypi.org:443", "1.1.1.1:53", "10.0.0.0/8", "[2001:db8::1]:443"],
      ssh_pubkeys: [sshKey()],
      envs: { A_1: "x".repeat(4096) },
      region: "local",
      host_id: "local",
    });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.data.disk_mib, 10240);
    const r2 = await s.api("POST", "/v1/sandboxes", { shape: SHAPE, disk_mib: 256, auto_pause_after_seconds: 86400 });
    assert.equal(r2.status, 200, r2.text);
    assert.equal(r2.json.data.disk_mib, 256);
  });
});
