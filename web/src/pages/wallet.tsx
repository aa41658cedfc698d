import { TableWrap } from '../components/table-wrap.tsx';
import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, qs } from '../api.ts';
import { ErrorNote, Link, Loading, Page, useLoad } from '../components/common.tsx';
import { Field, FormError, Submit, useSubmit } from '../components/forms.tsx';
import { money, when } from '../format.ts';
import { hasRole } from '../session.ts';
import { placeRefusal } from '../refusals.ts';

// The member's wallet (S1.12, S1.11): balance (posted, held, available), earnings, the
// accounting records in the spec's words, and a voucher top-up (POST /wallet/topup).
// Everything comes from GET /wallet and GET /wallet/history (docs/ledger.md "Records").

interface WalletView {
  account: string;
  userId: string;
  balance: { posted: number; pending: number; available: number };
  earnings: { uploads: number; royalties: { earned: number; paidOut: number; balance: number } | null };
}

export interface WalletRecord {
  id: string;
  at: string;
  since: string;
  amount: number;
  held: number;
  balanceAfter: number;
  reason: string;
  description: string;
  counterpart: string;
  counterpartName: string | null;
  contentId: string | null;
  contentTitle: string | null;
  ref: string | null;
  receipts: number;
}

interface History {
  account: string;
  entries: WalletRecord[];
  nextCursor: string | null;
}

/** The spec's words for a record's reason (S1.12): a store's voucher issue is its "store purchase". */
export function reasonWords(reason: string): string {
  return reason === 'voucher' ? 'store purchase' : reason;
}

export function signed(amount: number): string {
  return amount > 0 ? `+${money(amount)}` : money(amount);
}

/** Refusals of a voucher code, shown next to the code field. */
const CODE_REFUSALS = new Set(['voucher_unknown', 'voucher_used', 'voucher_expired', 'too_many_attempts']);

export function WalletPage() {
  const wallet = useLoad(() => api<WalletView>('GET', '/wallet'));
  const [account, setAccount] = useState<'wallet' | 'royalties'>('wallet');
  const [code, setCode] = useState('');
  const [done, setDone] = useState<string | null>(null);
  const [historyTick, setHistoryTick] = useState(0);
  const topup = useSubmit(['code']);
  const w = wallet.data;
  const publisher = !!w?.earnings.royalties || hasRole('publisher');

  return (
    <Page title="Wallet">
      <ErrorNote message={wallet.error} />
      {!w && !wallet.error && <Loading what="your wallet" />}
      {w && (
        <div class="panels">
          <section class="panel" aria-labelledby="balance-h">
            <h2 id="balance-h">Balance</h2>
            <dl class="facts">
              <dt>Available</dt>
              <dd>
                <strong data-testid="available">{money(w.balance.available)}</strong>
              </dd>
              <dt>Posted</dt>
              <dd>{money(w.balance.posted)}</dd>
              <dt>Held</dt>
              <dd>
                {money(w.balance.pending)} <span class="muted">(reserved for downloads in progress)</span>
              </dd>
            </dl>
          </section>
          <section class="panel" aria-labelledby="earnings-h">
            <h2 id="earnings-h">Earnings</h2>
            <dl class="facts">
              <dt>Serving others</dt>
              <dd>{money(w.earnings.uploads)} <span class="muted">(credited to this wallet)</span></dd>
              {w.earnings.royalties && (
                <>
                  <dt>Royalties earned</dt>
                  <dd>{money(w.earnings.royalties.earned)}</dd>
                  <dt>Paid out</dt>
                  <dd>{money(w.earnings.royalties.paidOut)}</dd>
                  <dt>Owed to you</dt>
                  <dd>
                    {money(w.earnings.royalties.balance)} {publisher && <Link to="/statement">Royalty statement</Link>}
                  </dd>
                </>
              )}
            </dl>
          </section>
        </div>
      )}

      <section aria-labelledby="topup-h">
        <h2 id="topup-h">Top up with a voucher</h2>
        <form
          class="narrow"
          onSubmit={(e) => {
            e.preventDefault();
            topup.run(async () => {
              setDone(null);
              let r: { amount: number; balance: number };
              try {
                r = await api<{ voucherId: string; amount: number; balance: number }>('POST', '/wallet/topup', { code });
              } catch (err) {
                placeRefusal(err, (x: ApiError) => (CODE_REFUSALS.has(x.code) ? 'code' : null));
              }
              setCode('');
              setDone(`Credited ${money(r.amount)}; your balance is now ${money(r.balance)}.`);
              wallet.reload();
              setHistoryTick((t) => t + 1);
            });
          }}
        >
          <FormError message={topup.error} />
          <Field
            label="Voucher code"
            name="code"
            value={code}
            required
            maxLength={100}
            autocomplete="off"
            spellcheck={false}
            hint="As printed on the voucher; case, dashes and spaces do not matter."
            error={topup.fieldErrors.code}
            onInput={(e) => setCode(e.currentTarget.value)}
          />
          <Submit busy={topup.busy}>Redeem</Submit>
        </form>
        <p role="status" class="ok-note">
          {done}
        </p>
      </section>

      <section aria-labelledby="records-h">
        <h2 id="records-h">Records</h2>
        {publisher && (
          <div class="tabs" role="group" aria-label="Which account">
            <button type="button" aria-pressed={account === 'wallet'} onClick={() => setAccount('wallet')}>
              Wallet
            </button>
            <button type="button" aria-pressed={account === 'royalties'} onClick={() => setAccount('royalties')}>
              Royalties
            </button>
          </div>
        )}
        <RecordsTable account={account} tick={historyTick} />
      </section>
    </Page>
  );
}

function RecordsTable({ account, tick }: { account: 'wallet' | 'royalties'; tick: number }) {
  const [entries, setEntries] = useState<WalletRecord[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);

  async function load(before: string | null) {
    setLoading(true);
    setError(null);
    try {
      const h = await api<History>('GET', `/wallet/history${qs({ account, limit: 20, before })}`);
      setEntries((old) => (before ? [...old, ...h.entries] : h.entries));
      setCursor(h.nextCursor);
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setLoading(false);
    }
  }
  useEffect(() => {
    load(null);
  }, [account, tick]);

  const label = account === 'royalties' ? 'Royalty records, newest first' : 'Wallet records, newest first';
  return (
    <>
      <ErrorNote message={error} />
      {!loading && !error && entries.length === 0 && <p class="muted">No records yet.</p>}
      {entries.length > 0 && (
        <TableWrap label={label}>
          <table class="records">
            <caption class="visually-hidden">{label}</caption>
            <thead>
              <tr>
                <th scope="col">Time</th>
                <th scope="col">Reason</th>
                <th scope="col" class="num">
                  Amount
                </th>
                <th scope="col" class="num">
                  Balance after
                </th>
                <th scope="col">Counterpart</th>
                <th scope="col">Linked record</th>
                <th scope="col">Event ID</th>
              </tr>
            </thead>
            <tbody>
              {entries.map((r) => (
                <tr key={r.id}>
                  <td>{when(r.at)}</td>
                  <td>{reasonWords(r.reason)}</td>
                  <td class="num">
                    {signed(r.amount)}
                    {r.held > 0 && <div class="muted">{money(r.held)} held</div>}
                  </td>
                  <td class="num">{money(r.balanceAfter)}</td>
                  <td>{r.counterpartName ?? r.counterpart}</td>
                  <td>
                    {r.contentId && <Link to={`/content/${r.contentId}`}>{r.contentTitle ?? r.contentId.slice(0, 12)}</Link>}
                    <div class="muted small">{r.description}</div>
                  </td>
                  <td>
                    <code class="id">{r.id}</code>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </TableWrap>
      )}
      {loading && <Loading what="records" />}
      {cursor && !loading && (
        <button type="button" class="secondary" onClick={() => load(cursor)}>
          Older records
        </button>
      )}
    </>
  );
}
