/**
 * One background refill pass at a time (warm pool, spare QEMUs): a request
 * while a pass runs makes one more pass after it, so nothing asked for
 * between a pass's last look and its end is missed.
 */
export class Refill {
  #running: Promise<void> | undefined;
  #again = false;

  constructor(
    private readonly pass: () => Promise<void>,
    private readonly closed: () => boolean,
  ) {}

  /** Starts a pass, or marks one to follow the pass under way. */
  request(): void {
    if (this.closed()) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    this.#running = this.pass().finally(() => {
      this.#running = undefined;
      if (this.#again && !this.closed()) {
        this.#again = false;
        this.request();
      }
    });
  }

  /** Settles once the pass under way (if any) has ended; after `closed`, no other follows. */
  async settled(): Promise<void> {
    await this.#running;
  }
}
