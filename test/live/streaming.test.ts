import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { verifySegmentLog, type SignedSegmentEntry } from '../../src/live/segment-log.ts';
import { snapshotTables, testEngines } from '../helpers/db.ts';
import { broadcast, FFPROBE, requireFfmpeg, type Broadcast } from '../helpers/ffmpeg.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';
import { CLI, runCli } from '../helpers/processes.ts';
import { waitFor } from '../helpers/wait.ts';

// #15 through real processes: Debian's ffmpeg publishes over RTMP into a reservation; ingest
// refusals come before any acknowledgement and are counted by reason; ffmpeg packages HLS fMP4
// whose segments are logged as origin-signed entries; viewers are admitted by password and
// capacity (a race: exactly `capacity` get in), fetch the playlist and segments with their
// session, and free their place by leaving or idling; ffprobe plays the stream; the broadcaster
// sees the S3.10 figures; the window's end cuts the publisher and ends the playlist.

requireFfmpeg();

const M = 60_000;
const T0 = Date.UTC(2026, 5, 15, 8, 3);
const START = Date.UTC(2026, 5, 15, 9, 0); // today, within the reconfirmation lead: deadline = window opening
const CAPACITY = 3;
const LIMIT = { timeout: 120_000 };

/** A program's exit status and output, without blocking this process (it runs the origin). */
const run = (file: string, args: string[]) =>
  new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) =>
    execFile(file, args, { timeout: 30_000, encoding: 'utf8' }, (err, stdout, stderr) => resolve({ status: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr })),
  );

const [engine] = testEngines(); // ffmpeg's part runs once; the admission race runs on both engines below

describe(`live streaming with ffmpeg (${engine.name})`, () => {
  let o: TestOrigin;
  let op: string;
  let channelId: string;
  let rtmpPort: number;
  let program: { id: string; reservationId: string };
  let caster: { token: string; userId: string };
  let live: Broadcast | null = null;
  let n = 0;

  before(async () => {
    o = await startTestOrigin({ engine, now: T0, config: { signupCredit: 0 } });
    rtmpPort = o.live.streams.rtmp.address()!.port;
    op = (await o.userWithRoles(['operator'])).token;
    const ch = await o.call('POST', '/live/channels', { token: op, json: { name: 'Stage', capacity: CAPACITY, bitrateKbps: 600, tariffPerSlot: 0 } });
    assert.equal(ch.status, 201, JSON.stringify(ch.body));
    channelId = ch.body.id;
    caster = await o.userWithRoles(['member', 'premium']);
    await o.call('PUT', '/me/contact', { token: caster.token, json: { email: 'caster@example.org' } });
    program = await book(START, 3, { openLevel: 'password', password: 'open sesame' });
    await confirm(program.reservationId);
  });
  after(async () => {
    await live?.stop();
    await o.close();
  });

  async function book(start: number, slots: number, extra: Record<string, unknown> = {}) {
    const r = await o.call('POST', '/live/bookings', {
      token: caster.token,
      json: { channelId, start: new Date(start).toISOString(), end: new Date(start + slots * 10 * M).toISOString(), openLevel: 'public', title: `Show ${++n}`, genre: 'talk', ...extra },
    });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return { id: r.body.booking.id as string, reservationId: r.body.reservationId as string };
  }
  async function confirm(reservationId: string) {
    const r = await o.call('POST', '/live/reconfirm', { token: caster.token, json: { reservationId } });
    assert.equal(r.status, 200, JSON.stringify(r.body));
  }
  const url = (key: string, app = 'live') => `rtmp://127.0.0.1:${rtmpPort}/${app}/${key}`;
  const refusals = async () => {
    const text = (await o.call('GET', '/metrics')).body as string;
    const counts: Record<string, number> = {};
    for (const m of String(text).matchAll(/^cascade_live_ingest_refused_total\{reason="([a-z_]+)"\} (\d+)/gm)) counts[m[1]] = Number(m[2]);
    return counts;
  };
  const bookingOf = async (id: string) => (await o.call('GET', `/live/bookings/${id}`, { token: caster.token })).body;
  const viewer = () => o.userWithRoles(['member']);
  const join = (token: string, password?: string) => o.call('POST', `/live/programs/${program.id}/viewers`, { token, json: password === undefined ? {} : { password } });

  test('S3.9: a wrong key, a wrong application, too early, unconfirmed and cancelled bookings are refused before any acknowledgement, counted by reason', LIMIT, async () => {
    const unconfirmed = await book(START + 60 * M, 1);
    const cancelled = await book(START + 80 * M, 1);
    assert.equal((await o.call('POST', `/live/bookings/${cancelled.id}/cancel`, { token: caster.token })).status, 200);
    const before = await snapshotTables(o.db.db);
    const cases: [string, string, string][] = [
      [url('rsv_' + 'x'.repeat(27)), 'unknown_key', 'Unknown reservation ID'],
      [url(program.reservationId, 'other'), 'wrong_app', 'Publish to rtmp'],
      [url(program.reservationId), 'too_early', 'Too early'], // T0 is before START − 5 min
      [url(unconfirmed.reservationId), 'not_reconfirmed', 'Reconfirm the booking'],
      [url(cancelled.reservationId), 'cancelled', 'cancelled'],
    ];
    for (const [u, code, told] of cases) {
      const r = await broadcast(u, { seconds: 2 }).done;
      assert.notEqual(r.code, 0, `${code}: ffmpeg must fail`);
      assert.ok(r.stderr.includes(told), `${code}: ffmpeg prints the reason: ${r.stderr}`);
    }
    const counted = await refusals();
    for (const [, code] of cases) assert.equal(counted[code], 1, `${code} counted once: ${JSON.stringify(counted)}`);
    assert.deepEqual(await snapshotTables(o.db.db), before, 'a refused publish changes nothing');
  });

  test('#15.1–2: inside the window the publish is accepted, packaged to 1 s fMP4 segments logged as signed entries; a second publisher is refused', LIMIT, async () => {
    o.clock.set(START - 4 * M); // the window opened a minute ago
    live = broadcast(url(program.reservationId), { seconds: 90 });
    await waitFor(async () => (await o.call('GET', `/live/programs/${program.id}/manifest`)).body.entries?.length >= 4, 'four entries in the live manifest', 30_000, 100);
    const b = await bookingOf(program.id);
    assert.equal(b.status, 'live');
    assert.ok(b.history.some((e: { event: string }) => e.event === 'live'), 'the history records the program going on air');

    const second = await broadcast(url(program.reservationId), { seconds: 2 }).done;
    assert.notEqual(second.code, 0, 'a second publisher fails');
    assert.equal((await refusals()).already_live, 1);

    const m = await o.call('GET', `/live/programs/${program.id}/manifest`);
    const entries = m.body.entries as SignedSegmentEntry[];
    assert.equal(m.body.originKey, o.keys.publicKeyB64);
    assert.equal(verifySegmentLog(entries, m.body.originKey), null);
    assert.equal(entries[0].entry.durationMs, 0, 'entry 0 is the initialisation segment');
    assert.equal(entries[0].entry.name, 't1_init.mp4');
    for (const e of entries.slice(1)) assert.ok(e.entry.durationMs >= 900 && e.entry.durationMs <= 2100, `1–2 s segments: ${e.entry.durationMs}`);
    // Tampering is detected: an edited entry, a dropped one.
    const edited = structuredClone(entries);
    edited[1].entry.sha256 = '0'.repeat(64);
    assert.match(verifySegmentLog(edited, m.body.originKey)!, /signature/);
    assert.match(verifySegmentLog([entries[0], ...entries.slice(2)], m.body.originKey)!, /expected seq 1/);
  });

  test('S3.11: a Password program needs its password; wrong guesses are limited; the playlist and segments need a session and match the signed log', LIMIT, async () => {
    const v = await viewer();
    const none = await join(v.token);
    assert.equal(none.status, 401);
    assert.equal(none.body.error.code, 'viewer_password_required');
    const wrong = await join(v.token, 'open sesame!');
    assert.equal(wrong.status, 403);
    assert.equal(wrong.body.error.code, 'wrong_password');
    for (let i = 0; i < 4; i++) await join(v.token, `guess ${i}`);
    const limited = await join(v.token, 'open sesame');
    assert.equal(limited.status, 429, 'after 5 wrong passwords even the right one waits');
    assert.equal(limited.body.error.code, 'too_many_attempts');

    const w = await viewer();
    const ok = await join(w.token, 'open sesame');
    assert.equal(ok.status, 201, JSON.stringify(ok.body));
    assert.equal(ok.body.capacity, CAPACITY);
    const noSession = await o.call('GET', `/live/programs/${program.id}/index.m3u8`);
    assert.equal(noSession.status, 401);
    assert.equal(noSession.body.error.code, 'viewer_session_required');
    const forged = await o.call('GET', `/live/programs/${program.id}/index.m3u8?s=${ok.body.session.replace(/.$/, (c: string) => (c === 'A' ? 'B' : 'A'))}`);
    assert.equal(forged.body.error.code, 'viewer_session_invalid');

    const pl = await o.call('GET', ok.body.playlist);
    assert.equal(pl.status, 200);
    assert.match(pl.headers.get('content-type')!, /mpegurl/);
    const text = pl.body as string;
    assert.match(text, /#EXT-X-MAP:URI="segments\/t1_init\.mp4\?s=/);
    const uris = text.split('\n').filter((l) => l && !l.startsWith('#'));
    assert.ok(uris.length >= 3 && uris.length <= 6, `a live window of segments: ${uris.length}`);
    const logged = new Map(((await o.call('GET', `/live/programs/${program.id}/manifest`)).body.entries as SignedSegmentEntry[]).map((e) => [e.entry.name, e.entry.sha256]));
    for (const u of [uris[0], uris[uris.length - 1]]) {
      const seg = await fetch(`${o.url}/live/programs/${program.id}/${u}`);
      assert.equal(seg.status, 200);
      const bytes = Buffer.from(await seg.arrayBuffer());
      assert.equal(createHash("sha256").update(bytes).digest("hex"), logged.get(u.split("?")[0].slice("segments/".length)), "served bytes are the signed ones");
    }
    const other = await fetch(`${o.url}/live/programs/${program.id}/${uris[0].split("?")[0]}`);
    assert.equal(other.status, 401, 'a segment without a session is refused');

    // ffprobe reads the stream as a player would: H.264 video and AAC audio.
    // (Not spawnSync: the origin answering ffprobe runs in this process.)
    const probe = await run(FFPROBE, ['-v', 'error', '-show_entries', 'stream=codec_name,codec_type', '-of', 'json', `${o.url}${ok.body.playlist}`]);
    assert.equal(probe.status, 0, probe.stderr);
    const codecs = (JSON.parse(probe.stdout).streams as { codec_name: string }[]).map((s) => s.codec_name).sort();
    assert.deepEqual(codecs, ['aac', 'h264']);
  });

  test('S3.12: 2 × capacity viewers join at once: exactly capacity get in, the rest see channel_full; leaving or idling frees places', LIMIT, async () => {
    // Places still held from the test before: that viewer leaves first, so the race starts from an empty channel.
    await o.clock.advance(16_000); // everyone idle: no one counts
    const people = await Promise.all(Array.from({ length: 2 * CAPACITY }, () => viewer()));
    const results = await Promise.all(people.map((p) => join(p.token, 'open sesame')));
    const admitted = results.filter((r) => r.status === 201);
    const refused = results.filter((r) => r.status !== 201);
    assert.equal(admitted.length, CAPACITY, results.map((r) => `${r.status} ${r.body?.error?.code ?? ''}`).join(', '));
    for (const r of refused) {
      assert.equal(r.status, 503);
      assert.equal(r.body.error.code, 'channel_full');
      assert.match(r.body.error.message, /full: 3 of 3 viewers/);
      assert.equal(r.body.error.details.capacity, CAPACITY);
    }
    const metrics = String((await o.call('GET', '/metrics')).body);
    assert.match(metrics, new RegExp(`cascade_live_admissions_total\\{result="channel_full"\\} ${CAPACITY}\\b`), 'refusals are counted by code');
    const audience = await o.call('GET', `/live/programs/${program.id}/audience`);
    assert.deepEqual([audience.body.viewers, audience.body.capacity, audience.body.onAir], [CAPACITY, CAPACITY, true]);
    // Joining again replaces one's own session: it does not take a second place.
    const again = people[results.indexOf(admitted[0])];
    assert.equal((await join(again.token, 'open sesame')).status, 201);
    assert.equal((await o.call('GET', `/live/programs/${program.id}/audience`)).body.viewers, CAPACITY);

    // One leaves: a refused viewer gets in.
    const leaver = admitted[1].body.session as string;
    assert.equal((await o.call('POST', `/live/programs/${program.id}/leave?s=${encodeURIComponent(leaver)}`)).status, 204);
    const late = people[results.indexOf(refused[0])];
    assert.equal((await join(late.token, 'open sesame')).status, 201);
    assert.equal((await o.call('GET', `/live/programs/${program.id}/playlist`.replace('playlist', `index.m3u8?s=${encodeURIComponent(leaver)}`))).body.error.code, 'viewer_session_expired');

    // Everyone stops fetching but one, who keeps watching: after the idle time only that one counts.
    const keeper = (await join(people[results.indexOf(admitted[2])].token, 'open sesame')).body;
    for (let i = 0; i < 4; i++) {
      await o.clock.advance(5000);
      assert.equal((await o.call('GET', keeper.playlist)).status, 200);
    }
    assert.equal((await o.call('GET', `/live/programs/${program.id}/audience`)).body.viewers, 1);
    const b = await bookingOf(program.id);
    assert.equal(b.viewerPeak, CAPACITY);
    assert.equal(b.viewerTotal, CAPACITY + 2, "distinct people: w, the three first admitted, the late one (joining again counts once)");
  });

  test('S3.10: the broadcaster sees the origin clock, elapsed time, slot end, bitrate, channel and viewers (JSON and server-sent events); others do not', LIMIT, async () => {
    const s = await o.call('GET', `/live/bookings/${program.id}/status`, { token: caster.token });
    assert.equal(s.status, 200, JSON.stringify(s.body));
    assert.equal(s.body.epochMs, o.clock.now());
    assert.equal(s.body.channel.name, 'Stage');
    assert.equal(s.body.end, new Date(START + 30 * M).toISOString());
    assert.equal(s.body.ingest.live, true);
    assert.ok(s.body.ingest.bitrateKbps > 20 && s.body.ingest.bitrateKbps < 5000, `bitrate ${s.body.ingest.bitrateKbps} kbit/s`);
    assert.equal(s.body.viewers.now, 1);
    assert.equal(s.body.viewers.capacity, CAPACITY);
    const stranger = await viewer();
    assert.equal((await o.call('GET', `/live/bookings/${program.id}/status`, { token: stranger.token })).status, 404);

    const ac = new AbortController();
    const res = await fetch(`${o.url}/live/bookings/${program.id}/status/events`, { headers: { authorization: `Bearer ${caster.token}` }, signal: ac.signal });
    assert.match(res.headers.get('content-type')!, /event-stream/);
    const reader = res.body!.getReader();
    let text = '';
    const next = async () => {
      while (!text.includes('\n\n')) text += new TextDecoder().decode((await reader.read()).value);
      const [event, rest] = [text.slice(0, text.indexOf('\n\n')), text.slice(text.indexOf('\n\n') + 2)];
      text = rest;
      return JSON.parse(event.split('\n').find((l) => l.startsWith('data: '))!.slice(6));
    };
    const first = await next();
    o.clock.advance(1000);
    const second = await next();
    assert.equal(second.epochMs - first.epochMs, 1000, 'one event a second of the origin clock');
    assert.equal(second.remainingSeconds, first.remainingSeconds - 1);
    ac.abort();

    // The same from the command line: `cascade live status`, once and --follow.
    const home = mkdtempSync(path.join(os.tmpdir(), 'cascade-live-'));
    writeFileSync(path.join(home, 'profile.json'), JSON.stringify({ origin: o.url, token: caster.token, username: 'caster', originKey: o.keys.publicKeyB64 }), { mode: 0o600 });
    const env = { TZ: 'UTC', CASCADE_ORIGIN: '' };
    const once = await runCli(['live', 'status', program.id], { home, env });
    assert.equal(once.code, 0, once.stderr);
    assert.match(once.stdout, /ON AIR since \d\d:\d\d:\d\d \(take 1\)/);
    assert.match(once.stdout, /channel {3}Stage {2}\(capacity 3 viewers, 600 kbit\/s\)/);
    assert.match(once.stdout, /clock {5}origin 2026-06-15 08:5\d:\d\d UTC; your clock is \d+ s \(about [\d.]+ h\) ahead of the origin's/, 'the offset from the origin clock');
    assert.match(once.stdout, /time {6}starts in 0:0\d:\d\d · slot ends 09:30:00/);
    assert.match(once.stdout, /bitrate {3}\d+ kbit\/s received; the channel carries 600/);
    assert.match(once.stdout, /viewers {3}1 now of 3 · peak 3 · total \d+/);
    const strangerHome = mkdtempSync(path.join(os.tmpdir(), 'cascade-live-'));
    writeFileSync(path.join(strangerHome, 'profile.json'), JSON.stringify({ origin: o.url, token: stranger.token, username: 'x', originKey: o.keys.publicKeyB64 }), { mode: 0o600 });
    const refused = await runCli(['--json', 'live', 'status', program.id], { home: strangerHome, env });
    assert.equal(refused.code, 1);
    assert.equal(JSON.parse(refused.stdout).error.code, 'unknown_booking');
    const follow = spawn(process.execPath, [CLI, '--json', 'live', 'status', program.id, '--follow'], { env: { ...process.env, CASCADE_HOME: home, ...env } });
    let out = '';
    follow.stdout.on('data', (d) => (out += d));
    await waitFor(() => out.split('\n').length > 1, 'a first status line from --follow');
    o.clock.advance(1000);
    await waitFor(() => out.split('\n').length > 2, 'a second status line a second of origin time later');
    follow.kill();
    const [a, b] = out.trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(b.epochMs - a.epochMs, 1000);
    assert.ok(a.offsetMs < -3_600_000, 'the offset is carried with each line');
  });

  // (The guard that makes a new take wait for the old one's last append — LiveStreams.takes — is
  // not forced here: ffmpeg's own restart takes longer than that append. This checks the outcome.)
  test('a broadcaster whose encoder crashes and reconnects gets a second take after the first, in one verifiable log', LIMIT, async () => {
    live!.proc.kill('SIGKILL'); // the encoder crashes…
    live = broadcast(url(program.reservationId), { seconds: 90 }); // …and its restart connects straight away
    const manifest = async () => (await o.call('GET', `/live/programs/${program.id}/manifest`)).body;
    await waitFor(async () => (await manifest()).entries.some((e: SignedSegmentEntry) => e.entry.name === 't2_seg_000001.m4s'), 'take 2 segments in the log', 30_000, 100);
    const m = await manifest();
    assert.equal(verifySegmentLog(m.entries, m.originKey), null);
    const names = (m.entries as SignedSegmentEntry[]).map((e) => e.entry.name);
    const lastOfTake1 = names.length - 1 - [...names].reverse().findIndex((n) => n.startsWith('t1_'));
    assert.ok(names.indexOf('t2_init.mp4') > lastOfTake1, 'take 2 starts after take 1 ends');
    const b = await bookingOf(program.id);
    assert.equal(b.status, 'live');
    assert.deepEqual(
      b.history.filter((e: { event: string }) => e.event === 'live' || e.event === 'off_air').map((e: { event: string }) => e.event),
      ['live', 'off_air', 'live'],
    );
  });

  test('S3.13 (part): the window’s end cuts the publisher; the playlist ends; the program is done once swept', LIMIT, async () => {
    const keeper = (await join((await viewer()).token, 'open sesame')).body;
    o.clock.set(START + 33 * M); // end + 3 min
    const r = await live!.done;
    assert.notEqual(r.stderr, undefined);
    await waitFor(async () => (await bookingOf(program.id)).status !== 'live', 'the booking off air');
    const pl = await o.call('GET', keeper.playlist);
    // The viewer's session ended with the program.
    assert.equal(pl.body.error?.code, 'viewer_session_expired');
    await o.live.bookings.sweep();
    assert.equal((await bookingOf(program.id)).status, 'done');
    const refused = await broadcast(url(program.reservationId), { seconds: 2 }).done;
    assert.notEqual(refused.code, 0);
    assert.equal((await refusals()).ended, 1);
    live = null;
  });
});

for (const e of testEngines()) {
  describe(`viewer admission race (${e.name})`, () => {
    let o: TestOrigin;
    before(async () => {
      o = await startTestOrigin({ engine: e, now: T0 });
    });
    after(() => o.close());

    test('S3.12: 20 viewers of a channel of capacity 7 admitted at once: exactly 7 sessions, and the database agrees', async () => {
      const op = (await o.userWithRoles(['operator'])).token;
      const ch = await o.call('POST', '/live/channels', { token: op, json: { name: 'Race', capacity: 7, bitrateKbps: 600, tariffPerSlot: 0 } });
      const caster = await o.userWithRoles(['member', 'premium']);
      await o.call('PUT', '/me/contact', { token: caster.token, json: { email: 'race@example.org' } });
      const b = await o.call('POST', '/live/bookings', {
        token: caster.token,
        json: { channelId: ch.body.id, start: new Date(START).toISOString(), end: new Date(START + 10 * M).toISOString(), openLevel: 'public', title: 'Race', genre: 'sport' },
      });
      assert.equal(b.status, 201, JSON.stringify(b.body));
      const viewers = o.live.streams['deps'].viewers;
      const results = await Promise.allSettled(
        Array.from({ length: 20 }, (_, i) => viewers.admit({ programId: b.body.booking.id, channelId: ch.body.id, capacity: 7, viewerId: `viewer-${i}` })),
      );
      const ok = results.filter((r) => r.status === 'fulfilled');
      assert.equal(ok.length, 7);
      for (const r of results) if (r.status === 'rejected') assert.equal((r.reason as { code: string }).code, 'channel_full');
      assert.equal(await viewers.watching(b.body.booking.id), 7);
      // Fetches are written in one statement (unnest): the one who keeps fetching still counts after the idle time.
      const keeper = (ok[0] as PromiseFulfilledResult<{ session: { token: string } }>).value.session.token;
      o.clock.advance(10_000);
      await viewers.use(keeper, b.body.booking.id);
      await viewers.flush();
      o.clock.advance(10_000);
      assert.equal(await viewers.watching(b.body.booking.id), 1);
    });
  });
}

describe(`live ingest without ffmpeg (${engine.name})`, () => {
  test('an origin whose FFMPEG does not run refuses publishes (packager_unavailable) instead of accepting a stream no one would see', LIMIT, async () => {
    const o = await startTestOrigin({ engine, now: T0, config: { signupCredit: 0, ffmpeg: '/nonexistent/ffmpeg' } });
    try {
      const op = (await o.userWithRoles(['operator'])).token;
      const ch = await o.call('POST', '/live/channels', { token: op, json: { name: 'Dark', capacity: 1, bitrateKbps: 600, tariffPerSlot: 0 } });
      const caster = await o.userWithRoles(['member', 'premium']);
      await o.call('PUT', '/me/contact', { token: caster.token, json: { email: 'dark@example.org' } });
      const b = await o.call('POST', '/live/bookings', {
        token: caster.token,
        json: { channelId: ch.body.id, start: new Date(START).toISOString(), end: new Date(START + 10 * M).toISOString(), openLevel: 'public', title: 'Dark', genre: 'talk' },
      });
      assert.equal((await o.call('POST', '/live/reconfirm', { token: caster.token, json: { reservationId: b.body.reservationId } })).status, 200);
      o.clock.set(START);
      const r = await broadcast(`rtmp://127.0.0.1:${o.live.streams.rtmp.address()!.port}/live/${b.body.reservationId}`, { seconds: 2 }).done;
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /cannot package live video right now; tell its operator/);
      assert.match(String((await o.call('GET', '/metrics')).body), /cascade_live_ingest_refused_total\{reason="packager_unavailable"\} 1/);
      assert.equal((await o.call('GET', `/live/bookings/${b.body.booking.id}`, { token: caster.token })).body.status, 'confirmed');
    } finally {
      await o.close();
    }
  });
});
