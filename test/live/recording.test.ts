import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import type { SignedSegmentEntry } from '../../src/live/segment-log.ts';
import { readWholePiece } from '../../src/transfer/piece-source.ts';
import { snapshotTables, testEngines } from '../helpers/db.ts';
import { broadcast, FFPROBE, requireFfmpeg } from '../helpers/ffmpeg.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';
import { CLI, runCli } from '../helpers/processes.ts';
import { waitFor } from '../helpers/wait.ts';

// S3.15 (#16 point 3) through real processes: a broadcaster asks for its program's recording,
// publishes two takes with Debian's ffmpeg over RTMP, the program ends on the manual clock, and
// the origin joins the logged segments into one MP4 published as ordinary content (catalogue,
// price, `cascade get` as a child process, ffprobe reads it). A segment altered on disk fails
// the recording with the reason and publishes nothing. A later booking rebroadcasts the
// recording: the origin feeds it at the start, with no RTMP publisher, and viewers watch it.

requireFfmpeg();

const M = 60_000;
const T0 = Date.UTC(2026, 5, 15, 8, 3);
const START = Date.UTC(2026, 5, 15, 9, 0);
const LIMIT = { timeout: 180_000 };
const [engine] = testEngines();

const run = (file: string, args: string[]) =>
  new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) =>
    execFile(file, args, { timeout: 30_000, encoding: 'utf8' }, (err, stdout, stderr) => resolve({ status: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr })),
  );

/** The CLI as a child process, killed after `ms` (its output then says where it stood). */
const cliWithin = (ms: number, args: string[], home: string) =>
  new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const proc = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, CASCADE_HOME: home, CASCADE_ORIGIN: '' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d) => (stdout += d));
    proc.stderr.on('data', (d) => (stderr += d));
    const killer = setTimeout(() => proc.kill('SIGKILL'), ms);
    proc.on('exit', (code) => {
      clearTimeout(killer);
      resolve({ code, stdout, stderr });
    });
  });

describe(`live recordings and rebroadcasts (${engine.name})`, () => {
  let o: TestOrigin;
  let channelId: string;
  let rtmpPort: number;
  let caster: { token: string; userId: string; username: string };
  let stranger: { token: string; userId: string; username: string };
  let program: { id: string; reservationId: string };
  /** Booked at T0 (a slot cannot be booked once begun): altered-segment, silent and rebroadcast programs. */
  let altered: { id: string; reservationId: string };
  let silent: { id: string; reservationId: string };
  let re: { id: string; reservationId: string };
  let re2: { id: string; reservationId: string };
  const RE = START + 180 * M;
  let recordedContent: string;
  let loggedMs = 0;
  let n = 0;

  before(async () => {
    o = await startTestOrigin({ engine, now: T0 });
    rtmpPort = o.live.streams.rtmp.address()!.port;
    const op = (await o.userWithRoles(['operator'])).token;
    const ch = await o.call('POST', '/live/channels', { token: op, json: { name: 'Stage', capacity: 5, bitrateKbps: 600, tariffPerSlot: 0 } });
    assert.equal(ch.status, 201, JSON.stringify(ch.body));
    channelId = ch.body.id;
    caster = await o.userWithRoles(['member', 'premium']);
    await o.call('PUT', '/me/contact', { token: caster.token, json: { email: 'caster@example.org' } });
    stranger = await o.userWithRoles(['member', 'premium']);
    program = await book(START, 3);
    altered = await book(START + 40 * M, 1);
    silent = await book(START + 70 * M, 1);
    re = await book(RE, 1);
    re2 = await book(RE + 20 * M, 1);
  });
  after(() => o.close());

  async function book(start: number, slots: number, confirm = true) {
    const r = await o.call('POST', '/live/bookings', {
      token: caster.token,
      json: { channelId, start: new Date(start).toISOString(), end: new Date(start + slots * 10 * M).toISOString(), openLevel: 'public', title: `Show ${++n}`, genre: 'music' },
    });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    if (confirm) assert.equal((await o.call('POST', '/live/reconfirm', { token: caster.token, json: { reservationId: r.body.reservationId } })).status, 200);
    return { id: r.body.booking.id as string, reservationId: r.body.reservationId as string };
  }
  const url = (key: string) => `rtmp://127.0.0.1:${rtmpPort}/live/${key}`;
  const recordings = async (token = caster.token) => (await o.call('GET', '/live/recordings', { token })).body.items as any[];
  const manifest = async (id: string) => (await o.call('GET', `/live/programs/${id}/manifest`)).body.entries as SignedSegmentEntry[];
  const bookingOf = async (id: string) => (await o.call('GET', `/live/bookings/${id}`, { token: caster.token })).body;
  const contentsOf = async (publisher: string) => (await o.call('GET', `/contents?publisher=${publisher}&limit=100`)).body.items as any[];
  /** Publishes ~`seconds` s with ffmpeg and waits until the take is over and logged. */
  async function take(p: { id: string; reservationId: string }, seconds: number) {
    const r = await broadcast(url(p.reservationId), { seconds }).done;
    assert.equal(r.code, 0, r.stderr);
    await waitFor(() => !o.live.streams.isBusy(p.id), 'the take logged to its last segment', 30_000, 100);
  }
  async function end(p: { id: string }, at: number) {
    o.clock.set(at);
    await o.live.bookings.sweep();
    assert.equal((await bookingOf(p.id)).status, 'done');
  }

  test('refusals: another member’s booking (404), a cancelled one, a bad price; withdrawing works; each refusal changes nothing', LIMIT, async () => {
    const cancelled = await book(START + 120 * M, 1, false);
    assert.equal((await o.call('POST', `/live/bookings/${cancelled.id}/cancel`, { token: caster.token })).status, 200);
    const before = await snapshotTables(o.db.db);
    const cases: [string, string, unknown, number, string][] = [
      [stranger.token, program.id, { price: 100 }, 404, 'unknown_booking'],
      [caster.token, 'bkg_nope', { price: 100 }, 404, 'unknown_booking'],
      [caster.token, cancelled.id, { price: 100 }, 409, 'booking_cancelled'],
      [caster.token, program.id, { price: -1 }, 400, 'invalid_request'],
      [caster.token, program.id, { price: 10, title: '   ' }, 400, 'invalid_title'],
    ];
    for (const [token, id, json, status, code] of cases) {
      const r = await o.call('POST', `/live/bookings/${id}/recording`, { token, json });
      assert.equal(r.status, status, `${code}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error.code, code);
    }
    assert.equal((await o.call('DELETE', `/live/bookings/${program.id}/recording`, { token: caster.token })).body.error.code, 'no_recording');
    assert.deepEqual(await snapshotTables(o.db.db), before, 'refusals change nothing');

    const asked = await o.call('POST', `/live/bookings/${program.id}/recording`, { token: caster.token, json: { price: 150 } });
    assert.equal(asked.status, 201, JSON.stringify(asked.body));
    assert.equal(asked.body.status, 'requested');
    assert.equal(asked.body.title, 'Show 1', 'the program’s title by default');
    assert.equal((await o.call('DELETE', `/live/bookings/${program.id}/recording`, { token: stranger.token })).status, 404, 'others cannot withdraw it');
    assert.equal((await recordings()).length, 1);
    const withdrawn = await o.call('DELETE', `/live/bookings/${program.id}/recording`, { token: caster.token });
    assert.equal(withdrawn.status, 200, JSON.stringify(withdrawn.body));
    assert.deepEqual(await recordings(), []);
    assert.deepEqual(await snapshotTables(o.db.db), before, 'withdrawn: as if never asked');

    // Asked for from the command line, then again (a new price) through the API.
    const home = mkdtempSync(path.join(os.tmpdir(), 'cascade-rec-'));
    writeFileSync(path.join(home, 'profile.json'), JSON.stringify({ origin: o.url, token: caster.token, username: caster.username, originKey: o.keys.publicKeyB64 }), { mode: 0o600 });
    const cli = await runCli(['--json', 'reserve', 'record', program.id, '--price', '90', '--title', 'Show 1, recorded'], { home, env: { CASCADE_ORIGIN: '' } });
    assert.equal(cli.code, 0, cli.stderr + cli.stdout);
    assert.equal(JSON.parse(cli.stdout).status, 'requested');
    const again = await o.call('POST', `/live/bookings/${program.id}/recording`, { token: caster.token, json: { price: 120, title: 'Show 1, recorded' } });
    assert.equal(again.body.price, 120);
    const listed = await runCli(['--json', 'reserve', 'recordings'], { home, env: { CASCADE_ORIGIN: '' } });
    assert.equal(listed.code, 0, listed.stderr);
    assert.deepEqual(JSON.parse(listed.stdout).items.map((r: any) => [r.programId, r.programTitle, r.title, r.price, r.status, r.contentId]), [[program.id, 'Show 1', 'Show 1, recorded', 120, 'requested', null]]);
    assert.deepEqual(await recordings(stranger.token), [], 'only one’s own recordings are listed');
  });

  test('two takes, the program ends: the recording is published as content (catalogue, price), `cascade get` fetches it, ffprobe reads h264+aac of the logged length', LIMIT, async () => {
    o.clock.set(START);
    await take(program, 3);
    await take(program, 3); // the broadcaster reconnects: a second take
    const entries = await manifest(program.id);
    assert.ok(entries.some((e) => e.entry.name === 't2_init.mp4'), 'two takes logged');
    loggedMs = entries.reduce((s, e) => s + e.entry.durationMs, 0);
    assert.ok(loggedMs >= 4000, `logged ${loggedMs} ms`);
    assert.equal((await recordings())[0].status, 'requested', 'nothing is made while the program can still go on');

    await end(program, START + 33 * M); // the connectable window closed; the sweep marks it done
    await waitFor(async () => (await recordings())[0].status !== 'requested' && (await recordings())[0].status !== 'making', 'the recording made', 60_000, 200);
    const [rec] = await recordings();
    assert.equal(rec.status, 'made', JSON.stringify(rec));
    recordedContent = rec.contentId;
    const item = (await o.call('GET', `/contents/${recordedContent}`)).body;
    assert.equal(item.title, 'Show 1, recorded');
    assert.equal(item.price, 120);
    assert.equal(item.genre, 'music');
    assert.equal(item.publisher, caster.username);
    assert.deepEqual((await contentsOf(caster.username)).map((c) => c.id), [recordedContent], 'in the catalogue, once');

    // The file as published (its pieces, read through the origin's piece source) is the one checked here;
    // the last test downloads it with `cascade get`.
    const dest = path.join(mkdtempSync(path.join(os.tmpdir(), 'cascade-rec-')), 'show.mp4');
    const reader = o.content.pieceReader();
    const m = (await reader.manifest(recordedContent))!;
    const parts: Buffer[] = [];
    for (let i = 0; i < m.body.pieces.length; i++) parts.push((await readWholePiece(reader, recordedContent, i))!);
    writeFileSync(dest, Buffer.concat(parts));
    assert.equal(readFileSync(dest).length, item.totalSize);
    const probe = await run(FFPROBE, ['-v', 'error', '-show_entries', 'format=duration:stream=codec_name,codec_type', '-of', 'json', dest]);
    assert.equal(probe.status, 0, probe.stderr);
    const j = JSON.parse(probe.stdout);
    assert.deepEqual(j.streams.map((s: any) => `${s.codec_type}:${s.codec_name}`).sort(), ['audio:aac', 'video:h264']);
    const seconds = Number(j.format.duration);
    assert.ok(Math.abs(seconds * 1000 - loggedMs) < 400, `duration ${seconds} s ≈ logged ${loggedMs} ms`);
    // +faststart: the index (moov) comes before the media (mdat).
    const bytes = readFileSync(dest);
    assert.ok(bytes.indexOf('moov') < bytes.indexOf('mdat'), 'moov before mdat');
  });

  test('idempotent: another round publishes nothing more; a maker that died mid-way makes the same content again, not a second one', LIMIT, async () => {
    assert.equal(await o.live.recordings.makeDue(), 0);
    // As if an origin had crashed after claiming it: the row is taken over once its lease ends.
    await o.db.db.updateTable('live_recordings').set({ status: 'making', content_id: null, retry_at: new Date(o.clock.now() - 1) }).where('program_id', '=', program.id).execute();
    // Two sweeps at once (the job's and another's): one claims it, one publishes.
    const rounds = await Promise.all([o.live.recordings.makeDue(), o.live.recordings.makeDue()]);
    assert.deepEqual(rounds.sort(), [0, 1]);
    const [rec] = await recordings();
    assert.equal(rec.status, 'made');
    assert.equal(rec.contentId, recordedContent, 'the same bytes and fields: the same content');
    assert.equal((await contentsOf(caster.username)).length, 1);
    const r = await o.call('POST', `/live/bookings/${program.id}/recording`, { token: caster.token, json: { price: 1 } });
    assert.equal(r.body.error?.code, 'recording_exists');
  });

  test('a segment altered on disk: the recording fails with the reason and nothing is published', LIMIT, async () => {
    const p = altered;
    assert.equal((await o.call('POST', `/live/bookings/${p.id}/recording`, { token: caster.token, json: { price: 5 } })).status, 201);
    o.clock.set(START + 40 * M);
    await take(p, 3);
    const file = path.join(o.config.dataDir, 'live', p.id, 't1_seg_000001.m4s');
    const bytes = readFileSync(file);
    bytes[bytes.length - 10] ^= 0xff;
    writeFileSync(file, bytes);
    const before = await contentsOf(caster.username);
    await end(p, START + 53 * M);
    await waitFor(async () => (await recordings()).find((r) => r.programId === p.id)?.status === 'failed', 'the recording failed', 60_000, 200);
    const rec = (await recordings()).find((r) => r.programId === p.id)!;
    assert.match(rec.error, /segment t1_seg_000001\.m4s does not match the program's signed log/);
    assert.equal(rec.contentId, null);
    assert.equal(rec.attempts, 1);
    assert.deepEqual(await contentsOf(caster.username), before, 'nothing published');
    // Retried a bounded number of times, each time refused the same way.
    for (let i = 0; i < 4; i++) {
      o.clock.advance(11 * M); // past each retry's time (5 min × attempts)
      await o.live.recordings.makeDue();
    }
    const last = (await recordings()).find((r) => r.programId === p.id)!;
    assert.equal(last.status, 'failed');
    assert.equal(last.attempts, 3);
    assert.deepEqual(await contentsOf(caster.username), before);
    // After it is over, a program that never went on air has nothing to record.
    assert.ok(o.clock.now() >= START + 83 * M, 'its window closed');
    const r = await o.call('POST', `/live/bookings/${silent.id}/recording`, { token: caster.token, json: { price: 5 } });
    assert.equal(r.body.error?.code, 'nothing_recorded');
  });

  test('rebroadcast: a later booking names the recording; refusals change nothing; at its start the origin feeds it, viewers watch, RTMP publishes are refused', LIMIT, async () => {
    // A content of another member, and a content of the caster that is no video.
    const other = await o.content.publish({ id: stranger.userId, username: stranger.username }, { title: 'Not yours', genre: 'x', price: 0 }, Readable.from([Buffer.from('x'.repeat(1000))]));
    const text = await o.content.publish({ id: caster.userId, username: caster.username }, { title: 'Notes', genre: 'x', price: 0 }, Readable.from([Buffer.from('just some text, no video\n'.repeat(50))]));
    const before = await snapshotTables(o.db.db);
    const cases: [string, string, string, number, string][] = [
      [stranger.token, re.id, recordedContent, 404, 'unknown_booking'],
      [caster.token, re.id, 'f'.repeat(64), 404, 'unknown_content'],
      [caster.token, re.id, other.id, 403, 'not_your_content'],
      [caster.token, re.id, text.id, 400, 'not_a_video'],
      [caster.token, program.id, recordedContent, 409, 'rebroadcast_too_late'],
    ];
    for (const [token, id, contentId, status, code] of cases) {
      const r = await o.call('POST', `/live/bookings/${id}/rebroadcast`, { token, json: { contentId } });
      assert.equal(r.status, status, `${code}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error.code, code);
    }
    const after = await snapshotTables(o.db.db);
    assert.deepEqual(after.live_rebroadcasts, before.live_rebroadcasts, 'refusals change nothing');
    assert.deepEqual(after.contents, before.contents);
    const set = await o.call('POST', `/live/bookings/${re.id}/rebroadcast`, { token: caster.token, json: { contentId: recordedContent } });
    assert.equal(set.status, 201, JSON.stringify(set.body));
    assert.ok(Math.abs(set.body.durationSeconds * 1000 - loggedMs) < 400);

    // Inside the window but before the start: RTMP is refused, and nothing is on air yet.
    o.clock.set(RE - 2 * M);
    const refused = await broadcast(url(re.reservationId), { seconds: 2 }).done;
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /rebroadcasts a recording/);
    assert.match(String((await o.call('GET', '/metrics')).body), /cascade_live_ingest_refused_total\{reason="rebroadcast_booking"\} 1/);
    assert.equal((await bookingOf(re.id)).status, 'confirmed');

    o.clock.set(RE); // the start: the origin's job feeds the content, no publisher anywhere
    await waitFor(async () => (await manifest(re.id)).length >= 3, 'rebroadcast segments logged', 30_000, 100);
    assert.equal((await bookingOf(re.id)).status, 'live');
    const viewer = await o.userWithRoles(['member']);
    const joined = await o.call('POST', `/live/programs/${re.id}/viewers`, { token: viewer.token, json: {} });
    assert.equal(joined.status, 201, JSON.stringify(joined.body));
    const pl = await o.call('GET', joined.body.playlist);
    assert.equal(pl.status, 200);
    const seg = String(pl.body).split('\n').find((l) => l.startsWith('segments/t1_seg_'))!;
    const fetched = await fetch(`${o.url}/live/programs/${re.id}/${seg}`);
    assert.equal(fetched.status, 200);
    assert.ok((await fetched.arrayBuffer()).byteLength > 1000);

    // The content ends before the slot: off air, and not started again.
    await waitFor(async () => (await bookingOf(re.id)).status === 'confirmed' && !o.live.streams.isBusy(re.id), 'the rebroadcast over', 30_000, 200);
    const events = (await bookingOf(re.id)).history.map((e: { event: string; detail: string }) => `${e.event}: ${e.detail}`);
    assert.ok(events.some((e: string) => /^live: on air \(take 1\) from the origin \(rebroadcast/.test(e)), events.join('\n'));
    assert.ok(events.some((e: string) => /^off_air: .*the content ended/.test(e)), events.join('\n'));
    assert.equal(await o.live.recordings.startDueRebroadcasts(), 0);
    const shown = await o.call('GET', `/live/bookings/${re.id}/rebroadcast`, { token: caster.token });
    assert.equal(shown.body.contentId, recordedContent);
    assert.equal(shown.body.startedAt, new Date(RE).toISOString());
    assert.equal((await o.call('GET', `/live/bookings/${re.id}/rebroadcast`, { token: stranger.token })).status, 404);
    const logged = (await manifest(re.id)).reduce((s, e) => s + e.entry.durationMs, 0);
    assert.ok(Math.abs(logged - loggedMs) < 1500, `rebroadcast ${logged} ms of a ${loggedMs} ms recording`);
  });

  test('rebroadcast: the slot’s end cuts a content that is still playing', LIMIT, async () => {
    const RE2 = RE + 20 * M;
    assert.equal((await o.call('POST', `/live/bookings/${re2.id}/rebroadcast`, { token: caster.token, json: { contentId: recordedContent } })).status, 201);
    o.clock.set(RE2);
    await waitFor(async () => (await manifest(re2.id)).length >= 2, 'on air', 30_000, 100);
    o.clock.set(RE2 + 10 * M); // the slot ends (the connectable window is still open)
    await waitFor(async () => (await bookingOf(re2.id)).status === 'confirmed' && !o.live.streams.isBusy(re2.id), 'cut', 30_000, 100);
    const events = (await bookingOf(re2.id)).history.map((e: { event: string; detail: string }) => `${e.event}: ${e.detail}`);
    assert.ok(events.some((e: string) => /^off_air: .*the slot ended/.test(e)), events.join('\n'));
    const logged = (await manifest(re2.id)).reduce((s, e) => s + e.entry.durationMs, 0);
    assert.ok(logged < loggedMs - 1000, `cut before the content's end: ${logged} of ${loggedMs} ms`);
  });

  test('the recording is downloaded with `cascade get` like any content (a child process; a member pays its price)', LIMIT, async () => {
    // The CLI checks grants with this machine's clock: the origin's clock moves to it (forward).
    o.clock.set(Math.max(o.clock.now(), Date.now()));
    const viewer = await o.userWithRoles(['member']);
    const home = mkdtempSync(path.join(os.tmpdir(), 'cascade-rec-'));
    writeFileSync(path.join(home, 'profile.json'), JSON.stringify({ origin: o.url, token: viewer.token, username: viewer.username, originKey: o.keys.publicKeyB64 }), { mode: 0o600 });
    const dest = path.join(home, 'show.mp4');
    const got = await cliWithin(60_000, ['--json', 'get', recordedContent, '-o', dest], home);
    assert.equal(got.code, 0, got.stderr + got.stdout);
    const done = JSON.parse(got.stdout.trim().split('\n').pop()!);
    assert.equal(done.event, 'done');
    const item = (await o.call('GET', `/contents/${recordedContent}`)).body;
    assert.equal(readFileSync(dest).length, item.totalSize);
    const probe = await run(FFPROBE, ['-v', 'error', '-show_entries', 'format=duration', '-of', 'json', dest]);
    assert.ok(Math.abs(Number(JSON.parse(probe.stdout).format.duration) * 1000 - loggedMs) < 400);
  });
});
