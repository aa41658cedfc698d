import { AppError } from '../../src/core/errors.ts';
import { PLATFORM_REVENUE, storeAccount, walletAccount } from '../../src/ledger/accounts.ts';
import type { Ledger } from '../../src/ledger/ledger.ts';
import type { DeliveryBilling } from '../../src/edge/orders.ts';

// An interim stand-in for the store server's tests (#17): the delivery service ("bill"'s
// DeliveryService) as the plan describes it. Once that is on main the tests use the real one
// (tried against bill's branch: the flow passes; its split credits the edge's share back, so the
// store's cash account moves by less than the price there).

interface TestDelivery {
  id: string;
  serial: number;
  edgeId: string;
  contentId: string;
  userId: string;
  payer: 'wallet' | 'counter';
  maxFee: number;
}

/** Deliveries billed once through the real ledger: the payer (wallet, or the store's cash account) pays the platform. */
export class TestDeliveries implements DeliveryBilling {
  readonly deliveries = new Map<string, TestDelivery>();
  readonly cancelled: string[] = [];
  readonly reports: { deliveryId: string; outcome: 'accepted' | 'duplicate' | string }[] = [];
  ledger!: Ledger;
  private serial = 0;
  constructor(private readonly ownerOf: (edgeId: string) => Promise<string>) {}

  async open(input: { edgeId: string; contentId: string; userId: string; payer: 'wallet' | 'counter'; maxFee: number }) {
    const d = { id: `dlv_${++this.serial}_${Math.random().toString(36).slice(2, 8)}`, serial: this.serial, ...input };
    this.deliveries.set(d.id, d);
    return { id: d.id, serial: d.serial };
  }

  async cancel(deliveryId: string) {
    this.cancelled.push(deliveryId);
  }

  async report(edgeId: string, r: { deliveryId: string; fee: number; final: boolean }) {
    const d = this.deliveries.get(r.deliveryId);
    if (!d || d.edgeId !== edgeId) throw new AppError('not_your_delivery', 'not this edge’s delivery', 403);
    if (r.fee > d.maxFee) throw new AppError('fee_exceeds_terms', 'fee over the terms', 409);
    const payer = d.payer === 'wallet' ? walletAccount(d.userId) : storeAccount(await this.ownerOf(edgeId));
    await this.ledger.ensureAccounts([payer, PLATFORM_REVENUE]);
    const [res] = await this.ledger.apply([{ id: `delivery:${d.id}`, debit: payer.id, credit: PLATFORM_REVENUE.id, amount: r.fee, reason: 'purchase', ref: d.id }]);
    if (res.status === 'failed') {
      this.reports.push({ deliveryId: d.id, outcome: res.code! });
      if (res.code === 'insufficient_balance') throw new AppError('insufficient_balance', 'the wallet does not hold the fee', 402);
      throw new AppError(res.code!, 'refused', 409);
    }
    this.reports.push({ deliveryId: d.id, outcome: res.status === 'created' ? 'accepted' : 'duplicate' });
    return { status: res.status };
  }
}
