import { bytes, money } from '../format.ts';
import type { CatalogItem, ListItem } from '../types.ts';
import { Link } from './common.tsx';

export function Thumbnail({ item, size = 'small' }: { item: CatalogItem; size?: 'small' | 'large' }) {
  if (!item.thumbnailUrl) return <div class={`thumb thumb-${size} thumb-none`} aria-hidden="true">{item.genre.slice(0, 1).toUpperCase() || '?'}</div>;
  return <img class={`thumb thumb-${size}`} src={item.thumbnailUrl} alt={`Thumbnail of ${item.title}`} loading="lazy" />;
}

export function Stars({ rating }: { rating: ListItem['rating'] }) {
  if (!rating.count) return <span class="muted">No ratings yet</span>;
  return (
    <span>
      <span aria-hidden="true">★</span> {rating.average?.toFixed(1)} / 5 <span class="muted">({rating.count} {rating.count === 1 ? 'rating' : 'ratings'})</span>
    </span>
  );
}

/** One catalog entry; with the personal list's fields when the item has them. */
export function ContentCard({ item }: { item: CatalogItem | ListItem }) {
  const p = 'affordable' in item ? item : null;
  return (
    <li class={`card${p?.placement ? ' placed' : ''}`}>
      <Thumbnail item={item} />
      <div class="card-body">
        <h2 class="card-title">
          <Link to={`/content/${item.id}`}>{item.title}</Link>
        </h2>
        <p class="meta">
          {item.author} · {item.genre} · published by {item.publisher} · {bytes(item.totalSize)}
        </p>
        {item.summary && <p class="summary">{item.summary}</p>}
        <p class="meta">
          <strong>Price {money(item.price)}</strong>
          {p && (
            <>
              {' · '}
              {p.received ? <span class="tag ok">Received</span> : p.affordable ? <span class="tag ok">You can afford it</span> : <span class="tag warn">Above your balance</span>}
              {p.placement && <span class="tag placed-tag">Sponsored placement</span>}
              {p.preferredGenre && <span class="tag">Your genre</span>}
              {' · '}
              <Stars rating={p.rating} />
              {' · '}
              {p.holdersOnline > 0 ? `${p.holdersOnline} peer${p.holdersOnline === 1 ? '' : 's'} online hold it` : 'no peer online holds it'}
            </>
          )}
        </p>
        {p?.notes && <p class="notes">Publisher’s note: {p.notes}</p>}
        {p && p.comments.length > 0 && (
          <ul class="comments-brief" aria-label={`Latest comments on ${item.title}`}>
            {p.comments.map((c) => (
              <li key={c.id}>
                <strong>{c.author}</strong>: {c.text}
              </li>
            ))}
          </ul>
        )}
        {p && p.why.length > 0 && <p class="why">Why here: {p.why.join(' ')}</p>}
      </div>
    </li>
  );
}
