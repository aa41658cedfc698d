import { badRequest } from '../core/errors.ts';

// The pure half of `cascade broadcast` (S3.16; docs/live.md "Broadcaster tool"): which ffmpeg
// arguments and filter graph send a source with the broadcaster's effects, the filter commands
// that change those effects while ffmpeg runs (its stdin takes `C<target> <time> <command> <arg>`
// lines), the keys and line commands the tool reads, and the presets file. No I/O here.
//
// Every effect's filter is always in the graph, named (`hue@mono`, `drawtext@title`,
// `drawtext@clock`, `volume@applause`), so each can be switched at runtime without reconnecting:
// `enable` (any timeline filter) for the overlays, `s` for hue, `volume` for the applause.

/** The effects a broadcaster switches (a preset is one of these). `title` null = no title overlay. */
export interface Effects {
  title: string | null;
  clock: boolean;
  mono: boolean;
}

export const NO_EFFECTS: Effects = { title: null, clock: false, mono: false };

export type Source = { kind: 'testsrc' } | { kind: 'file'; path: string; hasAudio: boolean } | { kind: 'v4l2'; device: string; alsa: boolean };

/** `--source`: `testsrc`, a V4L2 device (/dev/video*), or a media file (looped). */
export function parseSource(text: string, probe: { hasAudio(file: string): boolean; alsa(): boolean }): Source {
  if (text === 'testsrc') return { kind: 'testsrc' };
  if (/^\/dev\/video\d+$/.test(text)) return { kind: 'v4l2', device: text, alsa: probe.alsa() };
  return { kind: 'file', path: text, hasAudio: probe.hasAudio(text) };
}

/** `--size 1280x720`. */
export function parseSize(text: string): { width: number; height: number } {
  const m = /^(\d{2,4})x(\d{2,4})$/.exec(text);
  const size = m && { width: Number(m[1]), height: Number(m[2]) };
  if (!size || size.width % 2 || size.height % 2) throw badRequest('invalid_argument', `--size is WIDTHxHEIGHT with even numbers, e.g. 1280x720; got "${text}".`, { field: 'size' });
  return size;
}

/** The channel's bitrate split as the origin packages it: audio 32–128 kbit/s (about a tenth), the rest video. */
export function bitrates(channelKbps: number): { videoKbps: number; audioKbps: number } {
  const audioKbps = Math.min(128, Math.max(32, Math.round(channelKbps / 10 / 16) * 16));
  return { videoKbps: Math.max(64, channelKbps - audioKbps), audioKbps };
}

// ---- filtergraph escaping (ffmpeg-filters(1), "Notes on filtergraph escaping") ----

/** An option value inside a filter's arguments (`key=value:key=value`). */
const optionValue = (v: string) => v.replace(/[\\':]/g, '\\$&');
/** …and that inside a filtergraph description. */
const graphValue = (v: string) => optionValue(v).replace(/[\\'[\],;]/g, '\\$&');

export interface GraphOptions {
  effects: Effects;
  /** A file holding the title's text: drawtext re-reads it each frame (reload=1), so a new title needs no command and no escaping. */
  titleFile: string;
  fontFile: string;
  /** The origin's clock at the stream's start, seconds since the epoch: the clock overlay shows pts + this (the origin's time, not this machine's). */
  clockEpochSeconds: number;
  size?: { width: number; height: number };
  /** The input pads of the video and audio. */
  video: string;
  audio: string;
}

const BOX = 'fontcolor=white:box=1:boxcolor=black@0.55:boxborderw=6';

/** The clapping: pink noise pulsed ~9 times a second, silent (volume 0) until `applause` raises it. */
export const APPLAUSE_SOURCE = 'anoisesrc=color=pink:sample_rate=48000:amplitude=0.9,highpass=f=400,tremolo=f=9:d=0.8';

/** The -filter_complex: video to [vout] through mono, title and clock; audio to [aout] with the applause mixed in. */
export function filterGraph(o: GraphOptions): string {
  const font = graphValue(o.fontFile);
  const clockText = graphValue(`%{pts:localtime:${Math.floor(o.clockEpochSeconds)}:%H\\:%M\\:%S}`);
  const scale = o.size ? `scale=${o.size.width}:${o.size.height},` : '';
  const video = [
    `${o.video}${scale}format=yuv420p`,
    `hue@mono=s=${o.effects.mono ? 0 : 1}`,
    `drawtext@title=fontfile=${font}:textfile=${graphValue(o.titleFile)}:reload=1:expansion=none:fontsize=h/14:${BOX}:x=(w-text_w)/2:y=h-text_h-h/16:enable=${o.effects.title !== null ? 1 : 0}`,
    `drawtext@clock=fontfile=${font}:text=${clockText}:fontsize=h/18:${BOX}:x=w-text_w-h/30:y=h/30:enable=${o.effects.clock ? 1 : 0}[vout]`,
  ].join(',');
  const audio = `${o.audio}aresample=48000,aformat=channel_layouts=stereo[src];${APPLAUSE_SOURCE},aformat=channel_layouts=stereo,volume@applause=volume=0[clap];[src][clap]amix=inputs=2:duration=first:normalize=0[aout]`;
  return `${video};${audio}`;
}

export interface ArgsOptions {
  source: Source;
  url: string;
  bitrateKbps: number;
  effects: Effects;
  titleFile: string;
  fontFile: string;
  clockEpochSeconds: number;
  size?: { width: number; height: number };
  fps?: number;
}

/** ffmpeg's arguments: inputs, the effects graph, H.264 + AAC within the channel's bitrate, FLV to the RTMP URL; progress on stdout. */
export function ffmpegArgs(o: ArgsOptions): string[] {
  const fps = o.fps ?? 25;
  const args = ['-hide_banner', '-loglevel', 'error', '-nostats', '-progress', 'pipe:1', '-stats_period', '1'];
  let audio = '[1:a]';
  const s = o.source;
  if (s.kind === 'testsrc') {
    const size = o.size ?? { width: 1280, height: 720 };
    args.push('-re', '-f', 'lavfi', '-i', `testsrc2=size=${size.width}x${size.height}:rate=${fps}`);
    // A quiet tone (about −40 dBFS): the picture is a test card, the sound should not be a test.
    args.push('-re', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000,volume=0.08');
  } else if (s.kind === 'file') {
    args.push('-re', '-stream_loop', '-1', '-i', s.path);
    if (s.hasAudio) audio = '[0:a]';
    else args.push('-f', 'lavfi', '-i', 'anullsrc=r=48000:cl=stereo');
  } else {
    args.push('-f', 'v4l2', '-framerate', String(fps), ...(o.size ? ['-video_size', `${o.size.width}x${o.size.height}`] : []), '-i', s.device);
    args.push(...(s.alsa ? ['-f', 'alsa', '-i', 'default'] : ['-f', 'lavfi', '-i', 'anullsrc=r=48000:cl=stereo']));
  }
  const graph = filterGraph({ effects: o.effects, titleFile: o.titleFile, fontFile: o.fontFile, clockEpochSeconds: o.clockEpochSeconds, size: s.kind === 'v4l2' ? undefined : o.size, video: '[0:v]', audio });
  const { videoKbps, audioKbps } = bitrates(o.bitrateKbps);
  args.push('-filter_complex', graph, '-map', '[vout]', '-map', '[aout]');
  args.push('-c:v', 'libx264', '-preset', 'veryfast', '-tune', 'zerolatency', '-pix_fmt', 'yuv420p', '-r', String(fps), '-g', String(fps * 2));
  args.push('-b:v', `${videoKbps}k`, '-maxrate', `${videoKbps}k`, '-bufsize', `${videoKbps * 2}k`);
  args.push('-c:a', 'aac', '-b:a', `${audioKbps}k`, '-ar', '48000', '-ac', '2');
  args.push('-f', 'flv', o.url);
  return args;
}

// ---- switching effects while ffmpeg runs ----

/**
 * The filter commands (`<target> <time> <command> <arg>`, each written to ffmpeg's stdin after a
 * `C`) that take the running graph from `before` to `after`. A new title's text goes through the
 * title file, not a command.
 */
export function effectCommands(before: Effects, after: Effects): string[] {
  const out: string[] = [];
  if (before.mono !== after.mono) out.push(`hue@mono -1 s ${after.mono ? 0 : 1}`);
  if ((before.title !== null) !== (after.title !== null)) out.push(`drawtext@title -1 enable ${after.title !== null ? 1 : 0}`);
  if (before.clock !== after.clock) out.push(`drawtext@clock -1 enable ${after.clock ? 1 : 0}`);
  return out;
}

export const APPLAUSE_SECONDS = 3;
export const applauseCommand = (on: boolean) => `volume@applause -1 volume ${on ? 1 : 0}`;

/** What ffmpeg's stdin receives for one filter command: `C` (to every matching filter), then the line. */
export const ffmpegCommandInput = (line: string) => `C${line}\n`;

// ---- what the broadcaster types ----

export type BroadcastCommand =
  | { kind: 'applause' }
  | { kind: 'mono' | 'clock'; on: boolean }
  | { kind: 'title'; text: string | null }
  | { kind: 'save' | 'preset'; name: string }
  | { kind: 'extend'; slots: number }
  | { kind: 'quit' }
  | { kind: 'help' };

export const COMMANDS_HELP =
  'commands: applause · mono on|off · title TEXT|on|off · clock on|off · save NAME · preset NAME · extend [N] · quit';
export const KEYS_HELP = 'keys: m monochrome · t title · c clock · a applause · s save preset · e extend · q quit';

const onOff = (word: string | undefined, what: string): boolean => {
  if (word === 'on') return true;
  if (word === 'off') return false;
  throw badRequest('invalid_command', `"${what}" takes on or off.`);
};

/** A presets' name: 1–40 letters, digits, `.`, `_`, `-`. */
export function presetName(name: string | undefined): string {
  if (!name || !/^[A-Za-z0-9._-]{1,40}$/.test(name)) throw badRequest('invalid_preset_name', `A preset's name is 1–40 letters, digits, ".", "_" or "-"; got "${name ?? ''}".`);
  return name;
}

/** One line typed on stdin (when it is not a terminal). `title on` is the settings' title; `title TEXT` any other. */
export function parseCommand(line: string, defaultTitle: string): BroadcastCommand | null {
  const text = line.trim();
  if (!text) return null;
  const [word, ...rest] = text.split(/\s+/);
  const arg = text.slice(word!.length).trim();
  switch (word!.toLowerCase()) {
    case 'applause':
      return { kind: 'applause' };
    case 'mono':
    case 'clock':
      if (rest.length !== 1) throw badRequest('invalid_command', `"${word}" takes on or off.`);
      return { kind: word!.toLowerCase() as 'mono' | 'clock', on: onOff(rest[0], word!) };
    case 'title':
      if (!arg) throw badRequest('invalid_command', '"title" takes a text, on or off.');
      if (arg.length > 100) throw badRequest('invalid_command', 'A title is at most 100 characters.');
      return { kind: 'title', text: arg === 'off' ? null : arg === 'on' ? defaultTitle : arg };
    case 'save':
    case 'preset':
      if (rest.length !== 1) throw badRequest('invalid_command', `"${word}" takes a preset's name.`);
      return { kind: word!.toLowerCase() as 'save' | 'preset', name: presetName(rest[0]) };
    case 'extend': {
      if (rest.length > 1 || (rest.length && !/^[1-9]\d{0,2}$/.test(rest[0]!))) throw badRequest('invalid_command', '"extend" takes a number of slots (default 1).');
      return { kind: 'extend', slots: rest.length ? Number(rest[0]) : 1 };
    }
    case 'quit':
    case 'exit':
      return { kind: 'quit' };
    case 'help':
    case '?':
      return { kind: 'help' };
    default:
      throw badRequest('invalid_command', `Unknown command "${word}". ${COMMANDS_HELP}`);
  }
}

/** One key pressed on a terminal (`s` asks for a name, so it is not here). */
export function keyCommand(key: string, effects: Effects, defaultTitle: string): BroadcastCommand | null {
  switch (key) {
    case 'm':
      return { kind: 'mono', on: !effects.mono };
    case 't':
      return { kind: 'title', text: effects.title === null ? defaultTitle : null };
    case 'c':
      return { kind: 'clock', on: !effects.clock };
    case 'a':
      return { kind: 'applause' };
    case 'e':
      return { kind: 'extend', slots: 1 };
    case 'q':
    case '\u0003': // Ctrl-C in raw mode
      return { kind: 'quit' };
    case '?':
    case 'h':
      return { kind: 'help' };
    default:
      return null;
  }
}

/** The effects after a command (unchanged for commands that are not about effects). */
export function applyCommand(effects: Effects, c: BroadcastCommand): Effects {
  if (c.kind === 'mono') return { ...effects, mono: c.on };
  if (c.kind === 'clock') return { ...effects, clock: c.on };
  if (c.kind === 'title') return { ...effects, title: c.text };
  return effects;
}

export const describeEffects = (e: Effects) =>
  [e.title !== null ? `title "${e.title}"` : null, e.clock ? 'clock' : null, e.mono ? 'monochrome' : null].filter(Boolean).join(', ') || 'none';

// ---- presets ----

/** The presets file: `{ "version": 1, "presets": { "NAME": { "title": …, "clock": …, "mono": … } } }`. */
export interface PresetsFile {
  version: 1;
  presets: Record<string, Effects>;
}

function effectsOf(v: unknown, name: string): Effects {
  const e = v as Partial<Effects> | null;
  if (!e || typeof e !== 'object' || (e.title !== null && typeof e.title !== 'string') || typeof e.clock !== 'boolean' || typeof e.mono !== 'boolean') {
    throw badRequest('invalid_presets', `Preset "${name}" is not { "title": text or null, "clock": true/false, "mono": true/false }.`);
  }
  return { title: e.title, clock: e.clock, mono: e.mono };
}

/** The presets in a file's text ('' or a missing file: none). */
export function parsePresets(text: string): PresetsFile {
  if (!text.trim()) return { version: 1, presets: {} };
  let v: { version?: unknown; presets?: unknown };
  try {
    v = JSON.parse(text);
  } catch {
    throw badRequest('invalid_presets', 'The presets file is not JSON.');
  }
  if (!v || v.version !== 1 || typeof v.presets !== 'object' || v.presets === null) throw badRequest('invalid_presets', 'The presets file is not { "version": 1, "presets": { … } }.');
  const presets: Record<string, Effects> = {};
  for (const [name, e] of Object.entries(v.presets)) presets[presetName(name)] = effectsOf(e, name);
  return { version: 1, presets };
}

export function withPreset(file: PresetsFile, name: string, effects: Effects): PresetsFile {
  return { version: 1, presets: { ...file.presets, [presetName(name)]: { ...effects } } };
}

export function presetOf(file: PresetsFile, name: string): Effects {
  const e = Object.hasOwn(file.presets, name) ? file.presets[name] : undefined;
  if (!e) {
    const known = Object.keys(file.presets);
    throw badRequest('unknown_preset', `No preset "${name}"${known.length ? `; saved: ${known.join(', ')}` : ': none saved yet (type "save NAME" while broadcasting)'}.`);
  }
  return { ...e };
}
