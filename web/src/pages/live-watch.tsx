import { useEffect, useRef, useState } from 'preact/hooks';
import { api, ApiError } from '../api.ts';
import { Link } from '../components/common.tsx';
import { Field, FormError, Submit, useSubmit } from '../components/forms.tsx';
import { playLive, type LivePlayer } from '../lib/live-player.ts';
import { dayTime } from '../lib/time.ts';
import { currentPath } from '../router.ts';
import { session } from '../session.ts';
import type { Audience, Program, ViewerJoin } from '../types.ts';

// Watching a program (S3.11, S3.12; docs/live.md "Watching") on its page: Watch joins
// (POST /live/programs/:id/viewers, with the password for Password and Secret programs) and plays
// the session's playlist (lib/live-player.ts). A refusal is the API's sentence; a full channel says
// how many watch. When the session ends under the player (viewer_session_expired) the page joins
// again by itself with the password typed, kept in memory only. Leaving the page (or Stop) leaves
// the program (POST …/leave), so the place is free at once. The audience (GET …/audience, public)
// is polled every few seconds. When the program ends under the player (its slot is over: the
// session is let go and joining again answers program_over, or the playlist ends), the channel's
// filler plays in its place (S3.13 "viewers see the filler"), with a sentence saying so.

const AUDIENCE_EVERY_MS = 5000;
/** A session joined again by itself and refused sooner than this is refused for another reason: stop. */
const REJOIN_AFTER_MS = 5000;

/** The sentence for a refused join: the API's, with the figures of a full channel. */
export function refusalText(err: unknown): string {
  if (!(err instanceof ApiError)) return err instanceof Error ? err.message : String(err);
  const d = err.details;
  if (err.code === 'channel_full' && typeof d.capacity === 'number') {
    return `This channel is full (${d.viewers ?? d.capacity} of ${d.capacity} watching) — try again in a little while.`;
  }
  // "…it starts at 2026-06-15T09:00:00.000Z": the start in the viewer's own time.
  if (err.code === 'not_live' && typeof d.start === 'string') return err.message.replace(d.start, `${dayTime(d.start)} (your time)`);
  return err.message;
}

/** Leaves program `id` (the session `session`): a beacon, so it goes out even as the page closes. */
export function leaveProgram(id: string, session: string): void {
  const url = `/live/programs/${encodeURIComponent(id)}/leave?s=${encodeURIComponent(session)}`;
  if (!navigator.sendBeacon?.(url)) void fetch(url, { method: 'POST', keepalive: true }).catch(() => {});
}

export function WatchPanel({ program }: { program: Program }) {
  const id = program.id;
  const signedIn = !!session.value;
  const [password, setPassword] = useState('');
  const typed = useRef(''); // the password as joined with, for joining again by itself
  const [playlist, setPlaylist] = useState<string | null>(null);
  const [status, setStatus] = useState('');
  const [stopped, setStopped] = useState<string | null>(null);
  /** The program has ended: the channel's filler plays in its place. */
  const [filler, setFiller] = useState(false);
  const [seen, setSeen] = useState(0); // bumps the audience after a join or a leave
  const joined = useRef<{ session: string; at: number; again: boolean } | null>(null);
  const video = useRef<HTMLVideoElement>(null);
  const form = useSubmit(['password']);

  const leave = () => {
    const s = joined.current;
    joined.current = null;
    if (s) leaveProgram(id, s.session);
  };
  /** `again`: by itself, the session having ended under the player. */
  const join = async (again = false) => {
    const r = await api<ViewerJoin>('POST', `/live/programs/${encodeURIComponent(id)}/viewers`, program.needsPassword ? { password: typed.current } : {});
    joined.current = { session: r.session, at: Date.now(), again };
    setPlaylist(r.playlist);
    setStatus(`Joined: ${r.viewers} of ${r.capacity} watching. The stream starts in a moment…`);
    setSeen((n) => n + 1);
  };
  const watch = () =>
    form.run(async () => {
      typed.current = password;
      setStopped(null);
      setStatus('Joining…');
      try {
        await join();
      } catch (err) {
        setStatus('');
        if (err instanceof ApiError && (err.code === 'viewer_password_required' || err.code === 'wrong_password')) err.placedField = 'password';
        else if (err instanceof ApiError) throw new Error(refusalText(err));
        throw err;
      }
    });
  const stop = (why: string | null) => {
    leave();
    setFiller(false);
    setPlaylist(null);
    setStatus(why ? '' : 'Stopped.');
    setStopped(why);
    setSeen((n) => n + 1);
  };

  /** The slot is over: the channel's filler (public, no session) in the program's place. */
  const toFiller = () => {
    leave();
    setFiller(true);
    setStopped(null);
    setStatus(`The program has ended; ${program.channelName}’s filler is on.`);
    setPlaylist(`/live/channels/${encodeURIComponent(program.channelId)}/filler.m3u8`);
    setSeen((n) => n + 1);
  };

  // The player follows the playlist: a new session's playlist replaces the player's source.
  const player = useRef<LivePlayer | null>(null);
  useEffect(() => {
    if (!playlist || !video.current) return;
    if (player.current) return player.current.load(playlist);
    let gone = false;
    playLive(video.current, playlist, {
      expired: () => {
        const j = joined.current;
        // (None after pagehide: the page, back from the back-forward cache, joins again.)
        if (j?.again && Date.now() - j.at < REJOIN_AFTER_MS) return stop('The stream refuses this viewer session. Press Watch to join again.');
        setStatus('Your viewer session ended; joining again…');
        join(true).catch((err) => (err instanceof ApiError && err.code === 'program_over' ? toFiller() : stop(refusalText(err))));
      },
      ended: () => {
        if (joined.current) toFiller();
      },
      fatal: (message) => {
        console.error(`live player: ${message}`);
        stop(message);
      },
    }).then(
      (p) => (gone ? p.destroy() : (player.current = p)),
      (err) => stop(`The player could not be loaded (${(err as Error).message}); reload to try again.`),
    );
    return () => void (gone = true);
  }, [playlist]);
  useEffect(() => {
    if (playlist) return;
    player.current?.destroy();
    player.current = null;
  }, [playlist]);

  // Leaving the page leaves the program.
  useEffect(() => {
    addEventListener('pagehide', leave);
    return () => {
      removeEventListener('pagehide', leave);
      player.current?.destroy();
      player.current = null;
      leave();
    };
  }, []);

  const canWatch = program.status !== 'cancelled' && program.status !== 'done';
  return (
    <section class="panel watch" aria-labelledby="watch-h">
      <h2 id="watch-h">Watch</h2>
      <AudienceLine programId={id} refresh={seen} />
      {!signedIn && (
        <p>
          <Link to={`/signin?next=${encodeURIComponent(currentPath())}`}>Sign in</Link> to watch: viewers join with their account.
        </p>
      )}
      {signedIn && canWatch && !playlist && (
        <form
          class="narrow"
          noValidate
          onSubmit={(e) => {
            e.preventDefault();
            void watch();
          }}
        >
          {program.needsPassword && (
            <Field label="Program password" name="password" type="password" autocomplete="off" maxLength={100} value={password} error={form.fieldErrors.password} onInput={(e) => setPassword(e.currentTarget.value)} />
          )}
          <Submit busy={form.busy}>Watch</Submit>
        </form>
      )}
      {signedIn && !canWatch && <p class="muted">This program is {program.status === 'done' ? 'over' : 'cancelled'}.</p>}
      <FormError message={form.error ?? stopped} />
      <p role="status" aria-live="polite" class="watch-status">
        {status}
      </p>
      <div class="player" hidden={!playlist}>
        <video
          ref={video}
          controls
          muted
          autoplay
          playsInline
          aria-label={filler ? `${program.channelName}: filler` : `Live: ${program.title}`}
          onPlaying={() => !filler && setStatus('Playing live.')}
        />
        <button type="button" class="secondary" onClick={() => stop(null)}>
          {filler ? 'Stop the filler' : 'Stop watching'}
        </button>
      </div>
    </section>
  );
}

/** Viewers now of the channel's capacity, polled (public). */
function AudienceLine({ programId, refresh }: { programId: string; refresh: number }) {
  const [a, setA] = useState<Audience | null>(null);
  useEffect(() => {
    let live = true;
    const read = () =>
      api<Audience>('GET', `/live/programs/${encodeURIComponent(programId)}/audience`, undefined, { anonymous: true }).then(
        (x) => live && setA(x),
        () => {},
      );
    void read();
    const timer = setInterval(read, AUDIENCE_EVERY_MS);
    return () => {
      live = false;
      clearInterval(timer);
    };
  }, [programId, refresh]);
  if (!a) return null;
  return (
    <p data-testid="audience">
      {a.onAir ? <span class="tag ok">on air</span> : <span class="tag">not on air</span>} <strong>{a.viewers}</strong> watching now of {a.capacity} · peak {a.peak} · {a.total} in all
    </p>
  );
}
