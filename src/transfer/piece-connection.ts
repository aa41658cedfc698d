import net from 'node:net';
import tls from 'node:tls';
import { AppError } from '../core/errors.ts';

// One keep-alive HTTP/1.1 connection to a piece source, which reads each answer's body
// straight into the buffers its caller names (#19). A general HTTP client (undici, node:http)
// reads every socket into a fresh 64 KiB chunk and copies it out again: on the 2-core bench
// machine that was 1.5–2 CPU-seconds per GB at the receiver, more than hashing every piece,
// and most of its garbage collection. Here a plain TCP socket reads (`onread`) into the
// piece's own buffer whenever the answer's length is known; the head, chunked or
// close-delimited bodies, and TLS go through one bounded scratch buffer and are copied.
//
// It speaks only what piece requests need: GET, one request at a time per connection, answers
// framed by Content-Length, chunked encoding or the end of the connection; 1xx heads skipped.
// Nothing the source sends is buffered without a bound (a head over HEAD_MAX fails).

/** A head (status line and headers) longer than this fails the request. */
export const HEAD_MAX = 32 * 1024;
const SCRATCH = 64 * 1024;
/** Idle time before we close a kept-alive connection when the source gives no `keep-alive: timeout` hint (undici's default). */
const IDLE_DEFAULT_MS = 4000;

/** Where an answer's body goes. Any method may throw: the request then fails with that error and the connection is closed. */
export interface AnswerSink {
  /** The head is in: status, headers (names in lower case), and the body's length when the source said it. */
  head(status: number, headers: Map<string, string>, length: number | undefined): void;
  /** The buffer the next body bytes go to; never empty while the body goes on (throw when there is no room). */
  space(): Buffer;
  /** `n` bytes were written at the start of the last `space()`. */
  filled(n: number): void;
}

/** An error of the connection itself (refused, reset, stalled, spoke something else than HTTP/1.1): the source may be fine next time. */
export class ConnectionError extends Error {
  constructor(
    readonly code: string,
    message: string,
    /** Whether any byte of the answer arrived (a request that failed before may be sent again). */
    readonly answered = false,
  ) {
    super(message);
  }
}

export interface ConnectionOptions {
  url: URL;
  /** The address to connect to for the URL's host (the origin checks terminals' addresses with its policy here). */
  resolve?: (hostname: string, port: number) => Promise<string>;
  /** No byte for this long while a request is out fails it (S1.7: a holder that stalls is given up on). */
  stallMs: number;
  /** The certificates to trust for an `https:` source instead of Node's bundled ones (a private CA). */
  ca?: string | Buffer;
}

type State = 'head' | 'length' | 'chunk-size' | 'chunk-data' | 'chunk-crlf' | 'trailer' | 'close' | 'idle';

interface Pending {
  sink: AnswerSink;
  resolve: () => void;
  reject: (err: Error) => void;
}

export class PieceConnection {
  private socket?: net.Socket;
  private readonly ready: Promise<void>;
  private pending?: Pending;
  private state: State = 'idle';
  private readonly head = Buffer.allocUnsafe(HEAD_MAX);
  private headLen = 0;
  private readonly scratch: Buffer;
  /** Body bytes still to come ('length'), or of the current chunk ('chunk-data'). */
  private left = 0;
  /** Bytes of the chunk-size or trailer line read so far. */
  private line = '';
  private keepAlive = true;
  private answered = false;
  private idleTimer?: NodeJS.Timeout;
  /** How long the source keeps an idle connection open, less a margin (its `keep-alive: timeout`). */
  idleMs = IDLE_DEFAULT_MS;
  /** Requests answered on this connection (a reused one may have been closed by the source meanwhile). */
  served = 0;
  closed = false;
  onClose?: () => void;

  constructor(private readonly opts: ConnectionOptions) {
    this.scratch = Buffer.allocUnsafe(SCRATCH);
    this.ready = this.open();
    this.ready.catch(() => {}); // the first request reports it
  }

  private async open() {
    const { url } = this.opts;
    const secure = url.protocol === 'https:';
    const port = Number(url.port) || (secure ? 443 : 80);
    const hostname = url.hostname.replace(/^\[|\]$/g, '');
    const host = this.opts.resolve ? await this.opts.resolve(hostname, port) : hostname;
    if (this.closed) throw new ConnectionError('connection_closed', 'the connection was closed');
    let socket: net.Socket;
    if (secure) {
      socket = tls.connect({ host, port, servername: net.isIP(hostname) ? undefined : hostname, ALPNProtocols: ['http/1.1'], ...(this.opts.ca ? { ca: this.opts.ca } : {}) });
      socket.on('data', (chunk: Buffer) => this.ingest(chunk));
    } else {
      // Reads land where `target()` says: in the piece's buffer while a body of known length comes.
      socket = net.connect({ host, port, noDelay: true, onread: { buffer: () => this.target(), callback: (n: number, buf: Uint8Array) => (this.didRead(n, buf), true) } });
    }
    this.socket = socket;
    socket.setTimeout(this.opts.stallMs);
    socket.on('timeout', () => this.fail(new ConnectionError('source_stalled', `the source sent nothing for ${this.opts.stallMs} ms`, this.answered)));
    socket.on('error', (err: NodeJS.ErrnoException) => this.fail(new ConnectionError(err.code ?? 'connection_error', err.message, this.answered)));
    socket.on('end', () => this.ended());
    socket.on('close', () => this.fail(new ConnectionError('connection_closed', 'the source closed the connection', this.answered)));
    await new Promise<void>((resolve, reject) => {
      socket.once(secure ? 'secureConnect' : 'connect', () => resolve());
      socket.once('close', () => reject(new ConnectionError('connection_closed', `could not connect to ${url.host}`)));
      socket.once('error', reject);
    });
  }

  /** Sends `GET path` with `headers` and delivers the answer to `sink`; resolves once the whole body is in. */
  async get(path: string, headers: Record<string, string>, sink: AnswerSink): Promise<void> {
    if (this.pending || this.closed) throw new Error('PieceConnection: one request at a time, on an open connection');
    clearTimeout(this.idleTimer);
    let request = `GET ${path} HTTP/1.1\r\nhost: ${this.opts.url.host}\r\n`;
    for (const [name, value] of Object.entries(headers)) request += `${name}: ${value}\r\n`;
    if (/[^\t\x20-\x7e]/.test(request.replace(/\r\n/g, ''))) throw new AppError('bad_request', 'a piece request may hold only printable ASCII', 400);
    const done = new Promise<void>((resolve, reject) => (this.pending = { sink, resolve, reject }));
    // It may fail (an abort) while the connection is still opening, before the caller holds it.
    done.catch(() => {});
    this.state = 'head';
    this.headLen = 0;
    this.answered = false;
    try {
      await this.ready;
    } catch (err) {
      this.fail(err as Error);
      return done;
    }
    this.socket!.setTimeout(this.opts.stallMs);
    this.socket!.write(`${request}\r\n`);
    return done;
  }

  /** Fails the request in progress (if any) with `err` and closes the connection. */
  abort(err: Error) {
    this.fail(err);
  }

  close() {
    this.fail(new ConnectionError('connection_closed', 'the connection was closed'));
  }

  private fail(err: Error) {
    const pending = this.pending;
    this.pending = undefined;
    this.state = 'idle';
    if (!this.closed) {
      this.closed = true;
      clearTimeout(this.idleTimer);
      this.socket?.destroy();
      this.onClose?.();
    }
    pending?.reject(err);
  }

  /** Where the socket reads next: the sink's buffer while a body of known length comes, the scratch buffer otherwise. */
  private target(): Uint8Array {
    if (this.state === 'length' && this.pending) {
      try {
        const space = this.pending.sink.space();
        return space.length > this.left ? space.subarray(0, this.left) : space;
      } catch (err) {
        // Read into the scratch buffer; the next read fails the request (see didRead).
        queueMicrotask(() => this.fail(err as Error));
      }
    }
    return this.scratch;
  }

  private didRead(n: number, buf: Uint8Array) {
    if (buf === this.scratch) return this.ingest(this.scratch.subarray(0, n));
    // Straight into the sink's buffer.
    this.answered = true;
    try {
      this.pending!.sink.filled(n);
    } catch (err) {
      return this.fail(err as Error);
    }
    this.left -= n;
    if (this.left === 0) this.finish(Buffer.alloc(0));
  }

  /** Bytes that arrived in a buffer of ours (head, chunked or close-delimited bodies, TLS). */
  private ingest(chunk: Buffer) {
    try {
      while (chunk.length > 0) {
        if (!this.pending || this.state === 'idle') throw new ConnectionError('source_error', 'the source sent bytes nobody asked for', true);
        this.answered = true;
        switch (this.state) {
          case 'head': {
            const take = Math.min(chunk.length, HEAD_MAX - this.headLen);
            chunk.copy(this.head, this.headLen, 0, take);
            const from = Math.max(0, this.headLen - 3);
            this.headLen += take;
            const end = this.head.subarray(0, this.headLen).indexOf('\r\n\r\n', from, 'latin1');
            if (end < 0) {
              if (this.headLen === HEAD_MAX) throw new AppError('source_error', `the source's answer head is over ${HEAD_MAX} bytes`, 502);
              chunk = chunk.subarray(take);
              break;
            }
            const rest = chunk.subarray(take - (this.headLen - (end + 4)));
            this.parseHead(this.head.toString('latin1', 0, end));
            chunk = rest;
            if ((this.state as State) === 'idle') return this.finish(chunk);
            break;
          }
          case 'length':
            chunk = this.deliverLeft(chunk);
            if (this.left === 0) return this.finish(chunk);
            break;
          case 'chunk-size':
          case 'chunk-crlf':
          case 'trailer': {
            const nl = chunk.indexOf(10);
            const part = chunk.toString('latin1', 0, nl < 0 ? chunk.length : nl + 1);
            this.line += part;
            chunk = chunk.subarray(part.length);
            if (this.line.length > 1024) throw new AppError('source_error', 'the source sent a chunk line over 1024 bytes', 502);
            if (nl < 0) break;
            const line = this.line.replace(/\r?\n$/, '');
            this.line = '';
            if (this.state === 'chunk-crlf') {
              if (line !== '') throw new AppError('source_error', 'the source sent a malformed chunk', 502);
              this.state = 'chunk-size';
            } else if (this.state === 'trailer') {
              if (line === '') return this.finish(chunk);
            } else {
              const size = /^[0-9a-fA-F]{1,8}(;.*)?$/.test(line) ? parseInt(line, 16) : NaN;
              if (!Number.isFinite(size)) throw new AppError('source_error', 'the source sent a malformed chunk size', 502);
              this.left = size;
              this.state = size === 0 ? 'trailer' : 'chunk-data';
            }
            break;
          }
          case 'chunk-data':
            chunk = this.deliverLeft(chunk);
            if (this.left === 0) this.state = 'chunk-crlf';
            break;
          case 'close':
            this.deliver(chunk);
            chunk = chunk.subarray(chunk.length);
            break;
        }
      }
    } catch (err) {
      this.fail(err as Error);
    }
  }

  /** Delivers as much of `chunk` as the body (or chunk) still has to come (`left`); returns the rest. */
  private deliverLeft(chunk: Buffer): Buffer {
    const take = Math.min(chunk.length, this.left);
    this.deliver(chunk.subarray(0, take));
    this.left -= take;
    return chunk.subarray(take);
  }

  /** Copies body bytes into the sink's buffers. */
  private deliver(bytes: Buffer) {
    const sink = this.pending!.sink;
    while (bytes.length > 0) {
      const space = sink.space();
      const n = Math.min(space.length, bytes.length);
      bytes.copy(space, 0, 0, n);
      sink.filled(n);
      bytes = bytes.subarray(n);
    }
  }

  private parseHead(text: string) {
    const lines = text.split('\r\n');
    const status = /^HTTP\/1\.([01]) ([1-9]\d\d)(?: |$)/.exec(lines[0]);
    if (!status) throw new AppError('source_error', 'the source did not answer in HTTP/1.1', 502);
    const code = Number(status[2]);
    const headers = new Map<string, string>();
    for (let i = 1; i < lines.length; i++) {
      const colon = lines[i].indexOf(':');
      if (colon <= 0) throw new AppError('source_error', 'the source sent a malformed header', 502);
      const name = lines[i].slice(0, colon).trim().toLowerCase();
      const value = lines[i].slice(colon + 1).trim();
      const before = headers.get(name);
      if (before !== undefined && name === 'content-length' && before !== value) throw new AppError('source_error', 'the source sent two different lengths', 502);
      headers.set(name, before === undefined || name === 'content-length' ? value : `${before}, ${value}`);
    }
    if (code < 200) {
      // An interim answer (100 Continue and the like): the real one follows.
      this.headLen = 0;
      return;
    }
    const connection = headers.get('connection')?.toLowerCase() ?? '';
    this.keepAlive = status[1] === '1' ? !/\bclose\b/.test(connection) : /\bkeep-alive\b/.test(connection);
    const hint = /\btimeout=(\d+)/.exec(headers.get('keep-alive') ?? '');
    if (hint) this.idleMs = Math.max(0, Number(hint[1]) * 1000 - 1000);
    const lengthText = headers.get('content-length');
    const chunked = /\bchunked\s*$/i.test(headers.get('transfer-encoding') ?? '');
    if (lengthText !== undefined && !/^\d{1,15}$/.test(lengthText)) throw new AppError('source_error', 'the source sent a malformed length', 502);
    const length = chunked || lengthText === undefined ? undefined : Number(lengthText);
    this.pending!.sink.head(code, headers, length);
    if (code === 204 || code === 304 || length === 0) this.state = 'idle';
    else if (chunked) this.state = 'chunk-size';
    else if (length !== undefined) {
      this.state = 'length';
      this.left = length;
    } else {
      this.state = 'close';
      this.keepAlive = false;
    }
  }

  /** The body is complete; `rest` is whatever came after it in the same read (nothing should). */
  private finish(rest: Buffer) {
    const pending = this.pending!;
    if (rest.length > 0) return this.fail(new ConnectionError('source_error', 'the source sent bytes after its answer', true));
    this.pending = undefined;
    this.state = 'idle';
    this.served++;
    if (!this.keepAlive) this.close();
    else {
      this.socket!.setTimeout(0);
      this.idleTimer = setTimeout(() => this.close(), this.idleMs);
      this.idleTimer.unref();
    }
    pending.resolve();
  }

  /** The source closed its side: the end of a close-delimited body, or of the connection. */
  private ended() {
    if (this.state === 'close' && this.pending) {
      this.keepAlive = false;
      return this.finish(Buffer.alloc(0));
    }
    this.fail(new ConnectionError('connection_closed', 'the source closed the connection', this.answered));
  }
}

/**
 * Up to `connections` kept-alive connections to one source; requests beyond wait for a free one
 * (callers bound how many they send). A request that fails on a reused connection before any byte
 * of its answer came (the source closed it while idle) is sent once more on a new one: GET is safe
 * to repeat.
 */
export class ConnectionPool {
  private readonly idle: PieceConnection[] = [];
  private readonly waiting: { resolve: (c: PieceConnection) => void; reject: (err: Error) => void }[] = [];
  private open = 0;
  private closing = false;
  private closed?: Promise<void>;
  private allClosed?: () => void;

  constructor(private readonly opts: ConnectionOptions & { connections: number }) {}

  async get(path: string, headers: Record<string, string>, sink: AnswerSink, signal?: AbortSignal): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const conn = await this.acquire(signal);
      const reused = conn.served > 0;
      const onAbort = () => conn.abort(signal!.reason);
      signal?.addEventListener('abort', onAbort, { once: true });
      try {
        await conn.get(path, headers, sink);
        this.release(conn);
        return;
      } catch (err) {
        // Closed or reset before a byte came: the source dropped an idle connection. (A stall is not retried: it already cost stallMs.)
        if (reused && attempt === 0 && err instanceof ConnectionError && !err.answered && err.code !== 'source_stalled' && !signal?.aborted) continue;
        throw err;
      } finally {
        signal?.removeEventListener('abort', onAbort);
      }
    }
  }

  private acquire(signal?: AbortSignal): Promise<PieceConnection> {
    if (this.closing) return Promise.reject(new ConnectionError('connection_closed', 'the piece client was closed'));
    if (signal?.aborted) return Promise.reject(signal.reason);
    for (let conn = this.idle.pop(); conn; conn = this.idle.pop()) if (!conn.closed) return Promise.resolve(conn);
    if (this.open < this.opts.connections) return Promise.resolve(this.connect());
    return new Promise((resolve, reject) => {
      const waiter = {
        resolve: (c: PieceConnection) => (signal?.removeEventListener('abort', onAbort), resolve(c)),
        reject: (err: Error) => (signal?.removeEventListener('abort', onAbort), reject(err)),
      };
      const onAbort = () => {
        this.waiting.splice(this.waiting.indexOf(waiter), 1);
        reject(signal!.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(waiter);
    });
  }

  private connect(): PieceConnection {
    this.open++;
    const conn = new PieceConnection(this.opts);
    conn.onClose = () => {
      this.open--;
      const at = this.idle.indexOf(conn);
      if (at >= 0) this.idle.splice(at, 1);
      if (this.closing) {
        if (this.open === 0) this.allClosed?.();
      } else if (this.waiting.length > 0 && this.open < this.opts.connections) this.waiting.shift()!.resolve(this.connect());
    };
    return conn;
  }

  private release(conn: PieceConnection) {
    if (conn.closed) return;
    if (this.closing) return conn.close();
    const waiter = this.waiting.shift();
    if (waiter) waiter.resolve(conn);
    else this.idle.push(conn);
  }

  /** Closes idle connections now and the others once their request is answered (calling it again waits for the same). */
  close(): Promise<void> {
    if (this.closed) return this.closed;
    this.closing = true;
    for (const waiter of this.waiting.splice(0)) waiter.reject(new ConnectionError('connection_closed', 'the piece client was closed'));
    this.closed = this.open === 0 ? Promise.resolve() : new Promise<void>((resolve) => (this.allClosed = resolve));
    for (const conn of this.idle.splice(0)) conn.close();
    return this.closed;
  }
}
