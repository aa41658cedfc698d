import { useEffect, useState } from 'preact/hooks';
import { api, qs } from '../api.ts';
import { ErrorNote, Link, Loading, Page } from '../components/common.tsx';
import { ContentCard } from '../components/content-card.tsx';
import { Field, FormError, Submit, useSubmit } from '../components/forms.tsx';
import { money } from '../format.ts';
import { navigate, type Match } from '../router.ts';
import { session } from '../session.ts';
import type { CatalogItem, ListItem } from '../types.ts';

// The catalog (S1.1) with search, and for a signed-in member the personal content list
// (S1.4, GET /me/content-list): what it can afford marked, its genres first, placements labelled.

interface Personal {
  balance: { available: number };
  preferredGenres: string[];
  items: ListItem[];
  nextCursor: string | null;
}

export function CatalogPage({ query }: Match) {
  const signedIn = !!session.value;
  const view = signedIn && query.get('view') !== 'all' ? 'mine' : 'all';
  const q = query.get('q') ?? '';
  const [text, setText] = useState(q);
  const [items, setItems] = useState<(CatalogItem | ListItem)[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [balance, setBalance] = useState<number | null>(null);
  const [genres, setGenres] = useState<string[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);

  async function load(reset: boolean, after: string | null) {
    setLoading(true);
    setError(null);
    try {
      const params = { q: q || undefined, limit: 20, cursor: reset ? undefined : after };
      if (view === 'mine') {
        const d = await api<Personal>('GET', `/me/content-list${qs(params)}`);
        setBalance(d.balance.available);
        setGenres(d.preferredGenres);
        setItems((old) => (reset ? d.items : [...old, ...d.items]));
        setCursor(d.nextCursor);
      } else {
        const d = await api<{ items: CatalogItem[]; nextCursor: string | null }>('GET', `/contents${qs(params)}`, undefined, { anonymous: true });
        setItems((old) => (reset ? d.items : [...old, ...d.items]));
        setCursor(d.nextCursor);
      }
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setLoading(false);
    }
  }
  useEffect(() => {
    setText(q);
    load(true, null);
  }, [q, view]);

  const go = (v: string, query: string) => navigate(`/${qs({ view: v === 'all' && signedIn ? 'all' : undefined, q: query || undefined })}`);
  return (
    <Page title={view === 'mine' ? 'For you' : 'Catalog'}>
      {signedIn && (
        <div class="tabs" role="group" aria-label="Which list">
          <button type="button" aria-pressed={view === 'mine'} onClick={() => go('mine', q)}>
            For you
          </button>
          <button type="button" aria-pressed={view === 'all'} onClick={() => go('all', q)}>
            Everything
          </button>
        </div>
      )}
      <form role="search" class="search" onSubmit={(e) => (e.preventDefault(), go(view, text.trim()))}>
        <label for="q" class="visually-hidden">
          Search title, genre or publisher
        </label>
        <input id="q" type="search" value={text} maxLength={200} placeholder="Search title, genre or publisher" onInput={(e) => setText(e.currentTarget.value)} />
        <button type="submit">Search</button>
      </form>
      {view === 'mine' && balance !== null && (
        <>
          <p class="muted">
            Your balance: <strong>{money(balance)}</strong>. {genres.length ? `Your genres: ${genres.join(', ')}.` : 'Items in the genres you receive most come first.'}
          </p>
          <GenresForm genres={genres} onSaved={() => load(true, null)} />
        </>
      )}
      {!signedIn && (
        <p class="muted">
          <Link to="/signin">Sign in</Link> to see what you can afford, rate, comment and download.
        </p>
      )}
      <ErrorNote message={error} />
      <ul class="cards" aria-label="Contents">
        {items.map((it) => (
          <ContentCard key={it.id} item={it} />
        ))}
      </ul>
      {loading && <Loading what="contents" />}
      {!loading && !error && items.length === 0 && <p class="muted">{q ? `Nothing matches “${q}”.` : 'Nothing is published yet.'}</p>}
      {cursor && !loading && (
        <button type="button" onClick={() => load(false, cursor)}>
          More
        </button>
      )}
    </Page>
  );
}

/** The member's preferred genres (PUT /me/profile), which the list puts first (S1.4). */
function GenresForm({ genres, onSaved }: { genres: string[]; onSaved: () => void }) {
  const [text, setText] = useState(genres.join(', '));
  const form = useSubmit(['preferredGenres']);
  useEffect(() => setText(genres.join(', ')), [genres.join('|')]);
  return (
    <details class="genres">
      <summary>Choose your genres</summary>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          const preferredGenres = text.split(',').map((g) => g.trim()).filter(Boolean);
          form.run(async () => {
            await api('PUT', '/me/profile', { preferredGenres });
            onSaved();
          });
        }}
      >
        <FormError message={form.error} />
        <Field label="Preferred genres" name="preferredGenres" hint="Separated by commas, e.g. drama, news. Empty: the genres you receive most." value={text} maxLength={900} error={form.fieldErrors.preferredGenres} onInput={(e) => setText(e.currentTarget.value)} />
        <Submit busy={form.busy}>Save genres</Submit>
      </form>
    </details>
  );
}
