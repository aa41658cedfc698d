import { useEffect, useState } from 'preact/hooks';
import { readSize } from '../../../src/core/units.ts';
import { api, ApiError, qs } from '../api.ts';
import { ErrorNote, Link, Loading, NeedsRole, Page } from '../components/common.tsx';
import { Field, FormError, Submit, useSubmit } from '../components/forms.tsx';
import { RefreshHead, useRefreshing } from '../components/refreshing.tsx';
import { TableWrap } from '../components/table-wrap.tsx';
import { useTitles } from '../components/titles.ts';
import { bytes, shortId, span, when } from '../format.ts';
import { placeRefusal } from '../refusals.ts';
import type { Match } from '../router.ts';
import { hasRole } from '../session.ts';
import type { CatalogItem, EdgeDetail, EdgeSummary, OriginTime, PlacementPolicy } from '../types.ts';

// Edges (operators, #17 point 5; docs/edge.md, docs/web.md "Edges"): every edge server with its
// cache, hit rate, load and what it is fetching (GET /edges), refreshed every 5 s while the tab is
// visible; one edge's holdings, plan (what to fetch, drop, and what was left out, each with its
// reason), pins, policy and cache size (GET/PATCH /edges/:id, PUT/DELETE /edges/:id/pins/:cid).
// "Now" is the origin's clock (GET /time, asked with each refresh): how long ago an edge reported.

export const REFRESH_MS = 5000;

const POLICIES: { value: PlacementPolicy; label: string; hint: string }[] = [
  { value: 'most_requested', label: 'most requested', hint: 'the contents receivers asked for most over the last 7 days' },
  { value: 'recently_added', label: 'recently added', hint: 'the newest contents first' },
  { value: 'manual', label: 'manual', hint: 'only what you pin' },
];
const policyName = (p: PlacementPolicy) => POLICIES.find((x) => x.value === p)?.label ?? p;
const percent = (x: number) => `${Math.round(x * 100)}%`;
const clockTime = (ms: number) => new Date(ms).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });

/** "12 s ago", "3 min ago", "2 h ago", by the origin's clock. */
const ago = (ms: number) => `${span(ms)} ago`;

function status(e: EdgeSummary, originNow: number): string {
  const last = e.lastReportAt ? `last report ${ago(originNow - Date.parse(e.lastReportAt))}` : 'never reported';
  return `${e.online ? 'online' : 'offline'} (${last})`;
}

function hitRate(e: EdgeSummary): string {
  if (!e.stats || e.hitRate === null) return 'no request yet';
  const { hits, misses } = e.stats;
  return `${percent(e.hitRate)} (${hits} ${hits === 1 ? 'hit' : 'hits'}, ${misses} ${misses === 1 ? 'miss' : 'misses'})`;
}

/** An edge's figures with the origin's time they were read at. */
function withOriginTime<T>(load: Promise<T>, signal: AbortSignal): Promise<{ data: T; at: number }> {
  return Promise.all([load, api<OriginTime>('GET', '/time', undefined, { anonymous: true, signal })]).then(([data, t]) => ({ data, at: t.epochMs }));
}

function Meter({ used, size, label }: { used: number; size: number; label: string }) {
  const text = `${bytes(used)} of ${bytes(size)} (${percent(size > 0 ? used / size : 0)})`;
  return (
    <>
      <meter min={0} max={size} value={Math.min(used, size)} aria-label={`${label}: ${text}`} class="cache-meter" />
      <span class="small" data-figure="cache">
        {text}
      </span>
    </>
  );
}

export function EdgesPage() {
  return hasRole('operator') ? <EdgeList /> : <NeedsRole role="operator" />;
}

export function EdgePage({ params }: Match) {
  return hasRole('operator') ? <EdgeView id={params.id} /> : <NeedsRole role="operator" />;
}

function EdgeList() {
  const r = useRefreshing((signal) => withOriginTime(api<{ items: EdgeSummary[] }>('GET', '/edges', undefined, { signal }), signal), REFRESH_MS);
  const items = r.data?.data.items ?? [];
  const titles = useTitles(items.map((e) => e.stats?.filling).filter((x): x is string => !!x));
  return (
    <Page title="Edges" actions={<RefreshHead updated={r.data ? `${clockTime(r.data.at)} (origin’s time)` : null} paused={r.paused} everyMs={REFRESH_MS} refresh={r.refresh} />}>
      <p class="muted">Edge servers near users cache contents and deliver them so that the origin does not have to (docs/edge.md). Choose an edge to see what it holds, its plan, and to change its policy, cache size and pins.</p>
      <ErrorNote message={r.error} />
      {!r.data && !r.error && <Loading what="the edges" />}
      {r.data && items.length === 0 && (
        <div class="notice">
          <p>No edge yet. Start one on a server near your users, signed in as an operator:</p>
          <pre class="cmd wrap">
            <code>{'cascade login --username <operator>\ncascade edge --kind delivery --label eu/paris --cache 20GB'}</code>
          </pre>
          <p>It registers with the origin and appears here within seconds.</p>
        </div>
      )}
      {items.length > 0 && (
        <TableWrap label="Edges table">
          <table class="edges">
            <caption class="visually-hidden">Edge servers, by label</caption>
            <thead>
              <tr>
                <th scope="col">Label</th>
                <th scope="col">Kind</th>
                <th scope="col">Status</th>
                <th scope="col">Cache used</th>
                <th scope="col">Hit rate</th>
                <th scope="col" class="num">
                  Load
                </th>
                <th scope="col" class="num">
                  Bytes served
                </th>
                <th scope="col">Policy</th>
                <th scope="col">Now fetching</th>
              </tr>
            </thead>
            <tbody>
              {items.map((e) => (
                <tr key={e.id} data-edge={e.label}>
                  <th scope="row">
                    <Link to={`/admin/edges/${encodeURIComponent(e.id)}`}>{e.label}</Link>
                  </th>
                  <td>{e.kind}</td>
                  <td data-figure="status">
                    <span class={`tag ${e.online ? 'ok' : 'warn'}`}>{e.online ? 'online' : 'offline'}</span> <span class="small last-report">{status(e, r.data!.at).replace(/^\w+ /, '')}</span>
                  </td>
                  <td class="cache">
                    <Meter used={e.stats?.usedBytes ?? 0} size={e.cacheBytes} label={`Cache of ${e.label}`} />
                  </td>
                  <td data-figure="hit-rate">{hitRate(e)}</td>
                  <td class="num" data-figure="load">
                    {e.stats ? percent(e.stats.load) : '—'}
                  </td>
                  <td class="num" data-figure="served">
                    {e.stats ? bytes(e.stats.bytesServed) : '—'}
                  </td>
                  <td>{policyName(e.policy)}</td>
                  <td>{e.stats?.filling ? <Link to={`/content/${e.stats.filling}`}>{titles.get(e.stats.filling) ?? shortId(e.stats.filling)}</Link> : <span class="muted">nothing</span>}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </TableWrap>
      )}
    </Page>
  );
}

function EdgeView({ id }: { id: string }) {
  const r = useRefreshing((signal) => withOriginTime(api<EdgeDetail>('GET', `/edges/${encodeURIComponent(id)}`, undefined, { signal }), signal), REFRESH_MS, [id]);
  const e = r.data?.data;
  return (
    <Page title={e ? `Edge ${e.label}` : 'Edge'} actions={<RefreshHead updated={r.data ? `${clockTime(r.data.at)} (origin’s time)` : null} paused={r.paused} everyMs={REFRESH_MS} refresh={r.refresh} />}>
      <p>
        <Link to="/admin/edges">← All edges</Link>
      </p>
      <ErrorNote message={r.error} />
      {!r.data && !r.error && <Loading what="the edge" />}
      {e && <EdgeBody e={e} at={r.data!.at} refresh={r.refresh} />}
    </Page>
  );
}

function EdgeBody({ e, at, refresh }: { e: EdgeDetail; at: number; refresh: () => void }) {
  const title = (cid: string) => e.titles[cid] ?? e.holdings.find((h) => h.contentId === cid)?.title ?? shortId(cid);
  const [note, setNote] = useState('');
  const done = (text: string) => (setNote(text), refresh());
  return (
    <>
      <dl class="facts edge-facts">
        <dt>ID</dt>
        <dd>
          <code class="id">{e.id}</code>
        </dd>
        <dt>Kind</dt>
        <dd>{e.kind}</dd>
        <dt>Status</dt>
        <dd data-figure="status">{status(e, at)}</dd>
        <dt>Serves at</dt>
        <dd>
          <code class="id">{e.serveUrl}</code>
        </dd>
        <dt>Cache used</dt>
        <dd>
          <Meter used={e.stats?.usedBytes ?? 0} size={e.cacheBytes} label={`Cache of ${e.label}`} />
        </dd>
        <dt>Hit rate</dt>
        <dd data-figure="hit-rate">{hitRate(e)}</dd>
        <dt>Load</dt>
        <dd data-figure="load">{e.stats ? `${percent(e.stats.load)} of its upload slots` : '—'}</dd>
        <dt>Bytes served</dt>
        <dd data-figure="served">{e.stats ? bytes(e.stats.bytesServed) : '—'}</dd>
        <dt>Now fetching</dt>
        <dd>{e.stats?.filling ? title(e.stats.filling) : 'nothing'}</dd>
        <dt>Policy</dt>
        <dd data-figure="policy">{policyName(e.policy)}</dd>
      </dl>
      <p role="status" class="ok-note">
        {note}
      </p>

      <section aria-labelledby="holdings-h">
        <h2 id="holdings-h">Holdings</h2>
        {e.holdings.length === 0 ? (
          <p class="muted">The edge holds nothing yet (as of its last report).</p>
        ) : (
          <TableWrap label="Holdings table">
            <table class="holdings">
              <caption class="visually-hidden">What the edge holds, most recently used first</caption>
              <thead>
                <tr>
                  <th scope="col">Title</th>
                  <th scope="col" class="num">
                    Size
                  </th>
                  <th scope="col">State</th>
                  <th scope="col">Last used</th>
                  <th scope="col">Pinned</th>
                </tr>
              </thead>
              <tbody>
                {e.holdings.map((h) => (
                  <tr key={h.contentId}>
                    <th scope="row">
                      <Link to={`/content/${h.contentId}`}>{h.title ?? shortId(h.contentId)}</Link>
                    </th>
                    <td class="num">{bytes(h.bytes)}</td>
                    <td>{h.complete ? 'complete' : 'arriving'}</td>
                    <td>{when(h.lastUsedAt)}</td>
                    <td>{h.pinned ? 'pinned' : 'no'}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </TableWrap>
        )}
      </section>

      <section aria-labelledby="plan-h">
        <h2 id="plan-h">Plan</h2>
        <p class="muted small">What the origin tells the edge at its next report, by its policy ({policyName(e.policy)}), its pins and its cache size.</p>
        <PlanList heading="To fetch" id="plan-fetch" empty="Nothing to fetch." lines={e.plan.fetch.map((f) => ({ contentId: f.contentId, text: `${title(f.contentId)} (${bytes(f.bytes)})`, why: f.why }))} />
        <PlanList heading="To drop" id="plan-evict" empty="Nothing to drop." lines={e.plan.evict.map((x) => ({ contentId: x.contentId, text: title(x.contentId), why: x.why }))} />
        <PlanList heading="Left out" id="plan-skipped" empty="Nothing left out." lines={e.plan.skipped.map((x) => ({ contentId: x.contentId, text: title(x.contentId), why: x.why }))} />
      </section>

      <section aria-labelledby="pins-h">
        <h2 id="pins-h">Pins</h2>
        <p class="muted small">A pinned content ranks before every policy’s own choices; the edge fetches it at its next report if it fits the cache.</p>
        <Pins e={e} title={title} onChange={done} />
        <PinForm edgeId={e.id} onPinned={(t) => done(`Pinned ${t} on ${e.label}: the edge fetches it at its next report.`)} />
      </section>

      <section aria-labelledby="settings-h">
        <h2 id="settings-h">Policy and cache size</h2>
        <SettingsForm key={e.id} e={e} onSaved={(s) => done(`Saved: ${e.label} now follows the ${policyName(s.policy)} policy with a cache of ${bytes(s.cacheBytes)}.`)} />
      </section>
    </>
  );
}

const SHOWN = 50;
function PlanList({ heading, id, empty, lines }: { heading: string; id: string; empty: string; lines: { contentId: string; text: string; why: string }[] }) {
  return (
    <section aria-labelledby={`${id}-h`} class="plan-part">
      <h3 id={`${id}-h`}>
        {heading} ({lines.length})
      </h3>
      {lines.length === 0 ? (
        <p class="muted">{empty}</p>
      ) : (
        <ol id={id} class="plan-lines">
          {lines.slice(0, SHOWN).map((l) => (
            <li key={l.contentId}>
              <strong>{l.text}</strong>: <span class="why">{l.why}</span>
            </li>
          ))}
          {lines.length > SHOWN && <li class="muted">and {lines.length - SHOWN} more</li>}
        </ol>
      )}
    </section>
  );
}

function Pins({ e, title, onChange }: { e: EdgeDetail; title: (cid: string) => string; onChange: (note: string) => void }) {
  const [busy, setBusy] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  if (e.pins.length === 0) return <p class="muted">Nothing is pinned on this edge.</p>;
  const where = (cid: string) => {
    const h = e.holdings.find((x) => x.contentId === cid);
    if (h) return h.complete ? 'held' : 'arriving';
    if (e.plan.fetch.some((f) => f.contentId === cid)) return 'to fetch';
    const s = e.plan.skipped.find((x) => x.contentId === cid);
    return s ? `left out: ${s.why}` : 'not held';
  };
  const unpin = async (cid: string) => {
    if (busy) return;
    setBusy(cid);
    setError(null);
    try {
      await api('DELETE', `/edges/${encodeURIComponent(e.id)}/pins/${cid}`);
      onChange(`Unpinned ${title(cid)}: the edge drops it when it needs the room.`);
    } catch (err) {
      setError((err as Error).message);
    } finally {
      setBusy(null);
    }
  };
  return (
    <>
      <FormError message={error} />
      <ul class="plain pins">
        {e.pins.map((cid) => (
          <li key={cid}>
            <Link to={`/content/${cid}`}>{title(cid)}</Link> <span class="small muted">({where(cid)})</span>{' '}
            <button type="button" class="secondary" disabled={busy === cid} onClick={() => unpin(cid)}>
              Unpin<span class="visually-hidden"> {title(cid)}</span>
            </button>
          </li>
        ))}
      </ul>
    </>
  );
}

const CONTENT_ID = /^[0-9a-f]{64}$/;

/** Pin by content ID, or search the catalog (title words, or the ID's first 8+ characters) and pick. */
function PinForm({ edgeId, onPinned }: { edgeId: string; onPinned: (title: string) => void }) {
  const [text, setText] = useState('');
  const [found, setFound] = useState<CatalogItem[] | null>(null);
  const form = useSubmit(['contentId']);
  const pin = (cid: string, title: string) =>
    form.run(async () => {
      try {
        await api('PUT', `/edges/${encodeURIComponent(edgeId)}/pins/${encodeURIComponent(cid)}`);
      } catch (err) {
        placeRefusal(err, { unknown_content: 'contentId' });
      }
      setText('');
      setFound(null);
      onPinned(title);
    });
  const submit = (ev: Event) => {
    ev.preventDefault();
    const t = text.trim();
    if (CONTENT_ID.test(t.toLowerCase())) return void pin(t.toLowerCase(), shortId(t));
    form.run(async () => {
      if (!t) throw fieldRefusal('contentId', 'Type a content ID, or words of its title to search the catalog.');
      const short = /^[0-9a-f]{8,63}$/i.test(t);
      const d = await api<{ items: CatalogItem[] }>('GET', `/contents${qs(short ? { idPrefix: t.toLowerCase(), limit: 10 } : { q: t, limit: 10 })}`, undefined, { anonymous: true });
      setFound(d.items);
    });
  };
  return (
    <>
      <form class="narrow" noValidate onSubmit={submit} aria-labelledby="pin-h">
        <h3 id="pin-h">Pin a content</h3>
        <FormError message={form.error} />
        <Field
          label="Content ID or title"
          name="contentId"
          hint="A content ID pins it at once; words of a title (or the ID’s first 8 characters) search the catalog."
          autocomplete="off"
          maxLength={200}
          value={text}
          error={form.fieldErrors.contentId}
          onInput={(ev) => setText(ev.currentTarget.value)}
        />
        <Submit busy={form.busy}>Pin or search</Submit>
      </form>
      {found && (
        <section aria-labelledby="found-h">
          <h3 id="found-h">Found in the catalog ({found.length})</h3>
          {found.length === 0 ? (
            <p class="muted">No content matches “{text.trim()}”.</p>
          ) : (
            <ul class="plain pins">
              {found.map((c) => (
                <li key={c.id}>
                  {c.title} <span class="small muted">({bytes(c.totalSize)}, {c.genre})</span>{' '}
                  <button type="button" class="secondary" disabled={form.busy} onClick={() => pin(c.id, c.title)}>
                    Pin<span class="visually-hidden"> {c.title}</span>
                  </button>
                </li>
              ))}
            </ul>
          )}
        </section>
      )}
    </>
  );
}

/** A refusal of the browser's own (a size it cannot read), shown beside `field` as the API's are. */
function fieldRefusal(field: string, message: string): ApiError {
  const err = new ApiError('invalid_input', message, 0);
  err.placedField = field;
  return err;
}

/** A size as it would be typed, exactly (8MiB, 20GB, 1234567): read back, it is the same number of bytes. */
function sizeText(n: number): string {
  const units: [string, number][] = [['TiB', 1024 ** 4], ['TB', 1e12], ['GiB', 1024 ** 3], ['GB', 1e9], ['MiB', 1024 ** 2], ['MB', 1e6], ['KiB', 1024], ['kB', 1e3]];
  const u = units.find(([, m]) => n >= m && n % m === 0);
  return u ? `${n / u[1]}${u[0]}` : String(n);
}

/** Policy and cache size: only what changed is sent; the size is read in the browser (20GB, 500MiB), its bounds are the API's. */
function SettingsForm({ e, onSaved }: { e: EdgeDetail; onSaved: (saved: EdgeSummary) => void }) {
  const [policy, setPolicy] = useState<PlacementPolicy>(e.policy);
  const [cache, setCache] = useState(sizeText(e.cacheBytes));
  const [base, setBase] = useState({ policy: e.policy, cacheBytes: e.cacheBytes });
  const form = useSubmit(['policy', 'cacheBytes']);
  // Changed elsewhere (the CLI, another operator) while the form is untouched: show the new settings.
  useEffect(() => {
    if (e.policy === base.policy && e.cacheBytes === base.cacheBytes) return;
    if (policy === base.policy && readSize(cache) === base.cacheBytes) (setPolicy(e.policy), setCache(sizeText(e.cacheBytes)));
    setBase({ policy: e.policy, cacheBytes: e.cacheBytes });
  }, [e.policy, e.cacheBytes]);
  const submit = (ev: Event) => {
    ev.preventDefault();
    form.run(async () => {
      const size = readSize(cache);
      if (size === null) throw fieldRefusal('cacheBytes', `Cannot read the size “${cache.trim()}”: write it like 20GB, 500MiB or 1048576 (bytes).`);
      const patch: { policy?: PlacementPolicy; cacheBytes?: number } = {};
      if (policy !== base.policy) patch.policy = policy;
      if (size !== base.cacheBytes) patch.cacheBytes = size;
      if (!patch.policy && patch.cacheBytes === undefined) throw fieldRefusal('policy', 'Nothing changed: choose another policy or cache size.');
      let saved: EdgeSummary;
      try {
        saved = await api<EdgeSummary>('PATCH', `/edges/${encodeURIComponent(e.id)}`, patch);
      } catch (err) {
        placeRefusal(err, { invalid_policy: 'policy' });
      }
      setBase({ policy: saved.policy, cacheBytes: saved.cacheBytes });
      onSaved(saved);
    });
  };
  const size = readSize(cache);
  return (
    <form class="narrow" noValidate onSubmit={submit}>
      <FormError message={form.error} />
      <fieldset aria-describedby={form.fieldErrors.policy ? 'f-policy-error' : undefined}>
        <legend>Placement policy</legend>
        {POLICIES.map((p) => (
          <div key={p.value} class="choice">
            <input type="radio" id={`policy-${p.value}`} name="policy" value={p.value} checked={policy === p.value} onChange={() => setPolicy(p.value)} />
            <label for={`policy-${p.value}`}>
              {p.label} <span class="small muted">— {p.hint}</span>
            </label>
          </div>
        ))}
        {form.fieldErrors.policy && (
          <small id="f-policy-error" class="field-error" role="alert">
            {form.fieldErrors.policy}
          </small>
        )}
      </fieldset>
      <Field
        label="Cache size"
        name="cacheBytes"
        hint={`Like 20GB or 500MiB. Now ${bytes(base.cacheBytes)}${size !== null && size !== base.cacheBytes ? `; new: ${size} bytes` : ''}.`}
        autocomplete="off"
        maxLength={40}
        value={cache}
        error={form.fieldErrors.cacheBytes}
        onInput={(ev) => setCache(ev.currentTarget.value)}
      />
      <Submit busy={form.busy}>Save policy and cache size</Submit>
    </form>
  );
}
