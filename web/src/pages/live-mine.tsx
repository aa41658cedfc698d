import { useEffect, useRef, useState } from 'preact/hooks';
import { api } from '../api.ts';
import { ErrorNote, Link, Loading, Page, useLoad } from '../components/common.tsx';
import { CountedField } from '../components/counted.tsx';
import { Field, FormError, Submit, useSubmit } from '../components/forms.tsx';
import { money } from '../format.ts';
import { measureOrigin, useOriginNow } from '../lib/origin-clock.ts';
import { dayTime, dayTimeSeconds, duration, timeRange } from '../lib/time.ts';
import { placeRefusal } from '../refusals.ts';
import type { Booking, BookingStatus, Recording, SignedSettings } from '../types.ts';

// My channel (S3.17; docs/live.md "Guide and my channel"): my bookings (GET /live/bookings) with
// their status, local times, charge, a countdown to the reconfirmation deadline by the origin's
// clock, the past viewer peak; Reconfirm with the reservation ID (POST /live/reconfirm: the signed
// settings as settings.json and the ingest address), Change (PATCH), Cancel (POST …/cancel),
// History; a link to the live dashboard (live-broadcast.tsx) of a confirmed or live booking. A
// private calendar feed (POST /me/calendar-feed). S3.10: the origin's clock and this browser's
// offset from it (GET /time).

export const STATUS_WORDS: Record<BookingStatus, string> = {
  awaiting_reconfirmation: 'awaiting reconfirmation',
  confirmed: 'confirmed',
  live: 'live',
  done: 'done',
  cancelled: 'cancelled',
};
const STATUS_TAG: Record<BookingStatus, string> = { awaiting_reconfirmation: 'warn', confirmed: 'ok', live: 'ok', done: '', cancelled: '' };

export function MyChannelPage() {
  const list = useLoad(() => api<{ items: Booking[] }>('GET', '/live/bookings'));
  const recordings = useLoad(() => api<{ items: Recording[] }>('GET', '/live/recordings'));
  const items = list.data?.items ?? [];
  const recorded = new Set((recordings.data?.items ?? []).map((r) => r.programId));
  const changed = () => {
    list.reload();
    recordings.reload();
  };
  return (
    <Page title="My channel">
      <OriginClock />
      <p>
        Book slots on the <Link to="/live/calendar">live calendar</Link>; reconfirm each booking here before its deadline with the reservation ID you were e-mailed.
      </p>
      <CalendarFeed />
      <h2 id="bookings-h">My bookings</h2>
      <ErrorNote message={list.error} />
      {list.loading && !list.data && <Loading what="your bookings" />}
      {list.data && items.length === 0 && <p class="muted">No booking yet.</p>}
      {items.length > 0 && (
        <ul class="bookings" aria-labelledby="bookings-h">
          {items.map((b) => (
            <BookingCard key={b.id} booking={b} recorded={recorded.has(b.id)} onChanged={changed} />
          ))}
        </ul>
      )}
      <Recordings load={recordings} />
    </Page>
  );
}

const RECORDING_WORDS: Record<Recording['status'], string> = {
  requested: 'to be made when the program is over',
  making: 'being made',
  made: 'published',
  failed: 'failed',
  empty: 'nothing was broadcast',
};

/** S3.15: my programs' recordings; a made one is ordinary content (its page, price, download). */
function Recordings({ load }: { load: { data?: { items: Recording[] } | null; error?: string | null; loading?: boolean } }) {
  const items = load.data?.items ?? [];
  return (
    <>
      <h2 id="recordings-h">My recordings</h2>
      <ErrorNote message={load.error ?? null} />
      {load.data && items.length === 0 && <p class="muted">No recording yet: press “Record” on a booking to have its program published as content when it is over.</p>}
      {items.length > 0 && (
        <ul class="recordings" aria-labelledby="recordings-h" data-testid="recordings">
          {items.map((r) => (
            <li key={r.programId} class="card" data-recording={r.programId}>
              <div class="card-body">
                <h3 class="card-title">
                  {r.title ?? r.programTitle} <span class={`tag ${r.status === 'made' ? 'ok' : r.status === 'failed' ? 'warn' : ''}`}>{RECORDING_WORDS[r.status]}</span>
                </h3>
                <p class="meta">
                  {timeRange(r.programStart, r.programEnd)} · price {money(r.price)}
                  {r.contentId && (
                    <>
                      {' '}
                      · <Link to={`/content/${r.contentId}`}>Content page</Link>
                    </>
                  )}
                </p>
                {r.error && <p class="meta">Why: {r.error}</p>}
              </div>
            </li>
          ))}
        </ul>
      )}
    </>
  );
}

/** S3.15: asks for the program to be recorded, at a price for the content it becomes. */
function RecordButton({ booking: b, onDone }: { booking: Booking; onDone: () => void }) {
  const [open, setOpen] = useState(false);
  const [price, setPrice] = useState('0');
  const form = useSubmit();
  if (!open) {
    return (
      <button type="button" class="secondary" onClick={() => setOpen(true)}>
        Record<span class="visually-hidden"> {b.title}</span>
      </button>
    );
  }
  return (
    <form
      class="inline"
      onSubmit={(e) => {
        e.preventDefault();
        form.run(async () => {
          await api('POST', `/live/bookings/${encodeURIComponent(b.id)}/recording`, { price: Number(price) });
          setOpen(false);
          onDone();
        });
      }}
    >
      <Field label="Price of the recording (minor units)" name={`price-${b.id}`} type="number" min={0} step={1} value={price} onInput={(e: Event) => setPrice((e.target as HTMLInputElement).value)} />
      <FormError message={form.error} />
      <Submit busy={form.busy}>Record this program</Submit>
    </form>
  );
}

/** S3.10: the origin's clock, ticking, and how far this browser's clock is from it. */
function OriginClock() {
  const { now, reading, error } = useOriginNow(1000);
  const [busy, setBusy] = useState(false);
  if (error) return <ErrorNote message={`The origin’s clock could not be read: ${error}`} />;
  if (!reading || now === null) return <Loading what="the origin’s clock" />;
  const off = reading.offsetMs;
  const words = Math.abs(off) < 1000 ? 'in step with it (within a second)' : `${duration(Math.abs(off))} ${off > 0 ? 'behind' : 'ahead of'} it`;
  return (
    <div class="panel clock" aria-labelledby="clock-h">
      <h2 id="clock-h">Origin clock</h2>
      <p>
        <strong class="clock-now" data-testid="origin-clock">
          {dayTimeSeconds(now)}
        </strong>{' '}
        <span class="muted">(your time zone)</span>
      </p>
      <p data-testid="clock-offset">
        This browser’s clock is {words} (offset {off >= 0 ? '+' : '−'}
        {Math.round(Math.abs(off))} ms, round trip {Math.round(reading.roundTripMs)} ms). Deadlines and countdowns here follow the origin’s clock; your encoder should too.{' '}
        <button
          type="button"
          class="link"
          disabled={busy}
          onClick={() => {
            setBusy(true);
            measureOrigin(true).finally(() => setBusy(false));
          }}
        >
          Measure again
        </button>
      </p>
    </div>
  );
}

function CalendarFeed() {
  const [url, setUrl] = useState<string | null>(null);
  const form = useSubmit();
  return (
    <div class="feed">
      <button
        type="button"
        class="secondary"
        disabled={form.busy}
        onClick={() =>
          form.run(async () => {
            const r = await api<{ url: string }>('POST', '/me/calendar-feed');
            setUrl(r.url);
          })
        }
      >
        {url ? 'New calendar feed address' : 'Calendar feed'}
      </button>
      <FormError message={form.error} />
      {url && (
        <p role="status">
          Subscribe to this address in your calendar app (it is private; asking again replaces it): <code class="id" data-testid="feed-url">{url}</code>
        </p>
      )}
    </div>
  );
}

function BookingCard({ booking: b, recorded, onChanged }: { booking: Booking; recorded: boolean; onChanged: () => void }) {
  const [open, setOpen] = useState<'reconfirm' | 'change' | null>(null);
  const { now } = useOriginNow(b.status === 'awaiting_reconfirmation' ? 1000 : 0);
  const hId = `bk-${b.id}`;
  const upcoming = b.status === 'awaiting_reconfirmation' || b.status === 'confirmed';
  const left = now !== null ? Date.parse(b.deadline) - now : null;
  return (
    <li class="booking card" data-booking={b.id}>
      <div class="card-body">
        <h3 id={hId} class="card-title">
          {b.title} <span class={`tag ${STATUS_TAG[b.status]}`}>{STATUS_WORDS[b.status]}</span>
        </h3>
        <p class="meta">
          {timeRange(b.start, b.end)} · {b.channelName} · {b.slots} slot{b.slots === 1 ? '' : 's'} · {b.openLevel}
        </p>
        <p class="meta">
          {b.charged ? (
            <>Charged {money(b.charge)}</>
          ) : (
            <>
              Charge {money(b.charge)} ({b.slots} × {money(b.tariffPerSlot)}){b.status === 'cancelled' ? ', not charged' : ', at reconfirmation'}
            </>
          )}
          {b.viewerPeak !== null && <> · Viewer peak {b.viewerPeak}</>}
          {b.cancelReason && <> · {b.cancelReason}</>}
        </p>
        {b.status === 'awaiting_reconfirmation' && (
          <p class="deadline">
            Reconfirm by <strong>{dayTime(b.deadline)}</strong>:{' '}
            <span data-testid="countdown">{left === null ? '…' : left > 0 ? `${duration(left)} left` : 'the deadline has passed'}</span>
          </p>
        )}
        <div class="actions">
          {b.status === 'awaiting_reconfirmation' && (
            <button type="button" aria-expanded={open === 'reconfirm'} onClick={() => setOpen(open === 'reconfirm' ? null : 'reconfirm')}>
              Reconfirm<span class="visually-hidden"> {b.title}</span>
            </button>
          )}
          {upcoming && (
            <button type="button" class="secondary" aria-expanded={open === 'change'} onClick={() => setOpen(open === 'change' ? null : 'change')}>
              Change<span class="visually-hidden"> {b.title}</span>
            </button>
          )}
          {upcoming && <CancelButton booking={b} onDone={onChanged} />}
          {(upcoming || b.status === 'live') && !recorded && <RecordButton booking={b} onDone={onChanged} />}
          <a class="small" href={`#/live/${b.id}`}>
            Program page
          </a>
          {(b.status === 'confirmed' || b.status === 'live') && (
            <Link to={`/live/${b.id}/broadcast`} class="small">
              Live dashboard<span class="visually-hidden"> of {b.title}</span>
            </Link>
          )}
        </div>
        {open === 'reconfirm' && <Reconfirm booking={b} onReconfirmed={onChanged} onClose={() => setOpen(null)} />}
        {open === 'change' && <Change booking={b} onDone={() => (setOpen(null), onChanged())} />}
        <details class="history">
          <summary>
            History<span class="visually-hidden"> of {b.title}</span> ({b.history.length})
          </summary>
          <ol>
            {b.history.map((h, i) => (
              <li key={i}>
                {dayTime(h.at)}: {h.event} ({STATUS_WORDS[h.status]}){h.detail ? ` — ${h.detail}` : ''}
              </li>
            ))}
          </ol>
        </details>
      </div>
    </li>
  );
}

interface Reconfirmed {
  booking: Booking;
  settings: SignedSettings;
  charged: number;
  already: boolean;
}

function Reconfirm({ booking, onReconfirmed, onClose }: { booking: Booking; onReconfirmed: () => void; onClose: () => void }) {
  const [id, setId] = useState('');
  const [done, setDone] = useState<Reconfirmed | null>(null);
  const [url, setUrl] = useState<string | null>(null);
  const form = useSubmit(['reservationId']);
  useEffect(() => document.getElementById('f-reservationId')?.focus(), []);
  useEffect(() => () => void (url && URL.revokeObjectURL(url)), [url]);
  if (done && url) {
    const rtmp = done.settings.document.ingest.rtmp;
    return (
      <div class="panel reconfirmed" role="status">
        <p>
          <strong>Reconfirmed.</strong> {done.already ? 'It was already reconfirmed; nothing more was charged.' : `Charged ${money(done.charged)}.`} The settings were also e-mailed to you.
        </p>
        <p>
          <a class="button" href={url} download="settings.json">
            Download settings.json
          </a>{' '}
          <span class="muted small">signed by the origin; check it with cascade reserve confirm</span>
        </p>
        <dl class="facts">
          <dt>Ingest URL</dt>
          <dd>
            <code class="id" data-testid="ingest-url">
              {rtmp.url}
            </code>
          </dd>
          <dt>Server</dt>
          <dd>
            <code class="id">{rtmp.server}</code>
          </dd>
          <dt>Stream key</dt>
          <dd>your reservation ID</dd>
          <dt>Connect</dt>
          <dd>{timeRange(done.settings.document.connectableWindow.from, done.settings.document.connectableWindow.to)}</dd>
        </dl>
        <button type="button" class="secondary" onClick={onClose}>
          Done
        </button>
      </div>
    );
  }
  return (
    <form
      class="narrow inline-panel"
      noValidate
      onSubmit={(e) => {
        e.preventDefault();
        form.run(async () => {
          let r: Reconfirmed;
          try {
            r = await api<Reconfirmed>('POST', '/live/reconfirm', { reservationId: id.trim() });
          } catch (err) {
            placeRefusal(err, { unknown_reservation: 'reservationId', deadline_passed: 'reservationId', booking_cancelled: 'reservationId', insufficient_balance: 'reservationId' });
          }
          setUrl(URL.createObjectURL(new Blob([JSON.stringify(r.settings, null, 2)], { type: 'application/json' })));
          setDone(r);
          onReconfirmed();
        });
      }}
    >
      <FormError message={form.error} />
      <Field label={`Reservation ID for “${booking.title}”`} name="reservationId" hint="rsv_…, from the e-mail sent when you booked." autocomplete="off" maxLength={100} value={id} error={form.fieldErrors.reservationId} onInput={(e) => setId(e.currentTarget.value)} />
      <Submit busy={form.busy}>Reconfirm and pay {money(booking.charge)}</Submit>
    </form>
  );
}

function Change({ booking: b, onDone }: { booking: Booking; onDone: () => void }) {
  const [v, setV] = useState({ title: b.title, genre: b.genre, outline: b.outline, detail: b.detail, discloseEmail: b.discloseEmail, discloseWebPage: b.discloseWebPage, password: '' });
  const form = useSubmit(['title', 'genre', 'outline', 'detail', 'password']);
  const set = (patch: Partial<typeof v>) => setV({ ...v, ...patch });
  return (
    <form
      class="inline-panel"
      noValidate
      aria-label={`Change ${b.title}`}
      onSubmit={(e) => {
        e.preventDefault();
        form.run(async () => {
          const patch: Record<string, unknown> = {};
          for (const k of ['title', 'genre', 'outline', 'detail', 'discloseEmail', 'discloseWebPage'] as const) if (v[k] !== b[k]) patch[k] = v[k];
          if (v.password) patch.password = v.password;
          if (Object.keys(patch).length === 0) return onDone();
          try {
            await api<Booking>('PATCH', `/live/bookings/${encodeURIComponent(b.id)}`, patch);
          } catch (err) {
            placeRefusal(err);
          }
          onDone();
        });
      }}
    >
      <FormError message={form.error} />
      <p class="muted small">The channel, time and open level cannot change: cancel and book again for that.</p>
      <Field label="Title" name="title" maxLength={200} value={v.title} error={form.fieldErrors.title} onInput={(e) => set({ title: e.currentTarget.value })} />
      <Field label="Genre" name="genre" maxLength={80} value={v.genre} error={form.fieldErrors.genre} onInput={(e) => set({ genre: e.currentTarget.value })} />
      <CountedField label="Outline" name="outline" limit={20} value={v.outline} error={form.fieldErrors.outline} onInput={(x) => set({ outline: x })} />
      <CountedField label="Detail" name="detail" limit={200} multiline value={v.detail} error={form.fieldErrors.detail} onInput={(x) => set({ detail: x })} />
      <fieldset>
        <legend>Show on the program’s page</legend>
        <label class="check">
          <input type="checkbox" checked={v.discloseEmail} onChange={(e) => set({ discloseEmail: e.currentTarget.checked })} /> My e-mail address
        </label>
        <label class="check">
          <input type="checkbox" checked={v.discloseWebPage} onChange={(e) => set({ discloseWebPage: e.currentTarget.checked })} /> My web page
        </label>
      </fieldset>
      {b.openLevel !== 'public' && (
        <Field label="New password for viewers" name="password" type="password" autocomplete="new-password" hint="Empty: keep the current one." maxLength={100} value={v.password} error={form.fieldErrors.password} onInput={(e) => set({ password: e.currentTarget.value })} />
      )}
      <Submit busy={form.busy}>Save changes</Submit>
    </form>
  );
}

function CancelButton({ booking: b, onDone }: { booking: Booking; onDone: () => void }) {
  const dialog = useRef<HTMLDialogElement>(null);
  const form = useSubmit();
  const dId = `cancel-${b.id}`;
  return (
    <>
      <button type="button" class="secondary" onClick={() => dialog.current?.showModal()}>
        Cancel booking<span class="visually-hidden"> {b.title}</span>
      </button>
      <dialog ref={dialog} aria-labelledby={`${dId}-h`} aria-describedby={`${dId}-d`} class="confirm">
        <h3 id={`${dId}-h`}>Cancel “{b.title}”?</h3>
        <p id={`${dId}-d`}>
          {b.charged
            ? `It was reconfirmed: the charge of ${money(b.charge)} stands and is not refunded.`
            : 'It is not reconfirmed yet, so cancelling is free: nothing is charged.'}{' '}
          The slots become free for others; your friend list is told if it had been told of the program.
        </p>
        <FormError message={form.error} />
        <div class="actions">
          <button
            type="button"
            class="danger"
            disabled={form.busy}
            onClick={() =>
              form.run(async () => {
                await api('POST', `/live/bookings/${encodeURIComponent(b.id)}/cancel`);
                dialog.current?.close();
                onDone();
              })
            }
          >
            Yes, cancel it
          </button>
          <button type="button" class="secondary" onClick={() => dialog.current?.close()}>
            Keep it
          </button>
        </div>
      </dialog>
    </>
  );
}
