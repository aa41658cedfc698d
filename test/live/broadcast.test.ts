import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { SignedSegmentEntry } from '../../src/live/segment-log.ts';
import { testEngines } from '../helpers/db.ts';
import { FFPROBE, requireFfmpeg } from '../helpers/ffmpeg.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';
import { CLI, runCli } from '../helpers/processes.ts';
import { waitFor } from '../helpers/wait.ts';

// S3.16 through real processes: `cascade broadcast` (a child process, as users run it) checks the
// signed settings, waits for the window by the origin's clock (the test moves the origin's
// ManualClock; the tool follows it through GET /time), publishes testsrc with Debian's ffmpeg
// to the origin's RTMP server with title, clock and monochrome, and switches effects while on air
// from line commands on its stdin. What viewers get is checked on segments fetched through the
// viewer API: monochrome (signalstats SATAVG ≈ 0), colour after `mono off`, louder after
// `applause`. A preset saved while on air is read back with --preset. Refusals: an edited
// settings file, another origin's, and a publish before the window (--no-wait) send nothing.

requireFfmpeg();

const M = 60_000;
const START = Date.UTC(2026, 5, 15, 9, 0);
const T0 = START - 6 * M; // a minute before the window opens
const LIMIT = { timeout: 180_000 };

/** A program's exit status and output, without blocking this process (it runs the origin). */
const run = (file: string, args: string[]) =>
  new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) =>
    execFile(file, args, { timeout: 30_000, encoding: 'utf8' }, (err, stdout, stderr) => resolve({ status: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr })),
  );

const [engine] = testEngines();

describe(`cascade broadcast (S3.16, ${engine.name})`, () => {
  let o: TestOrigin;
  let caster: { token: string };
  let home: string;
  let settingsFile: string;
  let settings: any;
  let bookingId: string;
  let cli: ChildProcessWithoutNullStreams | null = null;
  const work = mkdtempSync(path.join(os.tmpdir(), 'cascade-broadcast-test-'));
  const env = { TZ: 'UTC', CASCADE_ORIGIN: '', FFMPEG: '/usr/bin/ffmpeg' };

  before(async () => {
    o = await startTestOrigin({ engine, now: T0, config: { signupCredit: 0 } });
    const op = (await o.userWithRoles(['operator'])).token;
    const ch = await o.call('POST', '/live/channels', { token: op, json: { name: 'Studio', capacity: 5, bitrateKbps: 600, tariffPerSlot: 0 } });
    assert.equal(ch.status, 201, JSON.stringify(ch.body));
    caster = await o.userWithRoles(['member', 'premium']);
    await o.call('PUT', '/me/contact', { token: caster.token, json: { email: 'caster@example.org' } });
    const b = await o.call('POST', '/live/bookings', {
      token: caster.token,
      json: { channelId: ch.body.id, start: new Date(START).toISOString(), end: new Date(START + 30 * M).toISOString(), openLevel: 'public', title: 'Morning show', genre: 'talk' },
    });
    assert.equal(b.status, 201, JSON.stringify(b.body));
    bookingId = b.body.booking.id;
    const r = await o.call('POST', '/live/reconfirm', { token: caster.token, json: { reservationId: b.body.reservationId } });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    settings = r.body.settings;
    home = mkdtempSync(path.join(os.tmpdir(), 'cascade-broadcaster-'));
    writeFileSync(path.join(home, 'profile.json'), JSON.stringify({ origin: o.url, token: caster.token, username: 'caster', originKey: o.keys.publicKeyB64 }), { mode: 0o600 });
    settingsFile = path.join(work, 'settings.json');
    writeFileSync(settingsFile, JSON.stringify(settings, null, 2));
  });
  after(async () => {
    if (cli && cli.exitCode === null) cli.kill('SIGKILL');
    await o.close();
  });

  const refusals = async () => {
    const text = String((await o.call('GET', '/metrics')).body);
    return [...text.matchAll(/^cascade_live_ingest_refused_total\{reason="([a-z_]+)"\} (\d+)/gm)].map((m) => `${m[1]}=${m[2]}`);
  };
  const manifest = async () => ((await o.call('GET', `/live/programs/${bookingId}/manifest`)).body.entries ?? []) as SignedSegmentEntry[];
  const lastSeq = async () => (await manifest()).at(-1)?.entry.seq ?? -1;
  const status = async () => (await o.call('GET', `/live/bookings/${bookingId}`, { token: caster.token })).body.status as string;

  test('refusals: an edited settings file, another origin’s, and a publish before the window send nothing', LIMIT, async () => {
    const edited = structuredClone(settings);
    edited.document.bitrateKbps = 5000; // more than the channel carries
    writeFileSync(path.join(work, 'edited.json'), JSON.stringify(edited));
    const r1 = await runCli(['broadcast', '--settings', path.join(work, 'edited.json')], { home, env });
    assert.equal(r1.code, 1, r1.stdout + r1.stderr);
    assert.match(r1.stderr, /error \(settings_tampered\): The settings document was changed after the origin signed it/);

    const other = structuredClone(settings);
    other.originKey = other.document.server.originKey = 'MCowBQYDK2VwAyEA' + 'A'.repeat(43);
    writeFileSync(path.join(work, 'other.json'), JSON.stringify(other));
    const r2 = await runCli(['--json', 'broadcast', '--settings', path.join(work, 'other.json')], { home, env });
    assert.equal(r2.code, 1);
    assert.equal(JSON.parse(r2.stdout.trim().split('\n').pop()!).error.code, 'settings_other_origin');
    assert.deepEqual(await refusals(), [], 'no connection was even tried');

    // Before the window, told not to wait: the origin refuses, and the tool prints its sentence.
    const r3 = await runCli(['broadcast', '--settings', settingsFile, '--size', '320x180', '--no-wait'], { home, env });
    assert.equal(r3.code, 1, r3.stdout + r3.stderr);
    assert.match(r3.stderr, /error \(ingest_refused\): The origin refused the publish: Too early: you can connect from 2026-06-15T08:55:00\.000Z/);
    assert.deepEqual(await refusals(), ['too_early=1']);
    assert.equal(await status(), 'confirmed');

    // Waiting with nothing on stdin (ended): still waiting a few seconds later, not gone.
    const waiting = spawn(process.execPath, [CLI, 'broadcast', '--settings', settingsFile], { env: { ...process.env, CASCADE_HOME: home, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let told = '';
    waiting.stdout.on('data', (d) => (told += d));
    await waitFor(() => told.includes('connecting in'), () => `the countdown: ${told}`, 20_000);
    await new Promise((r) => setTimeout(r, 2500));
    assert.equal(waiting.exitCode, null, `still waiting for the window: ${told}`);
    waiting.kill('SIGINT');
    assert.equal(await new Promise((r) => waiting.on('close', r)), 0, 'Ctrl-C while waiting: a clean stop');
  });

  /** The newest segment of the live playlist, with its init segment, as one playable file. */
  async function latestSegment(playlist: string, name: string): Promise<string> {
    const text = String((await o.call('GET', playlist)).body);
    const uris = text.split('\n').filter((l) => l && !l.startsWith('#'));
    const init = /#EXT-X-MAP:URI="([^"]+)"/g;
    let map = '';
    for (const m of text.matchAll(init)) map = m[1]!;
    const base = `${o.url}/live/programs/${bookingId}/`;
    const bytes = await Promise.all([map, uris.at(-1)!].map(async (u) => Buffer.from(await (await fetch(base + u)).arrayBuffer())));
    const file = path.join(work, `${name}.mp4`);
    writeFileSync(file, Buffer.concat(bytes));
    return file;
  }
  const frames = async (file: string, filter: string, key: string) => {
    const r = await run(FFPROBE, ['-v', 'error', '-f', 'lavfi', `${key.includes('astats') ? 'amovie' : 'movie'}=${file},${filter}`, '-show_entries', `frame_tags=${key}`, '-of', 'csv=p=0']);
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.trim().split('\n').map(Number).filter(Number.isFinite);
  };
  const saturation = (file: string) => frames(file, 'signalstats', 'lavfi.signalstats.SATAVG');
  const loudness = async (file: string) => {
    const rms = await frames(file, 'astats=metadata=1:reset=1,ametadata=mode=print', 'lavfi.astats.Overall.RMS_level');
    return rms.reduce((a, b) => a + b, 0) / rms.length;
  };

  test('waits for the window by the origin’s clock, then sends with title, clock and monochrome; effects switch on air; reconnects after a drop; a preset is saved; ends at the window’s end', LIMIT, async () => {
    cli = spawn(process.execPath, [CLI, 'broadcast', '--settings', settingsFile, '--source', 'testsrc', '--size', '320x180', '--title', 'Hello: world', '--clock', '--mono'], {
      env: { ...process.env, CASCADE_HOME: home, ...env },
    });
    let out = '';
    let err = '';
    cli.stdout.on('data', (d) => (out += d));
    cli.stderr.on('data', (d) => (err += d));
    const exited = new Promise<number | null>((r) => cli!.on('close', r));
    const said = (re: RegExp, what: string, ms = 30_000) => waitFor(() => re.test(out), () => `${what}; stdout: ${out.slice(-1500)} stderr: ${err.slice(-1500)}`, ms, 50);

    await said(/connecting in 1:0\d … \(the window opens at 08:55:00 UTC, origin clock\)/, 'the countdown by the origin’s clock');
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(await status(), 'confirmed', 'nothing sent before the window');
    assert.deepEqual(await refusals(), ['too_early=1'], 'and nothing tried');
    o.clock.set(START - 4 * M); // the window opened a minute ago
    await said(/on air: sending \(take 1\)/, 'on air');
    await waitFor(async () => (await lastSeq()) >= 4, 'four segments logged', 30_000, 200);
    assert.equal(await status(), 'live');

    const viewer = await o.userWithRoles(['member']);
    const joined = await o.call('POST', `/live/programs/${bookingId}/viewers`, { token: viewer.token, json: {} });
    assert.equal(joined.status, 201, JSON.stringify(joined.body));
    const playlist = joined.body.playlist as string;

    const mono = await saturation(await latestSegment(playlist, 'mono'));
    assert.ok(mono.length >= 20, `frames: ${mono.length}`);
    assert.ok(Math.max(...mono) < 1.5, `monochrome: SATAVG ${mono.join(' ')}`);
    const quiet = await loudness(await latestSegment(playlist, 'quiet'));

    cli.stdin.write('mono off\n');
    await said(/effects: title "Hello: world", clock\n/, 'mono off taken');
    const afterMono = await lastSeq();
    await waitFor(async () => (await lastSeq()) >= afterMono + 3, 'three more segments', 30_000, 200);
    const colour = await saturation(await latestSegment(playlist, 'colour'));
    assert.ok(Math.min(...colour) > 10, `colour again: SATAVG ${colour.join(' ')}`);

    cli.stdin.write('applause\n');
    await said(/applause \(3 s\)/, 'applause taken');
    const afterApplause = await lastSeq();
    let loudest = -Infinity;
    for (let i = 1; i <= 3; i++) {
      await waitFor(async () => (await lastSeq()) >= afterApplause + i, `segment ${i} after the applause`, 30_000, 100);
      loudest = Math.max(loudest, await loudness(await latestSegment(playlist, `applause${i}`)));
    }
    assert.ok(loudest > quiet + 10, `applause raises the sound: ${quiet.toFixed(1)} dB before, ${loudest.toFixed(1)} dB with it`);

    cli.stdin.write('save bright\n');
    await said(/preset "bright" saved to /, 'the preset saved');
    const presets = JSON.parse(readFileSync(path.join(home, 'broadcast-presets.json'), 'utf8'));
    assert.deepEqual(presets, { version: 1, presets: { bright: { title: 'Hello: world', clock: true, mono: false } } });
    cli.stdin.write('mono maybe\n');
    await said(/refused \(invalid_command\): "mono" takes on or off/, 'a bad command is refused, the broadcast goes on');

    // The S3.10 figures, once a second, from the origin's status.
    await said(/ON AIR since \d\d:\d\d:\d\d \(take 1\)/, 'the status');
    assert.match(out, /channel {3}Studio {2}\(capacity 5 viewers, 600 kbit\/s\)/);
    assert.match(out, /viewers {3}1 now of 5/);
    assert.match(out, /sending {3}\d+ kbit\/s from this machine \(take 1\) · effects: title "Hello: world", clock/);

    // The encoder dies: the tool reconnects inside the window, a second take.
    const ps = await run('ps', ['-o', 'pid=', '--ppid', String(cli.pid)]);
    const ffmpegPid = Number(ps.stdout.trim().split('\n')[0]);
    assert.ok(ffmpegPid > 0, ps.stdout);
    process.kill(ffmpegPid, 'SIGKILL');
    await said(/the connection dropped \(ffmpeg exited with SIGKILL.*; reconnecting in 2 s/, 'the drop');
    await said(/on air: sending \(take 2\)/, 'take 2');
    await waitFor(async () => (await manifest()).some((e) => e.entry.name === 't2_seg_000001.m4s'), 'take 2 segments', 30_000, 200);
    const again = await saturation(await latestSegment(playlist, 'take2'));
    assert.ok(Math.min(...again) > 10, 'the effects as they were (mono off) carry over to the new take');

    o.clock.set(START + 33 * M); // the window closes: the origin cuts, the tool stops
    assert.equal(await exited, 0, out.slice(-2000) + err.slice(-2000));
    assert.match(out, /the connectable window closed at 09:33:00 UTC/);
    assert.match(out, /broadcast ended at the window’s end/);
    assert.ok(!existsSync(path.join(work, 'nothing')));

    // --preset reads the saved effects back (checked without connecting: the window is over).
    const dry = await runCli(['--json', 'broadcast', '--settings', settingsFile, '--preset', 'bright', '--dry-run'], { home, env });
    assert.equal(dry.code, 0, dry.stderr);
    const plan = JSON.parse(dry.stdout);
    assert.deepEqual(plan.effects, { title: 'Hello: world', clock: true, mono: false });
    const graph = plan.args[plan.args.indexOf('-filter_complex') + 1] as string;
    assert.match(graph, /hue@mono=s=1,drawtext@title=[^,]*enable=1,drawtext@clock=[^;]*enable=1/);
    assert.ok(!plan.args.join(' ').includes(settings.document.reservationId), 'the stream key is not printed');
    const unknown = await runCli(['broadcast', '--settings', settingsFile, '--preset', 'dim', '--dry-run'], { home, env });
    assert.match(unknown.stderr, /error \(unknown_preset\): No preset "dim"; saved: bright/);
  });
});
