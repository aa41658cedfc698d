import type { KeyObject } from 'node:crypto';
import type { Clock } from '../core/clock.ts';
import type { KeyPair } from '../core/crypto.ts';
import { badRequest } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import { decodeToken, encodeToken } from '../core/signed-token.ts';
import type { Db } from '../db/connection.ts';
import type { TerminalService } from './service.ts';

// S1.14: before a terminal serves its content list to another, the origin authenticates
// the requester and vouches for it with an *introduction*: a token signed by the origin,
// naming requester and target, valid for a few minutes, and carrying the requester's
// profile as the origin knows it. The target checks it offline with the origin's public
// key (checkIntroduction) and builds the list from the profile. The target learns no
// more about the requester than the requester chose to share by asking for the
// introduction, and it need not trust anything the requester says about itself.

/** Long enough to fetch a list (and retry once), short enough that a leaked token soon dies. */
export const INTRODUCTION_TTL_MS = 5 * 60_000;

/**
 * How many held content IDs travel in the token. The token goes in an HTTP header
 * (Node refuses headers over 16 KiB by default): 100 IDs are about 9 KB once encoded.
 * The most recently reported holdings are kept; `historyComplete` says if any were left out.
 */
export const INTRODUCTION_HISTORY_LIMIT = 100;

/** The requester's link as of its latest heartbeat (S1.2); rates in bits/s. */
export interface IntroducedLink {
  upBps: number;
  downBps: number;
  uptimeRatio: number;
  /** When the heartbeat was received, ms since the epoch: lets the target judge staleness. */
  at: number;
}

/** The requester as the origin knows it (S1.14: balance, history, region, link state). */
export interface RequesterProfile {
  region: string;
  network: string;
  /** null until the requester has sent a heartbeat. */
  link: IntroducedLink | null;
  /** Content IDs the requester holds (whole or in part), most recent first. */
  history: string[];
  /** False when the requester holds more than INTRODUCTION_HISTORY_LIMIT items. */
  historyComplete: boolean;
  /** Prepaid balance in minor units; null while unknown (the ledger is issue #4). */
  balance: number | null;
}

export interface IntroductionPayload {
  typ: 'introduction';
  /** For logs on both sides; an introduction is not single-use (a list fetch is read-only). */
  id: string;
  requesterId: string;
  targetId: string;
  /** Issued and expiry times, ms since the epoch on the origin's clock. */
  iat: number;
  exp: number;
  profile: RequesterProfile;
}

export interface Introduction {
  token: string;
  target: { terminalId: string; serveUrl: string | null };
  expiresAt: string;
}

export interface IntroductionDeps {
  /**
   * The domain's usual handle. Unused today: every read goes through TerminalService,
   * which owns the tables, and the balance (#4) will come through the ledger's service.
   */
  db: Db;
  keys: KeyPair;
  clock: Clock;
  terminals: TerminalService;
}

export class IntroductionService {
  constructor(private readonly deps: IntroductionDeps) {}

  /** S1.14: the origin vouches for `requesterId` (already authenticated) to `targetId`. */
  async introduce(requesterId: string, targetId: string): Promise<Introduction> {
    if (requesterId === targetId) {
      throw badRequest('invalid_introduction', 'A terminal cannot be introduced to itself; name another terminal.');
    }
    const { terminals, clock, keys } = this.deps;
    const target = await terminals.get(targetId); // 404 unknown_terminal
    const me = await terminals.profile(requesterId, INTRODUCTION_HISTORY_LIMIT);
    const now = clock.now();
    const payload: IntroductionPayload = {
      typ: 'introduction',
      id: newId('int'),
      requesterId,
      targetId: target.id,
      iat: now,
      exp: now + INTRODUCTION_TTL_MS,
      profile: {
        region: me.terminal.region,
        network: me.terminal.network,
        // Only what ranking needs: load and CPU change by the second and say nothing about the requester's interests.
        link: me.state ? { upBps: me.state.upBps, downBps: me.state.downBps, uptimeRatio: me.state.uptimeRatio, at: me.state.at } : null,
        history: me.holdings,
        historyComplete: !me.moreHoldings,
        balance: null, // #4: the ledger will supply the prepaid balance; the field is part of the format already.
      },
    };
    return {
      token: encodeToken(payload, keys.privateKey),
      target: { terminalId: target.id, serveUrl: target.serveUrl },
      expiresAt: new Date(payload.exp).toISOString(),
    };
  }
}

export type IntroductionRefusal = 'introduction_missing' | 'introduction_invalid' | 'introduction_expired' | 'introduction_wrong_target';

/** Status and sentence for each refusal, for the serving terminal's replies. */
export const INTRODUCTION_REFUSALS: Record<IntroductionRefusal, [number, string]> = {
  introduction_missing: [401, 'A content list is served only to introduced terminals: send "Authorization: Introduction <token>" from the origin.'],
  introduction_invalid: [401, 'The introduction is malformed or not signed by the origin.'],
  introduction_expired: [401, 'The introduction has expired; ask the origin for a new one.'],
  introduction_wrong_target: [403, 'The introduction is for another terminal.'],
};

/**
 * S1.14, on the serving terminal: checks an introduction offline. Pure: no I/O, time
 * passed in. Order of checks: present, signed and well-formed, for this terminal, unexpired.
 */
export function checkIntroduction(
  token: string | undefined | null,
  originPublicKey: KeyObject | string,
  selfId: string,
  now: number,
): { ok: true; payload: IntroductionPayload } | { ok: false; refusal: IntroductionRefusal } {
  if (!token) return { ok: false, refusal: 'introduction_missing' };
  const decoded = decodeToken<IntroductionPayload>(token, originPublicKey, 'introduction');
  if (!decoded.ok || !isIntroduction(decoded.payload)) return { ok: false, refusal: 'introduction_invalid' };
  const p = decoded.payload;
  if (p.targetId !== selfId) return { ok: false, refusal: 'introduction_wrong_target' };
  if (p.exp <= now) return { ok: false, refusal: 'introduction_expired' };
  return { ok: true, payload: p };
}

/**
 * The origin signed it, so a bad shape means a different format version or a bug, not
 * an attack; still, the target ranks with these fields, so it checks every one it reads.
 */
function isIntroduction(p: any): p is IntroductionPayload {
  const pr = p.profile;
  const l = pr?.link;
  const num = (v: unknown) => typeof v === 'number' && Number.isFinite(v) && v >= 0;
  return (
    typeof p.id === 'string' &&
    typeof p.requesterId === 'string' &&
    typeof p.targetId === 'string' &&
    num(p.iat) &&
    num(p.exp) &&
    !!pr &&
    typeof pr === 'object' &&
    typeof pr.region === 'string' &&
    typeof pr.network === 'string' &&
    (l === null || (typeof l === 'object' && num(l.upBps) && num(l.downBps) && num(l.uptimeRatio) && num(l.at))) &&
    Array.isArray(pr.history) &&
    pr.history.every((id: unknown) => typeof id === 'string') &&
    typeof pr.historyComplete === 'boolean' &&
    (pr.balance === null || Number.isSafeInteger(pr.balance))
  );
}
