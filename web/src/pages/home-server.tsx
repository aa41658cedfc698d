import { useEffect, useRef, useState } from 'preact/hooks';
import { api, ApiError } from '../api.ts';
import { ErrorNote, Loading, Page, useLoad } from '../components/common.tsx';
import { EdgePick, useEdgesOfKind } from '../components/edge-pick.tsx';
import { Field, FormError, Submit, useSubmit } from '../components/forms.tsx';
import { TableWrap } from '../components/table-wrap.tsx';
import { useTitles } from '../components/titles.ts';
import { bytes, money, shortId, span, when } from '../format.ts';
import { useOriginNow } from '../lib/origin-clock.ts';
import { playVod, seekBy, type VodPlayer } from '../lib/vod-player.ts';
import { placeRefusal } from '../refusals.ts';
import type { HomeCatalog, HomeCatalogItem, MyRental, RentalOpened, RentalPlan } from '../types.ts';

// Home server (S2.5, #17 point 5; docs/web.md "Home server", docs/edge.md "Home server"): a
// building's members choose their home edge (GET /edges), see what it has on hand to rent
// (GET /edges/:id/catalog) and rent it by days or by viewing time (POST /edges/:id/rentals; the
// cost is shown before confirming; a refusal is the API's sentence beside the form). "My rentals"
// (GET /rentals/mine): state and end by the origin's clock; Play opens the rental's HLS playlist on
// the home edge in hls.js (lib/vod-player.ts, native controls and ±10 s), plain files open by link.

const SEEK_STEP_S = 10;

export function HomeServerPage() {
  const edges = useEdgesOfKind('home');
  const [edgeId, setEdgeId] = useState<string | null>(null);
  const [rented, setRented] = useState(0); // bumps "My rentals" after a rental
  return (
    <Page title="Home server">
      <p class="muted">Your building’s home server keeps films and files on hand: rent one by days or by the time you watch, and play it from the home server at full speed.</p>
      <EdgePick edges={edges} kind="home" label="Home server" none="There is no home server yet. An operator starts one with cascade edge --kind home." value={edgeId} onChange={setEdgeId} />
      {edgeId && <Catalogue edgeId={edgeId} onRented={() => setRented((n) => n + 1)} />}
      <MyRentals refresh={rented} />
    </Page>
  );
}

function Catalogue({ edgeId, onRented }: { edgeId: string; onRented: () => void }) {
  const cat = useLoad(() => api<HomeCatalog>('GET', `/edges/${encodeURIComponent(edgeId)}/catalog`), [edgeId]);
  const [renting, setRenting] = useState<HomeCatalogItem | null>(null);
  useEffect(() => setRenting(null), [edgeId]);
  const items = cat.data?.items ?? [];
  return (
    <section aria-labelledby="catalogue-h">
      <h2 id="catalogue-h">On hand{cat.data ? ` at ${cat.data.edge.label}` : ''}</h2>
      <ErrorNote message={cat.error} />
      {cat.loading && !cat.data && <Loading what="the catalogue" />}
      {cat.data && items.length === 0 && <p class="muted">Nothing on hand yet: the home server fetches contents as its plan says.</p>}
      {items.length > 0 && (
        <TableWrap label="Contents on hand">
          <table class="home-catalogue">
            <thead>
              <tr>
                <th scope="col">Title</th>
                <th scope="col" class="num">
                  Size
                </th>
                <th scope="col" class="num">
                  Per day
                </th>
                <th scope="col">By viewing time</th>
                <th scope="col">
                  <span class="visually-hidden">Rent</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {items.map((it) => (
                <tr key={it.contentId} data-content={it.contentId}>
                  <th scope="row">{it.title}</th>
                  <td class="num">{bytes(it.bytes)}</td>
                  <td class="num">{money(it.pricePerDay)}</td>
                  <td>
                    {money(it.pricePerMinute)} a minute, at most {money(it.viewingCap)}
                  </td>
                  <td>
                    <button type="button" class="secondary" aria-label={`Rent ${it.title}`} onClick={() => setRenting(it)}>
                      Rent
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </TableWrap>
      )}
      {renting && cat.data && (
        <RentForm
          key={renting.contentId}
          edgeId={edgeId}
          item={renting}
          maxDays={cat.data.maxDays}
          onCancel={() => setRenting(null)}
          onDone={() => {
            setRenting(null);
            onRented();
          }}
        />
      )}
    </section>
  );
}

/** What a rental will cost, in words, before it is confirmed. */
export function rentalCost(item: HomeCatalogItem, plan: RentalPlan, days: number): string {
  if (plan === 'days') return `${days} ${days === 1 ? 'day' : 'days'} × ${money(item.pricePerDay)} = ${money(days * item.pricePerDay)}, charged now.`;
  return `${money(item.pricePerMinute)} per started minute watched, at most ${money(item.viewingCap)}; charged when the rental ends, for the time watched.`;
}

function RentForm({ edgeId, item, maxDays, onCancel, onDone }: { edgeId: string; item: HomeCatalogItem; maxDays: number; onCancel: () => void; onDone: () => void }) {
  const [plan, setPlan] = useState<RentalPlan>('days');
  const [days, setDays] = useState('1');
  const form = useSubmit(['days', 'plan']);
  const n = Number(days);
  const daysOk = Number.isInteger(n) && n >= 1 && n <= maxDays;
  const head = useRef<HTMLHeadingElement>(null);
  useEffect(() => head.current?.focus(), []);
  return (
    <section class="inline-panel rent-form" aria-labelledby="rent-h">
      <h3 id="rent-h" tabIndex={-1} ref={head}>
        Rent {item.title}
      </h3>
      <form
        class="narrow"
        noValidate
        onSubmit={(e) => {
          e.preventDefault();
          void form.run(async () => {
            try {
              await api<RentalOpened>('POST', `/edges/${encodeURIComponent(edgeId)}/rentals`, plan === 'days' ? { contentId: item.contentId, plan, days: n } : { contentId: item.contentId, plan });
            } catch (err) {
              placeRefusal(err, { invalid_days: 'days', invalid_plan: 'plan' });
            }
            onDone();
          });
        }}
      >
        <fieldset class="choices">
          <legend>Plan</legend>
          <label class="choice">
            <input type="radio" name="plan" value="days" checked={plan === 'days'} onChange={() => setPlan('days')} /> By days
          </label>
          <label class="choice">
            <input type="radio" name="plan" value="viewing" checked={plan === 'viewing'} onChange={() => setPlan('viewing')} /> By viewing time
          </label>
        </fieldset>
        {form.fieldErrors.plan && (
          <p class="field-error" role="alert">
            {form.fieldErrors.plan}
          </p>
        )}
        {plan === 'days' && (
          <Field label="Days" name="days" type="number" min={1} max={maxDays} step={1} required value={days} error={form.fieldErrors.days} hint={`1 to ${maxDays} days.`} onInput={(e) => setDays(e.currentTarget.value)} />
        )}
        <p class="rent-cost" aria-live="polite" data-testid="rent-cost">
          <strong>Cost:</strong> {plan === 'viewing' || daysOk ? rentalCost(item, plan, n) : `Choose 1 to ${maxDays} days.`}
        </p>
        <FormError message={form.error} />
        <div class="actions">
          <Submit busy={form.busy}>{plan === 'days' ? `Confirm: rent for ${daysOk ? money(n * item.pricePerDay) : '…'}` : 'Confirm: rent by viewing time'}</Submit>
          <button type="button" class="secondary" onClick={onCancel}>
            Cancel
          </button>
        </div>
      </form>
    </section>
  );
}

/** "3 h left", "2 days left", by the origin's clock. */
const left = (ms: number) => `${span(ms)} left`;

function MyRentals({ refresh }: { refresh: number }) {
  const mine = useLoad(() => api<{ rentals: MyRental[] }>('GET', '/rentals/mine'), [refresh]);
  const clock = useOriginNow(30_000);
  const rentals = mine.data?.rentals ?? [];
  const titles = useTitles(rentals.map((r) => r.contentId));
  const [playing, setPlaying] = useState<string | null>(null);
  return (
    <section aria-labelledby="rentals-h">
      <h2 id="rentals-h">My rentals</h2>
      <ErrorNote message={mine.error} />
      {mine.loading && !mine.data && <Loading what="your rentals" />}
      {mine.data && rentals.length === 0 && <p class="muted">No rental yet.</p>}
      <ul class="rentals">
        {rentals.map((r) => {
          const title = titles.get(r.contentId) ?? shortId(r.contentId);
          const over = !r.active || (clock.now !== null && clock.now >= Date.parse(r.endsAt));
          return (
            <li key={r.id} class="rental panel" data-rental={r.id}>
              <h3 class="rental-title">{title}</h3>
              <p class="meta">
                <span class={`tag ${over ? '' : 'ok'}`}>{over ? 'ended' : 'active'}</span> {r.plan === 'days' ? `${r.days} ${r.days === 1 ? 'day' : 'days'}, ${money(r.maxFee)}` : `by viewing time, ${money(r.unitPrice)} a minute, at most ${money(r.maxFee)}`}
              </p>
              <p class="meta">
                {over ? 'Ended' : 'Ends'} <time dateTime={r.endsAt}>{when(r.endsAt)}</time>
                {!over && clock.now !== null && ` (${left(Date.parse(r.endsAt) - clock.now)}, by the origin’s clock)`}
              </p>
              {!over && r.playUrl && r.fileUrl && (
                <>
                  {playing === r.id ? (
                    <Player rental={r} title={title} onStop={() => setPlaying(null)} />
                  ) : (
                    <div class="actions">
                      <button type="button" aria-label={`Play ${title}`} onClick={() => setPlaying(r.id)}>
                        Play
                      </button>
                      <a href={r.fileUrl} target="_blank" rel="noopener" aria-label={`Open the file of ${title}`}>
                        Open the file
                      </a>
                    </div>
                  )}
                </>
              )}
            </li>
          );
        })}
      </ul>
    </section>
  );
}

/**
 * Plays a rental: the playlist is asked first (the home edge packages a video on its first play,
 * and says `not_video` for a plain file, which is then offered as a file to open).
 */
function Player({ rental, title, onStop }: { rental: MyRental; title: string; onStop: () => void }) {
  const video = useRef<HTMLVideoElement>(null);
  const [status, setStatus] = useState('Preparing the video on the home server…');
  const [error, setError] = useState<string | null>(null);
  const [notVideo, setNotVideo] = useState(false);
  useEffect(() => {
    let gone = false;
    let player: VodPlayer | null = null;
    (async () => {
      const res = await fetch(rental.playUrl!);
      if (!res.ok) {
        const e = (await res.json().catch(() => null))?.error;
        if (e?.code === 'not_video') return !gone && (setNotVideo(true), setStatus(''));
        throw new ApiError(e?.code ?? `http_${res.status}`, e?.message ?? `The home server answered ${res.status}.`, res.status);
      }
      if (gone || !video.current) return;
      setStatus('Loading…');
      player = await playVod(video.current, rental.playUrl!, (m) => (setError(m), setStatus('')));
      if (gone) player.destroy();
    })().catch((e) => !gone && (setError(e instanceof Error ? e.message : String(e)), setStatus('')));
    return () => {
      gone = true;
      player?.destroy();
    };
  }, [rental.playUrl]);
  if (notVideo) {
    return (
      <p>
        This content is not a video.{' '}
        <a href={rental.fileUrl!} target="_blank" rel="noopener">
          Open or download {title}
        </a>
      </p>
    );
  }
  return (
    <div class="player vod">
      <FormError message={error} />
      <p role="status" aria-live="polite">
        {status}
      </p>
      <video ref={video} controls muted playsInline aria-label={`Rental: ${title}`} onPlaying={() => setStatus('Playing.')} />
      <div class="actions">
        <button type="button" class="secondary" onClick={() => video.current && seekBy(video.current, -SEEK_STEP_S)}>
          Back {SEEK_STEP_S} s
        </button>
        <button type="button" class="secondary" onClick={() => video.current && seekBy(video.current, SEEK_STEP_S)}>
          Forward {SEEK_STEP_S} s
        </button>
        <button type="button" class="secondary" onClick={onStop}>
          Stop
        </button>
      </div>
    </div>
  );
}
