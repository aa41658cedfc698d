import type { Selectable, Transaction } from 'kysely';
import type { Clock } from '../core/clock.ts';
import { AppError, badRequest, conflict, forbidden, notFound } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import type { Db } from '../db/connection.ts';
import type { Database } from '../db/schema.ts';
import { contentsByIds } from '../content/queries.ts';
import { HOLDS, PLATFORM_REVENUE, PLATFORM_ROUNDING, royaltyAccount, storeAccount, walletAccount } from '../ledger/accounts.ts';
import { transferError, type AccountSpec, type Ledger, type TransferInput, type TransferResult } from '../ledger/ledger.ts';
import type { Tariff } from '../ledger/tariff.ts';
import type { DeliveryKind, DeliveryPayer, DeliverySplit, DeliveryState, EdgeDeliveriesTable } from './tables-deliveries.ts';

// Deliveries and their billing (S2.4; docs/edge.md "Deliveries, reports and billing"): the one
// billing path of the home server's rentals (S2.5) and the store server's orders (S2.6).
//
// `open` records what an edge is about to deliver to a user, with the most it may cost
// (`maxFee`); a wallet payer's wallet is held for that much at once (a pending ledger transfer,
// so a user who cannot pay is refused before anything is delivered). The edge then reports
// what it delivered; the *final* report bills the delivery once: one linked chain of ledger
// transfers whose IDs derive from the delivery ID, decided under the delivery's row lock. A
// retry of the same final report (the edge lost the answer, restarted, sent it twice at once)
// answers `duplicate` and moves nothing; a different final report after the bill is refused.
//
// The split is computed on the delivery's total fee F with the tariff's shares, each rounded
// down, what rounding leaves to `platform:rounding` (as settlement does with a purchase's total):
//   edge     floor(F × uploader %)        → wallet:<edge owner>   (the edge is the source)
//   royalty  floor(F × royalty %)         → royalty:<publisher>
//   fee      floor(F × (100 − both) %)    → platform:revenue
//   rounding F − the three                → platform:rounding
// A `counter` payment (cash at the shop, S2.6) is paid from the shop's account store:<owner>,
// which may go negative as with vouchers (what the shop owes the platform for the cash it took);
// the shop's own share stays in its till, so only royalty, fee and rounding move.

export const DELIVERY_LIMITS = {
  /** Minor units: a fee or max fee above this is refused by the routes' schemas. */
  maxFee: 1_000_000_000_000,
  maxBytes: 2 ** 50,
  maxViewedSeconds: 1_000_000_000,
  /** Serialised terms (rate, days, medium…). */
  termsBytes: 4096,
} as const;

/** A wallet payer's hold lasts this long unless `open` says otherwise (7 days). */
export const DEFAULT_HOLD_MS = 7 * 24 * 3_600_000;

export interface OpenDelivery {
  edgeId: string;
  kind: DeliveryKind;
  contentId: string;
  userId: string;
  payer: DeliveryPayer;
  /** The most the final report may bill, minor units. */
  maxFee: number;
  /** What the edge offers (rate, days, medium…): kept and shown, not interpreted. */
  terms: Record<string, unknown>;
  /** How long a wallet payer's hold lasts (ms); default DEFAULT_HOLD_MS. Make it outlast the delivery. */
  holdMs?: number;
}

export interface DeliveryReport {
  deliveryId: string;
  /** The fee so far (non-final) or in all (final), minor units. */
  fee: number;
  bytes?: number;
  viewedSeconds?: number;
  /** Only the final report bills. */
  final: boolean;
}

export interface Delivery {
  id: string;
  serial: number;
  edgeId: string;
  kind: DeliveryKind;
  contentId: string;
  userId: string;
  payer: DeliveryPayer;
  maxFee: number;
  terms: unknown;
  state: DeliveryState;
  openedAt: string;
  /** Latest reported figures (final once billed); null before any report. */
  fee: number | null;
  bytes: number | null;
  viewedSeconds: number | null;
  reports: number;
  lastReportAt: string | null;
  billedAt: string | null;
  /** What the payer's account paid; null before the bill. */
  charged: number | null;
  split: DeliverySplit | null;
}

export interface DeliveryCounts {
  /** Deliveries opened on this edge. */
  opened: number;
  /** Of them, still waiting for their final report. */
  open: number;
  billed: number;
  /** The sum of the billed fees. */
  billedFees: number;
}

/** The edges a delivery may be opened on: their operator (for the share and the store account). */
export interface DeliveryEdges {
  /** Read through `db`: the caller's transaction when `open` runs in one (PGlite has a single connection). */
  ownerOf(edgeId: string, db: Db): Promise<string | null>;
}

export interface DeliveryDeps {
  db: Db;
  clock: Clock;
  ledger: Ledger;
  tariff: Tariff;
  edges: DeliveryEdges;
}

const LEGS = ['edge', 'royalty', 'fee', 'rounding'] as const;
export const deliveryRecord = (deliveryId: string) => `delivery:${deliveryId}`;
const holdId = (deliveryId: string) => `${deliveryId}:hold`;

/**
 * The split of a delivery fee on its total (see the header): each share rounded down, the
 * remainder to rounding, so the parts always add up to the fee.
 */
export function splitDeliveryFee(fee: number, t: Tariff): DeliverySplit {
  const f = BigInt(fee);
  const edge = (f * BigInt(t.uploaderPercent)) / 100n;
  const royalty = (f * BigInt(t.royaltyPercent)) / 100n;
  const platform = (f * BigInt(100 - t.uploaderPercent - t.royaltyPercent)) / 100n;
  return { edge: Number(edge), royalty: Number(royalty), fee: Number(platform), rounding: Number(f - edge - royalty - platform) };
}

const iso = (d: Date | null) => (d ? new Date(d).toISOString() : null);

type Row = Selectable<EdgeDeliveriesTable>;

function view(r: Row): Delivery {
  return {
    id: r.id,
    serial: r.serial,
    edgeId: r.edge_id,
    kind: r.kind,
    contentId: r.content_id,
    userId: r.user_id,
    payer: r.payer,
    maxFee: r.max_fee,
    terms: r.terms,
    state: r.state,
    openedAt: new Date(r.opened_at).toISOString(),
    fee: r.fee,
    bytes: r.bytes,
    viewedSeconds: r.viewed_seconds,
    reports: r.reports,
    lastReportAt: iso(r.last_report_at),
    billedAt: iso(r.billed_at),
    charged: r.charged,
    split: r.split,
  };
}

/** A wallet could not pay: thrown inside a transaction, turned into the refusal outside it. */
class Unaffordable extends Error {
  constructor(
    readonly userId: string,
    readonly needed: number,
    readonly when: 'open' | 'bill',
  ) {
    super('insufficient_balance');
  }
}

/** The delivery's hold expired but was not voided yet: it still counts against the wallet. */
class HoldExpired extends Error {}

const whole = (v: unknown, max: number) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= max;

export class DeliveryService {
  constructor(private readonly deps: DeliveryDeps) {}

  /**
   * Opens a delivery: `{ id: 'dlv_…', serial }`. A wallet payer's wallet is held for `maxFee`
   * (`insufficient_balance` 402, nothing written, if it cannot). In `trx` when given, so the
   * caller's own rows (a rental, an order) commit with it or not at all.
   */
  async open(req: OpenDelivery, trx?: Transaction<Database>): Promise<{ id: string; serial: number }> {
    if (req.kind !== 'rental' && req.kind !== 'order') throw badRequest('invalid_request', 'kind is rental or order.');
    if (req.payer !== 'wallet' && req.payer !== 'counter') throw badRequest('invalid_request', 'payer is wallet or counter.');
    if (req.payer === 'counter' && req.kind !== 'order') throw badRequest('counter_payment_not_allowed', 'Only a store order can be paid at the counter; a rental is paid from the wallet.');
    if (!whole(req.maxFee, DELIVERY_LIMITS.maxFee)) throw badRequest('invalid_request', `maxFee is a whole number of minor units from 0 to ${DELIVERY_LIMITS.maxFee}.`);
    const holdMs = req.holdMs ?? DEFAULT_HOLD_MS;
    if (!Number.isSafeInteger(holdMs) || holdMs <= 0) throw badRequest('invalid_request', 'holdMs is a positive whole number of milliseconds.');
    const terms = JSON.stringify(req.terms ?? {});
    if (Buffer.byteLength(terms) > DELIVERY_LIMITS.termsBytes) throw badRequest('invalid_request', `terms are at most ${DELIVERY_LIMITS.termsBytes} bytes of JSON.`);
    const owner = await this.deps.edges.ownerOf(req.edgeId, trx ?? this.deps.db);
    if (!owner) throw notFound('unknown_edge', `No edge ${req.edgeId}.`);
    const content = (await contentsByIds(trx ?? this.deps.db, [req.contentId])).get(req.contentId);
    if (!content) throw notFound('unknown_content', `No content ${req.contentId}.`);

    const id = newId('dlv');
    const now = this.deps.clock.now();
    const hold = req.payer === 'wallet' && req.maxFee > 0 ? holdId(id) : null;
    const write = async (t: Transaction<Database>) => {
      const row = await t
        .insertInto('edge_deliveries')
        .values({
          id,
          edge_id: req.edgeId,
          edge_owner_id: owner,
          kind: req.kind,
          content_id: req.contentId,
          publisher_id: content.publisherId,
          user_id: req.userId,
          payer: req.payer,
          max_fee: req.maxFee,
          terms,
          state: 'open',
          hold_id: hold,
          opened_at: new Date(now),
        })
        .returning('serial')
        .executeTakeFirstOrThrow();
      if (hold) {
        const wallet = walletAccount(req.userId);
        await this.deps.ledger.ensureAccounts([wallet, HOLDS], { trx: t });
        const [r] = await this.deps.ledger.apply(
          [{ id: hold, kind: 'pending', debit: wallet.id, credit: HOLDS.id, amount: req.maxFee, timeoutMs: holdMs, reason: 'reservation', contentId: req.contentId, ref: id, record: deliveryRecord(id) }],
          { trx: t },
        );
        if (r.status === 'failed') throw r.code === 'insufficient_balance' ? new Unaffordable(req.userId, req.maxFee, 'open') : transferError(r);
      }
      return { id, serial: row.serial };
    };
    return this.inTransaction(trx, write);
  }

  /**
   * One report of `edgeId` about one of its deliveries. `accepted`: recorded (a final one
   * billed); `duplicate`: the delivery was already billed with exactly this final report (or
   * this is a progress report arriving after the bill): nothing changed. Refusals throw
   * (`unknown_delivery`, `not_your_delivery`, `fee_exceeds_terms`, `delivery_already_billed`,
   * `insufficient_balance`) and change nothing.
   */
  async report(edgeId: string, report: DeliveryReport): Promise<{ status: 'accepted' | 'duplicate'; delivery: Delivery }> {
    try {
      return await this.reportOnce(edgeId, report, false);
    } catch (err) {
      if (!(err instanceof HoldExpired)) throw err;
      await this.deps.ledger.expireHolds(); // outside the transaction, which rolled back
      return this.reportOnce(edgeId, report, true);
    }
  }

  private async reportOnce(edgeId: string, report: DeliveryReport, sweptExpired: boolean): Promise<{ status: 'accepted' | 'duplicate'; delivery: Delivery }> {
    const { fee, final } = report;
    const bytes = report.bytes ?? null;
    const viewed = report.viewedSeconds ?? null;
    if (!whole(fee, DELIVERY_LIMITS.maxFee)) throw badRequest('invalid_request', 'fee is a whole number of minor units.');
    if (bytes !== null && !whole(bytes, DELIVERY_LIMITS.maxBytes)) throw badRequest('invalid_request', 'bytes is a whole number.');
    if (viewed !== null && !whole(viewed, DELIVERY_LIMITS.maxViewedSeconds)) throw badRequest('invalid_request', 'viewedSeconds is a whole number.');

    return this.inTransaction(undefined, async (trx) => {
      // The row lock makes reports of one delivery take turns: of two final reports at once, the second sees the bill.
      const row = await trx.selectFrom('edge_deliveries').selectAll().where('id', '=', report.deliveryId).forUpdate().executeTakeFirst();
      if (!row) throw notFound('unknown_delivery', `No delivery ${report.deliveryId}.`);
      if (row.edge_id !== edgeId) throw forbidden('not_your_delivery', `Delivery ${report.deliveryId} was opened on another edge; an edge reports only its own deliveries.`);
      if (fee > row.max_fee) {
        throw new AppError('fee_exceeds_terms', `A fee of ${fee} is more than the ${row.max_fee} this delivery's terms allow.`, 409, { fee, maxFee: row.max_fee });
      }
      if (row.state === 'billed') {
        const same = row.fee === fee && row.bytes === bytes && row.viewed_seconds === viewed;
        if (!final || same) return { status: 'duplicate' as const, delivery: view(row) };
        throw new AppError(
          'delivery_already_billed',
          `Delivery ${row.id} was billed ${row.fee} (${row.billed_at!.toISOString()}) on its final report; a different final report changes nothing.`,
          409,
          { billedFee: row.fee, fee },
        );
      }
      const now = new Date(this.deps.clock.now());
      if (!final) {
        // Progress: the running figures only grow (reports may arrive out of order).
        const max = (a: number | null, b: number | null) => (a === null ? b : b === null ? a : Math.max(a, b));
        const updated = await trx
          .updateTable('edge_deliveries')
          .set({ fee: max(row.fee, fee), bytes: max(row.bytes, bytes), viewed_seconds: max(row.viewed_seconds, viewed), reports: row.reports + 1, last_report_at: now })
          .where('id', '=', row.id)
          .returningAll()
          .executeTakeFirstOrThrow();
        return { status: 'accepted' as const, delivery: view(updated) };
      }
      const { split, charged } = await this.bill(trx, row, fee, sweptExpired);
      const updated = await trx
        .updateTable('edge_deliveries')
        .set({ state: 'billed', fee, bytes, viewed_seconds: viewed, reports: row.reports + 1, last_report_at: now, billed_at: now, charged, split: JSON.stringify(split) as never })
        .where('id', '=', row.id)
        .returningAll()
        .executeTakeFirstOrThrow();
      return { status: 'accepted' as const, delivery: view(updated) };
    });
  }

  /** The ledger chain of a final report, in the report's transaction. */
  private async bill(trx: Transaction<Database>, row: Row, fee: number, sweptExpired: boolean): Promise<{ split: DeliverySplit; charged: number }> {
    const { ledger, tariff } = this.deps;
    const split = splitDeliveryFee(fee, tariff);
    const counter = row.payer === 'counter';
    const payer = counter ? storeAccount(row.edge_owner_id) : walletAccount(row.user_id);
    const credit: Record<(typeof LEGS)[number], AccountSpec> = {
      edge: walletAccount(row.edge_owner_id),
      royalty: royaltyAccount(row.publisher_id),
      fee: PLATFORM_REVENUE,
      rounding: PLATFORM_ROUNDING,
    };
    // The shop's share of a counter payment is already in its till.
    const legs = LEGS.filter((leg) => split[leg] > 0 && !(counter && leg === 'edge'));
    const common = { contentId: row.content_id, ref: row.id, record: deliveryRecord(row.id) };
    const moves: TransferInput[] = legs.map((leg) => ({ id: `${row.id}:${leg}`, debit: payer.id, credit: credit[leg].id, amount: split[leg], reason: leg === 'edge' ? 'edge' : leg, ...common }));
    const release: TransferInput[] = row.hold_id ? [{ id: `${row.id}:release`, kind: 'void', pendingId: row.hold_id, reason: 'reservation', ...common }] : [];
    await ledger.ensureAccounts([payer, ...legs.map((leg) => credit[leg])], { trx });
    const chain = (ts: TransferInput[]) => ts.map((t, i) => ({ ...t, linked: i < ts.length - 1 }));
    let results: TransferResult[] = await ledger.apply(chain([...release, ...moves]), { trx });
    const failed = (rs: TransferResult[]) => rs.find((r) => r.status === 'failed' && r.code !== 'linked_event_failed') ?? rs.find((r) => r.status === 'failed');
    let f = failed(results);
    if (f && release.length && f.id === release[0].id && (f.code === 'pending_expired' || f.code === 'pending_already_resolved')) {
      // The hold ran out (or the expiry sweep voided it): the wallet pays what it can without it.
      results = moves.length ? await ledger.apply(chain(moves), { trx }) : [];
      f = failed(results);
      // An expired hold still counts against the wallet until the sweep voids it: sweep, then once more (report()).
      if (f?.code === 'insufficient_balance' && !sweptExpired) throw new HoldExpired();
    }
    if (f?.code === 'insufficient_balance') throw new Unaffordable(row.user_id, fee, 'bill');
    if (f) throw transferError(f);
    return { split, charged: moves.reduce((s, t) => s + (t as { amount: number }).amount, 0) };
  }

  /** The refusal of a wallet that cannot pay, with its balance read after the transaction rolled back. */
  private async unaffordable(u: Unaffordable, readBalance: boolean): Promise<AppError> {
    // Inside a caller's transaction the balance is not read (on PGlite that would wait for the transaction).
    const a = readBalance ? await this.deps.ledger.balance(walletAccount(u.userId).id).catch(() => ({ available: 0 })) : { available: null };
    return new AppError(
      'insufficient_balance',
      u.when === 'open'
        ? `This costs up to ${u.needed}, held from the wallet until it is delivered; the wallet has ${a.available ?? 'less than that'} available. Top up first (cascade wallet topup CODE).`
        : `The delivery's hold has expired and the wallet cannot pay the fee of ${u.needed} (${a.available ?? 'less'} available); it stays unbilled until it can.`,
      402,
      { needed: u.needed, available: a.available },
    );
  }

  /** Runs `work` in `trx` or a transaction of its own; a wallet that cannot pay becomes its refusal. */
  private async inTransaction<T>(trx: Transaction<Database> | undefined, work: (t: Transaction<Database>) => Promise<T>): Promise<T> {
    try {
      return await (trx ? work(trx) : this.deps.db.transaction().execute(work));
    } catch (err) {
      // Read outside the transaction (PGlite has one connection; and the caller's trx is being abandoned).
      if (err instanceof Unaffordable) throw await this.unaffordable(err, !trx);
      throw err;
    }
  }

  /** One delivery (for its edge's operator, its user, or the edge itself); null if unknown. */
  async get(id: string): Promise<Delivery | null> {
    const row = await this.deps.db.selectFrom('edge_deliveries').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? view(row) : null;
  }

  /** S2.7: the delivery a mark's serial names. */
  async bySerial(serial: number): Promise<Delivery | null> {
    if (!Number.isSafeInteger(serial) || serial < 1) return null;
    const row = await this.deps.db.selectFrom('edge_deliveries').selectAll().where('serial', '=', serial).executeTakeFirst();
    return row ? view(row) : null;
  }

  /** An edge's or a user's deliveries, newest first; `before` is the previous page's last serial. */
  async list(of: { edgeId: string } | { userId: string }, page: { limit?: number; before?: number } = {}): Promise<{ deliveries: Delivery[]; nextBefore: number | null }> {
    const limit = page.limit ?? 50;
    let q = this.deps.db.selectFrom('edge_deliveries').selectAll();
    q = 'edgeId' in of ? q.where('edge_id', '=', of.edgeId) : q.where('user_id', '=', of.userId);
    if (page.before !== undefined) q = q.where('serial', '<', page.before);
    const rows = await q.orderBy('serial', 'desc').limit(limit + 1).execute();
    const deliveries = rows.slice(0, limit).map(view);
    return { deliveries, nextBefore: rows.length > limit ? deliveries[deliveries.length - 1].serial : null };
  }

  /** What an edge's deliveries came to (for `cascade edge status` and the operator). */
  async counts(edgeId: string): Promise<DeliveryCounts> {
    const r = await this.deps.db
      .selectFrom('edge_deliveries')
      .select((eb) => [
        eb.fn.countAll<number>().as('opened'),
        eb.fn.sum<number>(eb.case().when('state', '=', 'open').then(1).else(0).end()).as('open'),
        eb.fn.sum<number>(eb.case().when('state', '=', 'billed').then(1).else(0).end()).as('billed'),
        eb.fn.sum<number>(eb.case().when('state', '=', 'billed').then(eb.ref('fee')).else(0).end()).as('fees'),
      ])
      .where('edge_id', '=', edgeId)
      .executeTakeFirstOrThrow();
    return { opened: Number(r.opened), open: Number(r.open ?? 0), billed: Number(r.billed ?? 0), billedFees: Number(r.fees ?? 0) };
  }
}
