import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { Command } from 'commander';
import { systemClock, type WaitClock } from '../core/clock.ts';
import { AppError, badRequest } from '../core/errors.ts';
import type { Api } from '../core/http-client.ts';
import { verifySettings, type SignedSettings } from '../live/settings.ts';
import type { ExtensionOffer } from '../live/extension-rules.ts';
import {
  APPLAUSE_SECONDS,
  applauseCommand,
  applyCommand,
  COMMANDS_HELP,
  describeEffects,
  effectCommands,
  ffmpegArgs,
  ffmpegCommandInput,
  KEYS_HELP,
  keyCommand,
  NO_EFFECTS,
  parseCommand,
  parsePresets,
  parseSize,
  parseSource,
  presetName,
  presetOf,
  withPreset,
  type BroadcastCommand,
  type Effects,
  type Source,
} from './broadcast-effects.ts';
import { root } from './channel.ts';
import { formatStatus, type StatusView } from './live.ts';
import { apiFromProfile, cascadeHome } from './profile.ts';
import { localTime, measureOffset, zoneOf, type ClockOffset } from './reserve.ts';

// `cascade broadcast --settings settings.json` (S3.16; docs/live.md "Broadcaster tool"): checks
// the origin-signed settings, waits for the connectable window by the origin's clock, publishes
// with Debian's ffmpeg over RTMP within the channel's bitrate, and applies the broadcaster's
// effects (title, clock, monochrome, applause) — switched while on air through ffmpeg's filter
// commands, without reconnecting. Shows the S3.10 figures once a second; reconnects when the
// connection drops inside the window; stops at the window's end.

export type Status = StatusView;

interface BroadcastOpts {
  settings: string;
  source: string;
  preset?: string;
  presets?: string;
  /** true: the program's title. */
  title?: string | true;
  clock?: boolean;
  mono?: boolean;
  size?: string;
  wait: boolean;
  dryRun?: boolean;
  tz?: string;
}

const DEJAVU = '/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf';
const RECONNECT_MS = 2000;

/** The S3.13 offer line, when the status carries an offer (origins without the field: none). */
export const defaultPresetsFile = () => path.join(cascadeHome(), 'broadcast-presets.json');

/** The settings document saved by `cascade reserve confirm … -o FILE`, as it stands in the file (not yet verified). */
export function readSettingsFile(file: string): SignedSettings {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new AppError('file_not_found', `Cannot read the settings file ${file}: ${(err as Error).message}. Save it with \`cascade reserve confirm RESERVATION_ID -o ${file}\`.`, 400);
  }
  let v: SignedSettings;
  try {
    v = JSON.parse(text);
  } catch {
    throw badRequest('settings_invalid', `${file} is not JSON: it is not a settings document saved by \`cascade reserve confirm\`.`);
  }
  const d = v?.document;
  if (!d || d.type !== 'cascade.live.settings' || typeof v.signature !== 'string' || typeof v.originKey !== 'string' || !d.ingest?.rtmp?.url || !d.connectableWindow?.from || !d.server?.origin) {
    throw badRequest('settings_invalid', `${file} is not a live settings document (type cascade.live.settings with its signature), as \`cascade reserve confirm RESERVATION_ID -o FILE\` saves.`);
  }
  return v;
}

/** S3.16: the settings must carry the signature of the origin they name, as that origin publishes its key now. */
export function checkSettings(signed: SignedSettings, originKey: string, origin: string): void {
  if (signed.originKey !== originKey || signed.document.server.originKey !== originKey) {
    throw new AppError('settings_other_origin', `These settings were issued by another origin (key ${signed.originKey}), not ${origin} (key ${originKey}). Use the settings file this origin saved for you (cascade reserve confirm … -o FILE).`, 400);
  }
  if (!verifySettings(signed, originKey)) {
    throw new AppError('settings_tampered', `The settings document was changed after the origin signed it (its signature does not verify with ${origin}'s key): nothing was sent. Save it again: cascade reserve confirm ${signed.document.reservationId.slice(0, 8)}… -o FILE.`, 400);
  }
}

function fontFile(): string {
  if (existsSync(DEJAVU)) return DEJAVU;
  const r = spawnSync('fc-match', ['-f', '%{file}', 'DejaVu Sans'], { encoding: 'utf8' });
  if (r.status === 0 && r.stdout && existsSync(r.stdout)) return r.stdout;
  throw new AppError('font_missing', `No font for the overlays: install fonts-dejavu-core (${DEJAVU}) or fontconfig with a DejaVu Sans.`, 500);
}

const ffmpegBinary = () => process.env.FFMPEG || 'ffmpeg';
function ffprobeBinary(): string {
  if (process.env.FFPROBE) return process.env.FFPROBE;
  const ff = ffmpegBinary();
  return ff.includes('/') ? path.join(path.dirname(ff), 'ffprobe') : 'ffprobe';
}

const probes = {
  hasAudio(file: string): boolean {
    if (!existsSync(file)) throw new AppError('file_not_found', `--source ${file}: no such file (a source is a media file, testsrc or /dev/videoN).`, 400);
    const r = spawnSync(ffprobeBinary(), ['-v', 'error', '-select_streams', 'a', '-show_entries', 'stream=index', '-of', 'csv=p=0', file], { encoding: 'utf8' });
    if (r.status !== 0) throw new AppError('source_unreadable', `ffprobe cannot read ${file}: ${(r.stderr || r.error?.message || '').trim().split('\n').pop()}`, 400);
    return r.stdout.trim() !== '';
  },
  alsa(): boolean {
    try {
      return !/no soundcards/i.test(readFileSync('/proc/asound/cards', 'utf8'));
    } catch {
      return false;
    }
  },
};

const hideKey = (url: string, key: string) => url.split(key).join(`${key.slice(0, 8)}…`);
const mmss = (s: number) => `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;

/** Reads --preset from the presets file, or none. */
function loadPresets(file: string) {
  return parsePresets(existsSync(file) ? readFileSync(file, 'utf8') : '');
}

function savePreset(file: string, name: string, effects: Effects) {
  const next = withPreset(loadPresets(file), name, effects);
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(next, null, 2) + '\n', { mode: 0o600 });
  renameSync(tmp, file);
}

export function registerBroadcast(program: Command) {
  program
    .command('broadcast')
    .description('publish a booked program (S3.16): check the settings, wait for the window, send with ffmpeg, switch effects while on air')
    .requiredOption('--settings <file>', 'the settings saved by `cascade reserve confirm RESERVATION_ID -o FILE`')
    .option('--source <source>', 'a media file (looped), testsrc, or a V4L2 device such as /dev/video0', 'testsrc')
    .option('--preset <name>', 'start with these saved effects')
    .option('--presets <file>', 'the presets file (default $CASCADE_HOME/broadcast-presets.json, ~/.config/cascade/…)')
    .option('--title [text]', 'start with the title overlay (the program’s title unless TEXT)')
    .option('--clock', 'start with the clock overlay (the origin’s time)')
    .option('--mono', 'start in monochrome')
    .option('--size <WxH>', 'picture size (testsrc default 1280x720; files keep theirs)')
    .option('--no-wait', 'connect at once, even before the window opens (the origin then refuses: too early)')
    .option('--dry-run', 'check the settings and print the ffmpeg command without connecting (the stream key hidden)')
    .option('--tz <zone>', 'show times in this zone (default: this machine’s)')
    .action(async (opts: BroadcastOpts, cmd: Command) => {
      const g = root(cmd).opts() as { origin?: string; json?: boolean };
      const code = await runBroadcast(opts, { origin: g.origin, json: !!g.json, clock: systemClock });
      process.exit(code);
    });
}

interface RunDeps {
  origin?: string;
  json: boolean;
  clock: WaitClock;
}

/** The broadcast, from the settings' check to the window's end. Resolves with the exit status; refusals throw. */
export async function runBroadcast(opts: BroadcastOpts, deps: RunDeps): Promise<number> {
  const { clock, json } = deps;
  const zone = zoneOf(opts.tz);
  const tty = !json && !!process.stdout.isTTY;
  const write = (line = '') => void process.stdout.write(line + '\n');
  const event = (name: string, text: string, fields: Record<string, unknown> = {}) => (json ? write(JSON.stringify({ type: 'event', event: name, message: text, ...fields })) : write(text));

  // 1. The settings: signed by the origin they name (S3.16), checked against its key now.
  const signed = readSettingsFile(opts.settings);
  const d = signed.document;
  const origin = (deps.origin ?? d.server.origin).replace(/\/+$/, '');
  const api = apiFromProfile({ origin });
  const { publicKey } = await api.get<{ publicKey: string }>('/origin');
  checkSettings(signed, publicKey, origin);

  // 2. The effects to start with: a preset, then the flags.
  const presetsFile = opts.presets ?? defaultPresetsFile();
  let effects: Effects = opts.preset ? presetOf(loadPresets(presetsFile), presetName(opts.preset)) : { ...NO_EFFECTS };
  if (opts.title !== undefined) effects.title = opts.title === true || opts.title === '' ? d.title : String(opts.title);
  if (opts.clock) effects.clock = true;
  if (opts.mono) effects.mono = true;
  const source: Source = parseSource(opts.source, probes);
  const size = opts.size ? parseSize(opts.size) : undefined;
  const font = fontFile();
  const work = mkdtempSync(path.join(os.tmpdir(), 'cascade-broadcast-'));
  const titleFile = path.join(work, 'title.txt');
  const writeTitle = (text: string | null) => {
    writeFileSync(`${titleFile}.tmp`, text ?? d.title);
    renameSync(`${titleFile}.tmp`, titleFile); // drawtext re-reads it each frame: never half-written
  };
  writeTitle(effects.title);
  const argsFor = (clockEpochSeconds: number) =>
    ffmpegArgs({ source, url: d.ingest.rtmp.url, bitrateKbps: d.bitrateKbps, effects, titleFile, fontFile: font, clockEpochSeconds, size });

  const key = d.ingest.rtmp.streamKey;
  if (opts.dryRun) {
    const args = argsFor(0).map((a) => hideKey(a, key));
    if (json) write(JSON.stringify({ type: 'dry_run', ffmpeg: ffmpegBinary(), args, effects, source, bookingId: d.bookingId, window: d.connectableWindow }));
    else {
      write(`settings verified: "${d.title}" (${d.bookingId}), signed by ${origin}`);
      write(`effects: ${describeEffects(effects)}`);
      write(`${ffmpegBinary()} ${args.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ')}`);
    }
    rmSync(work, { recursive: true, force: true });
    return 0;
  }

  // 3. The origin's clock: this machine's offset from it, measured again while waiting and after
  //    each connection ends (a test moves the origin's clock; a real one drifts).
  let offset: ClockOffset = await measureOffset(api);
  const originNow = () => clock.now() + offset.offsetMs;
  let windowFrom = Date.parse(d.connectableWindow.from);
  let windowTo = Date.parse(d.connectableWindow.to);
  const remeasure = async () => {
    try {
      offset = await measureOffset(api, 1);
    } catch {
      // the origin did not answer: keep the last offset
    }
  };
  if (originNow() >= windowTo) {
    rmSync(work, { recursive: true, force: true });
    throw new AppError('window_closed', `The connectable window closed at ${localTime(windowTo, zone, 'yyyy-MM-dd HH:mm:ss')} ${zone} (origin clock): nothing sent.`, 409);
  }

  // The broadcaster's status needs its sign-in; without it, only what the settings and /time tell.
  let statusNote: string | null = api.token ? null : `not signed in to ${origin}: on-air state, bitrate and viewers need \`cascade login --origin ${origin}\``;
  let status: Status | null = null;
  const readStatus = async () => {
    if (statusNote && !api.token) return;
    try {
      status = await api.get<Status>(`/live/bookings/${encodeURIComponent(d.bookingId)}/status`);
      statusNote = null;
      windowTo = Date.parse(status.windowEnd); // an extension moves it
      offset = { ...offset, offsetMs: status.epochMs - clock.now() };
    } catch (err) {
      status = null;
      statusNote = err instanceof AppError ? `the status is not available (${err.code}): ${err.message}` : `the status is not available: ${(err as Error).message}`;
    }
  };

  // ---- input: keys on a terminal, line commands otherwise ----
  let ff: ChildProcess | null = null;
  let stopping: 'quit' | 'window' | null = null;
  let wake: (() => void) | null = null;
  const stopped = new AbortController();
  let applauseTimer: NodeJS.Timeout | null = null;
  const send = (line: string) => {
    if (ff?.stdin?.writable) ff.stdin.write(ffmpegCommandInput(line));
  };
  const quitFfmpeg = () => {
    if (!ff || ff.exitCode !== null) return;
    if (ff.stdin?.writable) ff.stdin.write('q');
    const p = ff;
    setTimeout(() => p.exitCode === null && p.signalCode === null && p.kill('SIGKILL'), 5000).unref();
  };
  const stop = (why: 'quit' | 'window') => {
    stopping ??= why;
    quitFfmpeg();
    stopped.abort();
    wake?.();
  };

  const run = async (c: BroadcastCommand) => {
    switch (c.kind) {
      case 'help':
        return event('help', tty ? KEYS_HELP : COMMANDS_HELP);
      case 'quit':
        event('quit', 'stopping: ffmpeg ends the stream');
        return stop('quit');
      case 'applause':
        send(applauseCommand(true));
        if (applauseTimer) clearTimeout(applauseTimer);
        applauseTimer = setTimeout(() => send(applauseCommand(false)), APPLAUSE_SECONDS * 1000);
        return event('applause', `applause (${APPLAUSE_SECONDS} s)`);
      case 'save':
        savePreset(presetsFile, c.name, effects);
        return event('saved', `preset "${c.name}" saved to ${presetsFile}: ${describeEffects(effects)}`, { preset: c.name, effects, file: presetsFile });
      case 'preset':
        return change(presetOf(loadPresets(presetsFile), c.name));
      case 'extend': {
        const id = encodeURIComponent(d.bookingId);
        // The end asked for, not a number of slots: a retry (a lost answer) extends once.
        const offer = await api.get<ExtensionOffer>(`/live/bookings/${id}/extension`);
        if (!offer.offered || !offer.until) throw new AppError('extension_not_offered', offer.reason, 409);
        const until = new Date(Date.parse(offer.until) + (c.slots - 1) * offer.slotMinutes * 60_000).toISOString();
        const r = await api.post<Record<string, unknown>>(`/live/bookings/${id}/extend`, { until });
        event('extended', `extension of ${c.slots} slot${c.slots === 1 ? '' : 's'} accepted`, { answer: r });
        return readStatus();
      }
      default:
        return change(applyCommand(effects, c));
    }
  };
  const change = (next: Effects) => {
    if (next.title !== null && next.title !== effects.title) writeTitle(next.title);
    for (const line of effectCommands(effects, next)) send(line);
    effects = next;
    event('effects', `effects: ${describeEffects(effects)}`, { effects });
  };
  const runSafely = (c: BroadcastCommand | null) => {
    if (c) run(c).catch((err) => event('command_refused', err instanceof AppError ? `refused (${err.code}): ${err.message}` : `refused: ${(err as Error).message}`, err instanceof AppError ? { code: err.code } : {}));
  };
  const stdin = process.stdin;
  let lines: ReturnType<typeof createInterface> | null = null;
  if (stdin.isTTY) {
    stdin.setRawMode(true);
    stdin.setEncoding('utf8');
    let naming: string | null = null; // after `s`: the preset's name being typed
    stdin.on('data', (chunk: string) => {
      for (const k of chunk) {
        if (naming !== null) {
          if (k === '\r' || k === '\n') {
            const name = naming;
            naming = null;
            try {
              runSafely({ kind: 'save', name: presetName(name) });
            } catch (err) {
              event('command_refused', (err as Error).message);
            }
          } else if (k === '\u007f') naming = naming.slice(0, -1);
          else if (k === '\u001b') naming = null;
          else naming += k;
          continue;
        }
        if (k === 's') {
          naming = '';
          process.stdout.write('save the effects as preset (name, Enter): ');
          continue;
        }
        runSafely(keyCommand(k, effects, d.title));
      }
    });
  } else {
    lines = createInterface({ input: stdin });
    lines.on('line', (line) => {
      try {
        runSafely(parseCommand(line, d.title));
      } catch (err) {
        event('command_refused', err instanceof AppError ? `refused (${err.code}): ${err.message}` : String(err), err instanceof AppError ? { code: err.code } : {});
      }
    });
  }
  // The clock's waits do not keep the process alive (systemClock unrefs them), nor does a stdin
  // that has ended: the broadcast does, until it is over.
  const keepAlive = setInterval(() => {}, 60_000);
  const onSignal = () => stop('quit');
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const cleanup = () => {
    if (applauseTimer) clearTimeout(applauseTimer);
    clearInterval(keepAlive);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    lines?.close();
    if (stdin.isTTY) stdin.setRawMode(false);
    stdin.pause();
    stdin.unref?.();
    rmSync(work, { recursive: true, force: true });
  };

  try {
    // 4. Wait for the window by the origin's clock, a countdown line a second.
    if (opts.wait && originNow() < windowFrom) {
      let shown = -1;
      while (!stopping && originNow() < windowFrom) {
        const left = Math.ceil((windowFrom - originNow()) / 1000);
        const text = `connecting in ${mmss(left)} … (the window opens at ${localTime(windowFrom, zone, 'HH:mm:ss')} ${zone}, origin clock)`;
        if (json) write(JSON.stringify({ type: 'waiting', opensInSeconds: left, windowOpens: d.connectableWindow.from, offsetMs: offset.offsetMs }));
        else if (tty) process.stdout.write(`\r${text}\x1b[K`);
        else if (shown < 0 || shown - left >= 10) write(text), (shown = left);
        await clock.sleepUntil(clock.now() + Math.min(1000, Math.max(50, windowFrom - originNow())), stopped.signal);
        await remeasure();
      }
      if (tty) process.stdout.write('\n');
      if (stopping) return 0;
    }

    // 5. Send; reconnect when the connection drops inside the window.
    let take = 0;
    let sendingKbps = 0;
    let drawn = 0;
    const show = () => {
      if (json) {
        write(JSON.stringify({ type: 'status', status, offsetMs: offset.offsetMs, sendingKbps, effects, take, note: statusNote }));
        return;
      }
      const out: string[] = status
        ? formatStatus(status, offset, zone, tty ? 'press e' : 'type "extend" (or "extend N")')
        : [
            `program   ${d.title} (${d.bookingId})`,
            `clock     origin ${localTime(originNow(), zone, 'yyyy-MM-dd HH:mm:ss')} ${zone} (measured from /time; offset ${offset.offsetMs} ms)`,
            `time      slot ends ${localTime(d.end, zone, 'HH:mm:ss')} · connection cut at ${localTime(windowTo, zone, 'HH:mm:ss')}`,
          ];
      if (statusNote) out.push(`note      ${statusNote}`);
      out.push(`sending   ${sendingKbps} kbit/s from this machine (take ${take}) · effects: ${describeEffects(effects)}`);
      out.push(tty ? KEYS_HELP : COMMANDS_HELP);
      if (tty && drawn) process.stdout.write(`\x1b[${drawn}A\x1b[J`);
      for (const l of out) write(l);
      if (!tty) write();
      drawn = out.length;
    };

    const ticker = (async () => {
      while (!stopped.signal.aborted) {
        await clock.sleepUntil(clock.now() + 1000, stopped.signal);
        if (stopped.signal.aborted) break;
        await readStatus();
        if (originNow() >= windowTo) {
          event('window_end', `the connectable window closed at ${localTime(windowTo, zone, 'HH:mm:ss')} ${zone}: stopping`);
          stop('window');
          break;
        }
        show();
      }
    })();
    while (!stopping) {
      take++;
      const args = argsFor(originNow() / 1000);
      event('connecting', `connecting to ${hideKey(d.ingest.rtmp.url, key)} (take ${take}; ${d.bitrateKbps} kbit/s; effects: ${describeEffects(effects)})`, { take });
      drawn = 0;
      const proc = spawn(ffmpegBinary(), args, { stdio: ['pipe', 'pipe', 'pipe'] });
      ff = proc;
      proc.stdin!.on('error', () => {}); // ffmpeg gone: the exit says why
      let stderr = '';
      let refusal: string | null = null;
      let onAir = false;
      createInterface({ input: proc.stderr! }).on('line', (line) => {
        if (/^Enter command:|^Command reply|^\s*$/.test(line)) return;
        stderr = (stderr + line + '\n').slice(-4000);
        const m = /Server error: (.*)$/.exec(line);
        if (m) refusal = m[1]!.trim();
        if (!json) process.stderr.write(`ffmpeg: ${line}\n`);
      });
      createInterface({ input: proc.stdout! }).on('line', (line) => {
        const b = /^bitrate=\s*([\d.]+)kbits\/s/.exec(line);
        if (b) sendingKbps = Math.round(Number(b[1]));
        if (line === 'progress=continue' && !onAir) {
          onAir = true;
          event('on_air', `on air: sending (take ${take})`, { take });
        }
      });
      const exit = await new Promise<{ code: number | null; signal: string | null; missing?: boolean }>((resolve) => {
        // A binary that does not start emits 'error' (and maybe no 'close'): settle on either.
        proc.on('error', (err) => resolve({ code: null, signal: null, missing: (err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'EACCES' }));
        proc.on('close', (code, signal) => resolve({ code, signal }));
      });
      ff = null;
      if (exit.missing) {
        throw new AppError('ffmpeg_missing', `ffmpeg does not run (${ffmpegBinary()}): install Debian's ffmpeg (apt-get install ffmpeg) or set FFMPEG.`, 500);
      }
      if (refusal) {
        throw new AppError('ingest_refused', `The origin refused the publish: ${refusal}`, 409);
      }
      if (stopping) break;
      await remeasure();
      await readStatus();
      if (originNow() >= windowTo) {
        event('window_end', `the connectable window closed at ${localTime(windowTo, zone, 'HH:mm:ss')} ${zone}: the broadcast is over`);
        stopping = 'window';
        break;
      }
      const last = stderr.trim().split('\n').pop() ?? '';
      event('dropped', `the connection dropped (ffmpeg exited with ${exit.code ?? exit.signal}${last ? `: ${last}` : ''}); reconnecting in ${RECONNECT_MS / 1000} s`, { code: exit.code });
      await new Promise<void>((r) => {
        wake = r;
        clock.sleepUntil(clock.now() + RECONNECT_MS, stopped.signal).then(r);
      });
      wake = null;
    }
    stopped.abort();
    await ticker;
    const why = stopping as 'quit' | 'window' | null; // set by the input handlers and the ticker
    event('ended', why === 'quit' ? 'broadcast stopped' : 'broadcast ended at the window’s end', { reason: why });
    return 0;
  } finally {
    stop('quit');
    cleanup();
  }
}
