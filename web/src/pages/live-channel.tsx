import { useEffect, useRef, useState } from 'preact/hooks';
import { api, ApiError, qs } from '../api.ts';
import { ErrorNote, Link, Page, useLoad } from '../components/common.tsx';
import { Field, FormError, Submit, useSubmit } from '../components/forms.tsx';
import { playLive, type LivePlayer, type PlayerEvents } from '../lib/live-player.ts';
import { browserZone, hm } from '../lib/time.ts';
import { currentPath, type Match } from '../router.ts';
import { session } from '../session.ts';
import type { Channel, ChannelNow, ChannelProgram, Program, ViewerJoin } from '../types.ts';
import { leaveProgram, refusalText } from './live-watch.tsx';

// A channel's page (S3.14; docs/live.md "Filler and the channel's URL"; docs/web.md "Live"):
// `#/channels/<id>` plays what the channel carries. It asks the origin every 2 s what that is
// (GET /live/channels/:id/now, public: the origin's clock decides, never this browser's): while no
// program of the slot is on air, the channel's filler (its public looping playlist); when one is,
// the page joins it (POST /live/programs/:id/viewers — a Password program asks for its password)
// and plays the session's playlist in the same player. When the program's playlist ends, its
// session is let go (the slot's end: program_over) or "now" no longer names it, the page goes
// back to the filler and leaves the program (POST …/leave). A refusal (channel_full, …) is the
// API's sentence, and the filler keeps playing.

const NOW_EVERY_MS = 2000;

type Playing = { kind: 'filler' } | { kind: 'program'; program: ChannelProgram };

export function ChannelPage({ params }: Match) {
  const id = params.id;
  const channel = useLoad(() => api<Channel>('GET', `/live/channels/${encodeURIComponent(id)}`, undefined, { anonymous: true }), [id]);
  const [now, setNow] = useState<ChannelNow | null>(null);
  const [nowError, setNowError] = useState<string | null>(null);
  const [playing, setPlaying] = useState<Playing | null>(null);
  const [note, setNote] = useState<string | null>(null);
  /** A Password program on air, waiting for its password. */
  const [asking, setAsking] = useState<ChannelProgram | null>(null);
  /** A program refused (channel full, …): joined again only when asked. */
  const [refused, setRefused] = useState<ChannelProgram | null>(null);
  const [password, setPassword] = useState('');
  const form = useSubmit(['password']);
  const video = useRef<HTMLVideoElement>(null);

  // What the player does, kept in refs: the poll and the player's events act on the latest.
  const player = useRef<LivePlayer | null>(null);
  const starting = useRef(false);
  const source = useRef<string | null>(null);
  const joined = useRef<{ program: ChannelProgram; session: string } | null>(null);
  const joining = useRef(false);
  /** Programs not joined again by themselves: refused, or ended under the player. */
  const skip = useRef(new Set<string>());
  /** Passwords typed, by program (memory only). */
  const passwords = useRef(new Map<string, string>());
  const last = useRef<ChannelNow | null>(null);
  const gone = useRef(false);

  const fillerUrl = `/live/channels/${encodeURIComponent(id)}/filler.m3u8`;

  const show = (url: string) => {
    if (source.current === url) return;
    source.current = url;
    if (player.current) return player.current.load(url);
    if (starting.current || !video.current) return;
    starting.current = true;
    playLive(video.current, url, events).then(
      (p) => {
        starting.current = false;
        if (gone.current) return p.destroy();
        player.current = p;
        if (source.current !== url) p.load(source.current!);
      },
      (err) => {
        starting.current = false;
        source.current = null;
        setNote(`The player could not be loaded (${(err as Error).message}); reload to try again.`);
      },
    );
  };

  const leave = () => {
    const j = joined.current;
    joined.current = null;
    if (j) leaveProgram(j.program.id, j.session);
  };

  /** Back to the filler, leaving the program (`why`: the sentence shown; undefined keeps the note). */
  const toFiller = (why?: string | null) => {
    leave();
    setPlaying({ kind: 'filler' });
    if (why !== undefined) setNote(why);
    show(fillerUrl);
  };

  const join = async (p: ChannelProgram) => {
    const r = await api<ViewerJoin>('POST', `/live/programs/${encodeURIComponent(p.id)}/viewers`, p.openLevel === 'public' ? {} : { password: passwords.current.get(p.id) ?? '' });
    if (gone.current) return leaveProgram(p.id, r.session);
    joined.current = { program: p, session: r.session };
    setPlaying({ kind: 'program', program: p });
    setNote(null);
    setAsking(null);
    setRefused(null);
    show(r.playlist);
  };

  /** Joins `p` by itself; a refusal is said and the filler goes on. */
  const tryJoin = async (p: ChannelProgram) => {
    if (joining.current) return;
    joining.current = true;
    try {
      await join(p);
    } catch (err) {
      if (err instanceof ApiError && (err.code === 'viewer_password_required' || err.code === 'wrong_password')) {
        passwords.current.delete(p.id);
        setAsking(p);
      } else {
        skip.current.add(p.id);
        setRefused(p);
        setNote(refusalText(err));
      }
    } finally {
      joining.current = false;
    }
  };

  const ended = (p: ChannelProgram) => {
    skip.current.add(p.id);
    toFiller(`“${p.title}” has ended; the filler is on.`);
  };

  const events: PlayerEvents = {
    expired: () => {
      const j = joined.current;
      if (!j) return;
      // The session was let go: at the slot's end (program_over) back to the filler; otherwise join again.
      joined.current = null;
      join(j.program).catch((err) => {
        if (err instanceof ApiError && err.code === 'program_over') return ended(j.program);
        skip.current.add(j.program.id);
        toFiller(refusalText(err));
      });
    },
    fatal: (message) => {
      console.error(`channel player: ${message}`);
      const j = joined.current;
      if (j) {
        skip.current.add(j.program.id);
        return toFiller(`“${j.program.title}” stopped playing (${message.replace(/ Press Watch to try again\.$/, '')}); the filler is on.`);
      }
      source.current = null;
      setNote(message.replace(/Press Watch to try again\./, 'Reload to try again.'));
    },
    ended: () => {
      const j = joined.current;
      if (j) ended(j.program);
    },
  };

  /** What to play, from the origin's "now". */
  const decide = (n: ChannelNow) => {
    const p = n.program?.onAir ? n.program : null;
    const j = joined.current;
    if (j && j.program.id !== p?.id) {
      if (n.program?.id === j.program.id) toFiller(`“${j.program.title}” is off air; the filler is on.`);
      else ended(j.program);
    }
    if (!p) {
      setAsking(null);
      if (!joined.current) {
        setPlaying((cur) => (cur?.kind === 'filler' ? cur : { kind: 'filler' }));
        show(fillerUrl);
      }
      return;
    }
    if (joined.current?.program.id === p.id) return;
    show(fillerUrl);
    setPlaying((cur) => cur ?? { kind: 'filler' });
    if (!session.value || skip.current.has(p.id) || joining.current) return;
    if (p.openLevel !== 'public' && !passwords.current.has(p.id)) return setAsking(p);
    void tryJoin(p);
  };

  useEffect(() => {
    gone.current = false;
    let timer: ReturnType<typeof setTimeout> | null = null;
    const tick = async () => {
      try {
        const n = await api<ChannelNow>('GET', `/live/channels/${encodeURIComponent(id)}/now`, undefined, { anonymous: true });
        if (gone.current) return;
        last.current = n;
        setNow(n);
        setNowError(null);
        decide(n);
      } catch (err) {
        if (!gone.current) setNowError(err instanceof Error ? err.message : String(err));
      }
      if (!gone.current) timer = setTimeout(tick, NOW_EVERY_MS);
    };
    void tick();
    addEventListener('pagehide', leave);
    return () => {
      gone.current = true;
      if (timer) clearTimeout(timer);
      removeEventListener('pagehide', leave);
      player.current?.destroy();
      player.current = null;
      source.current = null;
      leave();
    };
  }, [id]);

  const submitPassword = () =>
    form.run(async () => {
      const p = asking;
      if (!p) return;
      passwords.current.set(p.id, password);
      try {
        await join(p);
      } catch (err) {
        if (err instanceof ApiError && (err.code === 'viewer_password_required' || err.code === 'wrong_password')) {
          passwords.current.delete(p.id);
          err.placedField = 'password';
        } else if (err instanceof ApiError) {
          skip.current.add(p.id);
          setAsking(null);
          setRefused(p);
          setNote(refusalText(err));
          return;
        }
        throw err;
      }
    });
  const tryAgain = () => {
    const p = refused;
    if (!p) return;
    skip.current.delete(p.id);
    setRefused(null);
    setNote(null);
    if (last.current) decide(last.current);
  };

  const name = channel.data?.name ?? 'Channel';
  const onAirProgram = now?.program?.onAir ? now.program : null;
  return (
    <Page title={channel.data ? channel.data.name : 'Channel'}>
      <ErrorNote message={channel.error} />
      <section class="panel watch" aria-labelledby="air-h">
        <h2 id="air-h">On the channel</h2>
        <p data-testid="playing" role="status" aria-live="polite" class="on-air-line">
          {playing?.kind === 'program' ? (
            <>
              <span class="tag ok">live</span> Live: {playing.program.title}
            </>
          ) : playing?.kind === 'filler' ? (
            <>
              <span class="tag">filler</span> Filler
            </>
          ) : (
            'Tuning in…'
          )}
        </p>
        {now && <p data-testid="now-line">{nowLine(now, playing)}</p>}
        <ErrorNote message={nowError} />
        {onAirProgram && !session.value && (
          <p>
            <Link to={`/signin?next=${encodeURIComponent(currentPath())}`}>Sign in</Link> to watch “{onAirProgram.title}”: viewers join with their account. The filler plays meanwhile.
          </p>
        )}
        {asking && !joined.current && (
          <form
            class="narrow"
            noValidate
            onSubmit={(e) => {
              e.preventDefault();
              void submitPassword();
            }}
          >
            <p>“{asking.title}” is on air and needs its password.</p>
            <Field label="Program password" name="password" type="password" autocomplete="off" maxLength={100} value={password} error={form.fieldErrors.password} onInput={(e) => setPassword(e.currentTarget.value)} />
            <Submit busy={form.busy}>Watch</Submit>
          </form>
        )}
        <FormError message={form.error ?? note} />
        {refused && onAirProgram?.id === refused.id && (
          <p>
            <button type="button" class="secondary" onClick={tryAgain}>
              Try “{refused.title}” again
            </button>
          </p>
        )}
        <div class="player">
          <video ref={video} controls muted autoplay playsInline aria-label={playing?.kind === 'program' ? `Live: ${playing.program.title}` : `${name}: filler`} />
        </div>
      </section>
      <TodayLine channelId={id} name={name} refresh={`${now?.program?.id}|${now?.program?.end}|${now?.next?.id}`} />
    </Page>
  );
}

function nowLine(n: ChannelNow, playing: Playing | null): string {
  const next = n.next ? `next: ${n.next.title} at ${hm(n.next.start)}` : 'no program in the next 24 hours';
  if (playing?.kind === 'program') {
    // The slot's end as the origin says now (an extension moves it).
    const p = n.program?.id === playing.program.id ? n.program : playing.program;
    return `Now: ${p.title}, until ${hm(p.end)} — ${next}`;
  }
  if (n.program) return `Now: filler — “${n.program.title}” has the slot until ${hm(n.program.end)}${n.program.onAir ? '' : ' (not on air)'} — ${next}`;
  return `Now: filler — ${next}`;
}

/** Today's programs on the channel (GET /live/today, public): the channel's guide line. */
function TodayLine({ channelId, name, refresh }: { channelId: string; name: string; refresh: string }) {
  const zone = browserZone();
  const today = useLoad(() => api<{ date: string; items: Program[] }>('GET', `/live/today${qs({ tz: zone })}`, undefined, { anonymous: true }), [zone, refresh]);
  const items = today.data?.items.filter((p) => p.channelId === channelId) ?? [];
  return (
    <section aria-labelledby="today-h">
      <h2 id="today-h">Today on {name}</h2>
      <ErrorNote message={today.error} />
      {today.data && items.length === 0 && <p class="muted">No program today; the filler plays all day.</p>}
      {items.length > 0 && (
        <p data-testid="guide-line" class="guide-line">
          {items.map((p, i) => (
            <span key={p.id}>
              {i > 0 && ' · '}
              <span class="program-time">
                {hm(p.start)}–{hm(p.end)}
              </span>{' '}
              <Link to={`/live/${p.id}`}>{p.title}</Link>
              {p.when === 'on_air' && <span class="tag ok">on air</span>}
            </span>
          ))}
        </p>
      )}
      <p>
        <Link to="/live">The program guide</Link>
      </p>
    </section>
  );
}
