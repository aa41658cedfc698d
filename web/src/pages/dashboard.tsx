import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { api } from '../api.ts';
import { ErrorNote, Loading, NeedsRole, Page } from '../components/common.tsx';
import { bytes, shortId, when } from '../format.ts';
import { hasRole } from '../session.ts';
import { TableWrap } from '../components/table-wrap.tsx';
import { RefreshHead, useRefreshing } from '../components/refreshing.tsx';

// The operations dashboard (operators, GET /ops/dashboard): refreshed every 5 s while the tab
// is visible (paused while hidden, at once when shown again), with the origin's time of the
// figures. Terminals online, holders per content, running transfers and their sources, origin
// egress per minute (a uPlot chart with a text summary and a table), the ledger's
// conservation check and the schedule backlog. docs/operations.md "Dashboard".

export const REFRESH_MS = 5000;

interface Dashboard {
  at: string;
  terminals: { online: number; total: number };
  holders: { contentId: string; title: string; holdersOnline: number; holders: number }[];
  transfers: {
    id: string;
    contentId: string;
    title: string;
    receiver: { id: string; name: string };
    startedAt: string;
    piecesDone: number;
    pieces: number;
    sources: { id: string; kind: 'origin' | 'peer'; name: string }[];
  }[];
  egress: { bucketSeconds: number; points: { at: string; bytes: number }[] };
  ledger: { ok: boolean; checkedAt: string; message: string };
  schedule: { backlog: number; oldestDueAt: string | null };
}

export function DashboardPage() {
  return hasRole('operator') ? <DashboardView /> : <NeedsRole role="operator" />;
}

const clockTime = (iso: string) => new Date(iso).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const minute = (iso: string) => new Date(iso).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });

function DashboardView() {
  const { data, error, paused, refresh } = useRefreshing((signal) => api<Dashboard>('GET', '/ops/dashboard', undefined, { signal }), REFRESH_MS);

  return (
    <Page
      title="Dashboard"
      actions={<RefreshHead updated={data ? clockTime(data.at) : null} paused={paused} everyMs={REFRESH_MS} refresh={refresh} />}
    >
      <ErrorNote message={error} />
      {!data && !error && <Loading what="the figures" />}
      {data && <Figures d={data} />}
    </Page>
  );
}

function Figures({ d }: { d: Dashboard }) {
  return (
    <>
      <ul class="figures" aria-label="Key figures">
        <li class="figure">
          <span class="label">Terminals online</span>
          <span class="value" data-figure="terminals">
            {d.terminals.online} / {d.terminals.total}
          </span>
        </li>
        <li class="figure">
          <span class="label">Running transfers</span>
          <span class="value" data-figure="transfers">
            {d.transfers.length}
          </span>
        </li>
        <li class="figure">
          <span class="label">Schedule backlog</span>
          <span class="value" data-figure="backlog">
            {d.schedule.backlog}
          </span>
          <span class="small muted">{d.schedule.oldestDueAt ? `oldest due ${when(d.schedule.oldestDueAt)}` : 'nothing waits'}</span>
        </li>
        <li class={`figure ${d.ledger.ok ? 'good' : 'bad'}`}>
          <span class="label">Ledger conservation</span>
          <span class="value" data-figure="ledger">
            {d.ledger.ok ? 'OK' : 'BROKEN'}
          </span>
        </li>
      </ul>
      <p class={d.ledger.ok ? 'muted' : 'error'} role={d.ledger.ok ? undefined : 'alert'}>
        Ledger check at {clockTime(d.ledger.checkedAt)}: {d.ledger.message}
      </p>

      <section aria-labelledby="egress-h">
        <h2 id="egress-h">Origin egress</h2>
        <EgressChart egress={d.egress} />
      </section>

      <section aria-labelledby="transfers-h">
        <h2 id="transfers-h">Running transfers</h2>
        {d.transfers.length === 0 ? (
          <p class="muted">No transfer is running.</p>
        ) : (
          <TableWrap label="Running transfers table">
            <table>
              <caption class="visually-hidden">Running transfers with their sources</caption>
              <thead>
                <tr>
                  <th scope="col">Content</th>
                  <th scope="col">Receiver</th>
                  <th scope="col">Started</th>
                  <th scope="col">Progress</th>
                  <th scope="col">Sources</th>
                </tr>
              </thead>
              <tbody>
                {d.transfers.map((t) => (
                  <tr key={t.id}>
                    <td>
                      <a href={`#/content/${t.contentId}`}>{t.title}</a>
                    </td>
                    <td>{t.receiver.name}</td>
                    <td>{when(t.startedAt)}</td>
                    <td>
                      <progress max={t.pieces} value={t.piecesDone} aria-label={`${t.title}: ${t.piecesDone} of ${t.pieces} pieces`} />
                      <span class="small">
                        {t.piecesDone} of {t.pieces} pieces
                      </span>
                    </td>
                    <td>
                      {t.sources.length === 0
                        ? '—'
                        : t.sources.map((s, i) => (
                            <span key={s.id}>
                              {i > 0 && ', '}
                              {s.kind === 'origin' ? 'origin' : `peer ${s.name}`}
                            </span>
                          ))}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </TableWrap>
        )}
      </section>

      <section aria-labelledby="holders-h">
        <h2 id="holders-h">Holders per content</h2>
        {d.holders.length === 0 ? (
          <p class="muted">No terminal holds any content yet.</p>
        ) : (
          <TableWrap label="Holders table">
            <table>
              <caption class="visually-hidden">The contents with the most holders</caption>
              <thead>
                <tr>
                  <th scope="col">Content</th>
                  <th scope="col" class="num">
                    Online holders
                  </th>
                  <th scope="col" class="num">
                    All holders
                  </th>
                </tr>
              </thead>
              <tbody>
                {d.holders.map((h) => (
                  <tr key={h.contentId}>
                    <td>
                      <a href={`#/content/${h.contentId}`}>{h.title || shortId(h.contentId)}</a>
                    </td>
                    <td class="num">{h.holdersOnline}</td>
                    <td class="num">{h.holders}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </TableWrap>
        )}
      </section>
    </>
  );
}

/** Origin bytes per minute, last hour: a uPlot line with its summary as the accessible name, and the numbers as a table. */
function EgressChart({ egress }: { egress: Dashboard['egress'] }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const points = egress.points;
  const data: uPlot.AlignedData = [points.map((p) => Date.parse(p.at) / 1000), points.map((p) => p.bytes)];
  const total = points.reduce((a, p) => a + p.bytes, 0);
  const peak = points.reduce<{ at: string; bytes: number } | null>((m, p) => (!m || p.bytes > m.bytes ? p : m), null);
  const last = points.at(-1);
  const perMinute = egress.bucketSeconds === 60 ? 'per minute' : `per ${egress.bucketSeconds} s`;
  const summary =
    points.length === 0
      ? 'No egress figures.'
      : `Origin egress ${perMinute}, ${minute(points[0].at)} to ${minute(points[points.length - 1].at)}: ${bytes(total)} in all` +
        (peak && peak.bytes > 0 ? `, peak ${bytes(peak.bytes)} at ${minute(peak.at)}` : '') +
        (last ? `, latest ${bytes(last.bytes)}.` : '.');

  useEffect(() => {
    const el = box.current!;
    const width = () => Math.max(260, el.clientWidth);
    const u = new uPlot(
      {
        width: width(),
        height: 240,
        legend: { show: false },
        cursor: { drag: { x: false, y: false } },
        scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(max * 1.1, 1000)] } },
        axes: [{ stroke: '#4f5a6b' }, { stroke: '#4f5a6b', size: 72, values: (_u, vals) => vals.map((v) => bytes(v)) }],
        series: [{}, { label: `Origin bytes ${perMinute}`, stroke: '#1f56c2', width: 2, fill: 'rgba(31, 86, 194, 0.15)' }],
      },
      data,
      el,
    );
    plot.current = u;
    const ro = new ResizeObserver(() => u.setSize({ width: width(), height: 240 }));
    ro.observe(el);
    return () => {
      ro.disconnect();
      u.destroy();
      plot.current = null;
    };
  }, []);
  useEffect(() => {
    plot.current?.setData(data);
  }, [egress]);

  return (
    <>
      <div ref={box} class="chart" role="img" aria-label={summary} />
      <p class="muted small" aria-hidden="true">
        {summary}
      </p>
      <details>
        <summary>Egress {perMinute} as a table</summary>
        <TableWrap label="Egress table">
          <table class="egress">
            <caption>Origin bytes served {perMinute}, oldest first</caption>
            <thead>
              <tr>
                <th scope="col">Minute starting</th>
                <th scope="col" class="num">
                  Bytes
                </th>
              </tr>
            </thead>
            <tbody>
              {points.map((p) => (
                <tr key={p.at}>
                  <th scope="row">{minute(p.at)}</th>
                  <td class="num">{bytes(p.bytes)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </TableWrap>
      </details>
    </>
  );
}
