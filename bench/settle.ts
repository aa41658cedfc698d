// npm run bench -- settle [--receipts 100000] [--batch 1000] [--users 1000] [--held 20] [--engines pglite,postgres]
//                        [--profile] [--cpu-prof FILE] [--explain MS] [--keep]
//
// Settles stored receipts the way the origin does (Settlement.settleIn inside the
// transaction of a batch: each receipt charged against its purchase's totals, one linked
// chain of ledger transfers per receipt, reservations released and re-reserved, the
// purchases and one settlement row per receipt written), batch after batch, on embedded
// PGlite (in memory) and on PostgreSQL (a fresh schema in DATABASE_URL, default
// postgres://postgres@127.0.0.1:5432/test, dropped after).
//
// Setup (not timed), with batched SQL: 1,000 users with one terminal each, 5 publishers
// with 100 priced contents, downloads of 8 receipts over 2 grants each (sources: peers or
// the origin), receipt times spread over the last 30 days with a skewed activity per user
// (so the frequent-receiver and distributor rates apply to some), every receiver's wallet
// funded from platform:promotions, and `--held` % of the downloads with a reservation of
// their purchase (user and content): a pending hold `hold:<user>:<content>:1:1` of the
// whole price and its ledger_purchases row, as Reservations leaves them. A user who
// downloads a content again continues the same purchase; bytes beyond the content are free.
// Timed: the receipts, oldest first, `--batch` per transaction, one after another.
// Checked after (not timed): every receipt has a `settled` row, the ledger conserves
// money, and settling the first batch again changes nothing.
//
// Baseline in the same run: plain multi-row INSERTs of as many rows, as many per
// transaction, into a scratch table (before and after the settlement; the mean).
// `ratio` = receipts_per_s / baseline_inserts_per_s.
// One JSON line per backend, then as the last line {"bench":"settle","results":[…]}; a
// line is printed only once its checks passed (a failed check throws).
//
// Finding where the time goes: --profile prints the time of each statement per batch
// (a Kysely plugin), this process's CPU and the PostgreSQL server process's CPU (from
// /proc); --cpu-prof FILE writes a V8 CPU profile of the timed part; --explain MS has
// PostgreSQL log (auto_explain, with triggers) the plan of every statement slower than
// MS ms; --keep leaves the PostgreSQL schema in place for a look afterwards.
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { parseArgs } from 'node:util';
import type { KyselyPlugin, PluginTransformQueryArgs, PluginTransformResultArgs, QueryResult, RootOperationNode, UnknownRow } from 'kysely';
import { ManualClock } from '../src/core/clock.ts';
import { dropSchema, openDatabase, sql, type Db, type DbHandle } from '../src/db/connection.ts';
import { HOLDS, walletAccount } from '../src/ledger/accounts.ts';
import { holdId } from '../src/ledger/purchases.ts';
import { Ledger, type AccountSpec, type TransferInput } from '../src/ledger/ledger.ts';
import { Settlement, type StoredReceipt } from '../src/ledger/settlement.ts';
import { DEFAULT_TARIFF, proRataCharge } from '../src/ledger/tariff.ts';
import { PLATFORM_PROMOTIONS } from '../src/ledger/wallets.ts';

const { values } = parseArgs({
  options: {
    receipts: { type: 'string', default: '100000' },
    batch: { type: 'string', default: '1000' },
    users: { type: 'string', default: '1000' },
    held: { type: 'string', default: '20' },
    engines: { type: 'string', default: 'pglite,postgres' },
    profile: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    explain: { type: 'string' },
    'cpu-prof': { type: 'string' },
  },
});
const RECEIPTS = Number(values.receipts);
const BATCH = Number(values.batch);
const USERS = Number(values.users);
const HELD_PERCENT = Number(values.held);
const PUBLISHERS = 5;
const CONTENTS = 100;
const RECEIPTS_PER_GRANT = 4;
const GRANTS_PER_DOWNLOAD = 2;
const PIECES_PER_RECEIPT = 32;
const ORIGIN = 'origin';
const HOLD_TIMEOUT_MS = 3_600_000;
const DAY = 86_400_000;
const MiB = 1024 * 1024;
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const log = (msg: string) => process.stderr.write(`[bench settle] ${msg}\n`);

/** Deterministic data: the same world on both backends and in every run. */
function prng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface World {
  users: { id: string; username: string }[];
  terminals: { id: string; userId: string }[];
  contents: { id: string; publisherId: string; price: number; pieceSize: number; pieceCount: number; totalSize: number }[];
  transfers: { id: string; receiverId: string; contentId: string }[];
  /** Purchases with a reservation: user and content, the content's price and size. */
  held: { userId: string; contentId: string; price: number; totalSize: number }[];
  grants: { id: string; transferId: string | null; contentId: string; receiverId: string; sourceId: string; pieces: string }[];
  receipts: { id: string; grantId: string; contentId: string; sourceId: string; receiverId: string; pieces: string; bytes: number; receivedAt: number }[];
  funding: Map<string, number>;
}

function makeWorld(now: number): World {
  const rnd = prng(4242);
  const pick = <T>(xs: T[]) => xs[Math.floor(rnd() * xs.length)];
  const pad = (n: number) => String(n).padStart(6, '0');
  const users = Array.from({ length: USERS }, (_, i) => ({ id: `usr_bench${pad(i)}`, username: `bench-member-${i}` }));
  const publishers = Array.from({ length: PUBLISHERS }, (_, i) => ({ id: `usr_benchpub${i}`, username: `bench-publisher-${i}` }));
  const terminals = users.map((u, i) => ({ id: `trm_bench${pad(i)}`, userId: u.id }));
  const contents = Array.from({ length: CONTENTS }, (_, i) => {
    const pieceSize = rnd() < 0.5 ? MiB : 4 * MiB;
    const pieceCount = PIECES_PER_RECEIPT * GRANTS_PER_DOWNLOAD * RECEIPTS_PER_GRANT * (1 + Math.floor(rnd() * 4));
    return { id: randomHex(rnd, 64), publisherId: publishers[i % PUBLISHERS].id, price: 100 + Math.floor(rnd() * 9900), pieceSize, pieceCount, totalSize: pieceSize * pieceCount };
  });
  // Skewed activity: a few terminals receive (and serve) much more than the rest.
  const active = (): number => Math.min(terminals.length - 1, Math.floor(terminals.length * rnd() ** 2));
  const transfers: World['transfers'] = [];
  const held = new Map<string, World['held'][number]>();
  const grants: World['grants'] = [];
  const receipts: World['receipts'] = [];
  const funding = new Map<string, number>();
  const downloads = Math.ceil(RECEIPTS / (RECEIPTS_PER_GRANT * GRANTS_PER_DOWNLOAD));
  for (let d = 0; d < downloads && receipts.length < RECEIPTS; d++) {
    const receiver = terminals[active()];
    const content = pick(contents);
    // A download through /grants/auto: its transfer, and a reservation of the purchase (one per purchase).
    const reserved = rnd() * 100 < HELD_PERCENT;
    const transferId = reserved ? `xfr_bench${pad(d)}` : null;
    if (reserved) transfers.push({ id: transferId!, receiverId: receiver.id, contentId: content.id });
    const purchase = `${receiver.userId}|${content.id}`;
    if (reserved && !held.has(purchase)) {
      held.set(purchase, { userId: receiver.userId, contentId: content.id, price: content.price, totalSize: content.totalSize });
      funding.set(receiver.userId, (funding.get(receiver.userId) ?? 0) + content.price);
    }
    const start = now - 5 * 60_000 - Math.floor(rnd() * (30 * DAY - 10 * 60_000)); // within the last 30 days, at any hour
    let piece = 0;
    for (let g = 0; g < GRANTS_PER_DOWNLOAD && receipts.length < RECEIPTS; g++) {
      let source = rnd() < 0.3 ? ORIGIN : terminals[active()].id;
      if (source === receiver.id) source = ORIGIN;
      const grantId = `grt_bench${pad(d)}_${g}`;
      const first = piece;
      for (let k = 0; k < RECEIPTS_PER_GRANT && receipts.length < RECEIPTS; k++) {
        const pieces = `${piece}-${piece + PIECES_PER_RECEIPT - 1}`;
        piece += PIECES_PER_RECEIPT;
        const bytes = PIECES_PER_RECEIPT * content.pieceSize;
        receipts.push({ id: `rc_bench${pad(receipts.length)}`, grantId, contentId: content.id, sourceId: source, receiverId: receiver.id, pieces, bytes, receivedAt: start + (g * RECEIPTS_PER_GRANT + k) * 15_000 });
        funding.set(receiver.userId, (funding.get(receiver.userId) ?? 0) + proRataCharge(content.price, bytes, content.totalSize, []));
      }
      grants.push({ id: grantId, transferId, contentId: content.id, receiverId: receiver.id, sourceId: source, pieces: `${first}-${piece - 1}` });
    }
  }
  return { users: [...users, ...publishers], terminals, contents, transfers, held: [...held.values()], grants, receipts, funding };
}

function randomHex(rnd: () => number, len: number): string {
  let s = '';
  while (s.length < len) s += Math.floor(rnd() * 0x1_0000_0000).toString(16).padStart(8, '0');
  return s.slice(0, len);
}

/** Inserts rows in chunks, each as one statement over unnested arrays. */
async function bulk<T>(db: Db, rows: T[], insert: (chunk: T[]) => ReturnType<typeof sql>, chunk = 10_000) {
  for (let i = 0; i < rows.length; i += chunk) await insert(rows.slice(i, i + chunk)).execute(db);
}

async function populate(db: Db, ledger: Ledger, w: World, now: number) {
  const at = new Date(now - 40 * DAY);
  await bulk(db, w.users, (c) => sql`
    insert into users (id, username, password_hash, roles, created_at)
    select id, name, 'x', array['member']::text[], ${at}::timestamptz from unnest(${c.map((u) => u.id)}::text[], ${c.map((u) => u.username)}::text[]) as u(id, name)`);
  await sql`update users set roles = array['publisher']::text[] where id like 'usr_benchpub%'`.execute(db);
  await bulk(db, w.terminals, (c) => sql`
    insert into terminals (id, user_id, name, public_key, region, network, serve_url, created_at)
    select id, uid, 'bench', 'pk-' || id, 'eu', 'fiber', 'http://127.0.0.1:1/' || id, ${at}::timestamptz
    from unnest(${c.map((t) => t.id)}::text[], ${c.map((t) => t.userId)}::text[]) as u(id, uid)`);
  await bulk(db, w.contents, (c) => sql`
    insert into contents (id, title, summary, author, genre, price, publisher_id, piece_size, piece_count, total_size, manifest, created_at)
    select id, 'Bench ' || left(id, 8), '', 'bench', 'bench', p, pub, ps, pc, ts, '{}'::jsonb, ${at}::timestamptz
    from unnest(${c.map((x) => x.id)}::text[], ${c.map((x) => x.price)}::int8[], ${c.map((x) => x.publisherId)}::text[],
                ${c.map((x) => x.pieceSize)}::int4[], ${c.map((x) => x.pieceCount)}::int4[], ${c.map((x) => x.totalSize)}::int8[]) as u(id, p, pub, ps, pc, ts)`);
  await bulk(db, w.transfers, (c) => sql`
    insert into transfers (id, receiver_id, content_id, state, pieces_done, pieces_total, created_at, last_report_at)
    select id, r, cid, 'active', 0, 256, ${at}::timestamptz, ${at}::timestamptz
    from unnest(${c.map((t) => t.id)}::text[], ${c.map((t) => t.receiverId)}::text[], ${c.map((t) => t.contentId)}::text[]) as u(id, r, cid)`);
  await bulk(db, w.grants, (c) => sql`
    insert into grants (id, transfer_id, content_id, receiver_id, source_id, pieces, expires_at, created_at)
    select id, tid, cid, r, s, p, ${new Date(now + DAY)}::timestamptz, ${at}::timestamptz
    from unnest(${c.map((g) => g.id)}::text[], ${c.map((g) => g.transferId)}::text[], ${c.map((g) => g.contentId)}::text[],
                ${c.map((g) => g.receiverId)}::text[], ${c.map((g) => g.sourceId)}::text[], ${c.map((g) => g.pieces)}::text[]) as u(id, tid, cid, r, s, p)`);
  await bulk(db, w.receipts, (c) => sql`
    insert into receipts (id, grant_id, content_id, source_id, receiver_id, pieces, bytes, signature, body, received_at)
    select id, gid, cid, s, r, p, b, 'sig', '{"typ":"receipt","id":"' || id || '"}', t
    from unnest(${c.map((r) => r.id)}::text[], ${c.map((r) => r.grantId)}::text[], ${c.map((r) => r.contentId)}::text[], ${c.map((r) => r.sourceId)}::text[],
                ${c.map((r) => r.receiverId)}::text[], ${c.map((r) => r.pieces)}::text[], ${c.map((r) => r.bytes)}::int8[],
                ${c.map((r) => new Date(r.receivedAt).toISOString())}::timestamptz[]) as u(id, gid, cid, s, r, p, b, t)`);

  // Wallets funded from the promotions account (what every receiver will pay, and more).
  const createdAt = new Date(now);
  const accounts: AccountSpec[] = [PLATFORM_PROMOTIONS, HOLDS, ...w.users.map((u) => walletAccount(u.id))];
  await sql`
    insert into ledger_accounts (id, kind, owner_id, no_overdraft, created_at)
    select id, k, o, n, ${createdAt}::timestamptz
    from unnest(${accounts.map((a) => a.id)}::text[], ${accounts.map((a) => a.kind)}::text[], ${accounts.map((a) => a.ownerId ?? null)}::text[],
                ${accounts.map((a) => a.noOverdraft)}::bool[]) as u(id, k, o, n)
    on conflict (id) do nothing`.execute(db);
  const fund: TransferInput[] = [...w.funding].map(([userId, amount]) => ({
    id: `bench-fund:${userId}`, debit: PLATFORM_PROMOTIONS.id, credit: walletAccount(userId).id, amount: amount * 2 + 1000, reason: 'topup',
  }));
  // Reservations made before the downloads, one per purchase: the whole price of the content, held.
  const holdOf = (h: World['held'][number]) => holdId({ userId: h.userId, contentId: h.contentId, round: 1 }, 1);
  const holds: TransferInput[] = w.held.map((h) => ({
    id: holdOf(h), kind: 'pending', debit: walletAccount(h.userId).id, credit: HOLDS.id, amount: h.price,
    timeoutMs: HOLD_TIMEOUT_MS, reason: 'reservation', contentId: h.contentId,
  }));
  for (const batch of [fund, holds]) {
    for (let i = 0; i < batch.length; i += 2000) {
      const results = await ledger.apply(batch.slice(i, i + 2000));
      const failed = results.find((r) => r.status === 'failed');
      if (failed) throw new Error(`setup transfer ${failed.id} failed: ${failed.code}`);
    }
  }
  // Their purchases, nothing paid yet, the hold recorded (as Reservations.reserve writes them).
  await bulk(db, w.held, (c) => sql`
    insert into ledger_purchases (user_id, content_id, round, price, total_bytes, paid_bytes, charge_num, charged, royalty_paid, fee_paid,
                                  hold_id, hold_amount, hold_seq, created_at, updated_at)
    select u, cid, 1, p, t, 0, 0, 0, 0, 0, h, p, 1, ${createdAt}::timestamptz, ${createdAt}::timestamptz
    from unnest(${c.map((h) => h.userId)}::text[], ${c.map((h) => h.contentId)}::text[], ${c.map((h) => h.price)}::int8[],
                ${c.map((h) => h.totalSize)}::int8[], ${c.map(holdOf)}::text[]) as v(u, cid, p, t, h)`);
  // What autovacuum does to a table after bulk inserts (PGlite has none: run it by hand):
  // statistics, and pages marked all-visible so index-only scans need no heap visits.
  // Only our tables: the PostgreSQL database is shared with other schemas.
  await sql`vacuum analyze users, terminals, contents, transfers, grants, receipts, ledger_accounts, ledger_transfers, ledger_purchases`.execute(db);
}

/** Per-statement timing through a Kysely plugin: statement label → [count, ms]. */
class QueryTimer implements KyselyPlugin {
  readonly stats = new Map<string, { n: number; ms: number }>();
  private readonly open = new Map<unknown, { label: string; t: number }>();
  transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
    this.open.set(args.queryId, { label: label(args.node), t: performance.now() });
    return args.node;
  }
  async transformResult(args: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
    const o = this.open.get(args.queryId);
    if (o) {
      this.open.delete(args.queryId);
      const s = this.stats.get(o.label) ?? { n: 0, ms: 0 };
      s.n++;
      s.ms += performance.now() - o.t;
      this.stats.set(o.label, s);
    }
    return args.result;
  }
}

function label(node: RootOperationNode): string {
  const n = node as any;
  if (n.kind === 'RawNode') return `raw: ${(n.sqlFragments as string[]).join('?').replace(/\s+/g, ' ').trim().slice(0, 70)}`;
  const table = (x: any) => x?.table?.identifier?.name ?? x?.table?.table?.identifier?.name ?? x?.identifier?.name ?? '?';
  if (n.kind === 'SelectQueryNode') return `select ${n.from?.froms?.map((f: any) => table(f.kind === 'AliasNode' ? f.node : f)).join(',')}${n.forUpdate || n.endModifiers?.length ? ' for update' : ''}`;
  if (n.kind === 'InsertQueryNode') return `insert ${table(n.into)}`;
  if (n.kind === 'UpdateQueryNode') return `update ${table(n.table?.kind === 'AliasNode' ? n.table.node : n.table)}`;
  return n.kind;
}

/** CPU time (user + system) a local process has used, from /proc, in ms (10 ms ticks). */
function procCpuMs(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return 0; // not on this machine
  }
}

async function baseline(db: Db, rows: number, batch: number): Promise<number> {
  await sql`drop table if exists bench_scratch`.execute(db);
  await sql`create table bench_scratch (id text primary key, grant_id text not null, source_id text not null, bytes int8 not null, at timestamptz not null)`.execute(db);
  const at = new Date();
  const started = performance.now();
  for (let i = 0; i < rows; i += batch) {
    const values = Array.from({ length: Math.min(batch, rows - i) }, (_, k) => ({ id: `row-${i + k}`, grant_id: `grt-${(i + k) >> 3}`, source_id: `trm-${(i + k) % 997}`, bytes: 33_554_432, at }));
    await db.transaction().execute((trx) => (trx as unknown as Db).insertInto('bench_scratch' as any).values(values).execute());
  }
  const perS = rows / ((performance.now() - started) / 1000);
  await sql`drop table bench_scratch`.execute(db);
  return perS;
}

async function snapshot(db: Db) {
  const { rows } = await sql<{ a: string; t: number; s: string; p: string; sh: string }>`
    select (select md5(string_agg(id || ':' || debits_posted || ':' || credits_posted || ':' || debits_pending || ':' || credits_pending, ',' order by id)) from ledger_accounts) as a,
           (select count(*)::int8 from ledger_transfers) as t,
           (select md5(string_agg(receipt_id || status || charge || attempts, ',' order by receipt_id)) from ledger_settlements) as s,
           (select md5(string_agg(p::text, ',' order by user_id, content_id, round)) from ledger_purchases p) as p,
           (select md5(string_agg(s::text, ',' order by user_id, content_id, round, account_id)) from ledger_purchase_shares s) as sh`.execute(db);
  return rows[0];
}

async function run(engine: 'pglite' | 'postgres') {
  const schema = `bench_settle_${process.pid}_${randomBytes(3).toString('hex')}`;
  const t0 = performance.now();
  const handle: DbHandle = engine === 'pglite' ? await openDatabase({}) : await openDatabase({ databaseUrl: DATABASE_URL, schema });
  try {
    const now = Date.UTC(2026, 10, 22, 12, 0, 0);
    const clock = new ManualClock(now);
    const timer = new QueryTimer();
    const db = values.profile ? handle.db.withPlugin(timer) : handle.db;
    const ledger = new Ledger({ db, clock });
    const settlement = new Settlement({ db, ledger, clock, tariff: DEFAULT_TARIFF, originSourceId: ORIGIN });

    log(`${engine}: generating and inserting ${RECEIPTS} receipts, ${USERS} users`);
    const world = makeWorld(now);
    await populate(handle.db, new Ledger({ db: handle.db, clock }), world, now);
    const receipts: StoredReceipt[] = await handle.db
      .selectFrom('receipts')
      .select(['id', 'grant_id', 'content_id', 'source_id', 'receiver_id', 'bytes', 'received_at'])
      .orderBy('received_at')
      .orderBy('id')
      .execute();
    const setupSeconds = (performance.now() - t0) / 1000;
    log(`${engine}: setup ${setupSeconds.toFixed(1)} s (${world.grants.length} grants, ${world.transfers.length} reserved downloads, ${world.held.length} purchases with a reservation)`);

    const base1 = await baseline(handle.db, receipts.length, BATCH);
    log(`${engine}: baseline ${base1.toFixed(0)} rows/s`);

    const transfersBefore = Number((await sql<{ n: number }>`select count(*)::int8 as n from ledger_transfers`.execute(handle.db)).rows[0].n);
    timer.stats.clear();
    let unpaid = 0;
    let settleMs = 0;
    let serverCpuMs = 0;
    const cpuStart = process.cpuUsage();
    const batchMs: number[] = [];
    // --cpu-prof FILE: a CPU profile of the timed part only (open it in Chrome DevTools).
    const inspector = values['cpu-prof'] ? new Session() : null;
    if (inspector) {
      inspector.connect();
      await inspector.post('Profiler.enable');
      await inspector.post('Profiler.start');
    }
    const started = performance.now();
    for (let i = 0; i < receipts.length; i += BATCH) {
      const batch = receipts.slice(i, i + BATCH);
      const b0 = performance.now();
      const out = await db.transaction().execute(async (trx) => {
        // --explain MS (PostgreSQL): the server log gets the plan of every statement slower than MS.
        if (values.explain && engine === 'postgres') {
          await sql`load 'auto_explain'`.execute(trx);
          await sql`select set_config('auto_explain.log_min_duration', ${values.explain}, true), set_config('auto_explain.log_analyze', 'on', true), set_config('auto_explain.log_triggers', 'on', true)`.execute(trx);
        }
        // --profile on PostgreSQL: CPU time of the server process that ran the batch.
        const pid = values.profile && engine === 'postgres' ? (await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(trx)).rows[0].pid : 0;
        const cpu0 = pid ? procCpuMs(pid) : 0;
        const t = performance.now();
        const result = await settlement.settleIn(trx, batch);
        settleMs += performance.now() - t;
        if (pid) serverCpuMs += procCpuMs(pid) - cpu0;
        return result;
      });
      batchMs.push(performance.now() - b0);
      unpaid += out.unpaid.length;
      if ((i / BATCH) % 20 === 19) log(`${engine}: ${i + batch.length} settled, ${((i + batch.length) / ((performance.now() - started) / 1000)).toFixed(0)} receipts/s`);
    }
    const seconds = (performance.now() - started) / 1000;
    if (inspector) {
      const { profile } = await inspector.post('Profiler.stop');
      writeFileSync(`${values['cpu-prof']}.${engine}.cpuprofile`, JSON.stringify(profile));
      inspector.disconnect();
    }
    const receiptsPerS = receipts.length / seconds;
    log(`${engine}: ${receipts.length} receipts in ${seconds.toFixed(2)} s = ${receiptsPerS.toFixed(0)} receipts/s (${unpaid} unpaid)`);
    if (values.profile) {
      const batches = batchMs.length;
      const dbMs = [...timer.stats.values()].reduce((s, x) => s + x.ms, 0);
      const cpu = process.cpuUsage(cpuStart);
      log(`${engine}: per batch ${(seconds * 1000 / batches).toFixed(1)} ms: settleIn ${(settleMs / batches).toFixed(1)} ms (statements ${(dbMs / batches).toFixed(1)} ms, the rest in JS), begin + commit ${((seconds * 1000 - settleMs) / batches).toFixed(1)} ms`);
      log(`${engine}: CPU per batch: this process ${((cpu.user + cpu.system) / 1000 / batches).toFixed(1)} ms${engine === 'postgres' ? `, the server process in settleIn ${(serverCpuMs / batches).toFixed(1)} ms` : ''}`);
      for (const [k, v] of [...timer.stats].sort((a, b) => b[1].ms - a[1].ms)) log(`  ${(v.ms / batches).toFixed(2).padStart(8)} ms  ${String(v.n / batches).padStart(4)}×  ${k}`);
    }
    const transfers = Number((await sql<{ n: number }>`select count(*)::int8 as n from ledger_transfers`.execute(handle.db)).rows[0].n) - transfersBefore;
    // What the receipts were: paid out of a reservation (their chain released it), free (their purchase was complete), purchases.
    const { rows: [shape] } = await sql<{ held: number; free: number; purchases: number }>`
      select (select count(*) from ledger_transfers where kind = 'void' and ref is not null)::int8 as held,
             (select count(*) from ledger_settlements where charge = 0)::int8 as free,
             (select count(*) from ledger_purchases)::int8 as purchases`.execute(handle.db);

    // Checks (not timed).
    const { rows: [check] } = await sql<{ settled: number; missing: number }>`
      select count(*) filter (where s.status = 'settled')::int8 as settled, count(*) filter (where s.receipt_id is null)::int8 as missing
      from receipts r left join ledger_settlements s on s.receipt_id = r.id`.execute(handle.db);
    if (check.settled !== receipts.length || check.missing !== 0) throw new Error(`${engine}: ${check.settled} of ${receipts.length} receipts settled, ${check.missing} without a row`);
    const conservation = await ledger.checkConservation();
    if (!conservation.ok) throw new Error(`${engine}: conservation broken: ${JSON.stringify(conservation)}`);
    const before = await snapshot(handle.db);
    const again = await db.transaction().execute((trx) => settlement.settleIn(trx, receipts.slice(0, BATCH)));
    const after = await snapshot(handle.db);
    if (JSON.stringify(before) !== JSON.stringify(after)) throw new Error(`${engine}: settling a batch again changed something: ${JSON.stringify({ before, after })}`);
    if (again.settled.length !== Math.min(BATCH, receipts.length)) throw new Error(`${engine}: settling a batch again answered ${JSON.stringify(again.unpaid.slice(0, 3))}`);
    log(`${engine}: checks ok (all settled, conservation, a batch settled again changed nothing and answered settled)`);

    const base2 = await baseline(handle.db, receipts.length, BATCH);
    const baselinePerS = (base1 + base2) / 2;
    log(`${engine}: baseline again ${base2.toFixed(0)} rows/s`);
    const sorted = [...batchMs].sort((a, b) => a - b);
    return {
      bench: 'settle',
      backend: engine,
      receipts: receipts.length,
      batch: BATCH,
      seconds: Math.round(seconds * 100) / 100,
      receipts_per_s: Math.round(receiptsPerS),
      transfers,
      transfers_per_s: Math.round(transfers / seconds),
      held_receipts: shape.held,
      free_receipts: shape.free,
      purchases: shape.purchases,
      batch_ms_p50: Math.round(sorted[Math.floor(sorted.length / 2)]),
      batch_ms_max: Math.round(sorted[sorted.length - 1]),
      baseline_inserts_per_s: Math.round(baselinePerS),
      ratio: Math.round((receiptsPerS / baselinePerS) * 1000) / 1000,
      setup_seconds: Math.round(setupSeconds * 10) / 10,
    };
  } finally {
    await handle.close();
    if (engine === 'postgres' && !values.keep) await dropSchema(DATABASE_URL, schema);
    else if (engine === 'postgres') log(`kept schema ${schema}`);
  }
}

const results = [];
for (const engine of values.engines.split(',').map((e) => e.trim()) as ('pglite' | 'postgres')[]) {
  if (engine !== 'pglite' && engine !== 'postgres') throw new Error(`unknown engine ${engine}`);
  const r = await run(engine);
  console.log(JSON.stringify(r));
  results.push(r);
}
console.log(JSON.stringify({ bench: 'settle', results }));
