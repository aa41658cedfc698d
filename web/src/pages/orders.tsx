import { useState } from 'preact/hooks';
import { api } from '../api.ts';
import { ErrorNote, Loading, NeedsRole, Page, useLoad } from '../components/common.tsx';
import { EdgePick, useEdgesOfKind, type EdgesOfKind } from '../components/edge-pick.tsx';
import { Field, FormError, Submit, useSubmit } from '../components/forms.tsx';
import { TableWrap } from '../components/table-wrap.tsx';
import { bytes, money, when } from '../format.ts';
import type { Match } from '../router.ts';
import { placeRefusal } from '../refusals.ts';
import { hasRole } from '../session.ts';
import type { CatalogItem, MyOrder, OrderFormat, OrderPayment, OrderState, Page as ListPage, StoreOrder } from '../types.ts';

// Store orders (S2.6, #17 point 5; docs/web.md "Orders" and "Store counter", docs/edge.md "Store
// server"). Members (#/orders): order a content from a store edge as an ISO image or a zip
// package, paid from the wallet or at the counter (POST /edges/:id/orders); their orders with
// state, pickup code and, once ready and paid from the wallet, the package's link on the store
// edge (GET /orders/mine). Store staff (#/admin/store-orders, role store or operator): the store's
// orders by state (GET /edges/:id/orders?state=) and the counter's pickup against the member's
// code (POST /edges/:id/orders/:oid/pickup), the API's refusal beside the form.

const STATE_WORDS: Record<OrderState, string> = {
  placed: 'placed: waiting for the store',
  preparing: 'being prepared',
  ready: 'ready',
  picked_up: 'picked up',
  failed: 'failed',
  cancelled: 'cancelled',
};
const FORMATS: { value: OrderFormat; label: string }[] = [
  { value: 'zip', label: 'Zip package' },
  { value: 'iso', label: 'ISO disc image' },
];

function StateTag({ o }: { o: StoreOrder }) {
  const cls = o.state === 'ready' ? 'ok' : o.state === 'failed' || o.state === 'cancelled' ? 'warn' : '';
  return <span class={`tag ${cls}`}>{STATE_WORDS[o.state]}</span>;
}

export function OrdersPage({ query }: Match) {
  const stores = useEdgesOfKind('store');
  const [edgeId, setEdgeId] = useState<string | null>(null);
  const [placed, setPlaced] = useState(0);
  return (
    <Page title="Orders">
      <p class="muted">Order a content from a store: it prepares a zip package or an ISO disc image for you to download or to collect at the counter with your pickup code.</p>
      <section aria-labelledby="order-h">
        <h2 id="order-h">Order from a store</h2>
        <EdgePick edges={stores} kind="store" label="Store" none="There is no store yet. An operator starts one with cascade edge --kind store." value={edgeId} onChange={setEdgeId} />
        {edgeId && <OrderForm edgeId={edgeId} contentId={query.get('content')} onPlaced={() => setPlaced((n) => n + 1)} />}
      </section>
      <MyOrders stores={stores} refresh={placed} />
    </Page>
  );
}

function OrderForm({ edgeId, contentId, onPlaced }: { edgeId: string; contentId: string | null; onPlaced: () => void }) {
  const catalog = useLoad(() => api<ListPage<CatalogItem>>('GET', '/contents?limit=100', undefined, { anonymous: true }), []);
  const [content, setContent] = useState(contentId ?? '');
  const [format, setFormat] = useState<OrderFormat>('zip');
  const [payment, setPayment] = useState<OrderPayment>('wallet');
  const [done, setDone] = useState<MyOrder | null>(null);
  const form = useSubmit(['contentId', 'format', 'payment']);
  const items = catalog.data?.items ?? [];
  const chosen = items.find((c) => c.id === content) ?? null;
  return (
    <form
      class="narrow order-form"
      noValidate
      onSubmit={(e) => {
        e.preventDefault();
        setDone(null);
        void form.run(async () => {
          const o = await api<MyOrder>('POST', `/edges/${encodeURIComponent(edgeId)}/orders`, { contentId: content, format, payment });
          setDone(o);
          onPlaced();
        });
      }}
    >
      <ErrorNote message={catalog.error} />
      <Field label="Content" name="contentId" error={form.fieldErrors.contentId}>
        <select id="f-contentId" value={content} aria-invalid={form.fieldErrors.contentId ? 'true' : undefined} aria-describedby={form.fieldErrors.contentId ? 'f-contentId-error' : undefined} onChange={(e) => setContent(e.currentTarget.value)}>
          <option value="">Choose a content…</option>
          {contentId && !items.some((c) => c.id === contentId) && <option value={contentId}>{contentId.slice(0, 12)}</option>}
          {items.map((c) => (
            <option key={c.id} value={c.id}>
              {c.title} ({bytes(c.totalSize)}, {money(c.price)})
            </option>
          ))}
        </select>
      </Field>
      <fieldset class="choices">
        <legend>Format</legend>
        {FORMATS.map((f) => (
          <label class="choice" key={f.value}>
            <input type="radio" name="format" value={f.value} checked={format === f.value} onChange={() => setFormat(f.value)} /> {f.label}
          </label>
        ))}
      </fieldset>
      <fieldset class="choices">
        <legend>Payment</legend>
        <label class="choice">
          <input type="radio" name="payment" value="wallet" checked={payment === 'wallet'} onChange={() => setPayment('wallet')} /> From my wallet
        </label>
        <label class="choice">
          <input type="radio" name="payment" value="counter" checked={payment === 'counter'} onChange={() => setPayment('counter')} /> At the counter
        </label>
      </fieldset>
      {chosen && (
        <p data-testid="order-cost">
          <strong>Cost:</strong> {money(chosen.price)}, {payment === 'wallet' ? 'from your wallet when you download or collect it' : 'paid at the store’s counter when you collect it'}.
        </p>
      )}
      <FormError message={form.error} />
      <Submit busy={form.busy}>Place the order</Submit>
      {done && (
        <p class="notice" role="status">
          Ordered. Your pickup code is <code class="pickup-code">{done.pickupCode}</code>; the order appears below.
        </p>
      )}
    </form>
  );
}

function MyOrders({ stores, refresh }: { stores: EdgesOfKind; refresh: number }) {
  const mine = useLoad(() => api<{ items: MyOrder[] }>('GET', '/orders/mine'), [refresh]);
  const [cancelError, setCancelError] = useState<string | null>(null);
  const items = mine.data?.items ?? [];
  const storeOf = (id: string) => stores.items.find((e) => e.id === id);
  const cancel = async (o: MyOrder) => {
    setCancelError(null);
    try {
      await api('POST', `/orders/${encodeURIComponent(o.id)}/cancel`);
      mine.reload();
    } catch (err) {
      setCancelError((err as Error).message);
    }
  };
  return (
    <section aria-labelledby="my-orders-h">
      <div class="page-head">
        <h2 id="my-orders-h">My orders</h2>
        <button type="button" class="secondary" onClick={mine.reload}>
          Refresh
        </button>
      </div>
      <ErrorNote message={mine.error ?? cancelError} />
      {mine.loading && !mine.data && <Loading what="your orders" />}
      {mine.data && items.length === 0 && <p class="muted">No order yet.</p>}
      <ul class="orders">
        {items.map((o) => {
          const store = storeOf(o.edgeId);
          const open = o.state === 'placed' || o.state === 'preparing' || o.state === 'ready';
          return (
            <li key={o.id} class="panel order" data-order={o.id}>
              <h3 class="order-title">{o.title || o.contentId.slice(0, 12)}</h3>
              <p class="meta">
                <StateTag o={o} /> {o.format === 'iso' ? 'ISO image' : 'zip'} · {money(o.price)} {o.payment === 'wallet' ? 'from the wallet' : 'at the counter'} · {store ? store.label : o.edgeId} · ordered {when(o.createdAt)}
                {o.reason && ` · ${o.reason}`}
              </p>
              {open && (
                <p>
                  Pickup code: <code class="pickup-code">{o.pickupCode}</code>
                </p>
              )}
              {o.state === 'ready' && o.payment === 'wallet' && store && (
                <p>
                  <a href={`${store.serveUrl.replace(/\/+$/, '')}${o.downloadPath}`} download>
                    Download the package{o.packageBytes !== null ? ` (${bytes(o.packageBytes)})` : ''}
                  </a>
                </p>
              )}
              {o.state === 'ready' && o.payment === 'counter' && <p>Ready: collect it at the store’s counter with your pickup code, and pay there.</p>}
              {open && (
                <button type="button" class="secondary" aria-label={`Cancel the order of ${o.title}`} onClick={() => void cancel(o)}>
                  Cancel the order
                </button>
              )}
            </li>
          );
        })}
      </ul>
    </section>
  );
}

// ——— store staff ———

const STAFF_STATES: { value: OrderState | ''; label: string }[] = [
  { value: 'ready', label: 'Ready' },
  { value: 'placed', label: 'Placed' },
  { value: 'preparing', label: 'Being prepared' },
  { value: 'picked_up', label: 'Picked up' },
  { value: 'failed', label: 'Failed' },
  { value: 'cancelled', label: 'Cancelled' },
  { value: '', label: 'All' },
];

export function StoreCounterPage() {
  return hasRole('store') || hasRole('operator') ? <StoreCounter /> : <NeedsRole role="store" />;
}

function StoreCounter() {
  const stores = useEdgesOfKind('store');
  const [edgeId, setEdgeId] = useState<string | null>(null);
  const [state, setState] = useState<OrderState | ''>('ready');
  const list = useLoad(() => (edgeId ? api<{ items: StoreOrder[] }>('GET', `/edges/${encodeURIComponent(edgeId)}/orders${state ? `?state=${state}` : ''}`) : Promise.resolve({ items: [] })), [edgeId, state]);
  const items = list.data?.items ?? [];
  return (
    <Page title="Store counter">
      <p class="muted">Orders of your store, and handing them over at the counter against the member’s pickup code.</p>
      <EdgePick edges={stores} kind="store" label="Store" none="There is no store edge yet." value={edgeId} onChange={setEdgeId} />
      {edgeId && (
        <section aria-labelledby="store-orders-h">
          <div class="page-head">
            <h2 id="store-orders-h">Orders</h2>
            <button type="button" class="secondary" onClick={list.reload}>
              Refresh
            </button>
          </div>
          <div class="field">
            <label for="f-state">Show</label>
            <select id="f-state" value={state} onChange={(e) => setState(e.currentTarget.value as OrderState | '')}>
              {STAFF_STATES.map((s) => (
                <option key={s.value} value={s.value}>
                  {s.label}
                </option>
              ))}
            </select>
          </div>
          <ErrorNote message={list.error} />
          {list.loading && !list.data && <Loading what="the orders" />}
          {list.data && items.length === 0 && <p class="muted">No order in this state.</p>}
          {items.length > 0 && (
            <TableWrap label="Store orders">
              <table class="store-orders">
                <thead>
                  <tr>
                    <th scope="col">Content</th>
                    <th scope="col">State</th>
                    <th scope="col">Format</th>
                    <th scope="col">Payment</th>
                    <th scope="col">Ordered</th>
                    <th scope="col">Pickup</th>
                  </tr>
                </thead>
                <tbody>
                  {items.map((o) => (
                    <tr key={o.id} data-order={o.id}>
                      <th scope="row">
                        {o.title || o.contentId.slice(0, 12)}
                        <div class="small muted">{o.id}</div>
                      </th>
                      <td>
                        <StateTag o={o} />
                        {o.reason && <div class="small">{o.reason}</div>}
                      </td>
                      <td>
                        {o.format === 'iso' ? 'ISO' : 'zip'}
                        {o.packageBytes !== null && <div class="small">{bytes(o.packageBytes)}</div>}
                      </td>
                      <td>
                        {money(o.price)} {o.payment === 'wallet' ? 'from the wallet' : <strong>take the payment at the counter</strong>}
                      </td>
                      <td>{when(o.createdAt)}</td>
                      <td>{o.state === 'ready' ? <PickupForm edgeId={edgeId} order={o} onDone={list.reload} /> : o.pickedUpAt ? when(o.pickedUpAt) : '—'}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </TableWrap>
          )}
        </section>
      )}
    </Page>
  );
}

function PickupForm({ edgeId, order, onDone }: { edgeId: string; order: StoreOrder; onDone: () => void }) {
  const [code, setCode] = useState('');
  const form = useSubmit(['code']);
  const name = `code-${order.id}`;
  return (
    <form
      class="pickup-form"
      noValidate
      onSubmit={(e) => {
        e.preventDefault();
        void form.run(async () => {
          try {
            await api('POST', `/edges/${encodeURIComponent(edgeId)}/orders/${encodeURIComponent(order.id)}/pickup`, { code });
          } catch (err) {
            // The refusal beside the code (wrong_pickup_code, insufficient_balance, …).
            placeRefusal(err, () => 'code');
          }
          onDone();
        });
      }}
    >
      <Field label={`Pickup code for ${order.title || order.id}`} name={name} autocomplete="off" maxLength={32} required value={code} error={form.fieldErrors.code} onInput={(e) => setCode(e.currentTarget.value)} />
      {order.payment === 'counter' && <p class="small">Take the payment at the counter ({money(order.price)}) before handing it over.</p>}
      <FormError message={form.error} />
      <Submit busy={form.busy}>Hand over</Submit>
    </form>
  );
}
