import { createHash } from 'node:crypto';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { decodeFirstAmf0 } from './amf0.ts';
import { ChunkReader, type RtmpMessage } from './chunk-reader.ts';
import { ChunkWriter } from './chunk-writer.ts';
import { connectResult, onStatus, parseCommand, result, type Command, type StatusCode } from './commands.ts';
import { acknowledgement, MSG, readU32, setChunkSize, setPeerBandwidth, streamBegin, USER_CONTROL, userControl, windowAckSize } from './control.ts';
import { RtmpError, rtmpError, type RtmpCloseCode } from './errors.ts';
import { FLV_TAG, FlvOutput } from './flv.ts';
import { ServerHandshake } from './handshake.ts';
import type { RtmpLimits } from './limits.ts';

// One RTMP connection, from the first byte to the close (S3.9). The order is fixed:
//   handshake → connect → (releaseStream, FCPublish) → createStream → publish
//   → authorize(key) → Publish.Start, then media as FLV       or → Publish.BadName, close.
// The key is checked BEFORE the publish is acknowledged: while authorize() runs, the socket is
// paused and nothing is read or answered, and NetStream.Publish.Start is written only once it
// has said yes and the key is not live elsewhere. A refusal is answered with
// NetStream.Publish.BadName and the connection closed; every close is logged with its reason.

/** `code`: a short stable name of the refusal for metrics (onRefused); default `refused`. */
export type AuthorizeResult<S> = { ok: true; session: S } | { ok: false; reason: string; tell?: string; code?: string };

export interface PublishStart<S> {
  /** The stream key: the publish name up to any "?" (the reservation ID). */
  key: string;
  app: string;
  session: S;
  /** The peer's IP address. */
  remote: string;
  connection: number;
  /** The media as FLV: header, then one tag per audio, video and onMetaData message. */
  flv: Readable;
  /** Settles when the publish is over (unpublished, disconnected, cut off, server closing). */
  ended: Promise<{ code: RtmpCloseCode; detail: string }>;
}

/** pino's shape, so the origin's logger fits. */
export interface RtmpLog {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/** The server's table of live keys: one publisher per key at a time. */
export interface LiveKeys {
  claim(key: string, conn: RtmpConnection): boolean;
  release(key: string, conn: RtmpConnection): void;
}

export interface ConnectionDeps<S> {
  id: number;
  limits: RtmpLimits;
  authorize(key: string, app: string, remote: string): Promise<AuthorizeResult<S>>;
  onPublish(p: PublishStart<S>): void | Promise<void>;
  /** Called once per refused publish with the refusal's code (metrics). */
  onRefused?(code: string): void;
  log: RtmpLog;
  live: LiveKeys;
  random: (n: number) => Buffer;
  onClose(conn: RtmpConnection): void;
}

/** What we send: our chunk size, and the window sizes we announce (acknowledgements are cheap). */
const OUT_CHUNK_SIZE = 4096;
const WINDOW = 2_500_000;
/** A stream key: printable ASCII without spaces (a reservation ID is `rsv_` + base64url). */
const KEY_CHARS = /^[\x21-\x7e]+$/;

type State = 'handshake' | 'connecting' | 'connected' | 'authorizing' | 'publishing' | 'closing' | 'closed';

/** Keys are secrets: logs carry their SHA-256 (hex), the form the bookings table keeps (reservation_key_hash). */
export const keyHash = (key: string) => createHash('sha256').update(key).digest('hex');

export class RtmpConnection<S = unknown> {
  readonly id: number;
  readonly remote: string;
  private state: State = 'handshake';
  private readonly hs: ServerHandshake;
  private readonly reader: ChunkReader;
  private readonly writer = new ChunkWriter();
  private readonly paused = new Set<'authorize' | 'consumer'>();
  private pumping = false;
  private app = '';
  private streams = 0;
  private publishStream = 0;
  private key: string | null = null;
  private keyHash: string | undefined;
  private flv: FlvOutput | null = null;
  private endPublish: ((r: { code: RtmpCloseCode; detail: string }) => void) | null = null;
  private bytesIn = 0;
  private ackedAt = 0;
  private peerWindow = 0;
  private readonly timers = new Map<'handshake' | 'publish' | 'stall' | 'authorize' | 'grace', NodeJS.Timeout>();

  constructor(
    private readonly socket: Socket,
    private readonly deps: ConnectionDeps<S>,
  ) {
    this.id = deps.id;
    this.remote = socket.remoteAddress ?? '';
    const l = deps.limits;
    this.hs = new ServerHandshake(deps.random);
    this.reader = new ChunkReader(
      // Unparsed input is at most one chunk (header ≤ 18 bytes) plus one socket read (≤ 64 KiB).
      { maxChunkSize: l.maxChunkSize, maxPendingBytes: l.maxPendingBytes, maxChunkStreams: l.maxChunkStreams, maxInputBytes: l.maxChunkSize + 64 * 1024 + 64 },
      // Media may be large only once the publish is accepted; everything else is a command.
      (type) => (this.state === 'publishing' && (type === MSG.audio || type === MSG.video || type === MSG.dataAmf0) ? l.maxMessageLength : l.maxCommandLength),
    );
    socket.setNoDelay(true);
    socket.setTimeout(l.idleTimeoutMs);
    socket.on('timeout', () => this.onIdle());
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('error', (e) => this.close('socket_error', e.message));
    socket.on('close', () => this.close('ended', 'peer closed the connection'));
    this.timer('handshake', l.handshakeTimeoutMs, () => this.close('handshake_timeout', `no complete handshake after ${l.handshakeTimeoutMs} ms`));
    this.timer('publish', l.publishTimeoutMs, () => this.close('publish_timeout', `no accepted publish after ${l.publishTimeoutMs} ms`));
    this.debug('connection opened');
  }

  /** Not closing nor closed (a getter: a call in between may close it). */
  private get isOpen() {
    return this.state !== 'closing' && this.state !== 'closed';
  }

  // ---------- input ----------

  private onData(data: Buffer) {
    if (!this.isOpen) return;
    this.bytesIn += data.length;
    try {
      this.acknowledge();
      if (this.state === 'handshake') {
        const step = this.hs.push(data);
        if (step.reply) this.send(step.reply);
        if (!step.done) return;
        this.clearTimer('handshake');
        this.state = 'connecting';
        this.debug('handshake done');
        if (step.rest.length) this.reader.push(step.rest);
      } else {
        this.reader.push(data);
      }
      this.pump();
    } catch (e) {
      this.fail(e);
    }
  }

  /** Handles complete messages while nothing holds the connection (authorize, a full FLV queue). */
  private pump() {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.paused.size === 0 && this.isOpen) {
        const m = this.reader.next();
        if (!m) break;
        this.handle(m);
      }
    } catch (e) {
      this.fail(e);
    } finally {
      this.pumping = false;
    }
  }

  private handle(m: RtmpMessage) {
    switch (m.type) {
      case MSG.setChunkSize: {
        const n = this.u32(m, 'Set Chunk Size');
        // §5.4.1: the top bit must be zero.
        if (n > 0x7fffffff) throw rtmpError('chunk_size_invalid', `Set Chunk Size 0x${n.toString(16)} has its top bit set`);
        this.reader.setChunkSize(n);
        this.debug('peer chunk size', { chunkSize: n });
        return;
      }
      case MSG.abort:
        this.reader.abort(this.u32(m, 'Abort'));
        return;
      case MSG.acknowledgement:
      case MSG.setPeerBandwidth:
        return;
      case MSG.windowAckSize:
        this.peerWindow = this.u32(m, 'Window Acknowledgement Size');
        return;
      case MSG.userControl:
        // Answer pings; other events (set buffer length…) concern players.
        if (m.payload.length >= 6 && m.payload.readUInt16BE(0) === USER_CONTROL.pingRequest) {
          this.sendMessage(userControl(USER_CONTROL.pingResponse, m.payload.subarray(2, 6)));
        }
        return;
      case MSG.commandAmf0:
        this.command(parseCommand(m, this.deps.limits.maxAmfDepth));
        return;
      case MSG.audio:
      case MSG.video:
      case MSG.dataAmf0:
        this.media(m);
        return;
      case MSG.dataAmf3:
      case MSG.sharedObjectAmf3:
      case MSG.commandAmf3:
      case MSG.sharedObjectAmf0:
      case MSG.aggregate:
        throw rtmpError('unsupported', `message type ${m.type} is not accepted (ffmpeg and OBS do not send it)`);
      default:
        this.debug('message ignored', { type: m.type });
    }
  }

  private u32(m: RtmpMessage, what: string) {
    const v = readU32(m.payload);
    if (v === null) throw rtmpError('command_invalid', `${what} of ${m.payload.length} bytes`);
    return v;
  }

  // ---------- commands ----------

  private command(c: Command) {
    this.debug('command', { command: c.name, transactionId: c.transactionId, streamId: c.streamId });
    if (this.state === 'connecting') {
      if (c.name !== 'connect') throw rtmpError('command_out_of_order', `${c.name} before connect`);
      return this.connect(c);
    }
    switch (c.name) {
      case 'connect':
        throw rtmpError('command_out_of_order', 'a second connect');
      case 'releaseStream':
      case 'FCPublish':
        // Answered as FMS does; ffmpeg and OBS send them and do not wait on the answer.
        return this.sendMessage(result(c.transactionId, undefined));
      case 'createStream':
        if (++this.streams > this.deps.limits.maxStreams) throw rtmpError('too_many_streams', `more than ${this.deps.limits.maxStreams} createStream`);
        return this.sendMessage(result(c.transactionId, this.streams));
      case 'publish':
        return this.publish(c);
      case 'FCUnpublish':
      case 'deleteStream':
      case 'closeStream':
        return this.unpublish(c.name);
      case 'play':
        this.sendMessage(onStatus(c.streamId, 'error', 'NetStream.Play.Failed', 'This server only takes publishers.'));
        throw rtmpError('unsupported', 'play: this server only ingests');
      default:
        // _checkbw, getStreamLength and the like: nothing a publisher waits for.
        this.debug('command ignored', { command: c.name });
    }
  }

  private connect(c: Command) {
    const app = c.object?.app;
    if (typeof app !== 'string') throw rtmpError('command_invalid', 'connect without an app name');
    // "live?x=y" and "live/" name the application "live".
    const name = app.split('?')[0].replace(/\/+$/, '');
    if (name.length === 0 || name.length > this.deps.limits.maxAppLength) throw rtmpError('command_invalid', `app name of ${name.length} characters`);
    this.app = name;
    this.sendMessage(windowAckSize(WINDOW));
    this.sendMessage(setPeerBandwidth(WINDOW, 2));
    this.sendMessage(setChunkSize(OUT_CHUNK_SIZE));
    this.writer.setChunkSize(OUT_CHUNK_SIZE);
    this.sendMessage(connectResult(c.transactionId));
    this.state = 'connected';
    this.debug('connected', { app: name });
  }

  private publish(c: Command) {
    if (this.state !== 'connected') {
      this.status(c.streamId, 'error', 'NetStream.Publish.BadConnection', 'This connection already publishes.');
      throw rtmpError('command_out_of_order', `publish while ${this.state}`);
    }
    if (c.streamId < 1 || c.streamId > this.streams) throw rtmpError('command_invalid', `publish on stream ${c.streamId}, not created`);
    this.publishStream = c.streamId;
    const name = c.args[0];
    const key = typeof name === 'string' ? name.split('?')[0] : '';
    this.key = key;
    this.keyHash = keyHash(key);
    if (key.length === 0 || key.length > this.deps.limits.maxKeyLength || !KEY_CHARS.test(key)) {
      // Not worth asking the application: refused as a wrong key.
      return this.refuse(`malformed stream key (${typeof name === 'string' ? `${name.length} characters` : typeof name})`, undefined, 'malformed_key');
    }
    // From here until the answer, nothing is read or sent: the publish is neither acknowledged
    // nor refused, and the peer's next bytes wait in the socket.
    this.state = 'authorizing';
    this.hold('authorize');
    const l = this.deps.limits;
    let settled = false;
    const decide = (r: AuthorizeResult<S>) => {
      if (settled) return;
      settled = true;
      this.clearTimer('authorize');
      this.decided(key, r);
    };
    this.timer('authorize', l.authorizeTimeoutMs, () => decide({ ok: false, reason: `authorize gave no answer in ${l.authorizeTimeoutMs} ms`, code: 'authorize_timeout' }));
    let pending: Promise<AuthorizeResult<S>>;
    try {
      pending = Promise.resolve(this.deps.authorize(key, this.app, this.remote));
    } catch (e) {
      pending = Promise.reject(e);
    }
    pending.then(decide, (e: unknown) => decide({ ok: false, reason: `authorize failed: ${e instanceof Error ? e.message : String(e)}`, code: 'authorize_failed' }));
  }

  private decided(key: string, r: AuthorizeResult<S>) {
    if (this.state !== 'authorizing') return; // closed meanwhile
    try {
      if (!r.ok) return this.refuse(r.reason, r.tell, r.code);
      // The check and the claim are one synchronous step: two publishers of one key cannot both pass.
      if (!this.deps.live.claim(key, this)) return this.refuse('the key is already publishing on another connection', 'Stream already publishing.', 'already_live');
      this.state = 'publishing';
      this.clearTimer('publish');
      this.sendMessage(streamBegin(this.publishStream));
      this.status(this.publishStream, 'status', 'NetStream.Publish.Start', `${key} is now published.`);
      this.flv = new FlvOutput(this.deps.limits.flvHighWaterMark, () => this.drained());
      const ended = new Promise<{ code: RtmpCloseCode; detail: string }>((resolve) => (this.endPublish = resolve));
      this.deps.log.info({ conn: this.id, remote: this.remote, app: this.app, keyHash: this.keyHash }, 'rtmp publish accepted');
      const started = this.deps.onPublish({ key, app: this.app, session: r.session, remote: this.remote, connection: this.id, flv: this.flv.stream, ended });
      if (started) started.catch((e: unknown) => this.close('internal', `onPublish failed: ${e instanceof Error ? e.message : String(e)}`));
      this.release('authorize');
    } catch (e) {
      this.fail(e);
    }
  }

  /** Refuses the publish: NetStream.Publish.BadName, the reason logged, the connection closed. */
  private refuse(reason: string, tell = 'Publish refused.', code = 'refused') {
    this.deps.onRefused?.(code);
    this.status(this.publishStream, 'error', 'NetStream.Publish.BadName', tell);
    this.close('refused', reason, true);
  }

  private unpublish(command: string) {
    if (this.state !== 'publishing') return;
    this.sendMessage(onStatus(this.publishStream, 'status', 'NetStream.Unpublish.Success', `${this.key} is now unpublished.`));
    // The connection has no further use: the publisher closes it after deleteStream.
    this.close('ended', `publisher sent ${command}`, true);
  }

  // ---------- media ----------

  private media(m: RtmpMessage) {
    if (this.state !== 'publishing' || !this.flv) {
      throw rtmpError('media_before_publish', `message type ${m.type} before an accepted publish`);
    }
    if (m.streamId !== this.publishStream) throw rtmpError('command_invalid', `media on stream ${m.streamId}, publishing on ${this.publishStream}`);
    let body = m.payload;
    let type: 8 | 9 | 18 = m.type === MSG.audio ? FLV_TAG.audio : m.type === MSG.video ? FLV_TAG.video : FLV_TAG.script;
    if (type === FLV_TAG.script) {
      // "@setDataFrame", "onMetaData", {…} is stored as the script tag "onMetaData", {…} (what
      // FMS and nginx-rtmp do); other data messages (cue points, text) are not passed on.
      const first = decodeFirstAmf0(body, this.deps.limits.maxAmfDepth);
      if (first.value === '@setDataFrame') body = body.subarray(first.length);
      const name = body.length ? decodeFirstAmf0(body, this.deps.limits.maxAmfDepth).value : undefined;
      if (name !== 'onMetaData') return this.debug('data message dropped', { name: typeof name === 'string' ? name : typeof name });
    }
    if (!this.flv.write(type, m.timestamp, body)) this.hold('consumer');
  }

  private drained() {
    if (this.paused.has('consumer')) this.release('consumer');
  }

  // ---------- flow control ----------

  /** Stops reading: during authorize(), or while the FLV queue is full. */
  private hold(why: 'authorize' | 'consumer') {
    this.paused.add(why);
    this.socket.pause();
    if (why === 'consumer') {
      const ms = this.deps.limits.consumerStallMs;
      this.timer('stall', ms, () => this.close('consumer_stalled', `the FLV consumer read nothing for ${ms} ms`));
    }
  }

  private release(why: 'authorize' | 'consumer') {
    this.paused.delete(why);
    if (why === 'consumer') this.clearTimer('stall');
    if (this.paused.size > 0 || !this.isOpen) return;
    // First what was received before the pause, then the socket: so the reader never holds
    // more than one chunk plus one read (maxInputBytes).
    this.pump();
    if (this.paused.size === 0 && this.isOpen) this.socket.resume();
  }

  private onIdle() {
    // A paused socket is silent by our choice: its own timers (authorize, stall) rule then.
    if (this.paused.size > 0 || !this.isOpen) return;
    this.close('idle_timeout', `nothing received for ${this.deps.limits.idleTimeoutMs} ms`);
  }

  /** §5.4.3: acknowledge every peer-announced window of bytes received. */
  private acknowledge() {
    if (this.peerWindow > 0 && this.bytesIn - this.ackedAt >= this.peerWindow && this.state !== 'handshake') {
      this.ackedAt = this.bytesIn;
      this.sendMessage(acknowledgement(this.bytesIn));
    }
  }

  // ---------- output ----------

  private status(streamId: number, level: 'status' | 'error', code: StatusCode, description: string) {
    this.sendMessage(onStatus(streamId, level, code, description));
    // The record of what was answered, in order: tests and operators read it.
    this.deps.log.debug({ conn: this.id, status: code, keyHash: this.keyHash }, 'rtmp status sent');
  }

  private sendMessage(m: RtmpMessage) {
    this.send(this.writer.write(m));
  }

  private send(b: Buffer) {
    if (this.state === 'closed') return;
    this.socket.write(b);
    if (this.socket.writableLength > this.deps.limits.maxOutputBytes) {
      throw rtmpError('output_over_limit', `${this.socket.writableLength} bytes unsent: the peer does not read`);
    }
  }

  // ---------- closing ----------

  private fail(e: unknown) {
    if (e instanceof RtmpError) this.close(e.code, e.message);
    else this.close('internal', `${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  }

  /**
   * Closes once, logging why. `graceful`: what was written still reaches the peer (a refusal
   * must be read to be understood), then the socket ends; it is destroyed after refuseGraceMs
   * whatever the peer does. Otherwise the socket is destroyed at once.
   */
  close(code: RtmpCloseCode, detail: string, graceful = false) {
    if (this.state === 'closed' || (this.state === 'closing' && graceful)) return;
    const wasPublishing = this.state === 'publishing';
    const fields = { conn: this.id, remote: this.remote, port: this.socket.remotePort, app: this.app || undefined, keyHash: this.keyHash, code, reason: detail };
    if (this.state !== 'closing') {
      if (code === 'ended' || code === 'server_closing') this.deps.log.info(fields, 'rtmp connection closed');
      else this.deps.log.warn(fields, code === 'refused' ? 'rtmp publish refused' : 'rtmp connection closed');
    }
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    this.paused.clear();
    if (this.key && wasPublishing) this.deps.live.release(this.key, this);
    if (this.flv) {
      if (code === 'consumer_stalled') this.flv.destroy();
      else this.flv.end();
      this.endPublish?.({ code, detail });
      this.flv = null;
    }
    if (graceful) {
      this.state = 'closing';
      this.socket.pause();
      this.socket.end();
      this.timer('grace', this.deps.limits.refuseGraceMs, () => this.close(code, detail));
      return;
    }
    this.state = 'closed';
    this.socket.destroy();
    this.deps.onClose(this);
  }

  // ---------- timers ----------

  private timer(name: 'handshake' | 'publish' | 'stall' | 'authorize' | 'grace', ms: number, f: () => void) {
    this.clearTimer(name);
    this.timers.set(name, setTimeout(f, ms));
  }

  private clearTimer(name: 'handshake' | 'publish' | 'stall' | 'authorize' | 'grace') {
    const t = this.timers.get(name);
    if (t) clearTimeout(t);
    this.timers.delete(name);
  }

  private debug(msg: string, extra: object = {}) {
    this.deps.log.debug({ conn: this.id, ...extra }, `rtmp ${msg}`);
  }
}
