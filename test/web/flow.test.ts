import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Browser, Page } from 'playwright-core';
import { describeViolations, launchBrowser, openApp, screenshot, seriousViolations, type AppPage } from '../helpers/browser.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';

// #13.6, the whole path as people take it, in Debian's Chromium against a real origin on
// loopback: sign up -> the operator grants publisher -> publish with a thumbnail -> catalog ->
// a member tops up with a store's voucher -> downloads in the browser -> the saved file's
// SHA-256 matches -> the wallet shows the charge and the publisher's statement the royalty ->
// the member rates and comments (a double click posts once).

const PRICE = 250;
const VOUCHER = 1000;
const PASSWORD = 'correct horse battery';
let origin: TestOrigin;
let browser: Browser;
const opened: AppPage[] = [];

before(async () => {
  // No sign-up credit: the member pays with the voucher, as people do.
  // A fixed weekday noon: the off-peak tariff (evenings, nights) would charge less than the price (S1.7).
  origin = await startTestOrigin({ now: Date.UTC(2026, 5, 15, 12, 0), config: { signupCredit: 0, pieceSize: 64 * 1024 } });
  browser = await launchBrowser();
});
after(async () => {
  for (const a of opened) await a.close().catch(() => {});
  await browser?.close();
  await origin?.close();
});

async function open(path: string, width = 1280): Promise<AppPage> {
  const app = await openApp(browser, `${origin.url}/#${path}`, { width });
  opened.push(app);
  return app;
}

async function signIn(page: Page, username: string) {
  await page.goto(`${origin.url}/#/signin`);
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByText('Signed in as').waitFor();
}

async function checkPage(app: AppPage, name: string) {
  assert.equal(describeViolations(await seriousViolations(app.page)), '', `axe on ${name}`);
  await screenshot(app.page, `flow-${name}`);
  assert.deepEqual(app.problems, [], `console on ${name}`);
}

test('publish, top up, download in the browser, pay, rate and comment', async () => {
  // A publisher-to-be signs up in the browser.
  const pat = await open('/signup');
  await pat.page.getByLabel('Username').fill('pat');
  await pat.page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await pat.page.getByLabel('Repeat the password').fill(PASSWORD);
  await pat.page.getByRole('button', { name: 'Create account' }).click();
  await pat.page.getByText('Signed in as').waitFor();
  assert.equal(await pat.page.getByRole('link', { name: 'Publish' }).count(), 0, 'no Publish page before the role');

  // The operator grants pat the publisher role on the Users page.
  await origin.userWithRoles(['operator'], 'olga');
  const olga = await open('/signin');
  await signIn(olga.page, 'olga');
  await olga.page.getByRole('link', { name: 'Users' }).click();
  await olga.page.getByRole('button', { name: 'Manage pat' }).click();
  await olga.page.getByRole('group', { name: 'Roles of pat' }).getByRole('checkbox', { name: /^publisher/ }).check();
  await olga.page.getByRole('button', { name: 'Save roles' }).click();
  await olga.page.getByText('Roles of pat: member, publisher.').waitFor();
  await checkPage(olga, 'users');

  // pat publishes a file with a thumbnail (a PNG the browser itself renders).
  const file = randomBytes(5 * 64 * 1024 + 777);
  const fileSha = createHash('sha256').update(file).digest('hex');
  const thumb = await olga.page.screenshot({ clip: { x: 0, y: 0, width: 160, height: 120 } });
  await pat.page.reload();
  await pat.page.getByRole('link', { name: 'Publish' }).click();
  await pat.page.getByLabel('File').setInputFiles({ name: 'film.bin', mimeType: 'application/octet-stream', buffer: file });
  await pat.page.getByLabel('Title').fill('Harbour Lights');
  await pat.page.getByLabel('Summary').fill('A night at the harbour.');
  await pat.page.getByLabel('Author').fill('P. Atkins');
  await pat.page.getByLabel('Genre').fill('drama');
  await pat.page.getByLabel('Price').fill(String(PRICE));
  await pat.page.getByLabel('Thumbnail').setInputFiles({ name: 'thumb.png', mimeType: 'image/png', buffer: thumb });
  await pat.page.getByRole('button', { name: 'Publish' }).last().click();
  await pat.page.getByRole('link', { name: 'Open its page' }).waitFor().catch(async (e) => { await screenshot(pat.page, 'flow-publish-failed'); throw e; });
  await checkPage(pat, 'publish-done');
  const listed = await origin.call('GET', '/contents?q=Harbour');
  assert.equal(listed.body.items.length, 1);
  const content = listed.body.items[0];
  assert.ok(content.thumbnailUrl, 'the thumbnail is stored with the content');

  // A member signs up and finds it in the catalog, with its thumbnail.
  const ann = await open('/signup', 375);
  await ann.page.getByLabel('Username').fill('ann');
  await ann.page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await ann.page.getByLabel('Repeat the password').fill(PASSWORD);
  await ann.page.getByRole('button', { name: 'Create account' }).click();
  await ann.page.getByText('Signed in as').waitFor();
  const card = ann.page.getByRole('listitem').filter({ hasText: 'Harbour Lights' });
  await card.waitFor();
  await card.getByText('Above your balance').waitFor();
  assert.equal(await card.getByRole('img', { name: /Harbour Lights/ }).evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth > 0), true, 'thumbnail shown');
  await checkPage(ann, 'catalog-for-you-375');

  // A store issues a voucher; ann redeems it in her wallet.
  await origin.userWithRoles(['store'], 'kiosk');
  const kiosk = await open('/signin');
  await signIn(kiosk.page, 'kiosk');
  await kiosk.page.getByRole('link', { name: 'Vouchers' }).click();
  await kiosk.page.getByLabel('How many').fill('1');
  await kiosk.page.getByLabel('Amount of each').fill(String(VOUCHER));
  await kiosk.page.getByRole('button', { name: 'Issue vouchers' }).click();
  const code = (await kiosk.page.locator('.voucher-code').first().innerText()).trim();
  await checkPage(kiosk, 'store-vouchers');

  await ann.page.goto(`${origin.url}/#/wallet`);
  await ann.page.getByLabel('Voucher code').fill(code);
  await ann.page.getByRole('button', { name: 'Redeem' }).dblclick();
  await ann.page.getByText(String(VOUCHER), { exact: false }).first().waitFor();
  const wallet0 = await origin.call('GET', '/wallet', { token: await tokenOf(ann.page) });
  assert.equal(wallet0.body.balance.available, VOUCHER, 'a double click redeems once');

  // ann downloads in the browser: pieces verified, receipts handed in, the file saved.
  await ann.page.goto(`${origin.url}/#/content/${content.id}`);
  await ann.page.getByRole('heading', { name: 'Harbour Lights' }).waitFor();
  // The full content ID, as `cascade get` takes it (issue 12 #2).
  assert.equal((await ann.page.locator('code.id').innerText()).trim(), content.id);
  const saved = ann.page.waitForEvent('download');
  await ann.page.getByRole('button', { name: 'Download', exact: true }).dblclick();
  const download = await saved;
  const path = await download.path();
  assert.equal(createHash('sha256').update(readFileSync(path)).digest('hex'), fileSha, 'the saved file is the published one');
  assert.equal((await ann.page.getByTestId('sha256').innerText()).trim(), fileSha);
  await checkPage(ann, 'content-downloaded-375');

  // Charged like any terminal: the wallet shows the download, the statement the royalty.
  const wallet1 = await origin.call('GET', '/wallet', { token: await tokenOf(ann.page) });
  assert.equal(wallet1.body.balance.available, VOUCHER - PRICE, 'charged the price once, on a double click too');
  const terminals = await origin.call('GET', '/me/terminals', { token: await tokenOf(ann.page) });
  assert.equal(terminals.body.items.length, 1, 'this browser registered as one terminal of ann’s');
  await ann.page.goto(`${origin.url}/#/wallet`);
  await ann.page.getByRole('cell', { name: 'Harbour Lights' }).first().waitFor();
  await ann.page.getByText(`-${PRICE}`).first().waitFor();
  await checkPage(ann, 'wallet-after-download-375');

  await pat.page.goto(`${origin.url}/#/statement`);
  await pat.page.getByRole('cell', { name: 'Harbour Lights' }).first().waitFor();
  await checkPage(pat, 'statement');
  const statement = await origin.call('GET', `/publishers/${(await me(pat.page)).id}/statement`, { token: await tokenOf(pat.page) });
  assert.ok(JSON.stringify(statement.body).includes(content.id));

  // ann rates (a double click counts once) and comments.
  await ann.page.goto(`${origin.url}/#/content/${content.id}`);
  await ann.page.getByRole('button', { name: '4 ★' }).dblclick();
  await ann.page.getByText('You rated it 4 of 5').waitFor();
  await ann.page.getByLabel('Add a comment').fill('Lovely light on the water.');
  await ann.page.getByRole('button', { name: 'Post comment' }).dblclick();
  await ann.page.getByText('Lovely light on the water.').first().waitFor();
  const comments = await origin.call('GET', `/contents/${content.id}/comments`);
  assert.equal(comments.body.items.length, 1, 'a double click posts one comment');
  const item = await origin.call('GET', `/me/content-list/${content.id}`, { token: await tokenOf(ann.page) });
  assert.deepEqual(item.body.rating, { average: 4, count: 1, mine: 4 });
  await checkPage(ann, 'content-rated-375');

  // ann names her genres; pat pays for placement (refused first: an empty wallet), then it
  // shows first in ann's list, labelled as paid for.
  await ann.page.goto(`${origin.url}/#/`);
  await ann.page.getByText('Choose your genres').click();
  await ann.page.getByLabel('Preferred genres').fill('drama, news');
  await ann.page.getByRole('button', { name: 'Save genres' }).click();
  await ann.page.getByText('Your genres: drama, news.').waitFor();
  await card.getByText('Your genre', { exact: true }).waitFor();

  await pat.page.goto(`${origin.url}/#/content/${content.id}`);
  await pat.page.getByLabel('Preferred placement, days').fill('3');
  await pat.page.getByText(`${origin.config.placementPricePerDay} per day from your wallet: ${3 * origin.config.placementPricePerDay} for 3 days.`).waitFor();
  await pat.page.getByRole('button', { name: 'Pay for placement' }).dblclick();
  const patId = (await me(pat.page)).id;
  const broke = await origin.call('POST', `/contents/${content.id}/placements`, { token: await tokenOf(pat.page), json: { days: 3, requestId: 'probe-0000-0001' } });
  assert.equal(broke.status, 409);
  await pat.page.getByText(broke.body.error.message).waitFor();
  await origin.fund(patId, 5000, 'flow-fund-pat');
  const before = (await origin.call('GET', '/wallet', { token: await tokenOf(pat.page) })).body.balance.available;
  await pat.page.getByRole('button', { name: 'Pay for placement' }).dblclick();
  await pat.page.getByText(/^Placed until/).waitFor();
  const after = (await origin.call('GET', '/wallet', { token: await tokenOf(pat.page) })).body.balance.available;
  assert.equal(before - after, 3 * origin.config.placementPricePerDay, 'a double click pays once');
  await checkPage(pat, 'content-publisher-tools');
  await ann.page.reload();
  await card.getByText('Sponsored placement').waitFor();
  await checkPage(ann, 'catalog-placed-375');
});

async function tokenOf(page: Page): Promise<string> {
  return JSON.parse((await page.evaluate('localStorage.getItem("cascade.session")')) as string).token;
}
async function me(page: Page): Promise<{ id: string }> {
  return (await origin.call('GET', '/auth/me', { token: await tokenOf(page) })).body;
}
