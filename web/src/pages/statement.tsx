import { TableWrap } from '../components/table-wrap.tsx';
import { useEffect, useState } from 'preact/hooks';
import { api, qs } from '../api.ts';
import { ErrorNote, Link, Loading, NeedsRole, Page } from '../components/common.tsx';
import { money, when } from '../format.ts';
import { hasRole, session } from '../session.ts';
import { signed, type WalletRecord } from './wallet.tsx';

// A publisher's royalty statement (S1.11 "the platform settles with publishers"): the same
// GET /publishers/:id/statement as `cascade statement`, for one calendar month in UTC (by
// default the origin's current month). Downloads and plays per content are counted from
// the royalty records (GET /wallet/history?account=royalties: one record per download or play).

interface Line {
  id: string;
  at: string;
  amount: number;
  reason: string;
  counterpart: string;
  ref: string | null;
  contentId: string | null;
}

interface Statement {
  publisherId: string;
  from: string;
  to: string;
  period: string;
  openingBalance: number;
  royalties: { total: number; transfers: number; byContent: { contentId: string | null; title: string | null; transfers: number; amount: number; plays: { count: number; amount: number } }[] };
  payouts: { total: number; items: Line[] };
  other: { total: number; items: Line[] };
  closingBalance: number;
}

interface PerContent {
  title: string | null;
  downloads: number;
}

interface Counts {
  byContent: Map<string, PerContent>;
  /** True when the records were not all read (very many in or after the month). */
  partial: boolean;
}

/** Pages of royalty records read at most, newest first, to count a month's downloads (the statement counts plays). */
const MAX_PAGES = 10;

/** [from, to) of a calendar month "YYYY-MM" in UTC. */
export function monthBounds(month: string): { from: string; to: string } {
  const [y, m] = month.split('-').map(Number);
  return { from: new Date(Date.UTC(y, m - 1, 1)).toISOString(), to: new Date(Date.UTC(y, m, 1)).toISOString() };
}

async function countRecords(from: string, to: string): Promise<Counts> {
  const byContent = new Map<string, PerContent>();
  const start = Date.parse(from);
  const end = Date.parse(to);
  let before: string | null = null;
  for (let page = 0; page < MAX_PAGES; page++) {
    const h: { entries: WalletRecord[]; nextCursor: string | null } = await api('GET', `/wallet/history${qs({ account: 'royalties', limit: 1000, before })}`);
    for (const r of h.entries) {
      const at = Date.parse(r.at);
      if (r.reason !== 'royalty' || !r.contentId || at < start || at >= end) continue;
      if (r.id.startsWith('play:')) continue;
      const c = byContent.get(r.contentId) ?? { title: r.contentTitle, downloads: 0 };
      c.downloads++;
      byContent.set(r.contentId, c);
    }
    const oldest = h.entries[h.entries.length - 1];
    if (!h.nextCursor || (oldest && Date.parse(oldest.at) < start)) return { byContent, partial: false };
    before = h.nextCursor;
  }
  return { byContent, partial: true };
}

export function StatementPage() {
  if (!hasRole('publisher')) return <NeedsRole role="publisher" />;
  return <StatementView />;
}

function StatementView() {
  // Empty: the origin's current month (its clock, UTC), as `cascade statement` with no dates.
  const [requested, setRequested] = useState('');
  const [month, setMonth] = useState('');
  const [s, setS] = useState<Statement | null>(null);
  const [counts, setCounts] = useState<Counts | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);

  useEffect(() => {
    let live = true;
    setLoading(true);
    setError(null);
    (async () => {
      const period = requested ? monthBounds(requested) : {};
      const st = await api<Statement>('GET', `/publishers/${encodeURIComponent(session.value!.userId)}/statement${qs(period)}`);
      const c = await countRecords(st.from, st.to);
      if (!live) return;
      setS(st);
      setCounts(c);
      setMonth(st.from.slice(0, 7));
    })()
      .catch((e) => live && setError((e as Error).message))
      .finally(() => live && setLoading(false));
    return () => {
      live = false;
    };
  }, [requested]);

  // One row per content: the statement's royalties (downloads' and plays'), with the downloads counted from the records.
  const rows: { contentId: string | null; title: string | null; amount: number; downloads: number; plays: number; playRoyalties: number }[] = [];
  if (s) {
    for (const r of s.royalties.byContent) {
      const c = r.contentId ? counts?.byContent.get(r.contentId) : undefined;
      rows.push({ contentId: r.contentId, title: r.title, amount: r.amount - r.plays.amount, downloads: c?.downloads ?? 0, plays: r.plays.count, playRoyalties: r.plays.amount });
    }
    for (const [contentId, c] of counts?.byContent ?? []) {
      if (!rows.some((r) => r.contentId === contentId)) rows.push({ contentId, title: c.title, amount: 0, downloads: c.downloads, plays: 0, playRoyalties: 0 });
    }
  }
  return (
    <Page title="Royalty statement">
      <form class="inline-form" onSubmit={(e) => e.preventDefault()}>
        <label for="month">Month (UTC)</label>
        <input id="month" type="month" value={month} required onChange={(e) => {
            const v = e.currentTarget.value;
            setMonth(v);
            if (/^\d{4}-\d{2}$/.test(v)) setRequested(v);
          }} />
      </form>
      <ErrorNote message={error} />
      {loading && <Loading what="the statement" />}
      {s && (
        <>
          <p class="muted">
            {when(s.from)} to {when(s.to)}: {s.period}.
          </p>
          <section class="panel" aria-labelledby="summary-h">
            <h2 id="summary-h">Summary</h2>
            <dl class="facts">
              <dt>Opening balance</dt>
              <dd>{money(s.openingBalance)}</dd>
              <dt>Royalties</dt>
              <dd>
                {signed(s.royalties.total)} <span class="muted">({s.royalties.transfers} transfers)</span>
              </dd>
              <dt>Payouts</dt>
              <dd>{s.payouts.total ? `-${money(s.payouts.total)}` : money(0)}</dd>
              {s.other.items.length > 0 && (
                <>
                  <dt>Other (corrections)</dt>
                  <dd>{signed(s.other.total)}</dd>
                </>
              )}
              <dt>Closing balance</dt>
              <dd>
                <strong>{money(s.closingBalance)}</strong> <span class="muted">(owed to you at the end of the period)</span>
              </dd>
            </dl>
          </section>

          <section aria-labelledby="by-content-h">
            <h2 id="by-content-h">By content</h2>
            {rows.length === 0 ? (
              <p class="muted">No royalties in this period.</p>
            ) : (
              <TableWrap labelledBy="by-content-h">
                <table>
                  <caption class="visually-hidden">Royalties by content</caption>
                  <thead>
                    <tr>
                      <th scope="col">Content</th>
                      <th scope="col" class="num">
                        Downloads
                      </th>
                      <th scope="col" class="num">
                        Plays
                      </th>
                      <th scope="col" class="num">
                        Royalties from downloads
                      </th>
                      <th scope="col" class="num">
                        Royalties from plays
                      </th>
                    </tr>
                  </thead>
                  <tbody>
                    {rows.map((r) => (
                      <tr key={r.contentId ?? 'none'}>
                        <td>{r.contentId ? <Link to={`/content/${r.contentId}`}>{r.title ?? r.contentId.slice(0, 12)}</Link> : '(no content)'}</td>
                        <td class="num">{r.downloads}</td>
                        <td class="num">{r.plays}</td>
                        <td class="num">{signed(r.amount)}</td>
                        <td class="num">{signed(r.playRoyalties)}</td>
                      </tr>
                    ))}
                  </tbody>
                  <tfoot>
                    <tr>
                      <th scope="row">Total</th>
                      <td class="num">{rows.reduce((a, r) => a + r.downloads, 0)}</td>
                      <td class="num">{rows.reduce((a, r) => a + r.plays, 0)}</td>
                      <td class="num">{signed(s.royalties.total)}</td>
                      <td class="num">{signed(rows.reduce((a, r) => a + r.playRoyalties, 0))}</td>
                    </tr>
                  </tfoot>
                </table>
              </TableWrap>
            )}
            {counts?.partial && <p class="muted">Downloads count the latest {MAX_PAGES * 1000} royalty records only; the amounts are complete.</p>}
          </section>

          <section aria-labelledby="payouts-h">
            <h2 id="payouts-h">Payouts</h2>
            {s.payouts.items.length === 0 ? (
              <p class="muted">No payout in this period. The platform pays publishers outside the system (a bank transfer) and records each payout here.</p>
            ) : (
              <TableWrap labelledBy="payouts-h">
                <table>
                  <caption class="visually-hidden">Payouts in this period</caption>
                  <thead>
                    <tr>
                      <th scope="col">Time</th>
                      <th scope="col">Reference</th>
                      <th scope="col" class="num">
                        Amount
                      </th>
                    </tr>
                  </thead>
                  <tbody>
                    {s.payouts.items.map((p) => (
                      <tr key={p.id}>
                        <td>{when(p.at)}</td>
                        <td>{p.ref ?? '—'}</td>
                        <td class="num">{signed(p.amount)}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </TableWrap>
            )}
            {s.other.items.length > 0 && (
              <>
                <h3>Other movements</h3>
                <ul>
                  {s.other.items.map((o) => (
                    <li key={o.id}>
                      {when(o.at)} · {o.reason} · {signed(o.amount)}
                    </li>
                  ))}
                </ul>
              </>
            )}
          </section>
        </>
      )}
    </Page>
  );
}
