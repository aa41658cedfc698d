import { useState } from 'preact/hooks';
import { api, qs } from '../api.ts';
import { ErrorNote, Loading, Page, useLoad } from '../components/common.tsx';
import { Stars, Thumbnail } from '../components/content-card.tsx';
import { DownloadPanel } from '../components/download-panel.tsx';
import { TableWrap } from '../components/table-wrap.tsx';
import { Field, FormError, Submit, useSubmit } from '../components/forms.tsx';
import { bytes, money, when } from '../format.ts';
import type { Match } from '../router.ts';
import { hasRole, session } from '../session.ts';
import type { CatalogItem, Comment, ListItem } from '../types.ts';

// A content's page (#13.3): details, ratings, comments, holders, price, download; for its
// publisher also the notes, a paid placement (S1.4) and the thumbnail.

interface Holder {
  terminalId: string;
  name: string;
  region: string;
  online: boolean;
  lastSeenAt: string | null;
}

export function ContentPage({ params }: Match) {
  const id = params.id;
  const signedIn = !!session.value;
  const item = useLoad<CatalogItem | ListItem>(() => (signedIn ? api('GET', `/me/content-list/${encodeURIComponent(id)}`) : api('GET', `/contents/${encodeURIComponent(id)}`, undefined, { anonymous: true })), [id, signedIn]);
  const d = item.data;
  if (item.error) return <Page title="Content">{<ErrorNote message={item.error} />}</Page>;
  if (!d) return <Page title="Content">{<Loading what="the content" />}</Page>;
  const p = 'affordable' in d ? d : null;
  const mine = session.value?.username === d.publisher;
  return (
    <Page title={d.title}>
      <div class="content-head">
        <Thumbnail item={d} size="large" />
        <div>
          <p class="meta">
            by {d.author} · {d.genre} · published by {d.publisher} on {when(d.createdAt)}
          </p>
          {d.summary && <p class="summary">{d.summary}</p>}
          <dl class="facts">
            <dt>Price</dt>
            <dd>
              {money(d.price)}
              {p && (p.received ? ' (you have received it)' : p.affordable ? ' (your balance covers it)' : ' (above your available balance)')}
            </dd>
            <dt>Size</dt>
            <dd>
              {bytes(d.totalSize)} in {d.pieces} pieces
            </dd>
            {p && (
              <>
                <dt>Ratings</dt>
                <dd>
                  <Stars rating={p.rating} />
                </dd>
                <dt>Peers</dt>
                <dd>{p.holdersOnline > 0 ? `${p.holdersOnline} online hold it` : 'no peer online holds it; the origin serves it'}</dd>
              </>
            )}
            {p?.placement && (
              <>
                <dt>Placement</dt>
                <dd>Sponsored by the publisher until {when(p.placement.until)}</dd>
              </>
            )}
            <dt>Content ID</dt>
            <dd>
              <code class="id">{d.id}</code>
            </dd>
          </dl>
          {p?.notes && <p class="notes">Publisher’s note: {p.notes}</p>}
        </div>
      </div>
      {signedIn ? <DownloadPanel content={d} onDone={item.reload} /> : <p class="muted">Sign in to download this content.</p>}
      {p && <RatingForm item={p} onRated={item.reload} />}
      <Comments id={id} canComment={!!p?.received && !mine} onPosted={item.reload} />
      {signedIn && <Holders id={id} />}
      {p && (mine || hasRole('operator')) && <PublisherTools item={p} onChange={item.reload} />}
    </Page>
  );
}

function RatingForm({ item, onRated }: { item: ListItem; onRated: () => void }) {
  const form = useSubmit();
  const [mine, setMine] = useState(item.rating.mine);
  if (item.publisher === session.value?.username) return null;
  if (!item.received)
    return (
      <section aria-labelledby="rate-h">
        <h2 id="rate-h">Your rating</h2>
        <p class="muted">You can rate it once you have received it.</p>
      </section>
    );
  return (
    <section aria-labelledby="rate-h">
      <h2 id="rate-h">Your rating</h2>
      <FormError message={form.error} />
      <div role="group" aria-label="Stars, 1 to 5" class="stars">
        {[1, 2, 3, 4, 5].map((n) => (
          <button
            type="button"
            key={n}
            aria-pressed={mine === n}
            disabled={form.busy}
            onClick={() =>
              form.run(async () => {
                const r = await api<{ mine: number }>('PUT', `/contents/${item.id}/rating`, { stars: n });
                setMine(r.mine);
                onRated();
              })
            }
          >
            {n} ★
          </button>
        ))}
      </div>
      <p class="muted" role="status">
        {mine ? `You rated it ${mine} of 5; choose again to change it.` : 'Not rated yet.'}
      </p>
    </section>
  );
}

function newRequestId(): string {
  return crypto.randomUUID();
}

function Comments({ id, canComment, onPosted }: { id: string; canComment: boolean; onPosted: () => void }) {
  const list = useLoad(() => api<{ items: Comment[]; nextCursor: string | null }>('GET', `/contents/${encodeURIComponent(id)}/comments${qs({ limit: 50 })}`, undefined, { anonymous: true }), [id]);
  const [text, setText] = useState('');
  // One ID per comment being written: a double click or a retry posts it once.
  const [requestId, setRequestId] = useState(newRequestId);
  const form = useSubmit(['text']);
  return (
    <section aria-labelledby="comments-h">
      <h2 id="comments-h">Comments</h2>
      <ErrorNote message={list.error} />
      {list.data && list.data.items.length === 0 && <p class="muted">No comments yet.</p>}
      <ul class="comments">
        {list.data?.items.map((c) => (
          <li key={c.id}>
            <p>
              <strong>{c.author}</strong> <span class="muted">{when(c.createdAt)}</span>
            </p>
            <p class="comment-text">{c.text}</p>
          </li>
        ))}
      </ul>
      {canComment ? (
        <form
          onSubmit={(e) => {
            e.preventDefault();
            form.run(async () => {
              await api('POST', `/contents/${id}/comments`, { text, requestId });
              setText('');
              setRequestId(newRequestId());
              list.reload();
              onPosted();
            });
          }}
        >
          <FormError message={form.error} />
          <Field label="Add a comment" name="text" error={form.fieldErrors.text}>
            <textarea id="f-text" name="text" rows={3} maxLength={2000} required value={text} aria-invalid={form.fieldErrors.text ? 'true' : undefined} onInput={(e) => setText(e.currentTarget.value)} />
          </Field>
          <Submit busy={form.busy}>Post comment</Submit>
        </form>
      ) : (
        session.value && <p class="muted">Members who have received this content can comment.</p>
      )}
    </section>
  );
}

function Holders({ id }: { id: string }) {
  const h = useLoad(() => api<{ holders: Holder[] }>('GET', `/contents/${encodeURIComponent(id)}/holders${qs({ limit: 50 })}`), [id]);
  return (
    <section aria-labelledby="holders-h">
      <h2 id="holders-h">Who holds it</h2>
      <ErrorNote message={h.error} />
      {h.data && h.data.holders.length === 0 && <p class="muted">No terminal holds it yet: downloads come from the origin.</p>}
      {h.data && h.data.holders.length > 0 && (
        <TableWrap labelledBy="holders-h">
        <table>
          <caption class="visually-hidden">Terminals holding this content</caption>
          <thead>
            <tr>
              <th scope="col">Terminal</th>
              <th scope="col">Region</th>
              <th scope="col">State</th>
              <th scope="col">Last seen</th>
            </tr>
          </thead>
          <tbody>
            {h.data.holders.map((x) => (
              <tr key={x.terminalId}>
                <td>{x.name}</td>
                <td>{x.region}</td>
                <td>{x.online ? 'online' : 'offline'}</td>
                <td>{when(x.lastSeenAt)}</td>
              </tr>
            ))}
          </tbody>
        </table>
        </TableWrap>
      )}
    </section>
  );
}

function PublisherTools({ item, onChange }: { item: ListItem; onChange: () => void }) {
  const [notes, setNotes] = useState(item.notes ?? '');
  const [days, setDays] = useState('7');
  const [placeId, setPlaceId] = useState(newRequestId);
  const [saved, setSaved] = useState<string | null>(null);
  const notesForm = useSubmit(['notes']);
  const placements = useLoad(() => api<{ pricePerDay: number; items: { until: string; active: boolean }[] }>('GET', `/contents/${item.id}/placements`), [item.id]);
  const perDay = placements.data?.pricePerDay;
  const dayCount = Number(days);
  const placeForm = useSubmit(['days']);
  const thumbForm = useSubmit();
  return (
    <section aria-labelledby="pub-h">
      <h2 id="pub-h">Publisher tools</h2>
      <p role="status" class="muted">
        {saved}
      </p>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          notesForm.run(async () => {
            await api('PUT', `/contents/${item.id}/notes`, { notes });
            setSaved('Notes saved.');
            onChange();
          });
        }}
      >
        <FormError message={notesForm.error} />
        <Field label="Publisher’s notes (shown with the content)" name="notes" error={notesForm.fieldErrors.notes}>
          <textarea id="f-notes" name="notes" rows={3} maxLength={2000} value={notes} onInput={(e) => setNotes(e.currentTarget.value)} />
        </Field>
        <Submit busy={notesForm.busy}>Save notes</Submit>
      </form>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          placeForm.run(async () => {
            const r = await api<{ until: string; charged: number; balanceAfter: number }>('POST', `/contents/${item.id}/placements`, { days: Number(days), requestId: placeId });
            setPlaceId(newRequestId());
            setSaved(`Placed until ${when(r.until)}; ${money(r.charged)} charged, balance now ${money(r.balanceAfter)}.`);
            onChange();
          });
        }}
      >
        <FormError message={placeForm.error} />
        <Field label="Preferred placement, days" name="days" type="number" min={1} max={90} required value={days} error={placeForm.fieldErrors.days} hint={`Listed first in members’ content lists, labelled as sponsored. ${perDay === undefined ? 'Charged from your wallet per day.' : `${money(perDay)} per day from your wallet${Number.isInteger(dayCount) && dayCount > 0 ? `: ${money(perDay * dayCount)} for ${dayCount} day${dayCount === 1 ? '' : 's'}` : ''}.`}`} onInput={(e) => setDays(e.currentTarget.value)} />
        <Submit busy={placeForm.busy}>Pay for placement</Submit>
      </form>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          const file = (e.currentTarget.elements.namedItem('thumbnail') as HTMLInputElement).files?.[0];
          if (!file) return;
          thumbForm.run(async () => {
            await api('PUT', `/contents/${item.id}/thumbnail`, undefined, { rawBody: file, headers: { 'content-type': file.type || 'application/octet-stream' } });
            setSaved('Thumbnail replaced.');
            onChange();
          });
        }}
      >
        <FormError message={thumbForm.error} />
        <Field label="Replace the thumbnail" name="thumbnail" type="file" accept="image/png,image/jpeg,image/webp,image/gif" hint="PNG, JPEG, WebP or GIF, at most 256 KiB." />
        <Submit busy={thumbForm.busy}>Upload thumbnail</Submit>
      </form>
    </section>
  );
}
