import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { isFullyPaid, newPurchase, roundingKept, stepPurchase, stillToPay, type PurchaseTotals } from '../../src/ledger/purchase.ts';
import { DEFAULT_TARIFF } from '../../src/ledger/tariff.ts';

// #10 point 1: what a content costs, and what each party earns, does not depend on how
// the receiver groups its receipts, which sources delivered what, or interruptions.

const T = DEFAULT_TARIFF;

/** Charges the steps in order; returns the totals and what each step moved. */
function run(price: number, totalBytes: number, steps: { bytes: number; uploader: string; rates?: number[] }[], t = T) {
  let p: PurchaseTotals = newPurchase(price, totalBytes);
  const paid = { wallet: 0, rounding: 0, uploader: new Map<string, number>(), royalty: 0, fee: 0 };
  for (const s of steps) {
    const { amounts, after } = stepPurchase(p, { bytes: s.bytes, ratePercents: s.rates ?? [], uploader: s.uploader }, t);
    for (const v of [amounts.charge, ...Object.values(amounts.fromWallet), ...Object.values(amounts.fromRounding)]) assert.ok(Number.isSafeInteger(v) && v >= 0, `negative or fractional amount ${v}`);
    // What leaves the wallet is the charge, to the unit.
    const fromWallet = amounts.fromWallet.uploader + amounts.fromWallet.royalty + amounts.fromWallet.fee + amounts.fromWallet.rounding;
    assert.equal(fromWallet, amounts.charge);
    paid.wallet += amounts.charge;
    paid.rounding += amounts.fromWallet.rounding - amounts.fromRounding.uploader - amounts.fromRounding.royalty - amounts.fromRounding.fee;
    assert.ok(paid.rounding >= 0, 'rounding paid out more than this purchase left in it');
    paid.uploader.set(s.uploader, (paid.uploader.get(s.uploader) ?? 0) + amounts.fromWallet.uploader + amounts.fromRounding.uploader);
    paid.royalty += amounts.fromWallet.royalty + amounts.fromRounding.royalty;
    paid.fee += amounts.fromWallet.fee + amounts.fromRounding.fee;
    p = after;
  }
  assert.equal(paid.rounding, roundingKept(p));
  return { p, paid };
}

/** Pieces of `pieceSize` (the last one shorter) covering `totalBytes`. */
const pieces = (totalBytes: number, pieceSize: number) => Array.from({ length: Math.ceil(totalBytes / pieceSize) }, (_, i) => Math.min(pieceSize, totalBytes - i * pieceSize));

test('the issue’s example: 300 for 1,000 pieces is 300 as one receipt, as receipts of 8, and as 1,000 one-piece receipts', () => {
  const sizes = pieces(1000 * 1024, 1024);
  const group = (n: number) => {
    const out: { bytes: number; uploader: string }[] = [];
    for (let i = 0; i < sizes.length; i += n) out.push({ bytes: sizes.slice(i, i + n).reduce((a, b) => a + b, 0), uploader: 'wallet:peer' });
    return out;
  };
  for (const n of [1000, 8, 1]) {
    const { p, paid } = run(300, 1000 * 1024, group(n));
    assert.equal(paid.wallet, 300, `receipts of ${n}`);
    assert.equal(paid.uploader.get('wallet:peer'), 150);
    assert.equal(paid.royalty, 120);
    assert.equal(paid.fee, 30);
    assert.equal(roundingKept(p), 0);
    assert.ok(isFullyPaid(p));
  }
});

test('a content is paid once: bytes beyond its size cost nothing, and earn nothing', () => {
  const { p, paid } = run(300, 1000, [
    { bytes: 600, uploader: 'a' },
    { bytes: 400, uploader: 'b' },
    { bytes: 1000, uploader: 'c' }, // fetched again
  ]);
  assert.equal(paid.wallet, 300);
  assert.equal(paid.uploader.get('c'), 0);
  assert.equal(p.paidBytes, 1000);
  // Part of a receipt can be beyond: only the rest is charged.
  const partial = run(300, 1000, [
    { bytes: 900, uploader: 'a' },
    { bytes: 300, uploader: 'b' },
  ]);
  assert.equal(partial.paid.wallet, 300);
  assert.equal(partial.paid.uploader.get('b'), 15); // floor(30 × 50 %) for its 100 chargeable bytes
});

test('rules multiply exactly: off-peak and frequent receiver on the whole content', () => {
  const { paid } = run(1000, 3000, [
    { bytes: 1000, uploader: 'a', rates: [80, 90] },
    { bytes: 1000, uploader: 'a', rates: [80, 90] },
    { bytes: 1000, uploader: 'a', rates: [80, 90] },
  ]);
  assert.equal(paid.wallet, 720);
  assert.equal(paid.uploader.get('a'), 360);
});

test('stillToPay covers what the rest can cost, and never more than the rest of the price', () => {
  const p = newPurchase(300, 1000);
  assert.equal(stillToPay(p, 1000), 300);
  assert.equal(stillToPay(p, 1), 1); // ceil(0.3)
  assert.equal(stillToPay(p, 0), 0);
  const { p: half } = run(300, 1000, [{ bytes: 499, uploader: 'a' }]); // charged floor(149.7) = 149
  assert.equal(half.charged, 149);
  assert.equal(stillToPay(half, 501), 151); // the whole rest: exactly what is left to pay
  assert.equal(stillToPay(half, 10_000), 151);
  const { p: done } = run(300, 1000, [{ bytes: 1000, uploader: 'a' }]);
  assert.equal(stillToPay(done, 1000), 0);
});

test('refuses what cannot be: negative bytes, a rate over 100 %, more rules than the denominator holds', () => {
  const p = newPurchase(300, 1000);
  assert.throws(() => stepPurchase(p, { bytes: -1, ratePercents: [], uploader: 'a' }, T), RangeError);
  assert.throws(() => stepPurchase(p, { bytes: 1, ratePercents: [101], uploader: 'a' }, T), RangeError);
  assert.throws(() => stepPurchase(p, { bytes: 1, ratePercents: [90, 90, 90, 90], uploader: 'a' }, T), RangeError);
});

// Random contents delivered by random sources in random groupings, with interruptions
// (a transfer stopped, resumed from other sources, pieces fetched twice): the totals are
// exactly those of the closed form, whatever happened.
test('property: totals depend on what was delivered, never on grouping, order, sources or interruptions', () => {
  const world = fc
    .record({
      price: fc.oneof(fc.integer({ min: 0, max: 1000 }), fc.integer({ min: 0, max: 1e12 })),
      pieceSize: fc.integer({ min: 1, max: 5000 }),
      pieceCount: fc.integer({ min: 1, max: 300 }),
      lastShort: fc.integer({ min: 0, max: 4999 }),
      rates: fc.subarray([80, 90, 85]),
      uploaderPercent: fc.integer({ min: 0, max: 100 }),
      royaltyPercent: fc.integer({ min: 0, max: 100 }),
      seed: fc.integer(),
    })
    .filter((w) => w.uploaderPercent + w.royaltyPercent <= 100)
    .chain((w) =>
      fc.record({
        w: fc.constant(w),
        // Who delivers each piece (0–3), the receipt boundaries, and pieces fetched again.
        source: fc.array(fc.integer({ min: 0, max: 3 }), { minLength: w.pieceCount, maxLength: w.pieceCount }),
        cut: fc.array(fc.boolean(), { minLength: w.pieceCount, maxLength: w.pieceCount }),
        again: fc.array(fc.integer({ min: 0, max: w.pieceCount - 1 }), { maxLength: 20 }),
        order: fc.array(fc.nat(), { minLength: w.pieceCount, maxLength: w.pieceCount }),
      }),
    );
  fc.assert(
    fc.property(world, ({ w, source, cut, again, order }) => {
      const tariff = { ...T, uploaderPercent: w.uploaderPercent, royaltyPercent: w.royaltyPercent };
      const sizes = pieces(w.pieceSize * w.pieceCount, w.pieceSize);
      sizes[sizes.length - 1] = Math.max(1, sizes[sizes.length - 1] - (w.lastShort % w.pieceSize));
      const total = sizes.reduce((a, b) => a + b, 0);
      // Deliveries in a random order (an interrupted transfer resumed elsewhere delivers out of order).
      const idx = sizes.map((_, i) => i).sort((a, b) => order[a] - order[b] || a - b);
      const steps: { bytes: number; uploader: string; rates: number[] }[] = [];
      let current: { bytes: number; uploader: string; rates: number[] } | null = null;
      for (const i of idx) {
        const uploader = `src${source[i]}`;
        if (!current || current.uploader !== uploader || cut[i]) {
          current = { bytes: 0, uploader, rates: w.rates };
          steps.push(current);
        }
        current.bytes += sizes[i];
      }
      for (const i of again) steps.push({ bytes: sizes[i], uploader: 'src9', rates: w.rates }); // fetched again: free
      const { p, paid } = run(w.price, total, steps, tariff);

      // The closed form, on totals (BigInt): rate = Π rules / 100^k.
      const rate = w.rates.reduce((acc, r) => acc * BigInt(r), 1n);
      const den = BigInt(total) * 100n ** BigInt(w.rates.length);
      const exact = (bytes: number, percent = 100) => Number((BigInt(w.price) * BigInt(bytes) * rate * BigInt(percent)) / (den * 100n));
      assert.equal(paid.wallet, exact(total), 'what the receiver paid');
      assert.equal(paid.royalty, exact(total, w.royaltyPercent), 'royalty');
      assert.equal(paid.fee, exact(total, 100 - w.uploaderPercent - w.royaltyPercent), 'fee');
      const bySource = new Map<string, number>();
      for (const [i, s] of source.entries()) bySource.set(`src${s}`, (bySource.get(`src${s}`) ?? 0) + sizes[i]);
      for (const [s, bytes] of bySource) {
        // Exact per source: floor(P × its bytes × rate × share / T).
        const num = BigInt(w.price) * BigInt(bytes) * rate * BigInt(w.uploaderPercent);
        assert.equal(paid.uploader.get(s), Number(num / (den * 100n)), `uploader ${s}`);
      }
      assert.equal(paid.uploader.get('src9') ?? 0, 0, 'a piece fetched again earns nothing');
      assert.ok(roundingKept(p) >= 0 && roundingKept(p) <= 2 + bySource.size, `rounding ${roundingKept(p)}`);
      assert.ok(isFullyPaid(p));
      if (w.price > 0 && w.rates.length === 0) assert.equal(paid.wallet, w.price, 'a whole content at the list price costs its price');
    }),
    { numRuns: 300, seed: 10_001 },
  );
});
