import { useEffect, useRef, useState } from 'preact/hooks';
import { api, ApiError } from '../api.ts';
import { Link } from '../components/common.tsx';
import { CountedField } from '../components/counted.tsx';
import { Field, FormError, useSubmit } from '../components/forms.tsx';
import { money } from '../format.ts';
import { browserZone, dayTime, duration, fromLocalInput, toLocalInput } from '../lib/time.ts';
import { placeRefusal } from '../refusals.ts';
import type { Booking, BookingRequest, Channel, OpenLevel, Quote } from '../types.ts';

// The booking form (S3.4, S3.5; docs/live.md "The life of a booking"): the fields of
// POST /live/bookings; step 1 "Quote" (POST /live/quote: every check, nothing booked) shows the
// charge = slots × tariff, the deadline and why, the quota after booking and whether the wallet
// covers it; step 2 "Book" books and shows the reservation ID, to reconfirm before the deadline.

export const LEVELS: { level: OpenLevel; label: string; hint: string }[] = [
  { level: 'public', label: 'Public', hint: 'Listed in the guide; anyone may watch.' },
  { level: 'password', label: 'Password', hint: 'Listed in the guide; viewers need the password.' },
  { level: 'secret', label: 'Secret', hint: 'Never listed; only people you give the link and password can watch.' },
];

const FIELDS = ['channelId', 'start', 'end', 'openLevel', 'title', 'genre', 'outline', 'detail', 'password', 'friends', 'timeZone'];
/** Refusals without a `details.field`, tied to the field they concern. */
const PLACE = { unknown_channel: 'channelId', invalid_time: 'start', in_the_past: 'start', too_soon: 'start', too_far_ahead: 'start', too_long: 'end', invalid_time_zone: 'timeZone' };

export interface Selection {
  channelId: string;
  start: string;
  end: string;
}

export interface Booked {
  booking: Booking;
  reservationId: string;
}

/** The form for `selection`; `onBooked` gets the booking and its reservation ID (shown by BookedNote). */
export function BookForm({ channels, selection, onBooked }: { channels: Channel[]; selection: Selection; onBooked: (b: Booked) => void }) {
  const [channelId, setChannelId] = useState(selection.channelId);
  const [start, setStart] = useState(toLocalInput(Date.parse(selection.start)));
  const [end, setEnd] = useState(toLocalInput(Date.parse(selection.end)));
  const [openLevel, setOpenLevel] = useState<OpenLevel>('public');
  const [title, setTitle] = useState('');
  const [genre, setGenre] = useState('');
  const [outline, setOutline] = useState('');
  const [detail, setDetail] = useState('');
  const [discloseEmail, setDiscloseEmail] = useState(false);
  const [discloseWebPage, setDiscloseWebPage] = useState(false);
  const [password, setPassword] = useState('');
  const [friends, setFriends] = useState('');
  const [timeZone, setTimeZone] = useState(browserZone());
  const [quote, setQuote] = useState<{ quote: Quote; body: string } | null>(null);
  const [needsEmail, setNeedsEmail] = useState<string | null>(null);
  const form = useSubmit(FIELDS);

  // A new selection on the calendar moves the times, keeping what was written.
  useEffect(() => {
    setChannelId(selection.channelId);
    setStart(toLocalInput(Date.parse(selection.start)));
    setEnd(toLocalInput(Date.parse(selection.end)));
  }, [selection.channelId, selection.start, selection.end]);

  const channel = channels.find((c) => c.id === channelId);
  const s = new Date(start).getTime();
  const e = new Date(end).getTime();
  const slots = channel && Number.isFinite(s) && Number.isFinite(e) && e > s ? (e - s) / (channel.slotMinutes * 60_000) : null;

  const body = (): BookingRequest => ({
    channelId,
    start: fromLocalInput(start),
    end: fromLocalInput(end),
    openLevel,
    title: title.trim(),
    genre: genre.trim(),
    outline,
    detail,
    discloseEmail,
    discloseWebPage,
    ...(openLevel !== 'public' ? { password } : {}),
    friends: friends
      .split('\n')
      .map((f) => f.trim())
      .filter(Boolean),
    timeZone: timeZone.trim(),
  });
  // The quote stands for the fields it was made of; any change asks for a new one.
  const current = JSON.stringify(body());
  const quoted = quote && quote.body === current ? quote.quote : null;

  const run = (path: '/live/quote' | '/live/bookings') =>
    form.run(async () => {
      setNeedsEmail(null);
      const b = body();
      try {
        if (path === '/live/quote') {
          const q = await api<Quote>('POST', path, b);
          setQuote({ quote: q, body: JSON.stringify(b) });
        } else {
          onBooked(await api<Booked>('POST', path, b));
        }
      } catch (err) {
        if (err instanceof ApiError && err.code === 'email_required') {
          setNeedsEmail(err.message);
          return;
        }
        placeRefusal(err, PLACE);
      }
    });

  return (
    <form
      class="book-form"
      noValidate
      aria-labelledby="book-h"
      onSubmit={(ev) => {
        ev.preventDefault();
        run('/live/quote');
      }}
    >
      <h2 id="book-h">Book {channel ? channel.name : 'a channel'}</h2>
      <FormError message={form.error} />
      {needsEmail && (
        <div class="notice" role="alert">
          <p>
            <strong>Your account has no e-mail address.</strong> The reservation ID is sent by e-mail, so set your address first: <Link to="/account">Account: contact details</Link>.
          </p>
          <p class="small">{needsEmail}</p>
        </div>
      )}
      <Field label="Channel" name="channelId" error={form.fieldErrors.channelId}>
        <select id="f-channelId" value={channelId} aria-invalid={form.fieldErrors.channelId ? 'true' : undefined} onChange={(ev) => setChannelId(ev.currentTarget.value)}>
          {channels.map((c) => (
            <option key={c.id} value={c.id}>
              {c.name} ({money(c.tariffPerSlot)} per {c.slotMinutes}-minute slot)
            </option>
          ))}
        </select>
      </Field>
      <div class="row">
        <Field label="Start (your time)" name="start" type="datetime-local" step={60} value={start} error={form.fieldErrors.start} onInput={(ev) => setStart(ev.currentTarget.value)} />
        <Field
          label="End (your time)"
          name="end"
          type="datetime-local"
          step={60}
          value={end}
          hint={slots !== null ? `${Number.isInteger(slots) ? slots : slots.toFixed(2)} slot${slots === 1 ? '' : 's'} of ${channel!.slotMinutes} minutes` : undefined}
          error={form.fieldErrors.end}
          onInput={(ev) => setEnd(ev.currentTarget.value)}
        />
      </div>
      <fieldset aria-describedby={form.fieldErrors.openLevel ? 'f-openLevel-error' : undefined}>
        <legend>Open level</legend>
        {LEVELS.map((l) => (
          <div key={l.level} class="choice">
            <label>
              <input type="radio" name="openLevel" value={l.level} checked={openLevel === l.level} onChange={() => setOpenLevel(l.level)} aria-describedby={`lvl-${l.level}`} /> {l.label}
            </label>{' '}
            <span id={`lvl-${l.level}`} class="muted small">
              {l.hint}
            </span>
          </div>
        ))}
        {form.fieldErrors.openLevel && (
          <small id="f-openLevel-error" class="field-error" role="alert">
            {form.fieldErrors.openLevel}
          </small>
        )}
      </fieldset>
      {openLevel !== 'public' && (
        <Field
          label="Password for viewers"
          name="password"
          type="password"
          autocomplete="new-password"
          hint="4–100 characters. Sent to your friend list once you reconfirm."
          maxLength={100}
          value={password}
          error={form.fieldErrors.password}
          onInput={(ev) => setPassword(ev.currentTarget.value)}
        />
      )}
      <Field label="Title" name="title" hint="1–100 characters." maxLength={200} value={title} error={form.fieldErrors.title} onInput={(ev) => setTitle(ev.currentTarget.value)} />
      <Field label="Genre" name="genre" hint="e.g. music, talk, sport (at most 40 characters)." maxLength={80} value={genre} error={form.fieldErrors.genre} onInput={(ev) => setGenre(ev.currentTarget.value)} />
      <CountedField label="Outline" name="outline" limit={20} hint="A line for the guide." value={outline} error={form.fieldErrors.outline} onInput={setOutline} />
      <CountedField label="Detail" name="detail" limit={200} multiline hint="Shown on the program’s page." value={detail} error={form.fieldErrors.detail} onInput={setDetail} />
      <fieldset>
        <legend>Show on the program’s page</legend>
        <label class="check">
          <input type="checkbox" checked={discloseEmail} onChange={(ev) => setDiscloseEmail(ev.currentTarget.checked)} /> My e-mail address
        </label>
        <label class="check">
          <input type="checkbox" checked={discloseWebPage} onChange={(ev) => setDiscloseWebPage(ev.currentTarget.checked)} /> My web page
        </label>
      </fieldset>
      <Field label="Friend list (optional)" name="friends" hint="One e-mail address per line, at most 50: told of the program once you reconfirm." error={form.fieldErrors.friends}>
        <textarea
          id="f-friends"
          rows={3}
          value={friends}
          aria-invalid={form.fieldErrors.friends ? 'true' : undefined}
          aria-describedby={`f-friends-hint${form.fieldErrors.friends ? ' f-friends-error' : ''}`}
          onInput={(ev) => setFriends(ev.currentTarget.value)}
        />
      </Field>
      <Field label="Time zone for e-mails" name="timeZone" hint="Your browser’s by default (IANA name)." maxLength={64} autocomplete="off" value={timeZone} error={form.fieldErrors.timeZone} onInput={(ev) => setTimeZone(ev.currentTarget.value)} />
      <div class="actions">
        <button type="submit" disabled={form.busy} aria-busy={form.busy ? 'true' : undefined}>
          1. Quote
        </button>
        <button type="button" disabled={form.busy || !quoted} onClick={() => run('/live/bookings')}>
          2. Book
        </button>
        {!quoted && <span class="muted small">Quote first: it checks everything and books nothing.</span>}
      </div>
      {quoted && <QuoteView quote={quoted} />}
    </form>
  );
}

function QuoteView({ quote: q }: { quote: Quote }) {
  return (
    <section class="panel quote" aria-labelledby="quote-h" role="status">
      <h3 id="quote-h">Quote</h3>
      <dl class="facts">
        <dt>Charge</dt>
        <dd>
          <strong data-testid="charge">
            {q.slots} slot{q.slots === 1 ? '' : 's'} × {money(q.tariffPerSlot)} = {money(q.charge)}
          </strong>{' '}
          <span class="muted small">(taken from your wallet when you reconfirm)</span>
        </dd>
        <dt>Time</dt>
        <dd>
          {dayTime(q.start)} – {dayTime(q.end)} on {q.channel.name}
        </dd>
        <dt>Reconfirm by</dt>
        <dd>
          <span data-testid="deadline">{dayTime(q.deadline)}</span> <span class="muted">({q.deadlineReason})</span>
        </dd>
        <dt>Quota</dt>
        <dd>
          {q.quota.afterBooking} of {q.quota.limit} slots on {q.channel.name} in {q.quota.month} after this booking
        </dd>
        <dt>Wallet</dt>
        <dd>
          {money(q.wallet.available)} available:{' '}
          {q.wallet.enough ? <span class="tag ok">covers the charge</span> : <span class="tag warn">does not cover the charge: top up before reconfirming</span>}
        </dd>
      </dl>
      <p class="small muted">Booking now holds the slots; the charge is made at reconfirmation.</p>
    </section>
  );
}

/** A booking just made: its reservation ID, prominent, and what to do with it. */
export function BookedNote({ booked }: { booked: Booked }) {
  const [copied, setCopied] = useState('');
  const code = useRef<HTMLElement>(null);
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => box.current?.focus(), [booked.reservationId]);
  const b = booked.booking;
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(booked.reservationId);
      setCopied('Copied.');
    } catch {
      // No clipboard permission: select the text so Ctrl+C copies it.
      const r = document.createRange();
      if (code.current) r.selectNodeContents(code.current);
      getSelection()?.removeAllRanges();
      getSelection()?.addRange(r);
      setCopied('Selected: press Ctrl+C (⌘C) to copy.');
    }
  };
  return (
    <div class="panel booked" tabIndex={-1} ref={box} role="region" aria-labelledby="booked-h">
      <h2 id="booked-h">Booked: {b.title}</h2>
      <p>Your reservation ID:</p>
      <p class="reservation">
        <code class="id big" ref={code} data-testid="reservation-id">
          {booked.reservationId}
        </code>{' '}
        <button type="button" class="secondary" onClick={copy}>
          Copy reservation ID
        </button>{' '}
        <span role="status">{copied}</span>
      </p>
      <p>
        It was also e-mailed to you. <strong>Reconfirm before {dayTime(b.deadline)}</strong> (in {duration(Date.parse(b.deadline) - Date.parse(b.createdAt))}) on{' '}
        <Link to="/live/mine">My channel</Link> with this ID, or the booking is cancelled. Reconfirming charges {money(b.charge)} and gives you the settings for your encoder;
        the ID is also your stream key, so keep it private.
      </p>
      <p class="muted small">
        {b.channelName}, {dayTime(b.start)} – {dayTime(b.end)}, {b.slots} slot{b.slots === 1 ? '' : 's'}.
      </p>
    </div>
  );
}
