import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { describe, it } from "node:test";
import { writeCpioNewc } from "../../../src/runtime/images/cpio-newc.js";

describe("writeCpioNewc", () => {
  const archive = writeCpioNewc([
    { type: "dir", path: "bin" },
    { type: "file", path: "bin/tool", data: Buffer.from("#!/bin/sh\necho hi\n"), mode: 0o755 },
    { type: "symlink", path: "bin/sh", target: "busybox" },
    { type: "dir", path: "dev" },
    { type: "char", path: "dev/console", major: 5, minor: 1 },
  ]);

  it("is aligned and ends with the trailer", () => {
    assert.equal(archive.length % 4, 0);
    assert.equal(archive.subarray(0, 6).toString(), "070701");
    assert.ok(archive.includes(Buffer.from("TRAILER!!!\0")));
  });

  it("is read back by cpio with types, modes, owner and link target", () => {
    const list = execFileSync("cpio", ["-itv", "--quiet"], { input: archive }).toString();
    assert.match(list, /^drwxr-xr-x\s+2 root\s+root\s+0 .* bin$/m);
    assert.match(list, /^-rwxr-xr-x\s+1 root\s+root\s+18 .* bin\/tool$/m);
    assert.match(list, /^lrwxrwxrwx .* bin\/sh -> busybox$/m);
    assert.match(list, /^crw-------\s+1 root\s+root\s+5,\s+1 .* dev\/console$/m);
  });

  it("is reproducible", () => {
    const again = writeCpioNewc([{ type: "file", path: "a", data: Buffer.from("x") }]);
    assert.deepEqual(again, writeCpioNewc([{ type: "file", path: "/a", data: Buffer.from("x") }]));
  });
});
