/** Paths of the upgrade endpoints. */

/** `POST /v1/sandboxes/{id}/tunnel/{port}`: a raw TCP pipe to that port in the guest. */
export function tunnelPath(id: string, port: number): string {
  return `/v1/sandboxes/${encodeURIComponent(id)}/tunnel/${port}`;
}

/** `POST /v1/sandboxes/{id}/shell`: a PTY (initial size also given as a query). */
export function shellPath(id: string, rows: number, cols: number): string {
  return `/v1/sandboxes/${encodeURIComponent(id)}/shell?rows=${rows}&cols=${cols}`;
}
