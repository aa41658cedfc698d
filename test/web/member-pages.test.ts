import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Browser, Page } from 'playwright-core';
import { Api } from '../../src/core/http-client.ts';
import { PLATFORM_REVENUE, royaltyAccount, walletAccount } from '../../src/ledger/accounts.ts';
import { deviceSession } from '../../src/terminals/device.ts';
import { checkPage, launchBrowser, openApp, screenshot, type AppPage } from '../helpers/browser.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';

// #13 member pages in headless Chromium: wallet and voucher top-up (S1.12, S1.11), publish
// with upload progress and a thumbnail (S1.1), the royalty statement (S1.11), a store's
// vouchers and their printed sheet (S1.11). Each page: no serious axe violation at 1280 and
// 375 px, a screenshot (test-results/page-<name>.png), no console problems.

let origin: TestOrigin;
let browser: Browser;
let work: string;
before(async () => {
  origin = await startTestOrigin({ config: { signupCredit: 1000 } });
  browser = await launchBrowser();
  work = mkdtempSync(path.join(os.tmpdir(), 'cascade-member-pages-'));
});
after(async () => {
  await browser?.close();
  await origin?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

type User = { token: string; userId: string; username: string };

/** The app signed in as `user` (its session put where the sign-in page puts it), on `route`. */
async function openAs(user: User, roles: string[], route: string, width = 1280): Promise<AppPage> {
  return openApp(browser, `${origin.url}/#${route}`, { width, signedIn: { token: user.token, userId: user.userId, username: user.username, roles } });
}


const wallet = async (u: User) => (await origin.call('GET', '/wallet', { token: u.token })).body;
const history = async (u: User) => (await origin.call('GET', '/wallet/history?limit=100', { token: u.token })).body.entries as { reason: string; amount: number; ref: string | null }[];

test('S1.12 S1.11 wallet: balance, records, a wrong voucher code refused with the API sentence, a double click tops up once', async () => {
  const store = await origin.userWithRoles(['store']);
  const member = await origin.userWithRoles(['member']);
  const issued = await origin.call('POST', '/vouchers', { token: store.token, json: { amount: 500, count: 1 } });
  assert.equal(issued.status, 201);
  const voucher = issued.body.vouchers[0];

  const app = await openAs(member, ['member'], '/wallet');
  const { page } = app;
  await page.getByRole('heading', { name: 'Wallet', level: 1 }).waitFor();
  await page.getByTestId('available').getByText('1000').waitFor();
  // The sign-up credit is the first record, in the spec's words.
  const table = page.getByRole('table', { name: 'Wallet records, newest first' });
  await table.getByRole('cell', { name: 'top-up' }).first().waitFor();
  const headers = await table.locator('thead th').allInnerTexts();
  assert.deepEqual(headers, ['Time', 'Reason', 'Amount', 'Balance after', 'Counterpart', 'Linked record', 'Event ID']);
  await checkPage(page, 'wallet');

  // A wrong code: the API's sentence next to the code field, nothing credited.
  const before = { wallet: await wallet(member), records: (await history(member)).length };
  await page.getByLabel('Voucher code').fill('WRONG-CODE-0000');
  await page.getByRole('button', { name: 'Redeem' }).click();
  const fieldError = page.locator('#f-code-error');
  await fieldError.waitFor();
  assert.equal(await fieldError.innerText(), 'No voucher has this code; check it and try again.');
  assert.equal(await page.getByLabel('Voucher code').getAttribute('aria-invalid'), 'true');
  assert.deepEqual((await wallet(member)).balance, before.wallet.balance);
  assert.equal((await history(member)).length, before.records);

  // The right code, double-clicked: one request, one top-up.
  const posts: string[] = [];
  page.on('request', (r) => r.method() === 'POST' && r.url().endsWith('/wallet/topup') && posts.push(r.url()));
  await page.getByLabel('Voucher code').fill(voucher.code);
  // Two clicks in one go, before the page can even re-render (faster than any double click).
  await page.getByRole('button', { name: 'Redeem' }).evaluate((b: HTMLButtonElement) => {
    b.click();
    b.click();
  });
  await page.getByText('Credited 500; your balance is now 1500.').waitFor();
  await page.getByTestId('available').getByText('1500').waitFor();
  assert.equal(posts.length, 1, 'the double click posted once');
  assert.equal(await fieldError.count(), 0);
  const topups = (await history(member)).filter((r) => r.reason === 'top-up');
  assert.equal(topups.length, 2, 'the sign-up credit and the voucher');
  assert.equal((await wallet(member)).balance.posted, 1500);
  await table.getByRole('cell', { name: '+500' }).waitFor();
  assert.deepEqual(app.problems, []);
  await app.close();
});

// A 1×1 PNG.
const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==', 'base64');

test('S1.1 publish: thumbnail checked in the browser, a bad price refused next to the field, upload progress, cancel, then published with its thumbnail', async () => {
  const publisher = await origin.userWithRoles(['publisher']);
  const mine = async () => (await origin.call('GET', `/contents?publisher=${publisher.username}`)).body.items as { id: string; title: string; thumbnailUrl?: string | null }[];
  const app = await openAs(publisher, ['publisher'], '/publish');
  const { page } = app;
  await page.getByRole('heading', { name: 'Publish', level: 1 }).waitFor();
  await checkPage(page, 'publish');

  await page.getByLabel('File', { exact: true }).setInputFiles({ name: 'film.bin', mimeType: 'application/octet-stream', buffer: randomBytes(2_000_000) });
  await page.getByLabel('Title').fill('Harbour Lights');
  await page.getByLabel('Summary').fill('A night at the harbour.\nSecond line.');
  await page.getByLabel('Author').fill('M. Quay');
  await page.getByLabel('Genre').fill('documentary');
  await page.getByLabel('Price').fill('2000000000000');

  // Thumbnails the origin would refuse are refused here first, before any upload.
  const thumb = page.getByLabel('Thumbnail');
  await thumb.setInputFiles({ name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('not an image') });
  await page.locator('#f-thumbnail-error').getByText('must be a PNG, JPEG, WebP or GIF image').waitFor();
  await thumb.setInputFiles({ name: 'huge.png', mimeType: 'image/png', buffer: Buffer.concat([PNG, Buffer.alloc(300 * 1024)]) });
  await page.locator('#f-thumbnail-error').getByText('at most 256 KiB; “huge.png” is 301 KiB').waitFor();
  let uploads = 0;
  page.on('request', (r) => r.method() === 'POST' && new URL(r.url()).pathname === '/contents' && uploads++);
  await page.getByRole('button', { name: 'Publish' }).click();
  assert.equal(uploads, 0, 'nothing is sent with a thumbnail the origin would refuse');

  // A price the API refuses: its sentence next to the price field, nothing published.
  await thumb.setInputFiles({ name: 'cover.png', mimeType: 'image/png', buffer: PNG });
  assert.equal(await page.locator('#f-thumbnail-error').count(), 0);
  await page.getByRole('img', { name: 'Preview of the chosen thumbnail' }).waitFor();
  await page.getByRole('button', { name: 'Publish' }).click();
  const priceError = page.locator('#f-price-error');
  await priceError.waitFor();
  const apiSays = await origin.call('POST', '/contents?title=x&genre=y&price=2000000000000', { token: publisher.token, body: Buffer.from('x'), headers: { 'content-type': 'application/octet-stream' } });
  assert.equal(apiSays.status, 400);
  assert.equal(await priceError.innerText(), apiSays.body.error.message);
  assert.deepEqual(await mine(), []);

  // Slowed down (Chromium's network emulation), the upload shows its progress and can be cancelled.
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 400_000 });
  await page.getByLabel('Price').fill('250');
  await page.getByRole('button', { name: 'Publish' }).click();
  const bar = page.getByRole('progressbar', { name: 'Uploading film.bin' });
  await bar.waitFor();
  await page.waitForFunction(() => {
    const p = document.getElementById('upload-progress') as HTMLProgressElement | null;
    return !!p && p.value > 0 && p.value < 100;
  });
  assert.match(await page.locator('.upload-progress').innerText(), /\d+% · [\d.]+ \w?B of 2\.0 MB/);
  await screenshot(page, 'page-publish-progress');
  await page.getByRole('button', { name: 'Cancel upload' }).click();
  await page.getByText('Upload cancelled: nothing was published.').waitFor();
  assert.deepEqual(await mine(), []);

  // Again, to the end: 100 %, the content's page linked, the thumbnail sent.
  await page.getByRole('button', { name: 'Publish' }).click();
  await page.getByText('Published Harbour Lights').waitFor({ timeout: 20_000 });
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
  assert.equal(await page.locator('#upload-progress').getAttribute('value'), '100');
  assert.match(await page.locator('.upload-progress').innerText(), /100% · 2\.0 MB of 2\.0 MB/);
  const items = await mine();
  assert.equal(items.length, 1);
  assert.equal(items[0].title, 'Harbour Lights');
  const detail = (await origin.call('GET', `/contents/${items[0].id}`)).body;
  assert.equal(detail.summary, 'A night at the harbour.\nSecond line.');
  assert.equal(detail.author, 'M. Quay');
  assert.equal(detail.price, 250);
  const thumbAnswer = await origin.call('GET', `/contents/${items[0].id}/thumbnail`);
  if (thumbAnswer.status === 404 && thumbAnswer.body?.error?.code !== 'thumbnail_not_found') {
    // The thumbnail route (branch `discovery`) is not merged here yet: the page says so.
    await page.getByText('the thumbnail was refused').waitFor();
  } else {
    assert.equal(thumbAnswer.status, 200);
    assert.ok(detail.thumbnailUrl.startsWith(`/contents/${items[0].id}/thumbnail`), detail.thumbnailUrl);
    assert.equal(await page.getByText('the thumbnail was refused').count(), 0);
  }
  await screenshot(page, 'page-publish-done');
  await page.getByRole('link', { name: 'Open its page' }).click();
  await page.getByRole('heading', { name: 'Harbour Lights', level: 1 }).waitFor();
  assert.deepEqual(app.problems, []);
  await app.close();
});

test('S1.11 statement: this month by default, royalties by content with downloads and plays, payouts; another month', async () => {
  const publisher = await origin.userWithRoles(['publisher']);
  const operator = await origin.userWithRoles(['operator']);
  const pub = await origin.call('POST', '/contents?title=Tide%20Tables&genre=music&price=1000', { token: publisher.token, body: randomBytes(5000), headers: { 'content-type': 'application/octet-stream' } });
  assert.equal(pub.status, 201);
  const contentId = pub.body.id;
  // A download's royalty leg (as settlement writes it) and a real play on a member's terminal.
  const buyer = await origin.userWithRoles(['member']);
  await origin.wallets.open(buyer.userId);
  await origin.ledger.ensureAccounts([PLATFORM_REVENUE, royaltyAccount(publisher.userId)]);
  const [leg] = await origin.ledger.apply([
    { id: 'test-dl:royalty', debit: walletAccount(buyer.userId).id, credit: royaltyAccount(publisher.userId).id, amount: 400, reason: 'royalty', contentId, ref: 'rcpt-1', record: `purchase:${buyer.userId}:${contentId}:1` },
  ]);
  assert.equal(leg.status, 'created');
  const device = await deviceSession(new Api(origin.url, buyer.token), path.join(work, 'buyer'));
  const played = await origin.call('POST', '/plays', { token: device.token, json: { contentId, playId: 'evening-1' } });
  assert.equal(played.status, 200, JSON.stringify(played.body));
  const playRoyalty = played.body.parts.royalty as number;
  const paid = await origin.call('POST', '/payouts', { token: operator.token, json: { id: 'p-1', publisherId: publisher.userId, amount: 100, reference: 'BANK-77' } });
  assert.equal(paid.status, 200);
  const expected = (await origin.call('GET', `/publishers/${publisher.userId}/statement`, { token: publisher.token })).body;
  // The play's royalty is a royalty of its content, not an "other" movement (S1.13).
  assert.deepEqual(expected.royalties.byContent.map((c: any) => c.plays), [{ count: 1, amount: playRoyalty }]);
  assert.deepEqual(expected.other, { total: 0, items: [] });

  const app = await openAs(publisher, ['publisher'], '/statement');
  const { page } = app;
  await page.getByRole('heading', { name: 'Royalty statement', level: 1 }).waitFor();
  const table = page.getByRole('table', { name: 'Royalties by content' });
  await table.waitFor();
  assert.equal(await page.getByLabel('Month (UTC)').inputValue(), expected.from.slice(0, 7));
  const row = table.getByRole('row', { name: /Tide Tables/ });
  assert.deepEqual(await row.locator('td').allInnerTexts(), ['Tide Tables', '1', '1', '+400', `+${playRoyalty}`]);
  await row.getByRole('link', { name: 'Tide Tables' }).waitFor();
  const payouts = page.getByRole('table', { name: 'Payouts in this period' });
  assert.deepEqual((await payouts.locator('tbody td').allInnerTexts()).slice(1), ['BANK-77', '-100']);
  assert.match(await page.locator('.facts').innerText(), new RegExp(`Closing balance\\s+${expected.closingBalance}`));
  await checkPage(page, 'statement');

  // The month before: nothing yet.
  const [y, m] = expected.from.slice(0, 7).split('-').map(Number);
  const prev = m === 1 ? `${y - 1}-12` : `${y}-${String(m - 1).padStart(2, '0')}`;
  await page.getByLabel('Month (UTC)').fill(prev);
  await page.getByText('No royalties in this period.').waitFor();
  assert.deepEqual(app.problems, []);
  await app.close();
});

test('S1.11 store: issue vouchers, a printable sheet of the codes that members can redeem', async () => {
  const store = await origin.userWithRoles(['store']);
  const app = await openAs(store, ['store'], '/store');
  const { page } = app;
  await page.getByRole('heading', { name: 'Vouchers', level: 1 }).waitFor();
  await checkPage(page, 'store');

  await page.getByLabel('How many').fill('3');
  await page.getByLabel('Amount of each').fill('250');
  await page.getByRole('button', { name: 'Issue vouchers' }).click();
  await page.getByRole('heading', { name: '3 vouchers of 250' }).waitFor();
  const codes = await page.locator('.voucher-code').allInnerTexts();
  assert.equal(codes.length, 3);
  assert.equal(new Set(codes).size, 3);
  await checkPage(page, 'store-issued');

  // The Print button prints; the printed page is the sheet alone.
  await page.evaluate(() => {
    (window as any).printed = 0;
    window.print = () => void (window as any).printed++;
  });
  await page.getByRole('button', { name: 'Print' }).click();
  assert.equal(await page.evaluate(() => (window as any).printed), 1);
  await page.emulateMedia({ media: 'print' });
  assert.equal(await page.getByRole('button', { name: 'Issue vouchers' }).isVisible(), false);
  assert.equal(await page.locator('header.top').isVisible(), false);
  assert.equal(await page.getByRole('button', { name: 'Print' }).isVisible(), false);
  assert.equal(await page.locator('.voucher-code').first().isVisible(), true);
  await screenshot(page, 'page-store-print');
  await page.emulateMedia({ media: 'screen' });

  // The codes printed are real: a member redeems one.
  const member = await origin.userWithRoles(['member']);
  const r = await origin.call('POST', '/wallet/topup', { token: member.token, json: { code: codes[1] } });
  assert.equal(r.status, 200);
  assert.equal(r.body.amount, 250);
  assert.deepEqual(app.problems, []);
  await app.close();
});
