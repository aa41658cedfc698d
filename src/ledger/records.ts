import type { AccountService } from '../accounts/service.ts';
import type { ContentService } from '../content/service.ts';
import { badRequest } from '../core/errors.ts';
import { sql, type Db } from '../db/connection.ts';
import { arrayLiteral } from '../db/array-literal.ts';
import { type HistoryEntry, type Ledger } from './ledger.ts';

// Records people can read (S1.12, #12 point 4; docs/ledger.md "Records"). An account's
// history is its ledger transfers grouped into the events a person thinks in: one record
// per download (its reservations, their releases and every receipt's legs: all the
// transfers of one purchase share the record key `purchase:<user>:<content>:<round>`),
// one per upload earning and royalty from that download, one per play, one per top-up.
// Amounts are sums of the transfers actually moved, never recomputed from rates.

/** A record's reason, in the spec's words (S1.12). */
export type RecordReason = 'download' | 'upload' | 'royalty' | 'voucher' | 'top-up' | 'play' | 'reservation' | 'refund' | 'payout' | 'placement' | (string & {});

/** One part of where a download's or a play's money went. */
export interface SplitPart {
  /** `source`: a source's share (the origin's goes to platform revenue); `royalty`: the publisher's; `fee`: the platform's; `rounding`: kept for rounding (S1.8). */
  part: 'source' | 'royalty' | 'fee' | 'rounding';
  account: string;
  /** The account owner's username; `origin` for a share the origin earned; `platform` for the platform's accounts. */
  name: string | null;
  amount: number;
}

export interface WalletRecord {
  /** The record's ID (event ID): its record key (`purchase:…`, `play:…`) or, for a record of one transfer, that transfer's ID. */
  id: string;
  /** Its newest transfer's time (the origin's clock). */
  at: string;
  /** Its oldest transfer's time. */
  since: string;
  /**
   * Posted money in (+) or out (−): the sum of its transfers. A reservation written before
   * records were grouped counts its change of the available balance (− held, + released).
   */
  amount: number;
  /** Still reserved for it (a download in progress): not spent, not available either. */
  held: number;
  /** Posted balance right after its newest transfer. */
  balanceAfter: number;
  reason: RecordReason;
  /** What happened, in words, with any discount named. */
  description: string;
  /** The other party: a download's (main) source, the downloader who paid an earning, a top-up's voucher account… */
  counterpart: string;
  counterpartName: string | null;
  contentId: string | null;
  contentTitle: string | null;
  /** The voucher, play or receipt ID behind a record of one transfer; null for a grouped download. */
  ref: string | null;
  /** Receipts behind a download, an upload earning or a royalty. */
  receipts: number;
  /** Where a download's or a play's money went; adds up to −amount. Null for other records. */
  split: SplitPart[] | null;
  /** The pricing rules that applied to a download (S1.9), in words, e.g. `off-peak (22:00–6:00 UTC): 80%`. */
  rules: string[];
  /** The ledger transfers behind it, newest first. */
  transfers: HistoryEntry[];
}

export interface WalletHistory {
  account: string;
  entries: WalletRecord[];
  /** Pass as `before` for the next (older) page; null on the last page. */
  nextCursor: string | null;
}

/** Settlement legs that debit the receiver (src/ledger/settlement.ts). */
const DOWNLOAD_LEGS = new Set(['upload', 'royalty', 'fee', 'rounding']);
const POSTED = new Set(['normal', 'post']);

/** The record reason of one ledger transfer seen from an account (a record of its own, or a grouped record's by its legs). */
export function recordReason(e: Pick<HistoryEntry, 'reason' | 'amount' | 'kind'>): RecordReason {
  if (e.amount < 0 && e.kind === 'normal' && DOWNLOAD_LEGS.has(e.reason)) return 'download';
  switch (e.reason) {
    case 'topup':
      return 'top-up';
    case 'reservation':
    case 'expired':
      return 'reservation';
    default:
      // upload (credit), royalty (credit), voucher, play, refund, payout: the same word.
      return e.reason;
  }
}

const isPlatform = (account: string) => account.startsWith('platform:') || account === 'vouchers:outstanding' || account === 'holds';
const ownerOf = (account: string) => /^(?:wallet|royalty|store|earnings):(.+)$/.exec(account)?.[1];

/** An account's records, built from its ledger transfers. */
export class AccountRecords {
  constructor(private readonly deps: { db: Db; ledger: Ledger; accounts: AccountService; content: Pick<ContentService, 'titles'> }) {}

  /**
   * Newest first (by each record's newest transfer); a page never splits a record.
   * `before` is the previous page's `nextCursor`.
   */
  async history(accountId: string, opts: { limit: number; before?: string }): Promise<WalletHistory> {
    const { limit, before } = opts;
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw badRequest('invalid_limit', 'limit must be a whole number from 1 to 1000.');
    if (before !== undefined && !/^[1-9]\d{0,15}$/.test(before)) throw badRequest('invalid_cursor', `"${before}" is not a cursor from a previous page (nextCursor).`);
    const beforeSeq = before === undefined ? undefined : Number(before);

    // Walk the transfers newest first; each record is placed by its newest transfer, so
    // the first `limit` record keys met are this page. A key with a transfer at or after
    // `before` was on an earlier page.
    const order: string[] = [];
    const singles = new Map<string, HistoryEntry>();
    const met = new Set<string>();
    let more = false;
    walk: for await (const chunk of this.chunks(accountId, beforeSeq, limit)) {
      const fresh = [...new Set(chunk.map((e) => e.record).filter((r): r is string => r !== null && !met.has(`r ${r}`)))];
      const earlier = beforeSeq === undefined ? new Set<string>() : await this.deps.ledger.recordsSince(accountId, fresh, beforeSeq);
      for (const e of chunk) {
        const key = e.record !== null ? `r ${e.record}` : `t ${e.id}`;
        if (met.has(key)) continue;
        met.add(key);
        if (e.record !== null && earlier.has(e.record)) continue;
        if (order.length === limit) {
          more = true;
          break walk;
        }
        order.push(key);
        if (e.record === null) singles.set(key, e);
      }
    }
    const grouped = new Map<string, HistoryEntry[]>();
    for (const e of await this.deps.ledger.recordTransfers(accountId, order.filter((k) => k.startsWith('r ')).map((k) => k.slice(2)))) {
      const k = `r ${e.record}`;
      grouped.set(k, [...(grouped.get(k) ?? []), e]);
    }
    const legs = order.map((k) => (singles.has(k) ? [singles.get(k)!] : (grouped.get(k) ?? []))).filter((g) => g.length > 0);
    const records = await this.build(accountId, legs);
    const last = legs[legs.length - 1];
    return { account: accountId, entries: records, nextCursor: more && last ? String(last[0].seq) : null };
  }

  /** The account's transfers, newest first, in chunks read as far as needed. */
  private async *chunks(accountId: string, beforeSeq: number | undefined, limit: number): AsyncGenerator<HistoryEntry[]> {
    const size = Math.min(1000, Math.max(50, limit * 4));
    let cursor = beforeSeq;
    for (;;) {
      const page = await this.deps.ledger.history(accountId, { limit: size, beforeSeq: cursor });
      if (page.length) yield page;
      if (page.length < size) return;
      cursor = page[page.length - 1].seq;
    }
  }

  /** Records from their transfers (each list newest first), with names, titles and pricing rules filled in. */
  private async build(accountId: string, groups: HistoryEntry[][]): Promise<WalletRecord[]> {
    const accounts = new Set<string>();
    const contentIds = new Set<string>();
    const receiptIds = new Set<string>();
    for (const g of groups) {
      for (const e of g) {
        accounts.add(e.counterpart);
        if (e.contentId) contentIds.add(e.contentId);
        if (e.ref && e.record?.startsWith('purchase:') && DOWNLOAD_LEGS.has(e.reason)) receiptIds.add(e.ref);
      }
    }
    const owners = [...new Set([...accounts].map(ownerOf).filter((u): u is string => u !== undefined))];
    const [usernames, titles, why] = await Promise.all([this.deps.accounts.usernames(owners), this.deps.content.titles([...contentIds]), this.pricing([...receiptIds])]);
    const nameOf = (account: string): string | null => {
      const owner = ownerOf(account);
      return owner !== undefined ? (usernames.get(owner) ?? null) : isPlatform(account) ? 'platform' : null;
    };
    return groups.map((g) => describe(accountId, g, { nameOf, titleOf: (id) => titles.get(id) ?? null, why }));
  }

  /** Settlement's pricing words per receipt (ledger_settlements.why, e.g. the off-peak rule). */
  private async pricing(receiptIds: string[]): Promise<Map<string, string[]>> {
    if (receiptIds.length === 0) return new Map();
    const { rows } = await sql<{ receipt_id: string; why: string }>`
      select receipt_id, why from ledger_settlements where receipt_id = any(${arrayLiteral(receiptIds)}::text[]) and status = 'settled'`.execute(this.deps.db);
    return new Map(rows.map((r) => [r.receipt_id, r.why ? r.why.split('; ') : []]));
  }
}

interface Lookups {
  nameOf: (account: string) => string | null;
  titleOf: (contentId: string) => string | null;
  why: Map<string, string[]>;
}

const quoted = (title: string | null, contentId: string | null) => (title ? `“${title}”` : contentId ? contentId.slice(0, 12) : 'a content');

/** One record from its transfers (newest first), seen from `accountId`. */
function describe(accountId: string, legs: HistoryEntry[], l: Lookups): WalletRecord {
  const newest = legs[0];
  const oldest = legs[legs.length - 1];
  const grouped = newest.record !== null;
  const posted = legs.filter((e) => POSTED.has(e.kind));
  const contentId = legs.find((e) => e.contentId)?.contentId ?? null;
  const contentTitle = contentId ? l.titleOf(contentId) : null;
  const title = quoted(contentTitle, contentId);
  // Held: pending transfers of the record that none of its posts or voids resolved yet.
  const resolved = new Set(legs.map((e) => e.pendingId).filter((id): id is string => id !== null));
  const held = legs.filter((e) => e.kind === 'pending' && !resolved.has(e.id)).reduce((s, e) => s - e.amount, 0);
  let amount = posted.reduce((s, e) => s + e.amount, 0);
  const base = {
    id: grouped ? newest.record! : newest.id,
    at: newest.at,
    since: oldest.at,
    held,
    balanceAfter: newest.balanceAfter,
    contentId,
    contentTitle,
    ref: grouped ? null : newest.ref,
    transfers: legs,
  };
  const counterpartOf = (account: string) => ({ counterpart: account, counterpartName: l.nameOf(account) });

  if (!grouped) {
    const reason = recordReason(newest);
    // A reservation of its own (written before records were grouped): its change of the available balance.
    if (newest.kind === 'pending' || newest.kind === 'void') amount = newest.kind === 'void' ? -newest.amount : newest.amount;
    return { ...base, amount, reason, description: single(newest, reason, title, l), ...counterpartOf(newest.counterpart), receipts: 0, split: null, rules: [] };
  }

  const isPlay = newest.record!.startsWith('play:');
  // S2.4: a rental or order an edge delivered (src/edge/deliveries.ts): its `edge` leg is the source's share.
  const isDelivery = newest.record!.startsWith('delivery:');
  const paying = legs.some((e) => e.amount < 0);
  const receipts = new Set(posted.filter((e) => e.ref && !isPlay && !isDelivery).map((e) => e.ref!)).size;

  if (paying) {
    // The payer's side: a download or a play, and where its money went.
    const split = splitOf(posted, isPlay, l);
    const sources = split.filter((p) => p.part === 'source').sort((a, b) => b.amount - a.amount);
    const main = sources[0]?.account ?? split.find((p) => p.part === 'royalty')?.account ?? oldest.counterpart;
    const rules = isPlay || isDelivery ? [] : rulesOf(posted, l.why);
    const paid = -amount;
    const parts = split.map((p) => `${p.part === 'source' ? `source ${p.name ?? p.account}` : p.part === 'royalty' ? `royalty to ${p.name ?? p.account}` : p.part === 'fee' ? 'platform fee' : 'rounding'} ${p.amount}`);
    let description: string;
    if (isPlay) description = `Played ${title} on a terminal without a download record: ${paid} (${parts.join(', ')})`;
    else if (isDelivery) {
      description = `Delivery of ${title} by an edge: paid ${paid}${parts.length ? ` (${parts.join(', ')})` : ''}`;
      if (held > 0) description += `; ${held} held until the edge reports it`;
      else if (paid === 0) description += '; the hold was released, nothing was charged';
    } else {
      description = `Download of ${title}: paid ${paid}`;
      if (parts.length) description += ` (${parts.join(', ')})`;
      if (receipts) description += `, ${receipts} receipt${receipts === 1 ? '' : 's'}`;
      if (rules.length) description += `; priced ${rules.join(', ')}`;
      if (held > 0) description += `; ${held} still reserved for the rest`;
      else if (paid === 0) description += '; the reservation was released, nothing was charged';
    }
    return { ...base, amount, reason: isPlay ? 'play' : isDelivery ? 'delivery' : 'download', description, ...counterpartOf(main), receipts, split, rules };
  }

  // The payee's side: an upload earning (a source's wallet) or a royalty (a publisher's account).
  const payer = legs.find((e) => e.counterpart.startsWith('wallet:'))?.counterpart ?? oldest.counterpart;
  const by = l.nameOf(payer) ?? payer;
  const royalty = accountId.startsWith('royalty:') || legs.every((e) => e.reason === 'royalty' || (isPlay && e.id.endsWith(':royalty')));
  const reason: RecordReason = royalty ? 'royalty' : isPlay ? newest.reason : 'upload';
  const description = royalty
    ? `Royalty for ${title}, ${isPlay ? `played by ${by}` : isDelivery ? `delivered by an edge to ${by}` : `downloaded by ${by}`}: ${amount}`
    : `Earned ${amount} serving ${title} to ${by}${receipts ? ` (${receipts} receipt${receipts === 1 ? '' : 's'})` : ''}`;
  return { ...base, amount, reason, description, ...counterpartOf(payer), receipts, split: null, rules: [] };
}

/** Where a payer's money went: its posted debits by part and payee, in a fixed order. */
function splitOf(posted: HistoryEntry[], isPlay: boolean, l: Lookups): SplitPart[] {
  const parts = new Map<string, SplitPart>();
  for (const e of [...posted].reverse()) {
    if (e.amount >= 0) continue;
    // A play's legs all say `play`; their IDs end in the part (plays.ts).
    const leg = isPlay ? e.id.slice(e.id.lastIndexOf(':') + 1) : e.reason;
    const part: SplitPart['part'] = leg === 'upload' || leg === 'edge' ? 'source' : leg === 'royalty' ? 'royalty' : leg === 'fee' ? 'fee' : 'rounding';
    const key = `${part} ${e.counterpart}`;
    const p = parts.get(key) ?? { part, account: e.counterpart, name: part === 'source' && isPlatform(e.counterpart) ? 'origin' : l.nameOf(e.counterpart), amount: 0 };
    p.amount -= e.amount;
    parts.set(key, p);
  }
  const rank = { source: 0, royalty: 1, fee: 2, rounding: 3 };
  return [...parts.values()].sort((a, b) => rank[a.part] - rank[b.part] || b.amount - a.amount);
}

/** The pricing rules of a download's receipts; a rule that applied to only some says on how many. */
function rulesOf(posted: HistoryEntry[], why: Map<string, string[]>): string[] {
  const refs = [...new Set(posted.map((e) => e.ref).filter((r): r is string => r !== null))];
  const counts = new Map<string, number>();
  for (const ref of refs) for (const w of why.get(ref) ?? []) counts.set(w, (counts.get(w) ?? 0) + 1);
  return [...counts].map(([w, n]) => (n === refs.length ? w : `${w} (${n} of ${refs.length} receipts)`));
}

/** A record of one transfer, in words. */
function single(e: HistoryEntry, reason: RecordReason, title: string, l: Lookups): string {
  const who = l.nameOf(e.counterpart) ?? e.counterpart;
  switch (reason) {
    case 'top-up':
      return e.id.startsWith('signup:') ? `Sign-up credit: ${e.amount}` : `Top-up${e.ref ? ` with voucher ${e.ref}` : ''}: ${e.amount}`;
    case 'reservation':
      return e.kind === 'pending' ? `Reserved ${-e.amount} for a download of ${title}` : `Released ${e.amount} reserved for ${title}${e.reason === 'expired' ? ' (the reservation expired)' : ''}`;
    case 'voucher':
      return `Vouchers issued: ${-e.amount}`;
    case 'payout':
      return `Paid out ${-e.amount}${e.ref ? ` (reference ${e.ref})` : ''}`;
    case 'placement':
      // S1.4: a publisher's paid preferred placement in members' content lists (discovery domain).
      return `Preferred placement of ${title} in content lists: paid ${-e.amount}${e.ref ? ` (placement ${e.ref})` : ''}`;
    case 'download':
      return `Download of ${title}: paid ${-e.amount} (${e.reason} to ${who})`;
    case 'upload':
      return `Earned ${e.amount} serving ${title}`;
    case 'royalty':
      return `Royalty for ${title}: ${e.amount}`;
    default:
      return `${reason[0].toUpperCase()}${reason.slice(1)}: ${e.amount > 0 ? '+' : ''}${e.amount} (${who})`;
  }
}
