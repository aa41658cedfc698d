import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PLATFORM_PAYOUTS, royaltyAccount, walletAccount } from '../../src/ledger/accounts.ts';
import type { StoredReceipt } from '../../src/ledger/settlement.ts';
import { snapshotTables } from '../helpers/db.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';
import { runCli } from '../helpers/processes.ts';

// #12 point 2, the ledger's side (S1.11, S1.12): `cascade wallet` shows a publisher's
// royalties and an uploader's earnings; `cascade statement` is the current month (UTC, by
// the origin's clock) unless told otherwise; `cascade receipts`; `cascade payout`
// (operators). The origin's clock starts one second before a month ends.

const PIECE = 64 * 1024;
const PRICE = 800;
const JAN_END = Date.UTC(2026, 0, 31, 23, 59, 59);

describe('records on the command line: wallet earnings, statement, receipts, payout', () => {
  let origin: TestOrigin;
  const homes: string[] = [];
  let contentId: string;
  let publisher: { token: string; userId: string; username: string };
  let source: { token: string; userId: string; username: string; home: string };
  let receiver: { token: string; userId: string; username: string; home: string };
  let receipts: StoredReceipt[];
  // runCli passes this process's environment on: a token or origin from it would win over the profile.
  delete process.env.CASCADE_TOKEN;
  delete process.env.CASCADE_ORIGIN;

  /** A signed-in CLI home for the user. */
  function home(user: { token: string; username: string }) {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'cascade-records-'));
    homes.push(dir);
    writeFileSync(path.join(dir, 'profile.json'), JSON.stringify({ origin: origin.url, token: user.token, username: user.username }));
    return dir;
  }
  async function cli(args: string[], dir: string) {
    const run = await runCli(args, { home: dir });
    assert.equal(run.code, 0, run.stderr + run.stdout);
    return run.stdout;
  }

  before(async () => {
    origin = await startTestOrigin({ now: JAN_END, config: { pieceSize: PIECE, signupCredit: 0 } });
    publisher = await origin.userWithRoles(['publisher']);
    const res = await origin.call('POST', `/contents?title=Edge&genre=test&price=${PRICE}`, {
      token: publisher.token,
      body: randomBytes(PIECE * 2),
      headers: { 'content-type': 'application/octet-stream' },
    });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    contentId = res.body.id;
    const s = await origin.userWithRoles(['member']);
    const r = await origin.userWithRoles(['member']);
    source = { ...s, home: home(s) };
    receiver = { ...r, home: home(r) };

    // Two terminals, a grant and two receipts (one piece each, from the source's terminal), settled
    // as ReceiptService does: stored and settled in one transaction.
    const db = origin.db.db;
    const at = new Date(origin.clock.now());
    for (const [id, user] of [
      ['t-source', source.userId],
      ['t-receiver', receiver.userId],
    ]) {
      await db.insertInto('terminals').values({ id, user_id: user, name: id, public_key: `${id}-key`, region: 'eu', network: 'test', serve_url: null, created_at: at, last_seen_at: null, last_state: null }).execute();
    }
    await db.insertInto('grants').values({ id: 'g-edge', transfer_id: null, content_id: contentId, receiver_id: 't-receiver', source_id: 't-source', pieces: '0-1', expires_at: new Date(at.getTime() + 3_600_000), created_at: at }).execute();
    await origin.wallets.open(receiver.userId);
    const store = await origin.userWithRoles(['store']);
    const issued = await origin.call('POST', '/vouchers', { token: store.token, json: { amount: 2000 } });
    assert.equal((await origin.call('POST', '/wallet/topup', { token: receiver.token, json: { code: issued.body.vouchers[0].code } })).status, 200);
    receipts = [0, 1].map((i) => ({ id: `rc-edge-${i}`, grant_id: 'g-edge', content_id: contentId, source_id: 't-source', receiver_id: 't-receiver', bytes: PIECE, received_at: at }));
    await db.transaction().execute(async (trx) => {
      for (const [i, row] of receipts.entries()) await trx.insertInto('receipts').values({ ...row, pieces: String(i), signature: 'sig', body: row.id }).execute();
      const settled = await origin.settlement.settleIn(trx, receipts);
      assert.equal(settled.unpaid.length, 0);
    });
  });
  after(async () => {
    await origin?.close();
    for (const h of homes) rmSync(h, { recursive: true, force: true });
  });

  test('cascade wallet: the uploader sees what it earned, the publisher its royalties (no longer 0), both as records', async () => {
    const up = JSON.parse(await cli(['wallet', '--json'], source.home));
    const earning = up.entries[0];
    assert.deepEqual([earning.reason, earning.receipts, earning.counterpartName, earning.contentTitle], ['upload', 2, receiver.username, 'Edge']);
    assert.ok(earning.amount > 0);
    assert.deepEqual(up.earnings, { uploads: earning.amount, royalties: null });
    const text = (await cli(['wallet'], source.home)).split('\n');
    assert.equal(text[1], `earned serving others: ${earning.amount} (credited to this wallet as it was earned)`);
    assert.match(text[3], new RegExp(`upload +Earned ${earning.amount} serving “Edge” to ${receiver.username} \\(2 receipts\\) +purchase:`));

    const pub = JSON.parse(await cli(['wallet', '--json'], home(publisher)));
    // Off-peak at 23:59:59 UTC under the default tariff: 80 % of 800 = 640, royalty 40 % of it.
    assert.deepEqual(pub.earnings.royalties, { earned: 256, paidOut: 0, balance: 256 });
    assert.equal(pub.royalties.account, royaltyAccount(publisher.userId).id);
    assert.deepEqual(
      pub.royalties.entries.map((e: any) => [e.reason, e.amount, e.description]),
      [['royalty', 256, `Royalty for “Edge”, downloaded by ${receiver.username}: 256`]],
    );
    const lines = (await cli(['wallet'], home(publisher))).trimEnd().split('\n');
    assert.ok(lines.includes('royalties: 256 earned, 0 paid out, 256 owed by the platform (kept in royalty account, paid out by an operator; see cascade statement)'), lines.join('\n'));
    assert.ok(lines.includes(`${royaltyAccount(publisher.userId).id}: royalty records`));
    assert.match(lines[lines.length - 1], /royalty +Royalty for “Edge”/);

    const paid = JSON.parse(await cli(['wallet', '--json'], receiver.home)).entries;
    assert.deepEqual(paid.map((e: any) => [e.reason, e.amount, e.receipts, e.rules]), [
      ['download', -640, 2, ['off-peak (22:00–6:00 UTC): 80%']],
      ['top-up', 2000, 0, []],
    ]);
    const history = JSON.parse(await cli(['wallet', 'history', '--royalties', '--json'], home(publisher)));
    assert.deepEqual(history.entries.map((e: any) => e.amount), [256]);
  });

  test('cascade statement: the current month in UTC by the origin’s clock, even one second before it ends; --from/--to still work', async () => {
    const dir = home(publisher);
    const jan = JSON.parse(await cli(['statement', '--json'], dir));
    assert.deepEqual([jan.from, jan.to, jan.period], ['2026-01-01T00:00:00.000Z', '2026-02-01T00:00:00.000Z', "the current month, 2026-01 (UTC, by the origin's clock)"]);
    assert.deepEqual([jan.openingBalance, jan.royalties.total, jan.closingBalance], [0, 256, 256]);
    assert.deepEqual(jan.royalties.byContent.map((c: any) => [c.title, c.amount]), [['Edge', 256]]);
    const text = await cli(['statement'], dir);
    assert.match(text, /^statement for \S+, 2026-01-01T00:00:00.000Z to 2026-02-01T00:00:00.000Z: the current month, 2026-01 \(UTC, by the origin's clock\)\n/);

    origin.clock.advance(1000); // 2026-02-01T00:00:00Z: a new month
    try {
      const feb = JSON.parse(await cli(['statement', '--json'], dir));
      assert.deepEqual([feb.from, feb.to], ['2026-02-01T00:00:00.000Z', '2026-03-01T00:00:00.000Z']);
      assert.deepEqual([feb.openingBalance, feb.royalties.total, feb.closingBalance], [256, 0, 256]);
      // Explicit dates, and one bound alone (the other is the current month's).
      const both = JSON.parse(await cli(['statement', '--from', '2026-01-31', '--to', '2026-02-01', '--json'], dir));
      assert.deepEqual([both.royalties.total, both.period], [256, 'the period given']);
      const fromOnly = JSON.parse(await cli(['statement', '--from', '2026-01-01', '--json'], dir));
      assert.deepEqual([fromOnly.from, fromOnly.to, fromOnly.royalties.total], ['2026-01-01T00:00:00.000Z', '2026-03-01T00:00:00.000Z', 256]);
      // The API the same way.
      const api = await origin.call('GET', `/publishers/${publisher.userId}/statement`, { token: publisher.token });
      assert.deepEqual([api.status, api.body.from, api.body.royalties.total], [200, '2026-02-01T00:00:00.000Z', 0]);
      const bad = await origin.call('GET', `/publishers/${publisher.userId}/statement?to=2026-01-15T00:00:00Z`, { token: publisher.token });
      assert.deepEqual([bad.status, bad.body.error.code], [400, 'invalid_period'], 'to before the default from');
    } finally {
      origin.clock.set(JAN_END);
    }
  });

  test('cascade receipts: the receipts of all your terminals (or one), with what each cost and why', async () => {
    const json = JSON.parse(await cli(['receipts', '--json'], receiver.home));
    assert.deepEqual(
      json.items.map((r: any) => [r.id, r.contentTitle, r.source, r.receiverId, r.bytes, r.status, r.why]),
      receipts.map((r) => [r.id, 'Edge', 't-source', 't-receiver', PIECE, 'settled', 'off-peak (22:00–6:00 UTC): 80%']),
    );
    assert.equal(
      json.items.reduce((s: number, r: any) => s + r.charge, 0),
      640,
    );
    const text = (await cli(['receipts', '--terminal', 't-receiver'], receiver.home)).trimEnd().split('\n');
    assert.match(text[0], /^time +content +source +bytes +charge +status +why +receipt$/);
    assert.equal(text.length, 3);
    assert.match(text[1], /Edge +t-source +65536 +\d+ +settled +off-peak \(22:00–6:00 UTC\): 80% +rc-edge-0$/);
    // Nothing signed: nothing to show. Another's terminal: refused.
    assert.equal(await cli(['receipts'], source.home), 'no receipts\n');
    const refused = await runCli(['receipts', '--terminal', 't-receiver', '--json'], { home: source.home });
    assert.deepEqual([refused.code, JSON.parse(refused.stdout).error.code], [1, 'forbidden']);
  });

  test('cascade payout: operators see what each publisher is owed and record a payout once; a member is refused and nothing changes', async () => {
    const operator = await origin.userWithRoles(['operator']);
    const dir = home(operator);
    const o = JSON.parse(await cli(['payout', '--json'], dir));
    assert.equal(o.period, "the current month, 2026-01 (UTC, by the origin's clock)");
    assert.deepEqual(o.publishers, [{ publisherId: publisher.userId, name: publisher.username, royalties: 256, paidOut: 0, owed: 256 }]);
    assert.deepEqual(o.totals, { royalties: 256, paidOut: 0, owed: 256 });
    assert.match(o.note, /^There is no automatic payout run/);
    const text = await cli(['payout'], dir);
    assert.match(text, new RegExp(`${publisher.username} +${publisher.userId} +\\+256 +-0 +256\n`));
    assert.match(text, /There is no automatic payout run/);

    const pay = ['payout', 'pay', '--publisher', publisher.userId, '--amount', '200', '--reference', 'BANK-1'];
    assert.equal(await cli(pay, dir), `paid out 200 to ${publisher.userId} (BANK-1); still owed: 56\n`);
    assert.equal(await cli(pay, dir), `payout ${publisher.userId}:BANK-1 was already recorded: nothing more paid; still owed: 56\n`);
    const after = JSON.parse(await cli(['payout', '--json'], dir));
    assert.deepEqual(after.publishers[0], { publisherId: publisher.userId, name: publisher.username, royalties: 256, paidOut: 200, owed: 56 });
    assert.deepEqual((await origin.ledger.balance(PLATFORM_PAYOUTS.id)).posted, 200);

    // Refusals: a member (or a publisher) may neither look nor pay; nothing is written.
    const member = await origin.userWithRoles(['member', 'publisher']);
    const was = await snapshotTables(origin.db.db);
    for (const args of [['payout', '--json'], [...pay.slice(0, -1), 'BANK-2', '--json']]) {
      const run = await runCli(args, { home: home(member) });
      assert.equal(run.code, 1, args.join(' '));
      assert.equal(JSON.parse(run.stdout).error.code, 'forbidden', args.join(' '));
    }
    const api = await origin.call('GET', '/payouts', { token: member.token });
    assert.deepEqual([api.status, api.body.error.code], [403, 'forbidden']);
    assert.deepEqual(await snapshotTables(origin.db.db), was);
    assert.equal((await origin.ledger.balance(walletAccount(receiver.userId).id)).posted, 2000 - 640);
  });
});
