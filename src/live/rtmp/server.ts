import { randomBytes } from 'node:crypto';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { RtmpConnection, type AuthorizeResult, type PublishStart, type RtmpLog } from './connection.ts';
import { rtmpLimits, type RtmpLimits } from './limits.ts';

// The RTMP ingest server (S3.9): accepts TCP connections up to maxConnections, runs one
// RtmpConnection each, and keeps the table of live keys so that a key already publishing is
// refused to a second publisher before that one is acknowledged. It decides nothing else: who
// may publish is the application's authorize(), what becomes of the FLV is its onPublish().

export interface RtmpServerOptions<S> {
  /**
   * Called for each publish, before anything is answered to it: the peer waits (paused) for the
   * answer, bounded by limits.authorizeTimeoutMs. `reason` is logged; `tell`, if given, is
   * sent to the publisher as the refusal's description (ffmpeg prints it).
   */
  authorize(key: string, app: string, remote: string): Promise<AuthorizeResult<S>>;
  /** Called once a publish is accepted, with the media as FLV. Must read `flv` (backpressure pauses the publisher). */
  onPublish(p: PublishStart<S>): void | Promise<void>;
  /** Called once per refused publish with its code: authorize's `code`, or malformed_key, already_live, authorize_failed, authorize_timeout. */
  onRefused?(code: string): void;
  log: RtmpLog;
  limits?: Partial<RtmpLimits>;
  /** S1's random bytes; crypto.randomBytes unless a test gives its own. */
  random?: (n: number) => Buffer;
}

export interface RtmpServer {
  listen(port: number, host?: string): Promise<AddressInfo>;
  /** Stops accepting and closes every connection (a publisher's FLV ends); resolves once all are closed. */
  close(): Promise<void>;
  address(): AddressInfo | null;
  /** Ends the publish of `key` (the slot is over, the booking was cancelled); false if it is not live. */
  end(key: string, reason: string): boolean;
  /** Keys publishing now. */
  live(): string[];
  /** Connections open now, publishing or not. */
  connections(): number;
}

export function createRtmpServer<S>(opts: RtmpServerOptions<S>): RtmpServer {
  const limits = rtmpLimits(opts.limits);
  const random = opts.random ?? randomBytes;
  const open = new Set<RtmpConnection<S>>();
  const liveKeys = new Map<string, RtmpConnection<S>>();
  const live = {
    claim(key: string, conn: RtmpConnection<S>) {
      if (liveKeys.has(key)) return false;
      liveKeys.set(key, conn);
      return true;
    },
    release(key: string, conn: RtmpConnection<S>) {
      if (liveKeys.get(key) === conn) liveKeys.delete(key);
    },
  };
  let nextId = 1;
  let closing = false;
  const server: Server = createServer({ noDelay: true }, (socket) => {
    if (closing || open.size >= limits.maxConnections) {
      const code = closing ? 'server_closing' : 'too_many_connections';
      opts.log.warn({ remote: socket.remoteAddress, code, limit: limits.maxConnections }, 'rtmp connection refused');
      socket.destroy();
      return;
    }
    const conn: RtmpConnection<S> = new RtmpConnection<S>(socket, {
      id: nextId++,
      limits,
      authorize: opts.authorize,
      onPublish: opts.onPublish,
      onRefused: opts.onRefused,
      log: opts.log,
      live,
      random,
      onClose: (c) => open.delete(c as RtmpConnection<S>),
    });
    open.add(conn);
  });

  return {
    listen(port, host) {
      return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          opts.log.info({ address: server.address() }, 'rtmp ingest listening');
          resolve(server.address() as AddressInfo);
        });
      });
    },
    close() {
      closing = true;
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const c of [...open]) c.close('server_closing', 'the server is closing');
      return stopped;
    },
    address() {
      const a = server.address();
      return a && typeof a === 'object' ? a : null;
    },
    end(key, reason) {
      const c = liveKeys.get(key);
      if (!c) return false;
      c.close('ended', reason);
      return true;
    },
    live: () => [...liveKeys.keys()],
    connections: () => open.size,
  };
}
