/**
 * TypeBox schemas of the sandbox routes. Types only: the rules (ranges,
 * formats, catalogs) are core's, so every rule failure names its field the
 * same way whichever layer catches it.
 */
import { Type } from "typebox";

export const SandboxIdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });
export const SandboxIpParams = Type.Object({ ip: Type.String({ minLength: 1, maxLength: 64 }) });

export const CreateSandboxBody = Type.Object({
  shape: Type.String(),
  rootfs: Type.Optional(Type.String({ maxLength: 128 })),
  name: Type.Optional(Type.String({ maxLength: 253 })),
  disk_mib: Type.Optional(Type.Integer()),
  ssh_pubkeys: Type.Optional(Type.Array(Type.String())),
  envs: Type.Optional(Type.Record(Type.String(), Type.String())),
  ingress_enabled: Type.Optional(Type.Boolean()),
  networks: Type.Optional(Type.Array(Type.Object({ id: Type.String() }))),
  disks: Type.Optional(
    Type.Array(
      Type.Object({
        disk_id: Type.String(),
        mount_path: Type.Optional(Type.String()),
        sub_path: Type.Optional(Type.String()),
      }),
    ),
  ),
  egress: Type.Optional(Type.Array(Type.String())),
  auto_pause_after_seconds: Type.Optional(Type.Union([Type.Integer(), Type.Null()])),
  host_id: Type.Optional(Type.String({ maxLength: 128 })),
  region: Type.Optional(Type.String({ maxLength: 64 })),
  node_selector: Type.Optional(Type.Record(Type.String(), Type.String())),
  bandwidth_quota_bytes: Type.Optional(Type.Unknown()),
});

export const PatchSandboxBody = Type.Object({
  ingress_enabled: Type.Optional(Type.Boolean()),
  auto_pause_after_seconds: Type.Optional(Type.Integer()),
  disable_auto_pause: Type.Optional(Type.Boolean()),
});

export const ListSandboxesQuery = Type.Object({
  /** Parsed by pageOf (strict integers, clamped). */
  limit: Type.Optional(Type.String()),
  offset: Type.Optional(Type.String()),
  /** Checked by the route so the message can list the allowed values. */
  status: Type.Optional(Type.String()),
});

export const ExecBody = Type.Object({
  cmd: Type.String({ minLength: 1, maxLength: 4096 }),
  args: Type.Optional(Type.Array(Type.String())),
  stdin: Type.Optional(Type.String()),
  env: Type.Optional(Type.Record(Type.String(), Type.String())),
  cwd: Type.Optional(Type.String()),
  stream: Type.Optional(Type.Boolean()),
});

export const ExecQuery = Type.Object({
  stream: Type.Optional(Type.Boolean()),
});

export const FileQuery = Type.Object({
  path: Type.String(),
});
