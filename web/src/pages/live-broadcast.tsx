import { createParser } from 'eventsource-parser';
import { useEffect, useState } from 'preact/hooks';
import { api, apiStream, ApiError } from '../api.ts';
import { ErrorNote, Link, Loading, Page } from '../components/common.tsx';
import { FormError, useSubmit } from '../components/forms.tsx';
import { money } from '../format.ts';
import { clockTime, dayTimeSeconds, hm, hms, offsetWords } from '../lib/time.ts';
import type { Match } from '../router.ts';
import type { BroadcastStatus, ExtendResult, ExtensionOffer } from '../types.ts';
import { STATUS_WORDS } from './live-mine.tsx';

// The broadcaster's live dashboard (S3.10; docs/live.md "What the broadcaster sees"), for the
// booking's owner (or an operator): the origin pushes its figures once a second as server-sent
// events (GET /live/bookings/:id/status/events, read with fetch, as it needs the account's token).
// Every figure is the origin's, as of its last event: its clock, elapsed time and time to the
// slot's end, the bitrate received against the channel's, the viewers. This browser's clock is
// only compared with it (the offset at each event's receipt), never used in its place.
// S3.13: whether what is received reaches viewers (before the start / on / stopped at the slot's
// end, the connection staying open until the window's end), and the extension offer of each event:
// its sentence, and when offered a button that buys the next slot (POST …/extend with the offer's
// `until`, so a retry charges nothing); the new end shows with the next event.

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
            <dt>Distribution</dt>
            <dd data-testid="distribution">{distributionText(s)}</dd>
            <dt>Viewers</dt>
            <dd data-testid="viewers">
              <strong>{s.viewers.now}</strong> now of {s.viewers.capacity} · peak {s.viewers.peak} · total {s.viewers.total}
            </dd>
          </dl>
          <ExtensionPanel bookingId={params.id} offer={s.extension} />
          <p>
            <Link to={`/live/${s.programId}`}>Program page</Link> · <Link to={`/channels/${s.channel.id}`}>Channel page</Link> · <Link to="/live/mine">My channel</Link>
          </p>
        </>
      )}
    </Page>
  );
}

const clockText = (ms: number) => clockTime(Math.ceil(ms / 1000));

/** S3.13: what becomes of what the broadcaster sends, by the origin's clock. */
function distributionText(s: BroadcastStatus): string {
  if (s.distribution === 'before_start') return `Not yet: viewers see the channel’s filler until the start at ${hms(s.start)}.`;
  if (s.distribution === 'on') return `On: viewers receive what you send until the slot ends at ${hms(s.end)}.`;
  return s.ingest.live
    ? `Stopped at the slot end (${hms(s.end)}): what you still send reaches no one; viewers see the filler. The connection is cut at ${hms(s.windowEnd)}.`
    : `Stopped at the slot end (${hms(s.end)}); viewers see the filler.`;
}

/** The extension offer of the last status event, and its button (S3.13). */
function ExtensionPanel({ bookingId, offer }: { bookingId: string; offer: ExtensionOffer }) {
  const form = useSubmit();
  const [done, setDone] = useState<string | null>(null);
  const extend = (until: string) =>
    form.run(async () => {
      setDone(null);
      const r = await api<ExtendResult>('POST', `/live/bookings/${encodeURIComponent(bookingId)}/extend`, { until });
      setDone(r.already ? `Already extended to ${hm(r.end)}; nothing more charged.` : `Extended: the slot now ends at ${hm(r.end)}; charged ${money(r.charged)}.`);
    });
  return (
    <section class="panel" aria-labelledby="ext-h">
      <h2 id="ext-h">Extension</h2>
      <p data-testid="extension">{offer.reason}</p>
      {offer.offered && offer.until && (
        <p>
          <button type="button" disabled={form.busy} aria-busy={form.busy ? 'true' : undefined} onClick={() => void extend(offer.until!)}>
            Extend to {hm(offer.until)} (charge {money(offer.chargePerSlot)})
          </button>
        </p>
      )}
      <p role="status" aria-live="polite" data-testid="extension-result">
        {done}
      </p>
      <FormError message={form.error} />
    </section>
  );
}
