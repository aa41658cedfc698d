import { createParser } from 'eventsource-parser';
import { useEffect, useState } from 'preact/hooks';
import { apiStream, ApiError } from '../api.ts';
import { ErrorNote, Link, Loading, Page } from '../components/common.tsx';
import { clockTime, dayTimeSeconds, hms, offsetWords } from '../lib/time.ts';
import type { Match } from '../router.ts';
import type { BroadcastStatus } from '../types.ts';
import { STATUS_WORDS } from './live-mine.tsx';

// The broadcaster's live dashboard (S3.10; docs/live.md "What the broadcaster sees"), for the
// booking's owner (or an operator): the origin pushes its figures once a second as server-sent
// events (GET /live/bookings/:id/status/events, read with fetch, as it needs the account's token).
// Every figure is the origin's, as of its last event: its clock, elapsed time and time to the
// slot's end, the bitrate received against the channel's, the viewers. This browser's clock is
// only compared with it (the offset at each event's receipt), never used in its place.

/** Waiting before opening the stream again after it broke. */
const RETRY_MS = 2000;

interface Received {
  status: BroadcastStatus;
  /** This browser's clock − the origin's, when the event arrived (ms). */
  aheadMs: number;
}

/** The status events of booking `id`: the last one, and whether the stream is open. */
function useStatusEvents(id: string): { last: Received | null; connected: boolean; error: string | null } {
  const [last, setLast] = useState<Received | null>(null);
  const [connected, setConnected] = useState(false);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    const stop = new AbortController();
    const parser = createParser({
      onEvent: (m) => {
        if (m.event !== 'status') return;
        const status = JSON.parse(m.data) as BroadcastStatus;
        setLast({ status, aheadMs: Date.now() - status.epochMs });
      },
    });
    (async () => {
      while (!stop.signal.aborted) {
        try {
          const res = await apiStream(`/live/bookings/${encodeURIComponent(id)}/status/events`, { signal: stop.signal });
          setConnected(true);
          setError(null);
          parser.reset();
          const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
          for (let r = await reader.read(); !r.done; r = await reader.read()) parser.feed(r.value);
        } catch (err) {
          if (stop.signal.aborted) return;
          // Not the owner's booking, or signed out: asking again will not help.
          if (err instanceof ApiError && err.status >= 400 && err.status < 500) {
            setConnected(false);
            return setError(err.message);
          }
        }
        setConnected(false);
        await new Promise((r) => setTimeout(r, RETRY_MS));
      }
    })();
    return () => stop.abort();
  }, [id]);
  return { last, connected, error };
}

export function BroadcastPage({ params }: Match) {
  const { last, connected, error } = useStatusEvents(params.id);
  const s = last?.status;
  return (
    <Page title={s ? `Live dashboard: ${s.title}` : 'Live dashboard'}>
      <ErrorNote message={error} />
      {!s && !error && <Loading what="the live figures" />}
      {s && last && (
        <>
          <p role="status" aria-live="polite" class="on-air-line">
            {s.ingest.live ? (
              <>
                <span class="tag ok">on air</span> since {hms(s.ingest.since!)} (take {s.ingest.take})
              </>
            ) : (
              <>
                <span class="tag">not on air</span> {s.status === 'done' ? 'The program is over.' : `Nothing is being received (${STATUS_WORDS[s.status]}).`}
              </>
            )}{' '}
            {!connected && <span class="muted">Connection to the origin lost; reconnecting…</span>}
          </p>
          <dl class="facts broadcast-facts">
            <dt>Channel</dt>
            <dd data-testid="channel">
              {s.channel.name} <span class="muted">(capacity {s.channel.capacity} viewers, {s.channel.bitrateKbps} kbit/s)</span>
            </dd>
            <dt>Origin clock</dt>
            <dd data-testid="origin-clock">{dayTimeSeconds(s.epochMs)}</dd>
            <dt>Your clock</dt>
            <dd data-testid="clock-offset">
              Your clock is {offsetWords(last.aheadMs)} the origin’s. Times here follow the origin’s clock; your encoder should too.
            </dd>
            <dt>Time</dt>
            <dd data-testid="time">
              {Date.parse(s.start) > s.epochMs ? `starts in ${clockText(Date.parse(s.start) - s.epochMs)}` : `elapsed ${clockTime(s.elapsedSeconds)}`} · slot ends {hms(s.end)} (in {clockTime(s.remainingSeconds)}) · connection cut at {hms(s.windowEnd)}
            </dd>
            <dt>Bitrate</dt>
            <dd data-testid="bitrate">
              {s.ingest.bitrateKbps} kbit/s received; the channel carries {s.channel.bitrateKbps} kbit/s
            </dd>
            <dt>Viewers</dt>
            <dd data-testid="viewers">
              <strong>{s.viewers.now}</strong> now of {s.viewers.capacity} · peak {s.viewers.peak} · total {s.viewers.total}
            </dd>
          </dl>
          <p>
            <Link to={`/live/${s.programId}`}>Program page</Link> · <Link to="/live/mine">My channel</Link>
          </p>
        </>
      )}
    </Page>
  );
}

const clockText = (ms: number) => clockTime(Math.ceil(ms / 1000));
