/**
 * Spinners for anything that takes more than a moment, shown only when
 * stderr is a terminal and the output is not JSON (scripts see nothing).
 */
import ora from "ora";

/** Whether to draw live feedback on stderr. */
export function interactive(json = false): boolean {
  return !json && process.stderr.isTTY === true && process.env.CI === undefined;
}

/**
 * Runs `work` under a spinner; the spinner ends with `done(result)` as a
 * success line, or fails quietly (the error itself is printed by the caller).
 */
export async function withSpinner<T>(text: string, work: () => Promise<T>, opts: { json?: boolean; done?: (r: T) => string } = {}): Promise<T> {
  if (!interactive(opts.json)) return work();
  const spinner = ora({ text, stream: process.stderr }).start();
  const t0 = Date.now();
  try {
    const result = await work();
    const secs = ((Date.now() - t0) / 1000).toFixed(1);
    spinner.succeed(`${opts.done ? opts.done(result) : text} (${secs}s)`);
    return result;
  } catch (err) {
    spinner.stop();
    throw err;
  }
}
