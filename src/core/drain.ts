import type { IncomingMessage } from 'node:http';

/** How much of a refused upload's body is read and discarded, and for how long, before the connection is closed. */
const LINGER_BYTES = 16 * 1024 * 1024;
const LINGER_MS = 2000;

/**
 * Reads and discards the rest of a request body already answered, up to LINGER_BYTES or
 * LINGER_MS (real time: a network safeguard, not logic a test drives), then closes the
 * connection if the body has not ended. A client that stops sending once answered (the CLI
 * does) leaves a reusable connection; one that does not is cut off within those bounds.
 */
export function drainBriefly(req: IncomingMessage) {
  let seen = 0;
  const stop = (close: boolean) => {
    clearTimeout(timer);
    req.off('data', count);
    req.off('end', ended);
    req.off('close', ended);
    if (close) req.socket?.destroy();
  };
  const count = (chunk: Buffer) => {
    seen += chunk.length;
    if (seen > LINGER_BYTES) stop(true);
  };
  const ended = () => stop(false);
  const timer = setTimeout(() => stop(true), LINGER_MS).unref();
  req.on('data', count);
  req.once('end', ended);
  req.once('close', ended); // the client hung up first
  req.resume();
}
