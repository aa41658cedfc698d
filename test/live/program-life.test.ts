import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { snapshotTables, testEngines } from '../helpers/db.ts';
import { broadcast, FFMPEG, FFPROBE, requireFfmpeg, type Broadcast } from '../helpers/ffmpeg.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';
import { waitFor } from '../helpers/wait.ts';

// #16 points 1–2 with real ffmpeg: the channel carries filler (default slate, the operator's
// slate, a clip) whenever no program's slot is on air, and "now" switches to the program at its
// start and back at its end; distribution stops at the slot's end while the broadcaster is
// still connected (nothing more is logged, viewers are let go, the playlist ends), an
// extension accepted before the end moves the stop and the cut, and the cut comes at the end
// of the connectable window.

requireFfmpeg();

const M = 60_000;
const T0 = Date.UTC(2026, 5, 15, 8, 3);
const START = Date.UTC(2026, 5, 15, 9, 0);
const LIMIT = { timeout: 180_000 };

const codecs = (stdout: string) => [...new Set(stdout.split('\n').map((l) => l.trim()).filter(Boolean))].sort();

const run = (file: string, args: string[]) =>
  new Promise<{ status: number; stdout: string; stderr: string }>((resolve) =>
    execFile(file, args, { timeout: 60_000, encoding: 'utf8' }, (err, stdout, stderr) => resolve({ status: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr })),
  );

const [engine] = testEngines();

describe(`program life with ffmpeg (${engine.name})`, () => {
  let o: TestOrigin;
  let op: string;
  let channelId: string;
  let rtmpPort: number;
  let caster: { token: string; userId: string };
  let live: Broadcast | null = null;

  before(async () => {
    // Viewers idle out only after an hour here: the clock jumps minutes, and the slot's end must be what lets them go.
    o = await startTestOrigin({ engine, now: T0, config: { signupCredit: 0, liveViewerIdleSeconds: 3600 } });
    rtmpPort = o.live.streams.rtmp.address()!.port;
    op = (await o.userWithRoles(['operator'])).token;
    const ch = await o.call('POST', '/live/channels', { token: op, json: { name: 'Town TV', capacity: 5, bitrateKbps: 600, tariffPerSlot: 200 } });
    assert.equal(ch.status, 201, JSON.stringify(ch.body));
    channelId = ch.body.id;
    caster = await o.userWithRoles(['member', 'premium']);
    await o.call('PUT', '/me/contact', { token: caster.token, json: { email: 'caster@example.org' } });
    await o.fund(caster.userId, 10_000, 'fund-caster');
  });
  after(async () => {
    await live?.stop();
    await o.close();
  });

  const now = async () => (await o.call('GET', `/live/channels/${channelId}/now`)).body;

  test('S3.14: a channel without filler gets a default slate; the operator sets a slate or a clip; players read it as a looping HLS stream', LIMIT, async () => {
    const first = await o.call('GET', `/live/channels/${channelId}/filler`);
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.equal(first.body.kind, 'default');
    assert.match(first.body.text, /Town TV/);
    const probe = await run(FFPROBE, ['-v', 'error', '-show_entries', 'stream=codec_name', '-of', 'csv=p=0', `${o.url}/live/channels/${channelId}/filler.m3u8`]);
    assert.equal(probe.status, 0, probe.stderr);
    assert.deepEqual(codecs(probe.stdout), ['aac', 'h264']);

    // Refusals: not an operator, empty text, not a video; nothing changes.
    const member = await o.userWithRoles(['member']);
    const snap = await snapshotTables(o.db.db);
    const notOp = await o.call('PUT', `/live/channels/${channelId}/filler`, { token: member.token, json: { slate: 'hi' } });
    assert.equal(notOp.status, 403);
    const empty = await o.call('PUT', `/live/channels/${channelId}/filler`, { token: op, json: { slate: '   ' } });
    assert.equal(empty.status, 400);
    assert.equal(empty.body.error.code, 'filler_text_required');
    const junk = await o.call('PUT', `/live/channels/${channelId}/filler`, { token: op, body: Buffer.from('not a video at all'), headers: { 'content-type': 'video/mp4' } });
    assert.equal(junk.status, 400, JSON.stringify(junk.body));
    assert.equal(junk.body.error.code, 'filler_not_video');
    const unknown = await o.call('PUT', `/live/channels/ch_nope/filler`, { token: op, json: { slate: 'x' } });
    assert.equal(unknown.status, 404);
    assert.deepEqual(await snapshotTables(o.db.db), snap, 'refused filler changes nothing');

    // A slate; the old files go, and a player holding the old URL is told the filler changed.
    const slate = await o.call('PUT', `/live/channels/${channelId}/filler`, { token: op, json: { slate: "Back at 10:00 — it's \"Town TV\": 100% live" } });
    assert.equal(slate.status, 200, JSON.stringify(slate.body));
    assert.equal(slate.body.kind, 'slate');
    assert.notEqual(slate.body.version, first.body.version);
    const old = await o.call('GET', `/live/channels/${channelId}/filler/${first.body.version}/init.mp4`);
    assert.equal(old.status, 404);
    // The text is drawn (white on the dark slate), '%' and quotes included.
    const frame = await run(FFMPEG, ['-hide_banner', '-i', `${o.url}/live/channels/${channelId}/filler.m3u8`, '-frames:v', '1', '-vf', 'signalstats,metadata=print:key=lavfi.signalstats.YMAX', '-f', 'null', '-']);
    const ymax = Number(/YMAX=(\d+)/.exec(frame.stderr)?.[1]);
    assert.ok(ymax > 200, `the slate shows its text: YMAX ${ymax}`);
    const list = (await o.call('GET', `/live/channels/${channelId}/filler.m3u8`)).body as string;
    assert.match(list, new RegExp(`filler/${slate.body.version}/seg_0000\\.m4s`));

    // A clip without sound: silence is added, so the filler always has both tracks.
    const dir = mkdtempSync(path.join(os.tmpdir(), 'clip-'));
    const clip = path.join(dir, 'clip.mp4');
    const made = await run(FFMPEG, ['-hide_banner', '-loglevel', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=320x180:rate=25:d=5', '-c:v', 'libx264', '-preset', 'ultrafast', clip]);
    assert.equal(made.status, 0, made.stderr);
    const put = await o.call('PUT', `/live/channels/${channelId}/filler`, { token: op, body: readFileSync(clip), headers: { 'content-type': 'video/mp4' } });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    assert.equal(put.body.kind, 'clip');
    assert.ok(put.body.totalMs >= 4500 && put.body.totalMs <= 5500, `5 s clip: ${put.body.totalMs}`);
    const clipProbe = await run(FFPROBE, ['-v', 'error', '-show_entries', 'stream=codec_name', '-of', 'csv=p=0', `${o.url}/live/channels/${channelId}/filler.m3u8`]);
    assert.deepEqual(codecs(clipProbe.stdout), ['aac', 'h264'], clipProbe.stderr);
    // The loop goes on with the clock.
    o.clock.set(T0 + 7_000);
    const looped = (await o.call('GET', `/live/channels/${channelId}/filler.m3u8`)).body as string;
    assert.match(looped, /#EXT-X-DISCONTINUITY\n/, 'a second pass after 5 s');
  });

  test('S3.13, S3.14: the channel switches to the program at its start and back at its end; distribution stops at the end, the extension moves it, the cut comes at the window end', LIMIT, async () => {
    const r = await o.call('POST', '/live/bookings', {
      token: caster.token,
      json: { channelId, start: new Date(START).toISOString(), end: new Date(START + 10 * M).toISOString(), openLevel: 'public', title: 'Morning show', genre: 'talk' },
    });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    const id = r.body.booking.id as string;
    assert.equal((await o.call('POST', '/live/reconfirm', { token: caster.token, json: { reservationId: r.body.reservationId } })).status, 200);

    o.clock.set(START - 3 * M);
    let n = await now();
    assert.equal(n.program, null, 'before the start: filler');
    assert.equal(n.next.id, id);
    live = broadcast(`rtmp://127.0.0.1:${rtmpPort}/live/${r.body.reservationId}`, { seconds: 150 });
    const entries = async () => ((await o.call('GET', `/live/programs/${id}/manifest`)).body.entries as unknown[]).length;
    await waitFor(async () => (await entries()) >= 3, 'segments logged', 30_000, 100);
    n = await now();
    assert.equal(n.program, null, 'connected before the start: the channel still shows filler');

    o.clock.set(START + 1 * M);
    n = await now();
    assert.equal(n.program?.id, id, 'at the start the channel carries the program');
    assert.equal(n.program.onAir, true);
    const viewer = await o.userWithRoles(['member']);
    const joined = await o.call('POST', `/live/programs/${id}/viewers`, { token: viewer.token, json: {} });
    assert.equal(joined.status, 201, JSON.stringify(joined.body));

    // The extension, in the last ten minutes (a one-slot program: from its start).
    const status = (await o.call('GET', `/live/bookings/${id}/status`, { token: caster.token })).body;
    assert.equal(status.extension.offered, true, JSON.stringify(status.extension));
    assert.equal(status.distribution, 'on');
    const ext = await o.call('POST', `/live/bookings/${id}/extend`, { token: caster.token, json: { until: status.extension.until } });
    assert.equal(ext.status, 200, JSON.stringify(ext.body));
    assert.equal(ext.body.charged, 200);

    // Past the old end: still distributed (the extension moved it).
    o.clock.set(START + 11 * M);
    const before = await entries();
    await waitFor(async () => (await entries()) >= before + 2, 'still logging after the old end', 20_000, 100);
    assert.equal((await now()).program?.id, id);
    const pl = await o.call('GET', joined.body.playlist);
    assert.equal(pl.status, 200);
    assert.doesNotMatch(pl.body as string, /ENDLIST/);

    // The new end: distribution stops, the broadcaster is still connected.
    o.clock.set(START + 20 * M);
    await waitFor(async () => (await o.call('GET', joined.body.playlist)).body?.error?.code === 'viewer_session_expired', 'the viewer is let go at the slot end', 10_000, 100);
    const atEnd = await entries();
    await new Promise((res) => setTimeout(res, 3000)); // real seconds of ffmpeg still sending
    assert.equal(await entries(), atEnd, 'nothing is logged after the slot end');
    const late = await o.call('POST', `/live/programs/${id}/viewers`, { token: viewer.token, json: {} });
    assert.equal(late.status, 409);
    assert.equal(late.body.error.code, 'program_over');
    const s2 = (await o.call('GET', `/live/bookings/${id}/status`, { token: caster.token })).body;
    assert.equal(s2.ingest.live, true, 'the broadcaster is still connected');
    assert.equal(s2.distribution, 'stopped');
    assert.equal(s2.extension.code, 'over');
    n = await now();
    assert.equal(n.program, null, 'after the end the channel is back to filler');
    assert.equal(live.proc.exitCode, null, 'ffmpeg is still sending');

    // The window's end (3 minutes after the new end) cuts it.
    o.clock.set(START + 23 * M);
    const done = await live.done;
    assert.notEqual(done.code, null);
    live = null;
  });
});
