import { api, qs } from '../api.ts';
import { ErrorNote, Link, Loading, Page, useLoad } from '../components/common.tsx';
import { addMonths, browserZone, dayName, dayTime, hm, monthName, timeRange } from '../lib/time.ts';
import { navigate, type Match } from '../router.ts';
import type { Program } from '../types.ts';
import { STATUS_WORDS } from './live-mine.tsx';
import { WatchPanel } from './live-watch.tsx';

// The viewers' guide (S3.11; docs/live.md "Guide"): today's live (GET /live/today?tz) and a
// month's programs by day (GET /live/guide?month&tz), in the browser's time zone; each links to
// the program's page (GET /live/programs/:id), where signed-in members watch (live-watch.tsx), and
// its channel's name to the channel's page (live-channel.tsx).
// Public: no sign-in needed. Secret programs are never listed (the API leaves them out); their
// page is reached only by the link shared.

const WHEN_WORDS: Record<Program['when'], string> = { upcoming: 'upcoming', on_air: 'on air now', ended: 'ended' };

export function GuidePage({ query }: Match) {
  const zone = browserZone();
  const month = query.get('month') ?? undefined;
  const today = useLoad(() => api<{ date: string; timeZone: string; items: Program[] }>('GET', `/live/today${qs({ tz: zone })}`, undefined, { anonymous: true }), [zone]);
  const guide = useLoad(
    () => api<{ month: string; timeZone: string; days: { date: string; items: Program[] }[] }>('GET', `/live/guide${qs({ month, tz: zone })}`, undefined, { anonymous: true }),
    [month, zone],
  );
  const shown = guide.data?.month ?? month;
  return (
    <Page title="Live">
      <p class="muted">
        Programs on the live channels, in your time zone, <strong>{zone}</strong>. Broadcasters: <Link to="/live/calendar">book a channel</Link>.
      </p>
      <section aria-labelledby="today-h">
        <h2 id="today-h">Today’s live{today.data ? `: ${dayName(today.data.date)}` : ''}</h2>
        <ErrorNote message={today.error} />
        {today.loading && !today.data && <Loading what="today’s programs" />}
        {today.data && today.data.items.length === 0 && <p class="muted">No program today.</p>}
        {today.data && today.data.items.length > 0 && <ProgramList items={today.data.items} label="Today’s programs" withDay={false} />}
      </section>
      <section aria-labelledby="month-h">
        <h2 id="month-h">Program guide{shown ? `: ${monthName(shown)}` : ''}</h2>
        {shown && (
          <div class="pager">
            <button type="button" class="secondary" onClick={() => navigate(`/live${qs({ month: addMonths(shown, -1) })}`)}>
              <span aria-hidden="true">←</span> {monthName(addMonths(shown, -1))}
            </button>
            <button type="button" class="secondary" onClick={() => navigate(`/live${qs({ month: addMonths(shown, 1) })}`)}>
              {monthName(addMonths(shown, 1))} <span aria-hidden="true">→</span>
            </button>
          </div>
        )}
        <ErrorNote message={guide.error} />
        {guide.loading && !guide.data && <Loading what="the guide" />}
        {guide.data && guide.data.days.length === 0 && <p class="muted">No program this month.</p>}
        {guide.data?.days.map((d) => (
          <div key={d.date} class="guide-day">
            <h3 id={`day-${d.date}`}>{dayName(d.date)}</h3>
            <ProgramList items={d.items} labelledBy={`day-${d.date}`} withDay={false} />
          </div>
        ))}
      </section>
    </Page>
  );
}

function ProgramList({ items, label, labelledBy, withDay }: { items: Program[]; label?: string; labelledBy?: string; withDay: boolean }) {
  return (
    <ul class="programs" aria-label={label} aria-labelledby={labelledBy}>
      {items.map((p) => (
        <li key={p.id} class="program">
          <span class="program-time">
            {withDay ? dayTime(p.start) : hm(p.start)}–{hm(p.end)}
          </span>{' '}
          <Link to={`/live/${p.id}`}>{p.title}</Link>{' '}
          <span class="muted">
            <Link to={`/channels/${p.channelId}`}>{p.channelName}</Link> · {p.genre}
            {p.outline ? ` · ${p.outline}` : ''}
          </span>{' '}
          {p.needsPassword && <span class="tag warn">needs a password</span>}
          {p.when === 'on_air' && <span class="tag ok">on air</span>}
        </li>
      ))}
    </ul>
  );
}

export function ProgramPage({ params }: Match) {
  const p = useLoad(() => api<Program>('GET', `/live/programs/${encodeURIComponent(params.id)}`, undefined, { anonymous: true }), [params.id]);
  const prog = p.data;
  return (
    <Page title={prog ? prog.title : 'Program'}>
      <ErrorNote message={p.error} />
      {p.loading && !prog && <Loading what="the program" />}
      {prog && (
        <>
          <WatchPanel key={prog.id} program={prog} />
          <dl class="facts program-facts">
            <dt>When</dt>
            <dd>
              {timeRange(prog.start, prog.end)} <span class="muted">({browserZone()})</span> · {WHEN_WORDS[prog.when]}
            </dd>
            <dt>Channel</dt>
            <dd>
              <Link to={`/channels/${prog.channelId}`}>{prog.channelName}</Link> <span class="muted">(the channel’s page: what it carries now, filler between programs)</span>
            </dd>
            <dt>Genre</dt>
            <dd>{prog.genre}</dd>
            {prog.outline && (
              <>
                <dt>Outline</dt>
                <dd>{prog.outline}</dd>
              </>
            )}
            <dt>Open level</dt>
            <dd>{prog.openLevel === 'public' ? 'Public: open to everyone' : prog.openLevel === 'password' ? 'Password: needs a password' : 'Secret: needs a password'}</dd>
            <dt>Broadcaster</dt>
            <dd>
              {prog.broadcaster.username}
              {prog.broadcaster.email && (
                <>
                  {' · '}
                  <a href={`mailto:${prog.broadcaster.email}`}>{prog.broadcaster.email}</a>
                </>
              )}
              {prog.broadcaster.webPage && (
                <>
                  {' · '}
                  <a href={prog.broadcaster.webPage} rel="noopener noreferrer nofollow">
                    {prog.broadcaster.webPage}
                  </a>
                </>
              )}
            </dd>
            <dt>Status</dt>
            <dd>{STATUS_WORDS[prog.status]}</dd>
            {prog.viewerPeak !== null && (
              <>
                <dt>Viewer peak</dt>
                <dd>{prog.viewerPeak}</dd>
              </>
            )}
          </dl>
          {prog.detail && <p class="program-detail">{prog.detail}</p>}
          <p>
            <Link to="/live">Back to the guide</Link>
          </p>
        </>
      )}
    </Page>
  );
}
