/** Progress of one image build, reported while `ImageStore.ensure` runs. */
export interface BuildProgress {
  /** What is being built: "kernel", "initramfs", or an image name ("devbox:1"). */
  image: string;
  /** The step running, e.g. "downloading kernel", "debootstrap", "packing ext4". */
  step: string;
  /** Steps finished so far for this image (0..total). `done === total` means built. */
  done: number;
  total: number;
  /** A detail line, e.g. one line of debootstrap's output. */
  message?: string;
}

/** Receives {@link BuildProgress} reports; must not throw. */
export type ProgressListener = (p: BuildProgress) => void;
