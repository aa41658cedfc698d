import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { after, describe, test } from 'node:test';
import { Amf0EcmaArray, decodeAmf0, encodeAmf0, type Amf0Value } from '../../src/live/rtmp/amf0.ts';
import { ChunkReader, type RtmpMessage } from '../../src/live/rtmp/chunk-reader.ts';
import { ChunkWriter } from '../../src/live/rtmp/chunk-writer.ts';
import { createRtmpServer, keyHash, type AuthorizeResult, type PublishStart, type RtmpLimits, type RtmpServer } from '../../src/live/rtmp/index.ts';

// S3.9 RTMP ingest, end to end: Debian's ffmpeg publishes and its FLV is decoded by ffprobe;
// refusals (wrong key, second publisher, authorize silent) are answered with
// NetStream.Publish.BadName, never after a Publish.Start; malformed input and every bound close
// the connection with its reason; a slow consumer pauses the publisher; close() ends everything.
// Raw clients below speak RTMP byte by byte where ffmpeg would not misbehave on purpose.

const FFMPEG = '/usr/bin/ffmpeg';
const FFPROBE = '/usr/bin/ffprobe';
for (const tool of [FFMPEG, FFPROBE]) {
  // Fail loudly rather than skip: these tests are the proof that refusals come first.
  if (spawnSync(tool, ['-version']).status !== 0) throw new Error(`${tool} is missing: install Debian's ffmpeg package (apt-get install ffmpeg)`);
}

// ---------- a server with a recorded log ----------

interface Entry {
  level: string;
  msg: string;
  [k: string]: unknown;
}

const servers: RtmpServer[] = [];
after(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

type Keys = Record<string, AuthorizeResult<string> | (() => Promise<AuthorizeResult<string>>)>;

async function start(keys: Keys, limits: Partial<RtmpLimits> = {}, onPublish?: (p: PublishStart<string>) => void) {
  const entries: Entry[] = [];
  // DEBUG_RTMP=1 prints the server's log as it happens.
  const rec = (level: string) => (obj: object, msg: string) => {
    if (process.env.DEBUG_RTMP) console.error(level, msg, JSON.stringify(obj));
    entries.push({ level, msg, ...obj });
  };
  const published: PublishStart<string>[] = [];
  const server = createRtmpServer<string>({
    log: { debug: rec('debug'), info: rec('info'), warn: rec('warn') },
    limits,
    authorize: async (key, app, remote) => {
      entries.push({ level: 'test', msg: 'authorize called', keyHash: keyHash(key), app, remote });
      const k = keys[key];
      if (!k) return { ok: false, reason: `unknown key`, tell: 'No such reservation.' };
      return typeof k === 'function' ? k() : k;
    },
    onPublish: (p) => {
      published.push(p);
      if (onPublish) onPublish(p);
      else p.flv.resume(); // read and drop
    },
  });
  servers.push(server);
  const { port } = await server.listen(0, '127.0.0.1');
  const statuses = (conn?: number) => entries.filter((e) => e.msg === 'rtmp status sent' && (conn === undefined || e.conn === conn)).map((e) => e.status);
  const closes = () => entries.filter((e) => e.msg === 'rtmp connection closed' || e.msg === 'rtmp publish refused');
  const closeOf = (conn: number) => closes().find((e) => e.conn === conn);
  return { server, port, entries, published, statuses, closes, closeOf };
}

const ok = (session: string): AuthorizeResult<string> => ({ ok: true, session });

/** Polls `f` every 10 ms for at most `ms`; fails naming `what`. */
async function until<T>(f: () => T | undefined | null | false, what: string, ms = 5000): Promise<T> {
  for (let waited = 0; ; waited += 10) {
    const v = f();
    if (v) return v;
    if (waited >= ms) assert.fail(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

// ---------- ffmpeg ----------

function ffmpegPublish(port: number, key: string, seconds = 3): Promise<{ code: number | null; stderr: string }> {
  const args = ['-hide_banner', '-loglevel', 'error', '-re', '-f', 'lavfi', '-i', 'testsrc=size=320x240:rate=25', '-f', 'lavfi', '-i', 'sine'];
  args.push('-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-g', '25', '-c:a', 'aac', '-t', String(seconds));
  args.push('-f', 'flv', `rtmp://127.0.0.1:${port}/live/${key}`);
  const p = spawn(FFMPEG, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  p.stderr.on('data', (d) => (stderr += d));
  const killer = setTimeout(() => p.kill('SIGKILL'), 20_000);
  return new Promise((resolve) => p.on('close', (code) => (clearTimeout(killer), resolve({ code, stderr }))));
}

/** ffprobe decodes the FLV from its standard input and counts frames per stream. */
function probe(flv: Readable): Promise<{ streams: { codec_type: string; codec_name: string; nb_read_frames: string }[] }> {
  const p = spawn(FFPROBE, ['-v', 'error', '-count_frames', '-show_entries', 'stream=codec_type,codec_name,nb_read_frames', '-of', 'json', '-f', 'flv', '-i', 'pipe:0']);
  p.stdin.on('error', () => {}); // EPIPE if ffprobe stops early: its answer says why
  flv.pipe(p.stdin);
  let out = '';
  let err = '';
  p.stdout.on('data', (d) => (out += d));
  p.stderr.on('data', (d) => (err += d));
  return new Promise((resolve, reject) => p.on('close', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`ffprobe ${code}: ${err}`)))));
}

// ---------- a raw RTMP client ----------

class RawClient {
  readonly messages: RtmpMessage[] = [];
  readonly closed: Promise<void>;
  private readonly reader = new ChunkReader({ maxChunkSize: 1 << 24, maxPendingBytes: 1 << 26, maxChunkStreams: 64, maxInputBytes: 1 << 26 }, () => 0xffffff);
  readonly writer = new ChunkWriter();
  private hs: Buffer | null = Buffer.alloc(0);
  isClosed = false;
  /** Our port: the server's close log names it (the socket forgets it once closed). */
  readonly port: number;

  constructor(readonly socket: Socket) {
    this.port = socket.localPort!;
    socket.on('error', () => {});
    this.closed = new Promise((r) => socket.on('close', () => ((this.isClosed = true), r())));
    socket.on('data', (d: Buffer) => this.onData(d));
  }

  static open(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = connect(port, '127.0.0.1', () => resolve(new RawClient(s)));
      s.once('error', reject);
    });
  }

  private onData(d: Buffer) {
    if (this.hs) {
      this.hs = Buffer.concat([this.hs, d]);
      if (this.hs.length < 1 + 1536 * 2) return;
      this.socket.write(this.hs.subarray(1, 1537)); // C2 echoes S1
      d = this.hs.subarray(1 + 1536 * 2);
      this.hs = null;
    }
    this.reader.push(d);
    for (let m = this.reader.next(); m; m = this.reader.next()) {
      if (m.type === 1) this.reader.setChunkSize(m.payload.readUInt32BE(0));
      this.messages.push(m);
    }
  }

  write(b: Buffer) {
    return this.socket.write(b);
  }

  send(m: RtmpMessage) {
    return this.write(this.writer.write(m));
  }

  command(streamId: number, ...values: Amf0Value[]) {
    this.send({ csid: 3, type: 20, streamId, timestamp: 0, payload: encodeAmf0(...values) });
  }

  async handshake() {
    this.write(Buffer.concat([Buffer.from([3]), Buffer.alloc(1536, 1)]));
    await until(() => this.hs === null, 'the handshake');
  }

  /** Decoded commands received (onStatus, _result), as [name, tid, obj, ...args]. */
  commands(): Amf0Value[][] {
    return this.messages.filter((m) => m.type === 20).map((m) => decodeAmf0(m.payload, 8));
  }

  statuses(): string[] {
    return this.commands()
      .filter((c) => c[0] === 'onStatus')
      .map((c) => (c[3] as { code: string }).code);
  }

  /** handshake, connect, createStream: ready to publish on stream 1. */
  async ready(app = 'live') {
    await this.handshake();
    this.command(0, 'connect', 1, { app, type: 'nonprivate', tcUrl: `rtmp://127.0.0.1/${app}` });
    await until(() => this.commands().some((c) => c[0] === '_result' && c[1] === 1), 'connect _result');
    this.command(0, 'releaseStream', 2, null, 'k');
    this.command(0, 'FCPublish', 3, null, 'k');
    this.command(0, 'createStream', 4, null);
    const r = await until(() => this.commands().find((c) => c[0] === '_result' && c[1] === 4), 'createStream _result');
    assert.equal(r[3], 1);
  }

  publish(key: string) {
    this.command(1, 'publish', 0, null, key, 'live');
  }

  async status(): Promise<string> {
    return until(() => this.statuses()[0], 'an onStatus');
  }

  video(timestamp: number, payload: Buffer, csid = 6) {
    return this.send({ csid, type: 9, streamId: 1, timestamp, payload });
  }

  end() {
    this.socket.destroy();
  }
}

/** The tags of an FLV byte stream, checking the header and every PreviousTagSize. */
function parseFlv(b: Buffer): { type: number; timestamp: number; data: Buffer }[] {
  assert.equal(b.toString('latin1', 0, 3), 'FLV');
  assert.equal(b.readUInt32BE(9), 0);
  const tags = [];
  for (let p = 13; p < b.length; ) {
    const size = b.readUIntBE(p + 1, 3);
    const timestamp = (b.readUIntBE(p + 4, 3) | (b[p + 7] << 24)) >>> 0;
    tags.push({ type: b[p], timestamp, data: b.subarray(p + 11, p + 11 + size) });
    assert.equal(b.readUInt32BE(p + 11 + size), 11 + size, 'PreviousTagSize');
    p += 11 + size + 4;
  }
  return tags;
}

function collect(flv: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  flv.on('data', (d: Buffer) => parts.push(d));
  return new Promise((resolve) => flv.on('end', () => resolve(Buffer.concat(parts))));
}

// ---------- the tests ----------

/** A test that waits on something that never comes fails instead of holding CI. */
const LIMIT = { timeout: 20_000 };

describe('RTMP ingest (S3.9)', () => {
  test('(a) ffmpeg publishes H.264 + AAC with a good key: accepted, and the FLV decodes (75 video frames, audio)', LIMIT, async () => {
    let decoded: ReturnType<typeof probe> | null = null;
    const s = await start({ GOODKEY: ok('booking-1') }, {}, (p) => (decoded = probe(p.flv)));
    const ff = await ffmpegPublish(s.port, 'GOODKEY');
    assert.equal(ff.code, 0, ff.stderr);
    const p = await until(() => s.published[0], 'onPublish');
    assert.deepEqual([p.key, p.app, p.session, p.remote], ['GOODKEY', 'live', 'booking-1', '127.0.0.1']);
    assert.deepEqual(await p.ended, { code: 'ended', detail: 'publisher sent FCUnpublish' });
    const streams = (await decoded!).streams;
    const video = streams.find((x) => x.codec_type === 'video');
    const audio = streams.find((x) => x.codec_type === 'audio');
    assert.equal(video?.codec_name, 'h264');
    assert.ok(Math.abs(Number(video?.nb_read_frames) - 75) <= 2, `video frames: ${video?.nb_read_frames}`);
    assert.equal(audio?.codec_name, 'aac');
    assert.ok(Number(audio?.nb_read_frames) > 100, `audio frames: ${audio?.nb_read_frames}`);
    // authorize came before Publish.Start, which was sent once.
    const asked = s.entries.findIndex((e) => e.msg === 'authorize called');
    const started = s.entries.findIndex((e) => e.status === 'NetStream.Publish.Start');
    assert.ok(asked >= 0 && started > asked, `authorize at ${asked}, Publish.Start at ${started}`);
    assert.deepEqual(s.statuses(), ['NetStream.Publish.Start']);
    assert.deepEqual(s.server.live(), []);
  });

  test('(b) ffmpeg with a wrong key fails; the server answered BadName only, after asking authorize, and logged why', LIMIT, async () => {
    const s = await start({ GOODKEY: ok('booking-1') });
    const ff = await ffmpegPublish(s.port, 'WRONGKEY', 1);
    assert.notEqual(ff.code, 0);
    assert.match(ff.stderr, /No such reservation/);
    assert.deepEqual(s.statuses(), ['NetStream.Publish.BadName']);
    assert.equal(s.entries.filter((e) => e.msg === 'authorize called' && e.keyHash === keyHash('WRONGKEY')).length, 1);
    const asked = s.entries.findIndex((e) => e.msg === 'authorize called');
    const answered = s.entries.findIndex((e) => e.msg === 'rtmp status sent');
    assert.ok(asked < answered);
    const closed = await until(() => s.closes()[0], 'the close');
    assert.deepEqual([closed.level, closed.code, closed.reason, closed.keyHash], ['warn', 'refused', 'unknown key', keyHash('WRONGKEY')]);
    assert.equal(s.published.length, 0);
    assert.ok(!JSON.stringify(s.entries.filter((e) => e.level !== 'test')).includes('WRONGKEY'), 'the key itself is never logged');
  });

  test('refusals come before any answer: nothing is sent while authorize() runs; each reason is logged', LIMIT, async () => {
    let open!: (r: AuthorizeResult<string>) => void;
    const s = await start({
      SLOW: () => new Promise((r) => (open = r)),
      EARLY: { ok: false, reason: 'outside its window: opens 2026-12-01T17:55Z' },
      CANCELLED: { ok: false, reason: 'booking cancelled' },
    });
    const c = await RawClient.open(s.port);
    await c.ready();
    const before = c.messages.length;
    c.publish('SLOW');
    await until(() => open, 'authorize to be called');
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(c.messages.length, before, 'nothing answered while authorize runs');
    open(ok('x'));
    assert.equal(await c.status(), 'NetStream.Publish.Start');

    for (const [key, reason] of [['EARLY', 'outside its window'], ['CANCELLED', 'booking cancelled'], ['bad key with spaces', 'malformed stream key']]) {
      const d = await RawClient.open(s.port);
      await d.ready();
      d.publish(key);
      assert.equal(await d.status(), 'NetStream.Publish.BadName');
      await d.closed;
      assert.deepEqual(d.statuses(), ['NetStream.Publish.BadName']);
      assert.match(String(s.closes().at(-1)?.reason), new RegExp(reason));
    }
    // The malformed key never reached authorize.
    assert.equal(s.entries.filter((e) => e.msg === 'authorize called').length, 3);
    c.end();
  });

  test('(c) a second publisher of a live key is refused (ffmpeg fails), also when both ask at once; the key frees when the first leaves', LIMIT, async () => {
    const gates: ((r: AuthorizeResult<string>) => void)[] = [];
    const s = await start({ GOODKEY: ok('b'), RACE: () => new Promise((r) => gates.push(r)) });
    const first = await RawClient.open(s.port);
    await first.ready();
    first.publish('GOODKEY');
    assert.equal(await first.status(), 'NetStream.Publish.Start');

    const ff = await ffmpegPublish(s.port, 'GOODKEY', 1);
    assert.notEqual(ff.code, 0);
    assert.match(ff.stderr, /already publishing/);
    const second = s.closes().find((e) => e.code === 'refused')!;
    assert.match(String(second.reason), /already publishing/);
    assert.deepEqual(s.statuses(second.conn as number), ['NetStream.Publish.BadName']);
    assert.deepEqual(s.server.live(), ['GOODKEY']);

    // Two publishers whose authorize() both say yes at the same moment: one wins.
    const [a, b] = await Promise.all([RawClient.open(s.port), RawClient.open(s.port)]);
    await Promise.all([a.ready(), b.ready()]);
    a.publish('RACE');
    b.publish('RACE');
    await until(() => gates.length === 2, 'both authorize calls');
    gates.forEach((g) => g(ok('r')));
    const answers = [await a.status(), await b.status()].sort();
    assert.deepEqual(answers, ['NetStream.Publish.BadName', 'NetStream.Publish.Start']);

    first.end();
    await until(() => !s.server.live().includes('GOODKEY'), 'the key to be released');
    const again = await RawClient.open(s.port);
    await again.ready();
    again.publish('GOODKEY');
    assert.equal(await again.status(), 'NetStream.Publish.Start');
    [a, b, again].forEach((x) => x.end());
  });

  test('media becomes FLV: @setDataFrame is stripped from onMetaData, other data dropped, timestamps past 24 bits kept', LIMIT, async () => {
    let flv!: Promise<Buffer>;
    const s = await start({ K: ok('k') }, {}, (p) => (flv = collect(p.flv)));
    const c = await RawClient.open(s.port);
    await c.ready();
    c.publish('K');
    await c.status();
    const meta = encodeAmf0('@setDataFrame', 'onMetaData', new Amf0EcmaArray({ width: 320, height: 240 }));
    c.send({ csid: 4, type: 18, streamId: 1, timestamp: 0, payload: meta });
    c.send({ csid: 4, type: 18, streamId: 1, timestamp: 0, payload: encodeAmf0('onCuePoint', {}) });
    c.send({ csid: 4, type: 8, streamId: 1, timestamp: 0, payload: Buffer.from([0xaf, 0x00, 0x12, 0x10]) });
    c.video(0, Buffer.from([0x17, 0x00, 0, 0, 0, 1, 2, 3]));
    c.video(0x01000021, Buffer.alloc(5000, 0x27)); // more than one chunk, extended timestamp
    c.command(1, 'FCUnpublish', 5, null, 'K');
    const tags = parseFlv(await flv);
    assert.deepEqual(tags.map((t) => [t.type, t.timestamp, t.data.length]), [[18, 0, meta.length - 16], [8, 0, 4], [9, 0, 8], [9, 0x01000021, 5000]]);
    assert.deepEqual(decodeAmf0(tags[0].data, 8)[0], 'onMetaData');
    await c.closed;
    assert.equal(c.statuses().at(-1), 'NetStream.Unpublish.Success');
  });

  test('(d) malformed input closes the connection with its reason, holding nothing it was promised', LIMIT, async () => {
    const s = await start({ K: ok('k') }, { maxMessageLength: 1 << 20, maxPendingBytes: 1 << 21, maxCommandLength: 4096 });
    const reasonOf = async (c: RawClient) => {
      await c.closed;
      return until(() => s.closes().find((e) => e.port === c.port), 'the close log');
    };
    const memBefore = process.memoryUsage().arrayBuffers;

    // garbage instead of a handshake
    const g = await RawClient.open(s.port);
    g.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    assert.equal((await reasonOf(g)).code, 'handshake_bad_version');

    // an absurd chunk size; a chunk size with its top bit set
    for (const [size, code] of [[0x7fffffff, 'chunk_size_over_limit'], [0x80000000, 'chunk_size_invalid']] as const) {
      const c = await RawClient.open(s.port);
      await c.handshake();
      const p = Buffer.alloc(4);
      p.writeUInt32BE(size);
      c.send({ csid: 2, type: 1, streamId: 0, timestamp: 0, payload: p });
      assert.equal((await reasonOf(c)).code, code);
    }

    // a message claiming 16 MiB before publishing: refused on its header, the body never sent
    const big = await RawClient.open(s.port);
    await big.handshake();
    big.write(Buffer.from([0x03, 0, 0, 0, 0xff, 0xff, 0xff, 20, 0, 0, 0, 0]));
    const tooLong = await reasonOf(big);
    assert.equal(tooLong.code, 'message_too_long');
    assert.match(String(tooLong.reason), /16777215 bytes, limit 4096/);

    // an AMF string claiming 65535 bytes, a long string claiming 4 GiB
    for (const payload of [Buffer.from([0x02, 0xff, 0xff, 0x63]), Buffer.concat([Buffer.from([0x0c, 0xff, 0xff, 0xff, 0xff]), Buffer.from('connect')])]) {
      const c = await RawClient.open(s.port);
      await c.handshake();
      c.send({ csid: 3, type: 20, streamId: 0, timestamp: 0, payload });
      const r = await reasonOf(c);
      assert.equal(r.code, 'amf_invalid');
      assert.match(String(r.reason), /claims (65535|4294967295) bytes/);
    }

    // a command before connect; media before publish
    const early = await RawClient.open(s.port);
    await early.handshake();
    early.command(0, 'publish', 0, null, 'K');
    assert.equal((await reasonOf(early)).code, 'command_out_of_order');
    const media = await RawClient.open(s.port);
    await media.ready();
    media.video(0, Buffer.alloc(10));
    assert.equal((await reasonOf(media)).code, 'media_before_publish');

    // createStream past maxStreams (4)
    const streams = await RawClient.open(s.port);
    await streams.ready();
    for (let tid = 10; tid < 14; tid++) streams.command(0, 'createStream', tid, null);
    assert.equal((await reasonOf(streams)).code, 'too_many_streams');

    // once publishing, media may be large, within maxMessageLength and maxPendingBytes
    const pub = await RawClient.open(s.port);
    await pub.ready();
    pub.publish('K');
    await pub.status();
    pub.write(Buffer.from([0x06, 0, 0, 0, 0x10, 0x00, 0x01, 9, 1, 0, 0, 0])); // 1 MiB + 1
    assert.equal((await reasonOf(pub)).code, 'message_too_long');
    const pend = await RawClient.open(s.port);
    await pend.ready();
    pend.publish('K');
    await pend.status();
    // three 1 MiB messages begun on three chunk streams: the third passes 2 MiB pending
    for (const csid of [6, 7, 8]) pend.write(Buffer.concat([Buffer.from([csid, 0, 0, 0, 0x10, 0x00, 0x00, 9, 1, 0, 0, 0]), Buffer.alloc(128)]));
    const r = await reasonOf(pend);
    assert.equal(r.code, 'pending_bytes_over_limit');

    assert.ok(process.memoryUsage().arrayBuffers - memBefore < 16 << 20, 'memory stays bounded');
    assert.equal(s.server.connections(), 0);
  });

  test('timeouts: handshake, idle, publish, authorize silent', LIMIT, async (t) => {
    const s = await start({ NEVER: () => new Promise(() => {}) }, { handshakeTimeoutMs: 150, idleTimeoutMs: 200, publishTimeoutMs: 600, authorizeTimeoutMs: 150 });
    const hs = await RawClient.open(s.port);
    hs.write(Buffer.from([3]));
    const idle = await RawClient.open(s.port);
    await idle.ready();
    const talker = await RawClient.open(s.port);
    await talker.ready();
    const ping = setInterval(() => talker.send({ csid: 2, type: 4, streamId: 0, timestamp: 0, payload: Buffer.from([0, 6, 0, 0, 0, 1]) }), 50);
    t.after(() => clearInterval(ping));
    await Promise.all([hs.closed, idle.closed, talker.closed]);
    const codeOf = (c: RawClient) => s.closes().find((e) => e.port === c.port)?.code;
    assert.deepEqual([codeOf(hs), codeOf(idle), codeOf(talker)], ['handshake_timeout', 'idle_timeout', 'publish_timeout']);
    assert.ok(talker.messages.some((m) => m.type === 4 && m.payload.readUInt16BE(0) === 7), 'pings were answered');

    const silent = await RawClient.open(s.port);
    await silent.ready();
    silent.publish('NEVER');
    assert.equal(await silent.status(), 'NetStream.Publish.BadName');
    assert.match(String(s.closes().at(-1)?.reason), /no answer in 150 ms/);
  });

  test('one connection more than maxConnections is closed on arrival', LIMIT, async () => {
    const s = await start({}, { maxConnections: 2 });
    const [a, b] = await Promise.all([RawClient.open(s.port), RawClient.open(s.port)]);
    await until(() => s.server.connections() === 2, 'two connections');
    const extra = await RawClient.open(s.port);
    await extra.closed;
    assert.ok(s.entries.some((e) => e.code === 'too_many_connections'));
    assert.equal(a.isClosed || b.isClosed, false);
    a.end();
    b.end();
  });

  test('backpressure: a consumer that does not read pauses the publisher, the queue stays bounded, and nothing is lost', LIMIT, async () => {
    const hwm = 64 * 1024;
    let flv!: Readable;
    const s = await start({ K: ok('k') }, { flvHighWaterMark: hwm, consumerStallMs: 10_000 }, (p) => (flv = p.flv));
    const c = await RawClient.open(s.port);
    await c.ready();
    c.publish('K');
    await c.status();
    const frame = Buffer.alloc(16 * 1024, 0x27);
    let sent = 0;
    // Write until the kernel's buffers are full too: the server has stopped reading.
    while (c.socket.writableLength < 1 << 20 && sent < 20_000) {
      c.video(sent * 40, frame);
      sent++;
      if (sent % 64 === 0) await new Promise((r) => setImmediate(r));
    }
    assert.ok(sent < 20_000, 'the server never pushed back');
    await new Promise((r) => setTimeout(r, 100));
    assert.ok(flv.readableLength <= hwm + frame.length + 15, `queued ${flv.readableLength}`);
    assert.equal(s.server.connections(), 1);
    // Now read: everything arrives, in order.
    const all = collect(flv);
    c.command(1, 'deleteStream', 6, null, 1);
    const tags = parseFlv(await all);
    assert.equal(tags.length, sent);
    assert.ok(tags.every((t, i) => t.timestamp === i * 40));
    c.end();
  });

  test('a consumer that stalls past consumerStallMs cuts the publisher off', LIMIT, async () => {
    const s = await start({ K: ok('k') }, { flvHighWaterMark: 16 * 1024, consumerStallMs: 200 }, () => {});
    const c = await RawClient.open(s.port);
    await c.ready();
    c.publish('K');
    await c.status();
    for (let i = 0; i < 64; i++) c.video(i, Buffer.alloc(4096));
    await c.closed;
    assert.equal(s.closes().at(-1)?.code, 'consumer_stalled');
    assert.deepEqual((await s.published[0].ended).code, 'consumer_stalled');
  });

  test('(e) close() ends live connections: the publisher, one in the handshake; the FLV ends', LIMIT, async () => {
    let ended = false;
    const s = await start({ K: ok('k') }, {}, (p) => p.flv.on('end', () => (ended = true)).resume());
    const pub = await RawClient.open(s.port);
    await pub.ready();
    pub.publish('K');
    await pub.status();
    const half = await RawClient.open(s.port);
    half.write(Buffer.from([3]));
    await until(() => s.server.connections() === 2, 'two connections');
    await s.server.close();
    await Promise.all([pub.closed, half.closed]);
    assert.deepEqual(await s.published[0].ended, { code: 'server_closing', detail: 'the server is closing' });
    await until(() => ended, 'the FLV to end');
    assert.equal(s.server.connections(), 0);
    assert.deepEqual(s.server.live(), []);
  });

  test('end(key) cuts a live publish off (its slot is over)', LIMIT, async () => {
    const s = await start({ K: ok('k') });
    const c = await RawClient.open(s.port);
    await c.ready();
    c.publish('K');
    await c.status();
    assert.equal(s.server.end('K', 'slot over'), true);
    await c.closed;
    assert.equal(s.closes().at(-1)?.reason, 'slot over');
    assert.equal(s.server.end('K', 'again'), false);
  });
});
