/**
 * Joins a client connection and a guest stream into one TCP-like pipe:
 * bytes both ways with backpressure, half-close carried across (the end of
 * one side's data ends the other's writes), an error or abort on either side
 * closing both. `onActivity` is called (throttled) while bytes flow.
 */
import type { Duplex } from "node:stream";

/** At most one activity report per this many ms per pipe. */
const ACTIVITY_EVERY_MS = 1000;

export function splice(client: Duplex, guest: Duplex, onActivity: () => void): void {
  let last = 0;
  const activity = () => {
    const now = Date.now();
    if (now - last >= ACTIVITY_EVERY_MS) {
      last = now;
      onActivity();
    }
  };
  let over = false;
  const abort = () => {
    if (over) return;
    over = true;
    client.destroy();
    guest.destroy();
  };
  client.on("data", activity);
  guest.on("data", activity);
  client.on("error", abort);
  guest.on("error", abort);
  // pipe() ends the destination when the source ends: that is the half-close.
  client.pipe(guest);
  guest.pipe(client);
  // A side that closes before it ended cleanly was aborted: abort the other.
  client.on("close", () => {
    if (!client.readableEnded || !client.writableFinished) return abort();
    // Both ways done on the client: the guest ends by itself (the agent may
    // still be writing our last bytes into the guest socket) unless it has
    // more to say, which nobody can hear now.
    if (!guest.readableEnded) abort();
  });
  guest.on("close", () => {
    if (!guest.readableEnded) return abort();
    // The guest is done both ways: drop what the client still sends, finish
    // our writes to it, then its close ends the pipe.
    client.unpipe(guest);
    client.resume();
    client.end();
  });
}
