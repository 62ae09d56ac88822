/**
 * Flow control of one agent channel that carries a byte stream both ways
 * (TCP relay, PTY): each side may send at most HP_TCP_WINDOW bytes the other
 * has not credited back yet (docs/agent-protocol.md, "Flow control"), so a
 * slow reader holds back only its own channel, never the whole connection.
 */
import { PayloadReader } from "./frame-codec.js";
import { encodeCredit } from "./messages.js";
import { HP_CHUNK_SIZE, HP_CREDIT, HP_TCP_WINDOW } from "./protocol.js";

/** The part of an agent channel the window needs. */
export interface CreditedChannel {
  send(type: number, payload?: Buffer): boolean;
  drained(): Promise<void>;
}

export class CreditWindow {
  #sendCredit = HP_TCP_WINDOW;
  /** Bytes received but not credited back: the local reader is behind. */
  #owed = 0;
  #waiter: (() => void) | null = null;
  #closed = false;

  constructor(private readonly ch: CreditedChannel) {}

  /** True once the channel is over (either side); writes fail from then on. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Marks the channel over and releases a writer waiting for credit. */
  close(): void {
    this.#closed = true;
    this.#wake();
  }

  /**
   * A data frame of `len` bytes was pushed to the local reader; `accepted` is
   * what `push` returned. Credit goes back now, or once the reader catches up.
   */
  received(len: number, accepted: boolean): void {
    if (accepted) this.ch.send(HP_CREDIT, encodeCredit(len));
    else this.#owed += len;
  }

  /** The local reader wants more (a Duplex's `read`): pay what is owed. */
  readMore(): void {
    if (this.#owed > 0 && !this.#closed) {
      this.ch.send(HP_CREDIT, encodeCredit(this.#owed));
      this.#owed = 0;
    }
  }

  /** A CREDIT frame from the agent. Throws on a malformed payload. */
  granted(payload: Buffer): void {
    const r = new PayloadReader(payload);
    this.#sendCredit += r.u32();
    r.end();
    this.#wake();
  }

  /**
   * Sends `chunk` as `dataType` frames, never past the window nor past
   * HP_CHUNK_SIZE per frame, waiting for credit and for the socket to drain.
   * Rejects with `closedError()` if the channel ends first.
   */
  async write(dataType: number, chunk: Buffer, closedError: () => Error): Promise<void> {
    let off = 0;
    while (off < chunk.length) {
      if (this.#closed) throw closedError();
      if (this.#sendCredit === 0) {
        await new Promise<void>((r) => (this.#waiter = r));
        continue;
      }
      const n = Math.min(chunk.length - off, HP_CHUNK_SIZE, this.#sendCredit);
      this.#sendCredit -= n;
      const ok = this.ch.send(dataType, chunk.subarray(off, off + n));
      off += n;
      if (!ok) await this.ch.drained();
    }
  }

  #wake(): void {
    const w = this.#waiter;
    this.#waiter = null;
    w?.();
  }
}
