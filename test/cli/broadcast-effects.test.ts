import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import {
  applauseCommand,
  applyCommand,
  bitrates,
  effectCommands,
  ffmpegArgs,
  ffmpegCommandInput,
  filterGraph,
  keyCommand,
  NO_EFFECTS,
  parseCommand,
  parsePresets,
  parseSize,
  parseSource,
  presetOf,
  withPreset,
  type Effects,
} from '../../src/cli/broadcast-effects.ts';
import { FFMPEG, FFPROBE, requireFfmpeg } from '../helpers/ffmpeg.ts';

// S3.16, the pure half of `cascade broadcast`: the filter graph and ffmpeg's arguments from the
// effects, the runtime filter commands, keys and line commands, presets. One test runs the graph
// through Debian's ffmpeg into a file and switches monochrome and the applause while it runs.

const FONT = '/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf';
const ALL: Effects = { title: 'Night: "Talk", [live]; 100%', clock: true, mono: true };
const base = { url: 'rtmp://127.0.0.1:1935/live/rsv_key', bitrateKbps: 600, titleFile: '/tmp/t/title.txt', fontFile: FONT, clockEpochSeconds: 1_781_000_000 };

describe('broadcast effects (S3.16)', () => {
  test('the graph holds every effect, named, each on or off as the effects say', () => {
    const on = filterGraph({ ...base, effects: ALL, video: '[0:v]', audio: '[1:a]', size: { width: 320, height: 180 } });
    assert.match(on, /^\[0:v\]scale=320:180,format=yuv420p,hue@mono=s=0,drawtext@title=[^,]*enable=1,drawtext@clock=[^;]*enable=1\[vout\];/);
    assert.match(on, /textfile=\/tmp\/t\/title\.txt:reload=1:expansion=none/, 'the title comes from a file: its text is never parsed by ffmpeg');
    assert.ok(!on.includes('Night'), 'the title text is not in the graph');
    assert.ok(on.includes(String.raw`text=%{pts\\:localtime\\:1781000000\\:%H\\\\\\:%M\\\\\\:%S}:`), 'the clock: pts + the origin’s time, escaped for drawtext, then the option, then the graph');
    assert.match(on, /\[1:a\]aresample=48000,aformat=channel_layouts=stereo\[src\];anoisesrc=color=pink[^;]*tremolo[^;]*volume@applause=volume=0\[clap\];\[src\]\[clap\]amix=inputs=2:duration=first:normalize=0\[aout\]$/);
    const off = filterGraph({ ...base, effects: NO_EFFECTS, video: '[0:v]', audio: '[0:a]' });
    assert.match(off, /hue@mono=s=1/);
    assert.match(off, /drawtext@title=[^,]*enable=0/);
    assert.match(off, /drawtext@clock=[^;]*enable=0/);
    assert.ok(!off.includes('scale='), 'no --size: the source keeps its size');
  });

  test('ffmpeg arguments: the sources, the channel’s bitrate split audio/video, FLV to the URL', () => {
    assert.deepEqual(bitrates(600), { videoKbps: 536, audioKbps: 64 });
    assert.deepEqual(bitrates(2500), { videoKbps: 2372, audioKbps: 128 });
    assert.deepEqual(bitrates(200), { videoKbps: 168, audioKbps: 32 });
    const t = ffmpegArgs({ ...base, source: { kind: 'testsrc' }, effects: ALL });
    assert.deepEqual(t.slice(-3), ['-f', 'flv', base.url]);
    assert.ok(t.join(' ').includes('-re -f lavfi -i testsrc2=size=1280x720:rate=25 -re -f lavfi -i sine=frequency=440'));
    assert.ok(t.join(' ').includes('-b:v 536k -maxrate 536k -bufsize 1072k'));
    assert.ok(t.join(' ').includes('-c:a aac -b:a 64k'));
    assert.equal(t[t.indexOf('-filter_complex') + 1], filterGraph({ ...base, effects: ALL, video: '[0:v]', audio: '[1:a]' }));
    const f = ffmpegArgs({ ...base, source: { kind: 'file', path: '/m/a b.mp4', hasAudio: true }, effects: NO_EFFECTS });
    assert.ok(f.join(' ').includes('-re -stream_loop -1 -i /m/a b.mp4 -filter_complex [0:v]'), 'a file is looped, its own audio used');
    assert.match(f[f.indexOf('-filter_complex') + 1], /\[0:a\]aresample/);
    const silent = ffmpegArgs({ ...base, source: { kind: 'file', path: 'v.mp4', hasAudio: false }, effects: NO_EFFECTS });
    assert.ok(silent.join(' ').includes('-i v.mp4 -f lavfi -i anullsrc'), 'a file without sound gets silence to mix the applause into');
    const cam = ffmpegArgs({ ...base, source: { kind: 'v4l2', device: '/dev/video0', alsa: true }, effects: NO_EFFECTS, size: { width: 640, height: 480 } });
    assert.ok(cam.join(' ').includes('-f v4l2 -framerate 25 -video_size 640x480 -i /dev/video0 -f alsa -i default'));
    const mute = ffmpegArgs({ ...base, source: { kind: 'v4l2', device: '/dev/video1', alsa: false }, effects: NO_EFFECTS });
    assert.ok(mute.join(' ').includes('-i /dev/video1 -f lavfi -i anullsrc'));
  });

  test('sources and sizes', () => {
    const probe = { hasAudio: (f: string) => f.endsWith('.mp4'), alsa: () => false };
    assert.deepEqual(parseSource('testsrc', probe), { kind: 'testsrc' });
    assert.deepEqual(parseSource('/dev/video2', probe), { kind: 'v4l2', device: '/dev/video2', alsa: false });
    assert.deepEqual(parseSource('show.mp4', probe), { kind: 'file', path: 'show.mp4', hasAudio: true });
    assert.deepEqual(parseSize('320x180'), { width: 320, height: 180 });
    assert.throws(() => parseSize('321x180'), /even/);
    assert.throws(() => parseSize('big'), (e: { code?: string }) => e.code === 'invalid_argument');
  });

  test('effect changes become filter commands; a title text change needs none (the file is re-read)', () => {
    assert.deepEqual(effectCommands(NO_EFFECTS, ALL), ['hue@mono -1 s 0', 'drawtext@title -1 enable 1', 'drawtext@clock -1 enable 1']);
    assert.deepEqual(effectCommands(ALL, NO_EFFECTS), ['hue@mono -1 s 1', 'drawtext@title -1 enable 0', 'drawtext@clock -1 enable 0']);
    assert.deepEqual(effectCommands(ALL, { ...ALL, title: 'other' }), []);
    assert.equal(ffmpegCommandInput(applauseCommand(true)), 'Cvolume@applause -1 volume 1\n');
    assert.equal(applauseCommand(false), 'volume@applause -1 volume 0');
  });

  test('line commands and keys', () => {
    assert.deepEqual(parseCommand('applause', 'T'), { kind: 'applause' });
    assert.deepEqual(parseCommand('  mono on ', 'T'), { kind: 'mono', on: true });
    assert.deepEqual(parseCommand('clock off', 'T'), { kind: 'clock', on: false });
    assert.deepEqual(parseCommand('title Hello: world  again', 'T'), { kind: 'title', text: 'Hello: world  again' });
    assert.deepEqual(parseCommand('title on', 'Program'), { kind: 'title', text: 'Program' });
    assert.deepEqual(parseCommand('title off', 'T'), { kind: 'title', text: null });
    assert.deepEqual(parseCommand('save evening-1', 'T'), { kind: 'save', name: 'evening-1' });
    assert.deepEqual(parseCommand('preset evening-1', 'T'), { kind: 'preset', name: 'evening-1' });
    assert.deepEqual(parseCommand('extend', 'T'), { kind: 'extend', slots: 1 });
    assert.deepEqual(parseCommand('extend 3', 'T'), { kind: 'extend', slots: 3 });
    assert.deepEqual(parseCommand('quit', 'T'), { kind: 'quit' });
    assert.equal(parseCommand('   ', 'T'), null);
    for (const bad of ['mono', 'mono maybe', 'title', 'save', 'save a/b', 'extend 0', 'extend x', 'dance']) {
      assert.throws(() => parseCommand(bad, 'T'), (e: { code?: string }) => e.code === 'invalid_command' || e.code === 'invalid_preset_name', bad);
    }
    assert.deepEqual(keyCommand('m', NO_EFFECTS, 'T'), { kind: 'mono', on: true });
    assert.deepEqual(keyCommand('m', ALL, 'T'), { kind: 'mono', on: false });
    assert.deepEqual(keyCommand('t', NO_EFFECTS, 'Prog'), { kind: 'title', text: 'Prog' });
    assert.deepEqual(keyCommand('t', ALL, 'Prog'), { kind: 'title', text: null });
    assert.deepEqual(keyCommand('c', NO_EFFECTS, 'T'), { kind: 'clock', on: true });
    assert.deepEqual(keyCommand('a', NO_EFFECTS, 'T'), { kind: 'applause' });
    assert.deepEqual(keyCommand('e', NO_EFFECTS, 'T'), { kind: 'extend', slots: 1 });
    assert.deepEqual(keyCommand('q', NO_EFFECTS, 'T'), { kind: 'quit' });
    assert.equal(keyCommand('x', NO_EFFECTS, 'T'), null);
    assert.deepEqual(applyCommand(NO_EFFECTS, { kind: 'title', text: 'X' }), { ...NO_EFFECTS, title: 'X' });
    assert.deepEqual(applyCommand(ALL, { kind: 'applause' }), ALL);
  });

  test('presets: saved by name, read back, refused when malformed or unknown', () => {
    const empty = parsePresets('');
    assert.deepEqual(empty, { version: 1, presets: {} });
    const one = withPreset(empty, 'night', ALL);
    const text = JSON.stringify(withPreset(one, 'plain', NO_EFFECTS));
    const back = parsePresets(text);
    assert.deepEqual(presetOf(back, 'night'), ALL);
    assert.deepEqual(presetOf(back, 'plain'), NO_EFFECTS);
    assert.throws(() => presetOf(back, 'nope'), (e: { code?: string; message: string }) => e.code === 'unknown_preset' && /night, plain/.test(e.message));
    assert.throws(() => presetOf(back, 'toString'), (e: { code?: string }) => e.code === 'unknown_preset', 'no prototype names');
    assert.throws(() => parsePresets('{'), (e: { code?: string }) => e.code === 'invalid_presets');
    assert.throws(() => parsePresets('{"version":1,"presets":{"x":{"title":1,"clock":true,"mono":true}}}'), (e: { code?: string }) => e.code === 'invalid_presets');
    assert.throws(() => withPreset(empty, '../x', ALL), (e: { code?: string }) => e.code === 'invalid_preset_name');
  });

  test('Debian’s ffmpeg runs the graph and takes the commands while running: monochrome off, applause up', { timeout: 60_000 }, async () => {
    requireFfmpeg();
    const dir = mkdtempSync(path.join(os.tmpdir(), 'cascade-effects-'));
    const titleFile = path.join(dir, 'title.txt');
    writeFileSync(titleFile, 'Title: it’s [here]; 100%');
    const out = path.join(dir, 'out.flv');
    const args = ffmpegArgs({ ...base, url: out, titleFile, source: { kind: 'testsrc' }, effects: ALL, size: { width: 320, height: 180 } });
    const proc = spawn(FFMPEG, args, { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    proc.stderr.on('data', (d) => (stderr += d));
    const done = new Promise<number | null>((r) => proc.on('close', r));
    const at = (ms: number, text: string) => new Promise<void>((r) => setTimeout(() => (proc.stdin.write(text), r()), ms));
    await at(2000, ffmpegCommandInput(effectCommands(ALL, { ...ALL, mono: false })[0]!));
    await at(1000, ffmpegCommandInput(applauseCommand(true)));
    await at(1500, 'q');
    assert.equal(await done, 0, stderr);
    assert.match(stderr, /Command reply for stream 0: ret:0/);
    assert.ok(!/Command reply for stream 0: ret:-/.test(stderr), stderr);
    const probe = (filter: string, key: string) =>
      new Promise<number[]>((resolve) => {
        const p = spawn(FFPROBE, ['-v', 'error', '-f', 'lavfi', `amovie=${out},${filter}`.replace('amovie', key.includes('SATAVG') ? 'movie' : 'amovie'), '-show_entries', `frame_tags=${key}`, '-of', 'csv=p=0']);
        let s = '';
        p.stdout.on('data', (d) => (s += d));
        p.on('close', () => resolve(s.trim().split('\n').map(Number)));
      });
    const sat = await probe('signalstats', 'lavfi.signalstats.SATAVG');
    assert.ok(sat.length > 80, `frames: ${sat.length}`);
    assert.ok(Math.max(...sat.slice(0, 25)) < 1, `monochrome at first: ${sat.slice(0, 25)}`);
    assert.ok(Math.min(...sat.slice(-20)) > 20, `colour after "mono off": ${sat.slice(-20)}`);
    const rms = await probe('astats=metadata=1:reset=1,ametadata=mode=print', 'lavfi.astats.Overall.RMS_level');
    const early = rms.slice(10, 40).filter(Number.isFinite);
    const late = rms.slice(-30).filter(Number.isFinite);
    const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
    assert.ok(mean(late) > mean(early) + 10, `the applause is louder: ${mean(early).toFixed(1)} dB before, ${mean(late).toFixed(1)} dB during`);
  });
});

describe('broadcast status extras', () => {
  test('S3.13: the extension offer is shown with how to accept it; nothing when the origin sends none or it is not offered yet', async () => {
    const { formatStatus } = await import('../../src/cli/live.ts');
    const status = {
      programId: 'bkg_x', title: 'Show', status: 'live', now: '2026-06-15T09:35:00.000Z', epochMs: Date.UTC(2026, 5, 15, 9, 35), start: '2026-06-15T09:00:00.000Z',
      end: '2026-06-15T09:40:00.000Z', windowEnd: '2026-06-15T09:43:00.000Z', elapsedSeconds: 2100, remainingSeconds: 300,
      channel: { id: 'chn_x', name: 'Stage', capacity: 5, bitrateKbps: 600 }, ingest: { live: true, since: '2026-06-15T08:58:00.000Z', take: 1, bitrateKbps: 500, segments: 10 },
      viewers: { now: 1, peak: 2, total: 3, capacity: 5 },
    };
    const offset = { offsetMs: 0, roundTripMs: 1 } as unknown as Parameters<typeof formatStatus>[1];
    const lines = (extension: unknown, accept?: string) => formatStatus({ ...status, extension } as Parameters<typeof formatStatus>[0], offset, 'UTC', accept).filter((l) => l.startsWith('extension'));
    assert.deepEqual(lines(undefined), [], 'an origin without the field');
    assert.deepEqual(lines(null), []);
    const offer = { offered: true, code: 'offered', reason: 'The next slot is free: extend to 09:50 UTC for 100.', opensAt: '2026-06-15T09:30:00Z', slots: 2, slotMinutes: 10, until: '2026-06-15T09:50:00Z', chargePerSlot: 100 };
    assert.deepEqual(lines({ ...offer, offered: false, code: 'not_yet' }), []);
    assert.deepEqual(lines(offer, 'press e'), ['extension The next slot is free: extend to 09:50 UTC for 100. Accept: press e']);
    assert.match(lines(offer)[0], /Accept: cascade reserve extend bkg_x --yes$/);
    assert.deepEqual(lines({ ...offer, offered: false, code: 'next_slot_taken', reason: 'The next slot is booked.' }), ['extension The next slot is booked.']);
  });
});
