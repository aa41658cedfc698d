import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { Api } from '../../src/core/http-client.ts';
import { systemClock } from '../../src/core/clock.ts';
import { openDatabase, type Db, type DbHandle } from '../../src/db/connection.ts';
import { PLATFORM_REVENUE, PLATFORM_ROUNDING, royaltyAccount, walletAccount } from '../../src/ledger/accounts.ts';
import { Ledger } from '../../src/ledger/ledger.ts';
import { deviceSession, type DeviceSession } from '../../src/terminals/device.ts';
import { PieceClient } from '../../src/transfer/piece-client.ts';
import { makeReceipt, type SignedReceipt } from '../../src/transfer/receipt.ts';
import { ROOT, spawnOrigin, SRC_CLI, type OriginProcess } from '../helpers/processes.ts';

// #4 point 8, crash test: a real origin process is killed with SIGKILL in the middle of
// a settlement batch (inside the transaction that stores receipts and writes their
// ledger transfers), restarted on the same data, and the agents replay the receipts it
// never acknowledged. Every receipt must end settled exactly once, every wallet must
// have paid exactly its receipts' charges, and the ledger must still sum to zero.
// On embedded PGlite (in the origin's DATA_DIR) and on PostgreSQL (a fresh database).
//
// "In the middle" is made certain, not left to timing: the origin is started with a
// test-only preload (`--import`, a data: URL) that wraps Settlement.writeOutcome and,
// at the PAUSE_AT-th settled batch, prints a marker and never returns. At that moment
// the batch's receipts rows and ledger transfers are written in its open transaction
// but its ledger_settlements rows are not; the other receivers' batches queue behind
// it (PGlite has one session; on PostgreSQL they wait for its account locks). The
// test SIGKILLs the origin there, so exactly PAUSE_AT − 1 batches are committed. The
// same hook also withholds the answer to the HOLD_AT-th committed batch, so the replay
// meets a batch that is stored although its receiver never saw it acknowledged.

const PIECE = 16 * 1024;
const PIECES = 200;
/** 1000 per piece at the full rate (800 off-peak). */
const PRICE = 200_000;
/** Receipts per POST /receipts: a "settlement batch". */
const BATCH = 20;
/** Receivers 0 and 1 use /grants/auto (settled out of a reservation); 2 and 3 explicit /grants (wallet topped up by a voucher). */
const RECEIVERS = 4;
const AUTO = new Set([0, 1]);
/** The settlement batch the origin dies in (of RECEIVERS × PIECES / BATCH = 40). */
const PAUSE_AT = 16;
const SIGNUP_CREDIT = 1_000_000_000;
const VOUCHER = 1_000_000;
/** The committed batch whose answer the origin never sends (< PAUSE_AT, so it commits before the pause). */
const HOLD_AT = 8;
const PAUSE_MARK = 'crash-hook: settlement paused';
const HOLD_MARK = 'crash-hook: answer held back';

const file = randomBytes(PIECE * PIECES);
const pieceHash = (i: number) => createHash('sha256').update(file.subarray(i * PIECE, (i + 1) * PIECE)).digest('hex');

/**
 * Test-only preload for the first origin process: the `pauseAt`-th settlement batch
 * never finishes (the process dies inside its transaction), and the answer to the
 * `holdAt`-th committed batch is never sent (committed, but its receiver never learns it).
 */
function crashHook(pauseAt: number, holdAt: number): string {
  const tsxApi = import.meta.resolve('tsx/esm/api');
  const src = (file: string) => JSON.stringify(pathToFileURL(path.join(ROOT, 'src', file)).href);
  const code = `
    import { writeSync } from 'node:fs';
    const { register } = await import(${JSON.stringify(tsxApi)});
    register();
    const { Settlement } = await import(${src('ledger/settlement.ts')});
    const { ReceiptService } = await import(${src('transfer/receipts.ts')});
    const writeOutcome = Settlement.prototype.writeOutcome;
    const submit = ReceiptService.prototype.submit;
    if (typeof writeOutcome !== 'function' || typeof submit !== 'function') {
      throw new Error('crash hook: Settlement.writeOutcome or ReceiptService.submit is gone; update test/e2e/settle-crash.test.ts');
    }
    const mark = (msg, receipts) => writeSync(1, JSON.stringify({ msg, receipts }) + '\\n');
    let settled = 0;
    Settlement.prototype.writeOutcome = function (trx, rows, ...rest) {
      if (++settled !== ${pauseAt}) return writeOutcome.call(this, trx, rows, ...rest);
      mark(${JSON.stringify(PAUSE_MARK)}, rows.map((r) => r.receipt_id));
      return new Promise(() => {});
    };
    let committed = 0;
    ReceiptService.prototype.submit = async function (...args) {
      const result = await submit.apply(this, args);
      if (++committed !== ${holdAt}) return result;
      mark(${JSON.stringify(HOLD_MARK)}, result.accepted);
      return new Promise(() => {});
    };`;
  return `data:text/javascript,${encodeURIComponent(code)}`;
}

interface Engine {
  name: 'pglite' | 'postgres';
  /** Environment for the origin process. */
  env: Record<string, string>;
  /** Opens the origin's database while the origin is down; `snapshot` leaves the original untouched (PGlite: a copy). */
  open(dataDir: string, snapshot: boolean): Promise<DbHandle>;
  cleanup(): Promise<void>;
}

async function pgliteEngine(): Promise<Engine> {
  const copies: string[] = [];
  return {
    name: 'pglite',
    env: {},
    async open(dataDir, snapshot) {
      let dir = path.join(dataDir, 'db');
      if (snapshot) {
        // The restarted origin must do its own crash recovery, so the test looks at a copy.
        const copy = mkdtempSync(path.join(os.tmpdir(), 'cascade-crash-snapshot-'));
        copies.push(copy);
        cpSync(dir, path.join(copy, 'db'), { recursive: true });
        dir = path.join(copy, 'db');
      }
      return openDatabase({ pgliteDir: dir, migrate: false });
    },
    async cleanup() {
      for (const c of copies) rmSync(c, { recursive: true, force: true });
    },
  };
}

async function postgresEngine(baseUrl: string): Promise<Engine> {
  const name = `cascade_crash_${process.pid}_${randomBytes(4).toString('hex')}`;
  const admin = new URL(baseUrl);
  admin.pathname = '/postgres';
  const url = new URL(baseUrl);
  url.pathname = `/${name}`;
  const adminQuery = async (text: string) => {
    const client = new pg.Client({ connectionString: admin.href });
    await client.connect();
    try {
      await client.query(text);
    } finally {
      await client.end();
    }
  };
  await adminQuery(`create database ${name}`);
  return {
    name: 'postgres',
    env: { DATABASE_URL: url.href },
    open: () => openDatabase({ databaseUrl: url.href, migrate: false }),
    // The killed origin's backends are gone by now, but force it anyway.
    cleanup: () => adminQuery(`drop database if exists ${name} with (force)`),
  };
}

interface Batch {
  receiver: number;
  receipts: SignedReceipt[];
  ids: string[];
  state: 'waiting' | 'sent' | 'acked' | 'lost';
}

interface Receiver {
  n: number;
  userId: string;
  device: DeviceSession;
  /** What its wallet was credited with before the test (sign-up credit or a voucher). */
  funding: number;
  /** The reservation of its purchase made by /grants/auto (0 for explicit grants). */
  reserved: number;
  transferId: string | null;
  batches: Batch[];
}

/** Polls `cond` every few milliseconds until it holds, or fails after `ms`. */
async function until(what: string, cond: () => boolean, ms = 10_000) {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function readLedger(db: Db) {
  const receipts = await db.selectFrom('receipts').select(['id', 'receiver_id', 'grant_id']).execute();
  const settlements = await db.selectFrom('ledger_settlements').select(['receipt_id', 'status', 'code', 'charge', 'attempts']).execute();
  const transfers = await db
    .selectFrom('ledger_transfers')
    .select(['id', 'kind', 'debit_account_id', 'credit_account_id', 'amount', 'pending_id', 'ref', 'reason'])
    .execute();
  const accounts = new Map((await db.selectFrom('ledger_accounts').selectAll().execute()).map((a) => [a.id, a]));
  const purchases = await db.selectFrom('ledger_purchases').selectAll().execute();
  const conservation = await new Ledger({ db, clock: systemClock }).checkConservation();
  return { receipts, settlements, transfers, accounts, purchases, conservation };
}

/**
 * The ledger invariants that hold whatever was stored: every stored receipt has one
 * settlement row, settled once, and exactly its legs; no transfer belongs to a receipt
 * that is not stored; each receiver's purchase counts exactly its stored receipts, and
 * its reservation is what they left of it; the ledger sums to zero and every account
 * matches its transfers.
 */
function checkLedger(state: Awaited<ReturnType<typeof readLedger>>, receivers: Receiver[], publisherId: string, contentId: string) {
  const byTerminal = new Map(receivers.map((r) => [r.device.terminalId, r]));
  const stored = new Map(state.receipts.map((r) => [r.id, r]));
  assert.equal(stored.size, state.receipts.length);
  const settlements = new Map(state.settlements.map((s) => [s.receipt_id, s]));
  assert.equal(settlements.size, state.settlements.length);
  const unsettled = [...stored.keys()].filter((id) => !settlements.has(id));
  const orphans = [...settlements.keys()].filter((id) => !stored.has(id));
  assert.deepEqual(
    { unsettled: unsettled.length, orphans: orphans.length },
    { unsettled: 0, orphans: 0 },
    `one ledger_settlements row per stored receipt, and none for others (e.g. ${[...unsettled, ...orphans].slice(0, 3)})`,
  );
  for (const s of state.settlements) {
    assert.equal(s.status, 'settled', `receipt ${s.receipt_id} is ${s.status} (${s.code})`);
    assert.equal(s.attempts, 1, `receipt ${s.receipt_id} was settled ${s.attempts} times`);
    assert.ok(s.charge > 0);
  }
  const legs = new Map<string, typeof state.transfers>();
  for (const t of state.transfers) {
    if (t.id.startsWith('rc_')) assert.ok(t.ref && t.id.startsWith(`${t.ref}:`), `transfer ${t.id} names receipt ${t.ref}`);
    if (t.ref === null || !t.ref.startsWith('rc_')) continue;
    assert.ok(stored.has(t.ref), `transfer ${t.id} belongs to receipt ${t.ref}, which is not stored`);
    if (!legs.has(t.ref)) legs.set(t.ref, []);
    legs.get(t.ref)!.push(t);
  }
  const charged = new Map<string, number>();
  const count = new Map<string, number>();
  const holdChain = new Map<string, { released: number; reserved: number }>();
  for (const [id, r] of stored) {
    const receiver = byTerminal.get(r.receiver_id)!;
    const wallet = walletAccount(receiver.userId).id;
    const mine = legs.get(id) ?? [];
    const normal = mine.filter((t) => t.kind === 'normal');
    const ids = normal.map((t) => t.id.slice(id.length + 1));
    assert.equal(new Set(ids).size, ids.length);
    assert.ok(ids.every((k) => ['upload', 'royalty', 'fee', 'rounding'].includes(k)), `legs of ${id}: ${ids}`);
    assert.ok(ids.includes('upload') && ids.includes('royalty') && ids.includes('fee'), `legs of ${id}: ${ids}`);
    assert.ok(normal.every((t) => t.debit_account_id === wallet));
    const credit = (k: string) => normal.find((t) => t.id === `${id}:${k}`)?.credit_account_id;
    assert.equal(credit('upload'), PLATFORM_REVENUE.id);
    assert.equal(credit('royalty'), royaltyAccount(publisherId).id);
    assert.equal(credit('fee'), PLATFORM_REVENUE.id);
    if (ids.includes('rounding')) assert.equal(credit('rounding'), PLATFORM_ROUNDING.id);
    const charge = settlements.get(id)!.charge;
    assert.equal(normal.reduce((s, t) => s + t.amount, 0), charge, `receipt ${id}: legs add up to its charge`);
    const voids = mine.filter((t) => t.kind === 'void');
    const pendings = mine.filter((t) => t.kind === 'pending');
    if (AUTO.has(receiver.n)) {
      // Paid out of the purchase's reservation: its hold is released once, and what is left
      // reserved again (at most once: not by the receipt that completes the purchase).
      assert.deepEqual(voids.map((t) => t.id), [`${id}:release`]);
      assert.ok(pendings.length <= 1);
      for (const h of pendings) assert.match(h.id, new RegExp(`^hold:${receiver.userId}:${contentId}:1:\\d+$`), `receipt ${id}: a hold of its purchase`);
    } else {
      // An explicit grant reserved nothing: its purchase has no reservation to draw on.
      assert.equal(voids.length + pendings.length, 0);
    }
    assert.equal(mine.length, normal.length + voids.length + pendings.length, `receipt ${id}: only ledger legs`);
    charged.set(r.receiver_id, (charged.get(r.receiver_id) ?? 0) + charge);
    count.set(r.receiver_id, (count.get(r.receiver_id) ?? 0) + 1);
    const chain = holdChain.get(r.receiver_id) ?? { released: 0, reserved: 0 };
    holdChain.set(r.receiver_id, { released: chain.released + voids.length, reserved: chain.reserved + pendings.length });
  }
  assert.ok(state.conservation.ok, `conservation: ${JSON.stringify(state.conservation)}`);
  assert.equal(state.conservation.debitsPosted, state.conservation.creditsPosted);
  assert.equal(state.conservation.debitsPending, state.conservation.creditsPending);
  // Each wallet paid exactly the charges of its stored receipts, and was credited only its funding.
  // Its purchase counts exactly those receipts' bytes and charges, once each.
  for (const r of receivers) {
    const wallet = state.accounts.get(walletAccount(r.userId).id)!;
    const paid = charged.get(r.device.terminalId) ?? 0;
    const receipts = count.get(r.device.terminalId) ?? 0;
    assert.equal(wallet.debits_posted, paid, `receiver ${r.n} paid its receipts' charges`);
    assert.equal(wallet.credits_posted, r.funding, `receiver ${r.n} was credited its funding only`);
    const purchases = state.purchases.filter((p) => p.user_id === r.userId);
    if (receipts === 0 && !AUTO.has(r.n)) {
      assert.deepEqual(purchases, [], `receiver ${r.n}: no purchase before its first receipt`);
      assert.equal(wallet.debits_pending, 0);
      continue;
    }
    assert.equal(purchases.length, 1, `receiver ${r.n}: one purchase of the content`);
    const [purchase] = purchases;
    const complete = receipts === PIECES;
    assert.deepEqual(
      { content: purchase.content_id, round: purchase.round, paidBytes: purchase.paid_bytes, charged: purchase.charged, complete: purchase.completed_at !== null },
      { content: contentId, round: 1, paidBytes: receipts * PIECE, charged: paid, complete },
      `receiver ${r.n}: its purchase counts its ${receipts} stored receipts`,
    );
    if (AUTO.has(r.n)) {
      // The reservation is the purchase's: each receipt released it and reserved what was left,
      // until the one completing the purchase released the rest.
      const chain = holdChain.get(r.device.terminalId) ?? { released: 0, reserved: 0 };
      assert.deepEqual(chain, { released: receipts, reserved: complete ? receipts - 1 : receipts }, `receiver ${r.n}: the hold released and reserved again by each receipt`);
      const held = complete ? 0 : r.reserved - paid;
      assert.deepEqual(
        { hold: purchase.hold_id, amount: purchase.hold_amount, seq: purchase.hold_seq },
        { hold: complete ? null : `hold:${r.userId}:${contentId}:1:${receipts + 1}`, amount: held, seq: complete ? receipts : receipts + 1 },
        `receiver ${r.n}: what is still reserved`,
      );
      assert.equal(wallet.debits_pending, held);
    } else {
      assert.deepEqual({ hold: purchase.hold_id, amount: purchase.hold_amount }, { hold: null, amount: 0 });
      assert.equal(wallet.debits_pending, 0);
    }
  }
  return { stored: new Set(stored.keys()), charged };
}

const pgUrl = process.env.DATABASE_URL;
const engines: { name: string; title: string; skip: string | false; make: () => Promise<Engine> }[] = [
  { name: 'pglite', title: 'on PGlite', skip: false, make: pgliteEngine },
  {
    name: 'postgres',
    title: pgUrl ? 'on PostgreSQL' : 'on PostgreSQL (skipped: DATABASE_URL is unset)',
    skip: pgUrl ? false : 'DATABASE_URL is unset',
    make: () => postgresEngine(pgUrl!),
  },
];

for (const e of engines) {
  test(`an origin killed mid-settlement-batch and restarted settles every replayed receipt exactly once, ${e.title}`, { skip: e.skip, timeout: 180_000 }, async (t) => {
    const engine = await e.make();
    const work = mkdtempSync(path.join(os.tmpdir(), 'cascade-crash-'));
    const dataDir = path.join(work, 'origin');
    const env = { ...engine.env, PIECE_SIZE: String(PIECE), SIGNUP_CREDIT: String(SIGNUP_CREDIT), HOLDINGS_SPOT_CHECK: '0' };
    let origin: OriginProcess | null = null;
    let handle: DbHandle | null = null;
    try {
      await run(t, engine, work, dataDir, env, (o) => (origin = o), (h) => (handle = h));
    } finally {
      await (origin as OriginProcess | null)?.stop('SIGKILL');
      await (handle as DbHandle | null)?.close().catch(() => {});
      await engine.cleanup();
      rmSync(work, { recursive: true, force: true });
    }
  });
}

async function run(
  t: TestContext,
  engine: Engine,
  work: string,
  dataDir: string,
  env: Record<string, string>,
  setOrigin: (o: OriginProcess) => void,
  setHandle: (h: DbHandle | null) => void,
) {
  const started = performance.now();
  const phase = (() => {
    let last = started;
    return (name: string) => {
      const now = performance.now();
      t.diagnostic(`${engine.name}: ${name} ${Math.round(now - last)} ms`);
      last = now;
    };
  })();

  // --- An origin with the pause hook, a priced content, four funded receivers. -------------
  // The hook patches modules of src/: this origin runs src/ through tsx, not the compiled CLI.
  let origin = await spawnOrigin({ dataDir, env, nodeArgs: ['--import', crashHook(PAUSE_AT, HOLD_AT)], cli: SRC_CLI });
  setOrigin(origin);
  const op = new Api(origin.url, (await new Api(origin.url).post('/auth/login', origin.operator)).token);
  const account = async (username: string, roles: string[]) => {
    const created = await op.post<{ id: string }>('/users', { username, password: 'crash-test-password', roles });
    const { token } = await new Api(origin.url).post<{ token: string }>('/auth/login', { username, password: 'crash-test-password' });
    return { userId: created.id, api: new Api(origin.url, token) };
  };
  const [publisher, store] = await Promise.all([account('publisher', ['publisher']), account('store', ['store'])]);
  const published = await publisher.api.request<{ id: string }>('POST', `/contents?title=Crash&genre=test&price=${PRICE}`, {
    body: file,
    headers: { 'content-type': 'application/octet-stream' },
  });
  const contentId = published.id;
  const vouchers = (await store.api.post<{ vouchers: { code: string }[] }>('/vouchers', { amount: VOUCHER, count: RECEIVERS - AUTO.size })).vouchers;
  phase('origin, content and vouchers');

  const receivers: Receiver[] = await Promise.all(
    Array.from({ length: RECEIVERS }, async (_, n): Promise<Receiver> => {
      const user = await account(`receiver${n}`, ['member']);
      const device = await deviceSession(user.api, path.join(work, `receiver${n}`), { name: `receiver${n}` });
      const api = new Api(origin.url, device.token);
      let grant: { id: string; token: string; sourceId: string };
      let transferId: string | null = null;
      let funding: number;
      let reserved = 0;
      if (AUTO.has(n)) {
        // The balance check reserves the whole price (and opens the wallet with the sign-up credit).
        const offer = await api.post<{ transferId: string; sources: { sourceId: string; grant: { id: string; token: string } }[] }>('/grants/auto', { contentId, maxPeers: 0 });
        const src = offer.sources.find((s) => s.sourceId === 'origin')!;
        grant = { ...src.grant, sourceId: src.sourceId };
        transferId = offer.transferId;
        funding = SIGNUP_CREDIT;
        reserved = PRICE;
      } else {
        const code = vouchers[n - AUTO.size].code;
        await user.api.post('/wallet/topup', { code });
        grant = await api.post<{ id: string; token: string; sourceId: string }>('/grants', { contentId });
        funding = VOUCHER;
      }
      // Fetch every piece, check it, keep the origin's served statement: one receipt per piece.
      const client = new PieceClient({ sourceUrl: origin.url, grant: { id: grant.id, token: grant.token, contentId }, receiverKey: device.keys.privateKey, clock: systemClock, connections: 4 });
      const receipts = await Promise.all(
        Array.from({ length: PIECES }, async (_, i) => {
          const got = await client.fetch(i, Buffer.alloc(PIECE));
          assert.equal(got.sha256, pieceHash(i));
          assert.ok(got.served, 'the origin signed that it served the piece');
          return makeReceipt(
            { grant: grant.id, content: contentId, source: grant.sourceId, receiver: device.terminalId, pieces: String(i), bytes: PIECE, served: [got.served!] },
            device.keys.privateKey,
          );
        }),
      );
      await client.close();
      const batches: Batch[] = [];
      for (let k = 0; k < receipts.length; k += BATCH) {
        const slice = receipts.slice(k, k + BATCH);
        batches.push({ receiver: n, receipts: slice, ids: slice.map((r) => JSON.parse(r.body).id), state: 'waiting' });
      }
      return { n, userId: user.userId, device, funding, reserved, transferId, batches };
    }),
  );
  const all = receivers.flatMap((r) => r.batches);
  const total = all.reduce((s, b) => s + b.ids.length, 0);
  assert.equal(total, RECEIVERS * PIECES);
  phase(`${RECEIVERS} receivers fetched ${RECEIVERS * PIECES} pieces and signed ${total} receipts`);

  // --- Every receiver hands its receipts in, batch after batch, all four at once. ----------
  let dead = false;
  const paused = origin.waitForOutput(new RegExp(PAUSE_MARK), 60_000);
  paused.catch(() => {});
  const runs = receivers.map(async (r) => {
    const api = new Api(origin.url, r.device.token);
    for (const b of r.batches) {
      if (dead) return;
      b.state = 'sent';
      let res: { accepted: string[]; duplicates: string[]; refused: unknown[] };
      try {
        res = await api.post('/receipts', { receipts: b.receipts });
      } catch (err) {
        if (!dead) throw err;
        b.state = 'lost';
        return;
      }
      assert.deepEqual(res, { accepted: b.ids, duplicates: [], refused: [] });
      b.state = 'acked';
    }
  });
  const outcome = await Promise.race([paused.then(() => 'paused'), Promise.all(runs).then(() => 'all acknowledged')]);
  assert.equal(outcome, 'paused', 'the origin reached the batch it is to die in');
  const marked = (mark: string): string[] => {
    const line = origin.output().split('\n').find((l) => l.includes(mark));
    assert.ok(line, `the origin printed "${mark}"`);
    return JSON.parse(line).receipts;
  };
  const pausedIn = marked(PAUSE_MARK);
  const heldBack = marked(HOLD_MARK);
  // Every receiver still sending has a batch in flight (they all queue behind the paused one).
  await until('every receiver has a batch in flight', () => receivers.every((r) => r.batches.some((b) => b.state === 'sent') || r.batches.every((b) => b.state === 'acked')));
  const ackedBeforeKill = all.filter((b) => b.state === 'acked').length;
  const inFlight = all.filter((b) => b.state === 'sent');
  assert.ok(ackedBeforeKill >= 1, 'some batches were acknowledged before the kill');
  assert.ok(inFlight.length >= 1, 'some batches were in flight at the kill');
  assert.ok(inFlight.some((b) => b.ids.includes(pausedIn[0])), 'the paused batch is one of those in flight');
  assert.deepEqual(inFlight.find((b) => b.ids.includes(heldBack[0]))?.ids, heldBack, 'the batch committed but never answered is in flight');
  dead = true;
  await origin.stop('SIGKILL');
  assert.equal(origin.proc.signalCode, 'SIGKILL');
  await Promise.all(runs);
  phase(`submitted until the kill (${ackedBeforeKill} batches acknowledged, ${inFlight.length} in flight)`);

  // --- What the killed origin left behind, before anything restarts. -----------------------
  let handle = await engine.open(dataDir, true);
  setHandle(handle);
  const before = checkLedger(await readLedger(handle.db), receivers, publisher.userId, contentId);
  await handle.close();
  setHandle(null);
  // Exactly the batches settled before the paused one were committed, each whole; the paused
  // batch (receipts and ledger transfers written, settlement rows not) left nothing behind.
  assert.equal(before.stored.size, (PAUSE_AT - 1) * BATCH, 'exactly the batches before the paused one are stored');
  for (const b of all) {
    const kept = b.ids.filter((id) => before.stored.has(id)).length;
    assert.ok(kept === 0 || kept === b.ids.length, `a batch is stored whole or not at all (${kept} of ${b.ids.length})`);
    if (b.state === 'acked') assert.equal(kept, b.ids.length, 'an acknowledged batch is stored');
  }
  assert.ok(pausedIn.every((id) => !before.stored.has(id)), 'the batch the origin died in left nothing');
  assert.ok(heldBack.every((id) => before.stored.has(id)), 'the batch committed without an answer is stored');
  t.diagnostic(`${engine.name}: stored before the restart: ${before.stored.size} of ${total} receipts (${before.stored.size / BATCH} batches; ${ackedBeforeKill} acknowledged)`);
  phase('checked the database left by the kill');

  // --- Restart on the same data; the agents replay what was not acknowledged. --------------
  origin = await spawnOrigin({ dataDir, env });
  setOrigin(origin);
  phase('restarted the origin');
  const pending = all.filter((b) => b.state !== 'acked');
  let accepted = 0;
  let duplicates = 0;
  let resent = 0;
  await Promise.all(
    receivers.map(async (r) => {
      const api = new Api(origin.url, r.device.token);
      // An acknowledged batch sent again is reported as duplicates and changes nothing.
      const acked = r.batches.find((b) => b.state === 'acked');
      if (acked) {
        assert.deepEqual(await api.post('/receipts', { receipts: acked.receipts }), { accepted: [], duplicates: acked.ids, refused: [] });
        resent += acked.ids.length;
      }
      for (const b of r.batches.filter((x) => x.state !== 'acked')) {
        const res = await api.post<{ accepted: string[]; duplicates: string[]; refused: unknown[] }>('/receipts', { receipts: b.receipts });
        assert.deepEqual(res, { accepted: b.ids.filter((id) => !before.stored.has(id)), duplicates: b.ids.filter((id) => before.stored.has(id)), refused: [] });
        accepted += res.accepted.length;
        duplicates += res.duplicates.length;
        b.state = 'acked';
      }
    }),
  );
  assert.equal(accepted, total - before.stored.size);
  // The only unacknowledged receipts the origin had stored are the batch whose answer it held back.
  assert.equal(duplicates, heldBack.length);
  t.diagnostic(`${engine.name}: replayed ${pending.length} batches: ${accepted} receipts accepted, ${duplicates} duplicates (committed, never answered); ${resent} acknowledged receipts re-sent, all duplicates`);
  phase('replayed');
  const restartedOutput = origin.output();
  await origin.stop();
  assert.equal(origin.proc.exitCode, 0, 'the restarted origin stops cleanly');
  assert.doesNotMatch(restartedOutput, /"level":(50|60)/, 'the restarted origin logged no error');

  // --- Every receipt settled exactly once; the ledger sums to zero. ------------------------
  handle = await engine.open(dataDir, false);
  setHandle(handle);
  const after = checkLedger(await readLedger(handle.db), receivers, publisher.userId, contentId);
  assert.equal(after.stored.size, total);
  const missing = all.flatMap((b) => b.ids).filter((id) => !after.stored.has(id));
  assert.deepEqual(missing, [], 'every receipt is stored, once');
  for (const r of receivers) {
    const paid = after.charged.get(r.device.terminalId)!;
    assert.ok(paid > 0 && paid <= PRICE, `receiver ${r.n} paid ${paid}, at most the price`);
  }
  phase('checked the final ledger');
  t.diagnostic(`${engine.name}: total ${Math.round(performance.now() - started)} ms`);
}
