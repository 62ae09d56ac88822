/**
 * The shape catalog (`GET /v1/shapes`): vCPU and memory presets a create
 * request picks by id.
 */

/** One VM size preset. */
export interface Shape {
  id: string;
  vcpu: number;
  memMib: number;
  defaultDiskMib: number;
}

/** Disk size used when a create request omits `disk_mib` or sends 0. */
export const DEFAULT_DISK_MIB = 10240;

/** Every shape this control plane offers, smallest first. */
export const SHAPES: readonly Shape[] = [
  { id: "s-1vcpu-256mb", vcpu: 1, memMib: 256, defaultDiskMib: DEFAULT_DISK_MIB },
  { id: "s-1vcpu-512mb", vcpu: 1, memMib: 512, defaultDiskMib: DEFAULT_DISK_MIB },
  { id: "s-1vcpu-1gb", vcpu: 1, memMib: 1024, defaultDiskMib: DEFAULT_DISK_MIB },
  { id: "s-2vcpu-2gb", vcpu: 2, memMib: 2048, defaultDiskMib: DEFAULT_DISK_MIB },
  { id: "s-2vcpu-4gb", vcpu: 2, memMib: 4096, defaultDiskMib: DEFAULT_DISK_MIB },
  { id: "s-4vcpu-4gb", vcpu: 4, memMib: 4096, defaultDiskMib: DEFAULT_DISK_MIB },
  { id: "s-4vcpu-8gb", vcpu: 4, memMib: 8192, defaultDiskMib: DEFAULT_DISK_MIB },
];

const BY_ID = new Map(SHAPES.map((s) => [s.id, s]));

/** The shape with that id, or undefined. */
export function findShape(id: string): Shape | undefined {
  return BY_ID.get(id);
}
