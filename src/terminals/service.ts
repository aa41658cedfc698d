import { decodeRanges } from '../transfer/piece-ranges.ts';
import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import { Counter, Histogram, type Registry } from 'prom-client';
import type { AccountService } from '../accounts/service.ts';
import type { AddressPolicy } from '../core/address-policy.ts';
import type { Clock } from '../core/clock.ts';
import type { Config } from '../core/config.ts';
import { importPublicKey, verifyBytes, type KeyPair } from '../core/crypto.ts';
import { badRequest, conflict, notFound, unauthorized } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import { decodeToken, encodeToken } from '../core/signed-token.ts';
import { arrayLiteral } from '../db/array-literal.ts';
import { sql, type Db } from '../db/connection.ts';
import { ChallengeStore, loginMessage, registerMessage } from './challenges.ts';
import { validateHeartbeat } from './heartbeat.ts';
import { HeartbeatBuffer, newerState } from './presence.ts';
import type { TerminalState, TerminalsTable } from './tables.ts';
import { existingContents } from '../content/queries.ts';

// The terminals domain: registration and device credentials (S1.2), login by
// challenge, heartbeats (S1.2) and the holder registry (S1.3).

export { loginMessage, registerMessage };

export interface PublicTerminal {
  id: string;
  userId: string;
  name: string;
  /** base64url raw Ed25519 public key: the terminal's own key; receipts are checked against it. */
  publicKey: string;
  region: string;
  network: string;
  serveUrl: string | null;
  createdAt: string;
}

export interface RegisterInput {
  publicKey: string;
  name: string;
  region?: string;
  network?: string;
  serveUrl?: string | null;
  /** A registration challenge issued to this account (`registrationChallenge`). */
  nonce: string;
  /** The device's signature over `registerMessage(publicKey, nonce)`: it holds the key (issue 10 #9). */
  signature: string;
}

/** S1.2 "access key": the origin's signature binding a terminal to its key and owner. */
export interface DeviceCredential {
  typ: 'device';
  terminalId: string;
  userId: string;
  publicKey: string;
  issuedAt: number;
}

/** S1.3: one entry of the holder registry, with the holder's last reported state. */
export interface Holder {
  terminalId: string;
  name: string;
  region: string;
  network: string;
  serveUrl: string | null;
  /** The holder's key (base64url raw Ed25519): receivers check its served statements with it. */
  publicKey: string;
  online: boolean;
  lastSeenAt: string | null;
  state: TerminalState | null;
  reportedAt: string;
  /** Piece ranges held while the terminal is still fetching; null when it holds the whole content. */
  pieces: string | null;
}

export type HoldingsMode = 'replace' | 'add';

/** One of a member's own terminals, as `GET /me/terminals` lists it (#13). */
export interface MemberTerminal {
  id: string;
  name: string;
  region: string;
  /** Beat within `offlineAfterMs` (unflushed beats of this process included), as in the holder registry. */
  online: boolean;
  lastSeenAt: string | null;
}

/** How many terminals hold a content (whole or in part, as the holder registry lists them), and how many of them are online. */
export interface HeldCount {
  contentId: string;
  holders: number;
  holdersOnline: number;
}

export interface TerminalServiceDeps {
  db: Db;
  keys: KeyPair;
  clock: Clock;
  config: Config;
  logger: Logger;
  accounts: AccountService;
  metrics: Registry;
  /** Issue 10 #8: which serve addresses the origin accepts (it calls them for spot checks). */
  peers: AddressPolicy;
  /** Number of pieces of a content (from its manifest); checks partial holdings. */
  pieceCount?: (contentId: string) => Promise<number>;
  /**
   * Spot-checks a new claim by a serving terminal: resolves if the terminal at
   * `serveUrl` serves a correct piece of the content (one of `among`, if given),
   * throws `holding_unproven` otherwise. Absent: claims are recorded unchecked.
   */
  proveHolding?: (terminalId: string, serveUrl: string, contentId: string, among?: number[]) => Promise<void>;
  /** A terminal is online if it beat within this long; see `defaultOfflineAfterMs`. */
  offlineAfterMs?: number;
}

export const SESSION_TTL_MS = 24 * 3600_000;
export const MAX_HOLDINGS_PER_REPORT = 10_000;
/** Terminals kept in memory (#19): more than any origin's set of active terminals on a small box. */
const TERMINAL_CACHE_MAX = 10_000;
const CONTENT_ID = /^[0-9a-f]{64}$/;
const TEXT_MAX = 80;

/**
 * A beat may sit unflushed for one flush interval in another origin process before
 * anyone else can see it, so "offline" must allow a few intervals; and terminals
 * beat at their own pace, so never less than 30 s.
 */
export function defaultOfflineAfterMs(config: Pick<Config, 'heartbeatFlushMs'>): number {
  return Math.max(30_000, 3 * config.heartbeatFlushMs);
}

export class TerminalService {
  private readonly db: Db;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly challenges: ChallengeStore;
  private readonly beats = new HeartbeatBuffer();
  /**
   * Recently used terminals: grants and receipts look one up per request. A row changes only
   * through updateAddress, which refreshes it here. Bounded (#19: ~350 bytes each; a miss costs
   * one indexed read), so that an origin with many registered terminals does not hold them all.
   */
  private readonly cache = new LRUCache<string, PublicTerminal>({ max: TERMINAL_CACHE_MAX });
  readonly offlineAfterMs: number;
  private timer: NodeJS.Timeout | null = null;
  private flushChain: Promise<unknown> = Promise.resolve();
  private readonly beatCounter: Counter<'outcome'>;
  private readonly flushRows: Histogram;

  constructor(private readonly deps: TerminalServiceDeps) {
    this.db = deps.db;
    this.clock = deps.clock;
    this.log = deps.logger.child({ domain: 'terminals' });
    this.challenges = new ChallengeStore(deps.db, deps.clock);
    this.offlineAfterMs = deps.offlineAfterMs ?? defaultOfflineAfterMs(deps.config);
    this.beatCounter = new Counter({
      name: 'cascade_terminal_heartbeats_total',
      help: 'Terminal heartbeats received, by outcome (accepted or refused)',
      labelNames: ['outcome'],
      registers: [deps.metrics],
    });
    this.flushRows = new Histogram({
      name: 'cascade_terminal_heartbeat_flush_rows',
      help: 'Terminals written per heartbeat flush (one statement per flush)',
      buckets: [1, 10, 100, 1000, 10_000, 100_000],
      registers: [deps.metrics],
    });
  }

  // ---- registration and login (S1.2) ----

  /** A nonce for `userId` to have its device sign when registering it (issue 10 #9). */
  async registrationChallenge(userId: string): Promise<{ nonce: string; expiresAt: string }> {
    const { nonce, expiresAt } = await this.challenges.issue('register', userId);
    return { nonce, expiresAt: new Date(expiresAt).toISOString() };
  }

  async register(userId: string, input: RegisterInput): Promise<{ terminal: PublicTerminal; credential: string }> {
    // Burn the nonce before any check: a failed attempt must not leave it usable.
    const live = await this.challenges.take(String(input.nonce), 'register', userId);
    try {
      importPublicKey(input.publicKey);
    } catch {
      throw badRequest('invalid_public_key', 'The public key must be a raw Ed25519 key in base64url (43 characters).');
    }
    const name = checkText('name', input.name, 1);
    const region = checkText('region', input.region ?? '', 0);
    const network = checkText('network', input.network ?? '', 0);
    if (!live) throw badRequest('invalid_challenge', 'The registration challenge is unknown, expired, already used or issued to another account; ask for a new one.');
    // Whoever registers a key must hold it: otherwise an account could take another device's
    // key (one key, one terminal) and the receipts it signs.
    if (!verifyBytes(input.publicKey, registerMessage(input.publicKey, String(input.nonce)), String(input.signature))) {
      throw badRequest('bad_signature', 'The signature does not verify with this public key: sign "cascade-register:<publicKey>:<nonce>" with the device key.');
    }
    const row = {
      id: newId('trm'),
      user_id: userId,
      name,
      public_key: input.publicKey,
      region,
      network,
      serve_url: await this.checkServeUrl(input.serveUrl),
      created_at: new Date(this.clock.now()),
    };
    // One key, one terminal: the key is the terminal's identity in receipts and grants.
    const inserted = await this.db
      .insertInto('terminals')
      .values(row)
      .onConflict((oc) => oc.column('public_key').doNothing())
      .returningAll()
      .executeTakeFirst();
    if (!inserted) throw conflict('terminal_exists', 'A terminal with this public key is already registered.');
    const terminal = toPublic(inserted);
    this.cache.set(terminal.id, terminal);
    const payload: DeviceCredential = { typ: 'device', terminalId: terminal.id, userId, publicKey: terminal.publicKey, issuedAt: this.clock.now() };
    this.log.info({ terminalId: terminal.id, userId }, 'terminal registered');
    return { terminal, credential: encodeToken(payload, this.deps.keys.privateKey) };
  }

  async challenge(terminalId: string): Promise<{ nonce: string; expiresAt: string }> {
    await this.get(terminalId); // no nonces for terminals that do not exist
    const { nonce, expiresAt } = await this.challenges.issue('login', terminalId);
    return { nonce, expiresAt: new Date(expiresAt).toISOString() };
  }

  async login(credential: string, nonce: string, signatureB64: string): Promise<{ token: string; terminalId: string; expiresAt: string }> {
    const decoded = decodeToken<DeviceCredential>(String(credential), this.deps.keys.publicKey, 'device');
    const claimed = decoded.ok && typeof decoded.payload.terminalId === 'string' ? decoded.payload.terminalId : null;
    // Burn the nonce before any check: a failed attempt must not leave it usable.
    const live = await this.challenges.take(String(nonce), 'login', claimed);
    if (!decoded.ok || !isCredential(decoded.payload)) {
      throw unauthorized('invalid_credential', 'The device credential was not issued by this origin.');
    }
    const cred = decoded.payload;
    const terminal = await this.find(cred.terminalId);
    if (!terminal || terminal.publicKey !== cred.publicKey || terminal.userId !== cred.userId) {
      throw unauthorized('invalid_credential', 'The device credential names a terminal this origin no longer knows.');
    }
    if (!live) throw unauthorized('invalid_challenge', 'The challenge is unknown, expired or already used; ask for a new one.');
    if (!verifyBytes(terminal.publicKey, loginMessage(terminal.id, String(nonce)), String(signatureB64))) {
      throw unauthorized('bad_signature', 'The signature does not verify with the terminal’s public key.');
    }
    const expiresAt = new Date(this.clock.now() + SESSION_TTL_MS);
    const token = await this.deps.accounts.issueToken(terminal.userId, terminal.id, 'terminal session', expiresAt);
    return { token, terminalId: terminal.id, expiresAt: expiresAt.toISOString() };
  }

  /** The terminal, from memory after the first look-up (grants and receipts call this per request). */
  async get(terminalId: string): Promise<PublicTerminal> {
    const t = await this.find(terminalId);
    if (!t) throw notFound('unknown_terminal', `No terminal ${terminalId}.`);
    return t;
  }

  /** The IDs of a user's terminals (for its receipts, #12), at most `limit`. */
  async idsOf(userId: string, limit = 1000): Promise<string[]> {
    const rows = await this.db.selectFrom('terminals').select('id').where('user_id', '=', userId).orderBy('created_at').limit(limit).execute();
    return rows.map((r) => r.id);
  }

  private async find(terminalId: string): Promise<PublicTerminal | null> {
    const hit = this.cache.get(terminalId);
    if (hit) return hit;
    const row = await this.db.selectFrom('terminals').selectAll().where('id', '=', terminalId).executeTakeFirst();
    if (!row) return null;
    const t = toPublic(row);
    this.cache.set(t.id, t);
    return t;
  }

  // ---- heartbeats (S1.2) ----

  /** Records a heartbeat in memory; `flush()` writes it. Refuses absurd values whole. */
  async heartbeat(terminalId: string, state: unknown): Promise<TerminalState> {
    let checked;
    try {
      checked = validateHeartbeat(state);
    } catch (err) {
      this.beatCounter.inc({ outcome: 'refused' });
      throw err;
    }
    await this.get(terminalId);
    const recorded: TerminalState = { ...checked, at: this.clock.now() };
    this.beats.record(terminalId, recorded);
    this.beatCounter.inc({ outcome: 'accepted' });
    return recorded;
  }

  /** The latest heartbeat of each terminal that sent one (buffered or stored, whichever is newer): the scheduler's link states (S0.6). */
  async latestStates(ids: readonly string[]): Promise<Map<string, TerminalState>> {
    const out = new Map<string, TerminalState>();
    for (let i = 0; i < ids.length; i += 1000) {
      const rows = await this.db.selectFrom('terminals').select(['id', 'last_state']).where('id', 'in', ids.slice(i, i + 1000)).execute();
      for (const r of rows) {
        const s = newerState(r.last_state, this.beats.latest(r.id));
        if (s) out.set(r.id, s);
      }
    }
    return out;
  }

  /** Writes all buffered heartbeats in one statement; returns the rows written. Flushes never overlap. */
  flush(): Promise<number> {
    const run = this.flushChain.then(() => this.beats.drain((batch) => this.writeBatch(batch)));
    this.flushChain = run.catch(() => undefined);
    return run;
  }

  private async writeBatch(batch: Map<string, TerminalState>): Promise<number> {
    const rows = [...batch].map(([id, state]) => ({ id, state, seen: new Date(state.at).toISOString() }));
    // One statement whatever the batch size: the batch travels as one JSON parameter,
    // so there is no bind-parameter limit. The `<=` guard keeps a newer beat written
    // by another origin process from being overwritten by an older one.
    const res = await sql`
      update terminals as t
         set last_state = v.state, last_seen_at = v.seen
        from jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) as v(id text, state jsonb, seen timestamptz)
       where t.id = v.id and (t.last_seen_at is null or t.last_seen_at <= v.seen)`.execute(this.db);
    const written = Number(res.numAffectedRows ?? 0n);
    this.flushRows.observe(written);
    return written;
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      this.flush().catch((err) => this.log.error({ err }, 'heartbeat flush failed; will retry'));
    }, this.deps.config.heartbeatFlushMs);
    this.timer.unref(); // never keeps the process alive on its own
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.flush();
  }

  // ---- holdings and the holder registry (S1.2, S1.3) ----

  /** Records what a terminal holds: `replace` states the full list, `add` extends it. */
  /**
   * #3 (S1.3, S1.6): a terminal still fetching a content serves the pieces it has
   * verified; it reports them as ranges so receivers can ask it for exactly those.
   * A whole-content report (reportHoldings) supersedes this.
   */
  /**
   * Where the terminal serves pieces to others, and its network labels (S1.5 uses
   * them); an agent sets this at every start, since its port may change.
   */
  async updateAddress(terminalId: string, input: { serveUrl: string | null; region?: string; network?: string }): Promise<PublicTerminal> {
    const serveUrl = await this.checkServeUrl(input.serveUrl);
    const set: { serve_url: string | null; region?: string; network?: string } = { serve_url: serveUrl };
    if (input.region !== undefined) set.region = input.region;
    if (input.network !== undefined) set.network = input.network;
    const row = await this.db.updateTable('terminals').set(set).where('id', '=', terminalId).returningAll().executeTakeFirst();
    if (!row) throw notFound('unknown_terminal', `No terminal ${terminalId}.`);
    const updated = toPublic(row);
    this.cache.set(terminalId, updated);
    return updated;
  }

  /**
   * #3: a serving terminal's first claim on a content, of pieces or whole, is spot-checked
   * before anything is recorded (one of `among`, if given); a content it already claimed
   * anything of was checked then (#19: checking a whole claim after a piece claim again fetched
   * a piece through the agent's busy upload slots; in the swarm benchmark the end-of-download
   * holdings report took 450–660 ms on average, then 5–9 ms).
   */
  private async proveNewClaims(terminal: PublicTerminal, contentIds: string[], among?: number[]): Promise<void> {
    if (!terminal.serveUrl || !this.deps.proveHolding || contentIds.length === 0) return;
    const claimed = await this.db.selectFrom('holdings').select('content_id').where('terminal_id', '=', terminal.id).where('content_id', 'in', contentIds).execute();
    const held = new Set(claimed.map((r) => r.content_id));
    for (const id of contentIds) if (!held.has(id)) await this.deps.proveHolding(terminal.id, terminal.serveUrl, id, among);
  }

  async reportPieces(terminalId: string, contentId: string, pieces: string): Promise<void> {
    if (!CONTENT_ID.test(contentId)) throw badRequest('invalid_content_id', `"${contentId}" is not a content ID (64 hex characters).`);
    const terminal = await this.get(terminalId);
    if (!(await existingContents(this.db, [contentId])).has(contentId)) throw notFound('unknown_content', `No content ${contentId}.`);
    const count = this.deps.pieceCount ? await this.deps.pieceCount(contentId) : Number.MAX_SAFE_INTEGER;
    const list = decodeRanges(pieces, count);
    if (!list) throw badRequest('invalid_pieces', `Pieces must be ascending ranges within 0-${count - 1}, e.g. "0-9,12".`);
    // Later updates of the same claim are not checked again: they come with every refresh.
    await this.proveNewClaims(terminal, [contentId], list);
    const now = new Date(this.clock.now());
    // A piece claim never narrows a whole one (S1.2): it is a refresh that was on its way when the
    // download ended, and would make the origin refuse the delivery's "done" (not_held). A terminal
    // that no longer holds a content says so with a replace, which removes the row.
    await this.db
      .insertInto('holdings')
      .values({ terminal_id: terminalId, content_id: contentId, reported_at: now, pieces })
      .onConflict((oc) => oc.columns(['terminal_id', 'content_id']).doUpdateSet({ reported_at: now, pieces }).where('holdings.pieces', 'is not', null))
      .execute();
  }

  async reportHoldings(terminalId: string, contentIds: string[], mode: HoldingsMode = 'replace'): Promise<{ holdings: number }> {
    if (mode !== 'replace' && mode !== 'add') throw badRequest('invalid_mode', 'mode is "replace" or "add".');
    if (!Array.isArray(contentIds) || contentIds.length > MAX_HOLDINGS_PER_REPORT) {
      throw badRequest('too_many_contents', `Report at most ${MAX_HOLDINGS_PER_REPORT} content IDs at a time (use mode "add" for more).`);
    }
    const bad = contentIds.find((id) => typeof id !== 'string' || !CONTENT_ID.test(id));
    if (bad !== undefined) throw badRequest('invalid_content_id', `"${String(bad)}" is not a content ID (64 hex characters).`);
    const ids = [...new Set(contentIds)];
    const terminal = await this.get(terminalId);
    const known = ids.length ? await existingContents(this.db, ids) : new Set<string>();
    const missing = ids.filter((id) => !known.has(id));
    if (missing.length) throw notFound('unknown_content', `No content ${missing[0]}${missing.length > 1 ? ` (and ${missing.length - 1} more)` : ''}.`);
    // A download that ends turns its piece claim into a whole one: not checked again.
    await this.proveNewClaims(terminal, ids);

    const now = new Date(this.clock.now());
    return this.db.transaction().execute(async (trx) => {
      if (mode === 'replace') {
        let del = trx.deleteFrom('holdings').where('terminal_id', '=', terminalId);
        if (ids.length) del = del.where('content_id', 'not in', ids);
        await del.execute();
      }
      if (ids.length) {
        await trx
          .insertInto('holdings')
          .values(ids.map((content_id) => ({ terminal_id: terminalId, content_id, reported_at: now })))
          .onConflict((oc) => oc.columns(['terminal_id', 'content_id']).doUpdateSet({ reported_at: now, pieces: null }))
          .execute();
      }
      const { n } = await trx
        .selectFrom('holdings')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('terminal_id', '=', terminalId)
        .executeTakeFirstOrThrow();
      return { holdings: Number(n) };
    });
  }

  /** S1.3: who holds this content, online first, with their freshest known state. */
  async holders(contentId: string, opts: { limit?: number } = {}): Promise<Holder[]> {
    if (!CONTENT_ID.test(contentId)) throw badRequest('invalid_content_id', `"${contentId}" is not a content ID (64 hex characters).`);
    const rows = await this.db
      .selectFrom('holdings as h')
      .innerJoin('terminals as t', 't.id', 'h.terminal_id')
      .select(['t.id', 't.name', 't.region', 't.network', 't.serve_url', 't.public_key', 't.last_seen_at', 't.last_state', 'h.reported_at', 'h.pieces'])
      .where('h.content_id', '=', contentId)
      .orderBy('t.last_seen_at', (ob) => ob.desc().nullsLast())
      .orderBy('t.id')
      .limit(Math.min(Math.max(opts.limit ?? 500, 1), 5000))
      .execute();
    // Holdings name existing contents; only an empty list needs telling "no holders" from "no such content"
    // (#19: one query less on every coordinator call).
    if (rows.length === 0 && !(await existingContents(this.db, [contentId])).has(contentId)) throw notFound('unknown_content', `No content ${contentId}.`);
    const now = this.clock.now();
    const list = rows.map((r): Holder => {
      const { state, seenAt } = this.presenceOf(r);
      return {
        terminalId: r.id,
        name: r.name,
        region: r.region,
        network: r.network,
        serveUrl: r.serve_url,
        publicKey: r.public_key,
        online: this.isOnline(seenAt, now),
        lastSeenAt: seenAt === null ? null : new Date(seenAt).toISOString(),
        state,
        reportedAt: r.reported_at.toISOString(),
        pieces: r.pieces,
      };
    });
    return list.sort((a, b) => Number(b.online) - Number(a.online) || (b.state?.at ?? 0) - (a.state?.at ?? 0));
  }

  // ---- presence: who is online (S1.2, S1.3; #13 member and operator views) ----

  /** A terminal's freshest state and when it was last heard from: unflushed beats in this process are newer than (or equal to) what is stored. */
  private presenceOf(r: { id: string; last_state: TerminalState | null; last_seen_at: Date | null }): { state: TerminalState | null; seenAt: number | null } {
    const state = newerState(r.last_state, this.beats.latest(r.id));
    return { state, seenAt: state?.at ?? r.last_seen_at?.getTime() ?? null };
  }

  /** Online: heard from within `offlineAfterMs` (the one rule the holder registry, the member's list and the dashboard share). */
  private isOnline(seenAt: number | null, now: number): boolean {
    return seenAt !== null && now - seenAt <= this.offlineAfterMs;
  }

  /** `online` as a SQL condition on `terminals` (alias `t`): stored beat recent enough, or an unflushed one here. */
  private onlineSql() {
    const cutoff = this.clock.now() - this.offlineAfterMs;
    return sql<boolean>`(t.last_seen_at >= ${new Date(cutoff)} or t.id = any(${arrayLiteral(this.beats.beatSince(cutoff))}::text[]))`;
  }

  /** #13 `GET /me/terminals`: the member's own terminals, oldest first, with their online state. */
  async ofUser(userId: string, limit = 1000): Promise<MemberTerminal[]> {
    const rows = await this.db
      .selectFrom('terminals')
      .select(['id', 'name', 'region', 'last_state', 'last_seen_at'])
      .where('user_id', '=', userId)
      .orderBy('created_at')
      .orderBy('id')
      .limit(limit)
      .execute();
    const now = this.clock.now();
    return rows.map((r) => {
      const { seenAt } = this.presenceOf(r);
      return { id: r.id, name: r.name, region: r.region, online: this.isOnline(seenAt, now), lastSeenAt: seenAt === null ? null : new Date(seenAt).toISOString() };
    });
  }

  /** #13 operations dashboard: registered terminals, and how many are online. One aggregate statement. */
  async presence(): Promise<{ online: number; total: number }> {
    const { rows } = await sql<{ total: number; online: number }>`
      select count(*)::int8 as total, count(*) filter (where ${this.onlineSql()})::int8 as online from terminals t`.execute(this.db);
    return { online: Number(rows[0]?.online ?? 0), total: Number(rows[0]?.total ?? 0) };
  }

  /** #13 operations dashboard: the `limit` contents with the most holders (as the holder registry counts them), with how many are online. */
  async mostHeld(limit = 20): Promise<HeldCount[]> {
    const { rows } = await sql<{ content_id: string; holders: number; online: number }>`
      select h.content_id, count(*)::int8 as holders, count(*) filter (where ${this.onlineSql()})::int8 as online
        from holdings h join terminals t on t.id = h.terminal_id
       group by h.content_id
       order by holders desc, online desc, h.content_id
       limit ${Math.min(Math.max(Math.trunc(limit), 1), 1000)}`.execute(this.db);
    return rows.map((r) => ({ contentId: r.content_id, holders: Number(r.holders), holdersOnline: Number(r.online) }));
  }

  /**
   * S1.4: per content, how many terminals holding it whole are online (by the same rule as
   * `holders`, unflushed beats included). Contents nobody online holds are absent. One query.
   */
  async onlineHolderCounts(contentIds: readonly string[]): Promise<Map<string, number>> {
    const ids = [...new Set(contentIds)];
    const counts = new Map<string, number>();
    if (!ids.length) return counts;
    const now = this.clock.now();
    const cutoff = new Date(now - this.offlineAfterMs);
    const rows = await this.db
      .selectFrom('holdings as h')
      .innerJoin('terminals as t', 't.id', 'h.terminal_id')
      .select(['h.content_id', 't.id', 't.last_seen_at', 't.last_state'])
      .where('h.content_id', '=', sql<string>`any(${arrayLiteral(ids)}::text[])`)
      .where('h.pieces', 'is', null)
      .where((eb) => eb.or([eb('t.last_seen_at', '>=', cutoff), eb('t.id', '=', sql<string>`any(${arrayLiteral(this.beats.ids())}::text[])`)]))
      .execute();
    for (const r of rows) if (this.isOnline(this.presenceOf(r).seenAt, now)) counts.set(r.content_id, (counts.get(r.content_id) ?? 0) + 1);
    return counts;
  }

  /** A terminal's registration and freshest heartbeat (unflushed beats included): what peer selection compares (S1.5). */
  async current(terminalId: string): Promise<{ terminal: PublicTerminal; state: TerminalState | null }> {
    const terminal = await this.get(terminalId);
    const row = await this.db.selectFrom('terminals').select('last_state').where('id', '=', terminalId).executeTakeFirst();
    return { terminal, state: newerState(row?.last_state, this.beats.latest(terminalId)) };
  }

  /**
   * S1.14: what the origin knows of a terminal when it vouches for it to a peer: its
   * registration, its freshest heartbeat (unflushed beats included) and the content it
   * holds, whole or in part, most recently reported first, at most `holdingsLimit`.
   */
  async profile(
    terminalId: string,
    holdingsLimit = 100,
  ): Promise<{ terminal: PublicTerminal; state: TerminalState | null; holdings: string[]; moreHoldings: boolean }> {
    const { terminal, state } = await this.current(terminalId);
    const held = await this.db
      .selectFrom('holdings')
      .select('content_id')
      .where('terminal_id', '=', terminalId)
      .orderBy('reported_at', 'desc')
      .orderBy('content_id')
      .limit(holdingsLimit + 1)
      .execute();
    return {
      terminal,
      state,
      holdings: held.slice(0, holdingsLimit).map((r) => r.content_id),
      moreHoldings: held.length > holdingsLimit,
    };
  }

  /** A well-formed http(s) URL (without a trailing slash) that the address policy allows, or null. */
  private async checkServeUrl(v: string | null | undefined): Promise<string | null> {
    const url = serveUrlShape(v);
    if (url) await this.deps.peers.checkUrl(url, 'serveUrl');
    return url;
  }
}

function toPublic(r: Pick<TerminalsTable, 'id' | 'user_id' | 'name' | 'public_key' | 'region' | 'network' | 'serve_url' | 'created_at'>): PublicTerminal {
  return {
    id: r.id,
    userId: r.user_id,
    name: r.name,
    publicKey: r.public_key,
    region: r.region,
    network: r.network,
    serveUrl: r.serve_url,
    createdAt: r.created_at.toISOString(),
  };
}

function isCredential(p: any): p is DeviceCredential {
  return typeof p.terminalId === 'string' && typeof p.userId === 'string' && typeof p.publicKey === 'string' && typeof p.issuedAt === 'number';
}

function checkText(field: string, v: unknown, min: number): string {
  const s = typeof v === 'string' ? v.trim() : '';
  if (s.length < min || s.length > TEXT_MAX || /[\u0000-\u001f]/.test(s)) {
    throw badRequest(`invalid_${field}`, `The ${field} must be ${min ? '1' : '0'}–${TEXT_MAX} printable characters.`);
  }
  return s;
}

function serveUrlShape(v: string | null | undefined): string | null {
  if (v === undefined || v === null || v === '') return null;
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    throw badRequest('invalid_serve_url', 'serveUrl must be an http(s) URL.');
  }
  if ((u.protocol !== 'http:' && u.protocol !== 'https:') || v.length > 2048) throw badRequest('invalid_serve_url', 'serveUrl must be an http(s) URL.');
  return v.replace(/\/$/, '');
}
