import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { storeAccount, VOUCHERS_OUTSTANDING, walletAccount } from '../../src/ledger/accounts.ts';
import { Ledger } from '../../src/ledger/ledger.ts';
import { CODE_LENGTH, MAX_FAILED_REDEMPTIONS, newVoucherCode, normaliseVoucherCode } from '../../src/ledger/vouchers.ts';
import { testEngines } from '../helpers/db.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';
import { runCli } from '../helpers/processes.ts';

// Vouchers and top-up (S1.11, docs/ledger.md "Vouchers"), through the HTTP API on both
// engines. Every refusal is checked twice: its code, and that nothing changed
// (voucher rows, ledger accounts and transfers, conservation).

const CODE_SHAPE = /^[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){5}$/;

test('codes: 24 Crockford base32 characters (120 bits), typed in any case, with or without dashes', () => {
  assert.equal(CODE_LENGTH, 24);
  const code = newVoucherCode();
  assert.match(code, CODE_SHAPE);
  const plain = code.replace(/-/g, '');
  assert.equal(normaliseVoucherCode(code), plain);
  assert.equal(normaliseVoucherCode(` ${code.toLowerCase().replace(/-/g, ' ')} `), plain);
  // The look-alikes Crockford allows: I and L read as 1, O as 0.
  assert.equal(normaliseVoucherCode('oooo-iiii-llll-0000-1111-2222'), '000011111111000011112222');
  for (const bad of ['', 'hello', plain.slice(1), plain + '0', plain.slice(1) + 'U', plain.slice(1) + '!', 'x'.repeat(500)]) {
    assert.equal(normaliseVoucherCode(bad), null, bad);
  }
});

for (const engine of testEngines()) {
  describe(`vouchers (${engine.name})`, () => {
    let origin: TestOrigin;
    let ledger: Ledger;
    let store: { token: string; userId: string };

    before(async () => {
      origin = await startTestOrigin({ engine });
      ledger = new Ledger({ db: origin.db.db, clock: origin.clock });
      store = await origin.userWithRoles(['store']);
    });
    after(() => origin?.close());

    async function issue(amount: number, count = 1, extra: Record<string, unknown> = {}): Promise<{ id: string; code: string; amount: number }[]> {
      const res = await origin.call('POST', '/vouchers', { token: store.token, json: { amount, count, ...extra } });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      return res.body.vouchers;
    }

    async function snapshot() {
      const db = origin.db.db;
      const vouchers = await db.selectFrom('vouchers').selectAll().orderBy('id').execute();
      const accounts = await db.selectFrom('ledger_accounts').selectAll().orderBy('id').execute();
      const transfers = await sql<{ n: number }>`select count(*)::int8 as n from ledger_transfers`.execute(db);
      return { vouchers, accounts, transfers: transfers.rows[0].n };
    }

    /** Makes the call, expects the refusal, and checks that nothing changed. */
    async function refused(call: () => Promise<{ status: number; body: any }>, status: number, code: string) {
      const before = await snapshot();
      const res = await call();
      assert.equal(res.status, status, JSON.stringify(res.body));
      assert.equal(res.body.error.code, code);
      assert.equal(typeof res.body.error.message, 'string');
      assert.deepEqual(await snapshot(), before);
      assert.equal((await ledger.checkConservation()).ok, true);
      return res;
    }

    const topup = (token: string, code: string) => origin.call('POST', '/wallet/topup', { token, json: { code } });
    const posted = async (id: string) => (await ledger.balance(id)).posted;

    test('a store issues vouchers: codes once, the store owes their value, vouchers:outstanding holds it (S1.11)', async () => {
      const storeBefore = await posted(storeAccount(store.userId).id).catch(() => 0);
      const outstandingBefore = await posted(VOUCHERS_OUTSTANDING.id);
      const vouchers = await issue(500, 3);
      assert.equal(vouchers.length, 3);
      for (const v of vouchers) {
        assert.match(v.code, CODE_SHAPE);
        assert.equal(v.amount, 500);
      }
      assert.equal(new Set(vouchers.map((v) => v.code)).size, 3);
      assert.equal(await posted(storeAccount(store.userId).id), storeBefore - 1500);
      assert.equal(await posted(VOUCHERS_OUTSTANDING.id), outstandingBefore + 1500);
      const history = await ledger.history(storeAccount(store.userId).id, { limit: 3 });
      assert.deepEqual(history.map((h) => [h.reason, h.amount, h.counterpart]), Array(3).fill(['voucher', -500, VOUCHERS_OUTSTANDING.id]));
      assert.deepEqual(history.map((h) => h.ref).sort(), vouchers.map((v) => v.id).sort());
      assert.ok(history.every((h) => h.id === `voucher-issue:${h.ref}`));
      assert.equal((await ledger.checkConservation()).ok, true);
    });

    test('only a store may issue; bad amounts, counts and expiries are refused; nothing is written', async () => {
      for (const roles of [['member'], ['publisher'], ['operator']]) {
        const user = await origin.userWithRoles(roles);
        await refused(() => origin.call('POST', '/vouchers', { token: user.token, json: { amount: 500, count: 2 } }), 403, 'forbidden');
      }
      for (const body of [{ amount: 0 }, { amount: -5 }, { amount: 1.5 }, { amount: 10_000_001 }, { amount: 100, count: 0 }, { amount: 100, count: 1001 }, { count: 1 }]) {
        await refused(() => origin.call('POST', '/vouchers', { token: store.token, json: body }), 400, 'invalid_request');
      }
      const past = new Date(origin.clock.now() - 1000).toISOString();
      await refused(() => origin.call('POST', '/vouchers', { token: store.token, json: { amount: 100, expiresAt: past } }), 400, 'invalid_expiry');
    });

    test('redeeming credits the wallet by exactly the amount, once; any case and spacing works', async () => {
      const [v] = await issue(700);
      const user = await origin.userWithRoles(['member']);
      const outstanding = await posted(VOUCHERS_OUTSTANDING.id);
      const res = await topup(user.token, v.code.toLowerCase().replace(/-/g, ' '));
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.deepEqual(res.body, { voucherId: v.id, amount: 700, balance: 700 });
      assert.equal(await posted(walletAccount(user.userId).id), 700);
      assert.equal(await posted(VOUCHERS_OUTSTANDING.id), outstanding - 700);
      const [entry] = await ledger.history(walletAccount(user.userId).id, { limit: 10 });
      assert.deepEqual(
        { id: entry.id, amount: entry.amount, balanceAfter: entry.balanceAfter, reason: entry.reason, ref: entry.ref, counterpart: entry.counterpart },
        { id: `voucher-redeem:${v.id}`, amount: 700, balanceAfter: 700, reason: 'topup', ref: v.id, counterpart: VOUCHERS_OUTSTANDING.id },
      );
      const row = await origin.db.db.selectFrom('vouchers').selectAll().where('id', '=', v.id).executeTakeFirstOrThrow();
      assert.equal(row.redeemed_by, user.userId);
      assert.equal(new Date(row.redeemed_at!).getTime(), origin.clock.now());
      assert.equal((await ledger.checkConservation()).ok, true);

      // A second wallet top-up adds to the first.
      const [w] = await issue(300);
      assert.deepEqual((await topup(user.token, w.code)).body, { voucherId: w.id, amount: 300, balance: 1000 });
    });

    test('a used code is refused (409) for the redeemer and for anyone else; nothing is credited again', async () => {
      const [v] = await issue(400);
      const user = await origin.userWithRoles(['member']);
      assert.equal((await topup(user.token, v.code)).status, 200);
      await refused(() => topup(user.token, v.code), 409, 'voucher_used');
      const other = await origin.userWithRoles(['member']);
      await refused(() => topup(other.token, v.code), 409, 'voucher_used');
      assert.equal(await posted(walletAccount(user.userId).id), 400);
    });

    test('an unknown or malformed code is voucher_unknown (404), and leaves no wallet behind', async () => {
      const user = await origin.userWithRoles(['member']);
      for (const code of [newVoucherCode(), 'hello', '', 'ABCD-EFGH']) {
        await refused(() => topup(user.token, code), 404, 'voucher_unknown');
      }
      await assert.rejects(ledger.balance(walletAccount(user.userId).id), { code: 'account_not_found' });
      await refused(() => origin.call('POST', '/wallet/topup', { token: user.token, json: {} }), 400, 'invalid_request');
    });

    test('an expired voucher is refused with voucher_expired (410)', async () => {
      const [v] = await issue(250, 1, { expiresAt: new Date(origin.clock.now() + 3_600_000).toISOString() });
      const user = await origin.userWithRoles(['member']);
      origin.clock.advance(3_600_000);
      await refused(() => topup(user.token, v.code), 410, 'voucher_expired');
    });

    test('two users redeeming one code at once: exactly one is credited', async () => {
      for (let round = 0; round < 5; round++) {
        const [v] = await issue(900);
        const users = await Promise.all([origin.userWithRoles(['member']), origin.userWithRoles(['member'])]);
        const outstanding = await posted(VOUCHERS_OUTSTANDING.id);
        const results = await Promise.all(users.map((u) => topup(u.token, v.code)));
        assert.deepEqual(results.map((r) => r.status).sort(), [200, 409], JSON.stringify(results.map((r) => r.body)));
        assert.equal(results.find((r) => r.status === 409)!.body.error.code, 'voucher_used');
        const balances = await Promise.all(users.map((u) => posted(walletAccount(u.userId).id).catch(() => 0)));
        assert.deepEqual(balances.sort(), [0, 900]);
        assert.equal(await posted(VOUCHERS_OUTSTANDING.id), outstanding - 900);
        const winner = users[results.findIndex((r) => r.status === 200)];
        const row = await origin.db.db.selectFrom('vouchers').select('redeemed_by').where('id', '=', v.id).executeTakeFirstOrThrow();
        assert.equal(row.redeemed_by, winner.userId);
      }
      assert.equal((await ledger.checkConservation()).ok, true);
    });

    test(`after ${MAX_FAILED_REDEMPTIONS} failures in 10 minutes, redemption is refused with too_many_attempts (429)`, async () => {
      const [v] = await issue(100);
      const guesser = await origin.userWithRoles(['member']);
      for (let i = 0; i < MAX_FAILED_REDEMPTIONS; i++) {
        assert.equal((await topup(guesser.token, newVoucherCode())).body.error.code, 'voucher_unknown');
        origin.clock.advance(1000);
      }
      // Even a valid code: the limit is on the account, not on the code.
      const res = await refused(() => topup(guesser.token, v.code), 429, 'too_many_attempts');
      assert.ok(res.body.error.details.retryAfterSeconds > 0);
      // Others are not affected.
      const [w] = await issue(100);
      const other = await origin.userWithRoles(['member']);
      assert.equal((await topup(other.token, w.code)).status, 200);
      // Once the first failures leave the window, the guesser may try again.
      origin.clock.advance(10 * 60_000);
      assert.deepEqual((await topup(guesser.token, v.code)).body, { voucherId: v.id, amount: 100, balance: 100 });
    });

    test('a thousand codes in one issue: all distinct, all full length', async () => {
      const vouchers = await issue(1, 1000);
      assert.equal(vouchers.length, 1000);
      assert.equal(new Set(vouchers.map((v) => v.code)).size, 1000);
      assert.equal(new Set(vouchers.map((v) => v.id)).size, 1000);
      for (const v of vouchers) assert.equal(normaliseVoucherCode(v.code)?.length, 24);
      assert.equal((await ledger.checkConservation()).ok, true);
    });

    test('only the hash is stored: the code appears nowhere in the database', async () => {
      const vouchers = await issue(123, 3);
      const user = await origin.userWithRoles(['member']);
      assert.equal((await topup(user.token, vouchers[0].code)).status, 200);
      const row = await origin.db.db.selectFrom('vouchers').selectAll().where('id', '=', vouchers[1].id).executeTakeFirstOrThrow();
      assert.match(row.code_hash, /^[0-9a-f]{64}$/);
      // Every row of every table of this database, as text.
      const tables = await sql<{ name: string }>`select table_name as name from information_schema.tables where table_schema = current_schema() and table_type = 'BASE TABLE'`.execute(
        origin.db.db,
      );
      assert.ok(tables.rows.some((t) => t.name === 'vouchers'));
      let dump = '';
      for (const t of tables.rows) {
        const rows = await sql<{ r: string }>`select row_to_json(x)::text as r from ${sql.table(t.name)} as x`.execute(origin.db.db);
        dump += rows.rows.map((r) => r.r).join('\n');
      }
      dump = dump.toUpperCase();
      for (const v of vouchers) {
        assert.ok(!dump.includes(v.code), 'formatted code found');
        assert.ok(!dump.includes(normaliseVoucherCode(v.code)!), 'normalised code found');
      }
    });
  });
}

describe('cascade voucher issue / wallet topup (the real CLI)', () => {
  let origin: TestOrigin;
  const homes: string[] = [];

  before(async () => {
    origin = await startTestOrigin();
  });
  after(async () => {
    await origin?.close();
    for (const h of homes) rmSync(h, { recursive: true, force: true });
  });

  /** A CASCADE_HOME signed in as a fresh account with these roles. */
  async function home(roles: string[]) {
    const user = await origin.userWithRoles(roles);
    const dir = mkdtempSync(path.join(os.tmpdir(), 'cascade-home-'));
    homes.push(dir);
    writeFileSync(path.join(dir, 'profile.json'), JSON.stringify({ origin: origin.url, token: user.token, username: user.username }));
    return { dir, ...user };
  }
  // runCli passes this process's environment on: a token or origin from it would win over the profile.
  delete process.env.CASCADE_TOKEN;
  delete process.env.CASCADE_ORIGIN;
  const env = {};

  test('a store prints codes; a member redeems them and sees the new balance', async () => {
    const store = await home(['store']);
    const member = await home(['member']);

    const issued = await runCli(['voucher', 'issue', '--amount', '250', '--count', '2', '--json'], { home: store.dir, env });
    assert.equal(issued.code, 0, issued.stderr);
    const { vouchers } = JSON.parse(issued.stdout);
    assert.equal(vouchers.length, 2);
    for (const v of vouchers) assert.match(v.code, CODE_SHAPE);

    const first = await runCli(['wallet', 'topup', vouchers[0].code, '--json'], { home: member.dir, env });
    assert.equal(first.code, 0, first.stderr);
    assert.deepEqual(JSON.parse(first.stdout), { amount: 250, balance: 250, voucherId: vouchers[0].id });

    const second = await runCli(['wallet', 'topup', vouchers[1].code.toLowerCase()], { home: member.dir, env });
    assert.equal(second.code, 0, second.stderr);
    assert.equal(second.stdout, 'credited 250; your balance is now 500\n');

    const again = await runCli(['wallet', 'topup', vouchers[1].code], { home: member.dir, env });
    assert.equal(again.code, 1);
    assert.match(again.stderr, /^error \(voucher_used\): /);

    // Text mode: one code per line on stdout, the warning on stderr.
    const text = await runCli(['voucher', 'issue', '--amount', '10'], { home: store.dir, env });
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout.trim(), CODE_SHAPE);
    assert.match(text.stderr, /not shown again/);

    const notStore = await runCli(['voucher', 'issue', '--amount', '10', '--json'], { home: member.dir, env });
    assert.equal(notStore.code, 1);
    assert.equal(JSON.parse(notStore.stdout).error.code, 'forbidden');
    assert.equal((await new Ledger({ db: origin.db.db, clock: origin.clock }).balance(walletAccount(member.userId).id)).posted, 500);
  });

  test('cascade statement: the signed-in publisher by default, --json or text', async () => {
    const publisher = await home(['publisher']);
    const json = await runCli(['statement', '--from', '2026-01-01', '--to', '2026-02-01', '--json'], { home: publisher.dir, env });
    assert.equal(json.code, 0, json.stderr);
    const s = JSON.parse(json.stdout);
    assert.deepEqual([s.publisherId, s.from, s.openingBalance, s.closingBalance], [publisher.userId, '2026-01-01T00:00:00.000Z', 0, 0]);
    const text = await runCli(['statement', '--from', '2026-01-01', '--to', '2026-02-01'], { home: publisher.dir, env });
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /closing balance +0\n$/);
    const bad = await runCli(['statement', '--from', 'soon', '--to', '2026-02-01'], { home: publisher.dir, env });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^error \(invalid_argument\): /);
  });
});
