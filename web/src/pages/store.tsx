import { useState } from 'preact/hooks';
import { api } from '../api.ts';
import { NeedsRole, Page } from '../components/common.tsx';
import { Field, FormError, Submit, useSubmit } from '../components/forms.tsx';
import { money, when } from '../format.ts';
import { hasRole } from '../session.ts';
import { invalidCodeField, placeRefusal } from '../refusals.ts';

// A store issues prepaid vouchers (S1.11, store role): POST /vouchers { amount, count,
// expiresAt? }, the same as `cascade voucher issue`. The codes are in that answer only, so
// they are shown at once as a sheet to print (styles.css `@media print` prints the sheet alone).

interface Voucher {
  id: string;
  code: string;
  amount: number;
  expiresAt: string | null;
}

const MAX_COUNT = 1000;
const MAX_AMOUNT = 10_000_000;

export function StorePage() {
  if (!hasRole('store')) return <NeedsRole role="store" />;
  return <StoreView />;
}

function StoreView() {
  const [count, setCount] = useState('10');
  const [amount, setAmount] = useState('');
  const [expires, setExpires] = useState('');
  const [issued, setIssued] = useState<Voucher[]>([]);
  const form = useSubmit(['count', 'amount', 'expiresAt']);

  return (
    <Page title="Vouchers">
      <section class="no-print" aria-labelledby="issue-h">
        <h2 id="issue-h">Issue vouchers</h2>
        <p class="muted">Each voucher adds its amount to the wallet of whoever redeems its code. Your store owes the platform the face value of every voucher issued.</p>
        <form
          class="narrow"
          onSubmit={(e) => {
            e.preventDefault();
            form.run(async () => {
              const body = {
                amount: Number(amount),
                count: Number(count),
                // A date: valid to the end of that day, UTC.
                ...(expires ? { expiresAt: `${expires}T23:59:59.999Z` } : {}),
              };
              try {
                const r = await api<{ vouchers: Voucher[] }>('POST', '/vouchers', body);
                setIssued(r.vouchers);
              } catch (err) {
                placeRefusal(err, (x) => (x.code === 'invalid_expiry' ? 'expiresAt' : invalidCodeField(x, ['count', 'amount'])));
              }
            });
          }}
        >
          <FormError message={form.error} />
          <Field label="How many" name="count" type="number" min={1} max={MAX_COUNT} step={1} required value={count} error={form.fieldErrors.count} hint={`1 to ${MAX_COUNT} at a time.`} onInput={(e) => setCount(e.currentTarget.value)} />
          <Field label="Amount of each" name="amount" type="number" min={1} max={MAX_AMOUNT} step={1} required value={amount} error={form.fieldErrors.amount} hint="In minor units (e.g. cents), as wallets show them." onInput={(e) => setAmount(e.currentTarget.value)} />
          <Field label="Valid until (optional)" name="expiresAt" type="date" value={expires} error={form.fieldErrors.expiresAt} hint="To the end of that day, UTC. Empty: never expires." onInput={(e) => setExpires(e.currentTarget.value)} />
          <Submit busy={form.busy}>Issue vouchers</Submit>
        </form>
        <p class="muted">Issued codes are shown only once, right here: print them before leaving this page. The origin keeps no readable copy.</p>
      </section>

      {issued.length > 0 && (
        <section class="voucher-sheet" aria-labelledby="sheet-h">
          <div class="page-head">
            <h2 id="sheet-h">
              {issued.length} {issued.length === 1 ? 'voucher' : 'vouchers'} of {money(issued[0].amount)}
            </h2>
            <button type="button" class="no-print" onClick={() => window.print()}>
              Print
            </button>
          </div>
          <p class="notice no-print" role="status">
            Issued. Print or copy these codes now: they are not shown again.
          </p>
          <ul class="vouchers" aria-label="Voucher codes">
            {issued.map((v) => (
              <li key={v.id} class="voucher">
                <span class="voucher-amount">{money(v.amount)}</span>
                <code class="voucher-code">{v.code}</code>
                <span class="voucher-how">
                  Redeem in Cascade: Wallet, “Top up with a voucher”{v.expiresAt ? `. Valid until ${when(v.expiresAt)}` : ''}.
                </span>
              </li>
            ))}
          </ul>
        </section>
      )}
    </Page>
  );
}
