import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { FFMPEG } from '../helpers/ffmpeg.ts';

// S2.3: test material for the audio carrier, made by ffmpeg's lavfi sources: a chord progression
// with harmonics (tonal: most tiles empty or stationary), pink noise (every tile busy, the
// hardest host for a correlation detector) and a mix of both, at both rates and in three formats.

export interface TestClip {
  name: string;
  path: string;
  sampleRate: number;
  channels: number;
}

/** Two chords alternating every 2 s, each note with 6 harmonics (energy across 200 Hz–8 kHz). */
function chordExpr(gain: number): string {
  const a = [220, 277.18, 329.63, 440];
  const b = [196, 246.94, 293.66, 392];
  const terms: string[] = [];
  a.forEach((fa, i) => {
    const f = `if(lt(mod(t\\,4)\\,2)\\,${fa}\\,${b[i]})`;
    for (let h = 1; h <= 6; h++) terms.push(`${((gain * 0.05) / h).toFixed(4)}*sin(2*PI*${h}*${f}*t)`);
  });
  return terms.join('+');
}

function ffmpeg(args: string[]) {
  const r = spawnSync(FFMPEG, ['-nostdin', '-v', 'error', '-y', ...args], { encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) throw new Error(`ffmpeg ${args.join(' ')} failed: ${r.stderr}`);
}

/** Writes the test clips (`seconds` long, 30 by default) into `dir`. */
export function testAudio(dir: string, seconds = 30): TestClip[] {
  // aevalsrc with 24 partials is slow: one 4 s cycle of the progression, looped.
  const cycle = path.join(dir, 'chords-cycle.wav');
  ffmpeg(['-f', 'lavfi', '-i', `aevalsrc=${chordExpr(1)}|${chordExpr(0.8)}:s=44100:d=4`, '-c:a', 'pcm_s16le', cycle]);
  const chords = path.join(dir, 'chords-44k-stereo-s16.wav');
  ffmpeg(['-stream_loop', '-1', '-i', cycle, '-t', String(seconds), '-c:a', 'pcm_s16le', chords]);
  const pink = path.join(dir, 'pink-48k-stereo-s16.wav');
  ffmpeg([
    '-f', 'lavfi', '-i', `anoisesrc=c=pink:a=0.25:r=48000:d=${seconds}:seed=1`,
    '-f', 'lavfi', '-i', `anoisesrc=c=pink:a=0.25:r=48000:d=${seconds}:seed=2`,
    '-filter_complex', '[0:a][1:a]amerge=inputs=2[a]', '-map', '[a]', '-c:a', 'pcm_s16le', pink,
  ]);
  const mix = path.join(dir, 'mix-44k-mono-s24.wav');
  ffmpeg([
    '-i', chords,
    '-f', 'lavfi', '-i', `anoisesrc=c=pink:a=0.08:r=44100:d=${seconds}:seed=3`,
    '-filter_complex', '[0:a]pan=mono|c0=c0[c];[c][1:a]amix=inputs=2:normalize=0[a]', '-map', '[a]', '-c:a', 'pcm_s24le', mix,
  ]);
  return [
    { name: 'chords', path: chords, sampleRate: 44100, channels: 2 },
    { name: 'pink', path: pink, sampleRate: 48000, channels: 2 },
    { name: 'mix', path: mix, sampleRate: 44100, channels: 1 },
  ];
}
