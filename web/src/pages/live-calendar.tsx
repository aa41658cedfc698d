import type { ComponentChildren } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { api, qs } from '../api.ts';
import { ErrorNote, Link, Loading, Page, useLoad } from '../components/common.tsx';
import { TableWrap } from '../components/table-wrap.tsx';
import { money } from '../format.ts';
import { useOriginNow } from '../lib/origin-clock.ts';
import { addDays, browserZone, dateInZone, dayName, hm } from '../lib/time.ts';
import { navigate, type Match } from '../router.ts';
import { hasRole } from '../session.ts';
import type { CalendarSlot, Channel, LiveCalendar } from '../types.ts';
import { BookedNote, BookForm, type Booked, type Selection } from './live-book.tsx';

// The slot calendar (S3.3; GET /live/calendar?date&tz): a day in the browser's time zone (the
// default day is today by the origin's clock, GET /time), one grid per channel with its capacity,
// bitrate and tariff; a row per local hour, a cell per slot: free, taken (with the program's
// title unless Secret), mine, or past. Premium members pick free slots — a contiguous range on one
// channel: the first click starts it, a second (or shift-) click extends it — and book them below.

export function CalendarPage({ query }: Match) {
  const zone = browserZone();
  const clock = useOriginNow();
  const asked = query.get('date');
  const date = asked ?? (clock.now !== null ? dateInZone(clock.now, zone) : null);
  if (!date) {
    return (
      <Page title="Live calendar">
        <ErrorNote message={clock.error} />
        {!clock.error && <Loading what="the origin’s clock" />}
      </Page>
    );
  }
  return <Calendar key={date} date={date} zone={zone} />;
}

interface Picked {
  channelId: string;
  anchor: number;
  from: number;
  to: number;
}

function Calendar({ date, zone }: { date: string; zone: string }) {
  const [tick, setTick] = useState(0);
  const cal = useLoad(() => api<LiveCalendar>('GET', `/live/calendar${qs({ date, tz: zone })}`), [date, zone, tick]);
  const [picked, setPicked] = useState<Picked | null>(null);
  const [booked, setBooked] = useState<Booked | null>(null);
  const [text, setText] = useState(date);
  const premium = hasRole('premium');
  useEffect(() => setText(date), [date]);
  const go = (d: string) => /^\d{4}-\d{2}-\d{2}$/.test(d) && navigate(`/live/calendar${qs({ date: d })}`);
  const channels = cal.data?.channels ?? [];

  const pick = (channelId: string, slots: CalendarSlot[], i: number, extend: boolean) => {
    if (!premium) return;
    if (picked && picked.channelId === channelId && picked.from === i && picked.to === i && !extend) return setPicked(null);
    if (picked && picked.channelId === channelId && (extend || picked.from === picked.to)) {
      const from = Math.min(picked.anchor, i);
      const to = Math.max(picked.anchor, i);
      // Contiguous free slots only; otherwise start again from this one.
      if (slots.slice(from, to + 1).every((s) => s.state === 'free')) return setPicked({ ...picked, from, to });
    }
    setPicked({ channelId, anchor: i, from: i, to: i });
  };

  const selection = (() => {
    if (!picked) return null;
    const ch = channels.find((c) => c.channel.id === picked.channelId);
    if (!ch || !ch.slots[picked.from] || !ch.slots[picked.to]) return null;
    return { channelId: picked.channelId, start: ch.slots[picked.from].start, end: ch.slots[picked.to].end } satisfies Selection;
  })();

  return (
    <Page title="Live calendar">
      <p class="muted">
        The channels’ slots on one day in your time zone, <strong>{zone}</strong>.{' '}
        {premium ? 'Click a free slot to start a booking; click another free slot on the same channel (or shift-click) to extend it.' : ''}
      </p>
      {!premium && (
        <div class="notice" role="note">
          <p>
            <strong>Booking is for premium members.</strong> You can see which slots are free, but only premium members may book them (S3.1). An operator can make your account
            premium.
          </p>
        </div>
      )}
      <form
        class="inline-form day-pick"
        onSubmit={(e) => {
          e.preventDefault();
          go(text);
        }}
      >
        <button type="button" class="secondary" onClick={() => go(addDays(date, -1))}>
          <span aria-hidden="true">←</span> Previous day
        </button>
        <label for="cal-date">Day</label>
        <input id="cal-date" type="date" value={text} onChange={(e) => go(e.currentTarget.value)} onInput={(e) => setText(e.currentTarget.value)} />
        <button type="button" class="secondary" onClick={() => go(addDays(date, 1))}>
          Next day <span aria-hidden="true">→</span>
        </button>
      </form>
      {booked && <BookedNote key={booked.reservationId} booked={booked} />}
      <h2 class="day-title">{dayName(date)}</h2>
      <ErrorNote message={cal.error} />
      {cal.loading && !cal.data && <Loading what="the calendar" />}
      {cal.data && channels.length === 0 && <p class="muted">No channel is configured yet.</p>}
      {channels.map(({ channel, slots }) => (
        <ChannelDay
          key={channel.id}
          channel={channel}
          slots={slots}
          premium={premium}
          picked={picked?.channelId === channel.id ? picked : null}
          onPick={(i, extend) => pick(channel.id, slots, i, extend)}
          onClear={() => setPicked(null)}
        >
          {selection && selection.channelId === channel.id && (
            <BookForm
              channels={channels.map((c) => c.channel)}
              selection={selection}
              onBooked={(b) => {
                setBooked(b);
                setPicked(null);
                setTick((t) => t + 1);
              }}
            />
          )}
        </ChannelDay>
      ))}
      <p class="muted small">
        Your bookings: <Link to="/live/mine">My channel</Link>. Programs: <Link to="/live">the guide</Link>.
      </p>
    </Page>
  );
}

/** The slots as rows of one local hour each (a repeated hour when clocks go back is its own row). */
function byHour(slots: CalendarSlot[]): { label: string; cells: { slot: CalendarSlot; i: number }[] }[] {
  const rows: { label: string; cells: { slot: CalendarSlot; i: number }[] }[] = [];
  let prev: { hour: string; minute: number } | null = null;
  slots.forEach((slot, i) => {
    const [hour, minute] = hm(slot.start).split(':');
    const m = Number(minute);
    if (!prev || prev.hour !== hour || m <= prev.minute) rows.push({ label: `${hour}:00`, cells: [] });
    rows[rows.length - 1].cells.push({ slot, i });
    prev = { hour, minute: m };
  });
  return rows;
}

function ChannelDay(props: {
  channel: Channel;
  slots: CalendarSlot[];
  premium: boolean;
  picked: Picked | null;
  onPick: (i: number, extend: boolean) => void;
  onClear: () => void;
  children?: ComponentChildren;
}) {
  const { channel: c, slots, premium, picked, onPick, onClear, children } = props;
  const hId = `ch-${c.id}`;
  const free = slots.filter((s) => s.state === 'free').length;
  const n = picked ? picked.to - picked.from + 1 : 0;
  return (
    <section class="channel-day" aria-labelledby={hId}>
      <h2 id={hId}>{c.name}</h2>
      <p class="channel-facts">
        <span>Capacity {c.capacity} viewers</span> · <span>{c.bitrateKbps} kbps</span> ·{' '}
        <span>
          {money(c.tariffPerSlot)} per {c.slotMinutes}-minute slot
        </span>{' '}
        · <span class="muted">{free} free</span>
      </p>
      {picked && (
        <p class="selection" role="status">
          Selected {hm(slots[picked.from].start)}–{hm(slots[picked.to].end)}: {n} slot{n === 1 ? '' : 's'} × {money(c.tariffPerSlot)} = {money(n * c.tariffPerSlot)}.{' '}
          <button type="button" class="link" onClick={onClear}>
            Clear selection
          </button>
        </p>
      )}
      <TableWrap label={`Slots of ${c.name}`}>
        <table class="slots">
          <caption class="visually-hidden">
            Slots of {c.name} by hour: free, taken, mine or past
          </caption>
          <tbody>
            {byHour(slots).map((row, r) => (
              <tr key={r}>
                <th scope="row">{row.label}</th>
                {row.cells.map(({ slot, i }) => (
                  <SlotCell key={slot.start} slot={slot} selected={!!picked && i >= picked.from && i <= picked.to} premium={premium} onPick={(extend) => onPick(i, extend)} />
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      </TableWrap>
      <ul class="legend" aria-label="Legend">
        <li>
          <span class="swatch free" /> free
        </li>
        <li>
          <span class="swatch taken" /> taken
        </li>
        <li>
          <span class="swatch mine" /> yours
        </li>
        <li>
          <span class="swatch past" /> past
        </li>
      </ul>
      {children}
    </section>
  );
}

function SlotCell({ slot, selected, premium, onPick }: { slot: CalendarSlot; selected: boolean; premium: boolean; onPick: (extend: boolean) => void }) {
  const time = hm(slot.start);
  const span = `${time}–${hm(slot.end)}`;
  if (slot.state === 'free') {
    return (
      <td class={`slot free${selected ? ' selected' : ''}`} data-start={slot.start}>
        {premium ? (
          <button type="button" class="slot-btn" aria-pressed={selected ? 'true' : 'false'} aria-label={`${span} free${selected ? ', selected' : ''}`} onClick={(e) => onPick(e.shiftKey)}>
            {time}
          </button>
        ) : (
          <>
            <span class="visually-hidden">{span} free</span>
            <span aria-hidden="true">{time}</span>
          </>
        )}
      </td>
    );
  }
  if (slot.state === 'taken') {
    const what = slot.program ? slot.program.title : 'taken';
    return (
      <td class={`slot taken${slot.mine ? ' mine' : ''}`} data-start={slot.start} title={`${span} ${slot.mine ? 'yours: ' : ''}${what}`}>
        <span class="visually-hidden">
          {span} {slot.mine ? 'yours' : 'taken'}:{' '}
        </span>
        <span class="slot-text">
          <span aria-hidden="true">{time} </span>
          {slot.program ? <Link to={`/live/${slot.program.id}`}>{slot.program.title}</Link> : slot.mine ? 'yours' : 'taken'}
        </span>
      </td>
    );
  }
  return (
    <td class="slot past" data-start={slot.start}>
      <span class="visually-hidden">{span} past</span>
      <span aria-hidden="true">{time}</span>
    </td>
  );
}
