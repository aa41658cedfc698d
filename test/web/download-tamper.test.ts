import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { Browser } from 'playwright-core';
import { decodeRanges } from '../../src/transfer/piece-ranges.ts';
import { launchBrowser, openApp, screenshot } from '../helpers/browser.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';

// #13.4 "A tampered piece is refused in the browser too": in Chromium, a piece whose bytes
// were changed on the way (here by the browser's own request interception, as a proxy
// would) is never kept, saved or receipted, and the member is told why.

const PIECE = 64 * 1024;
let origin: TestOrigin;
let browser: Browser;
before(async () => {
  origin = await startTestOrigin({ config: { pieceSize: PIECE } });
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  await origin?.close();
});

test('a piece changed on the way is refused in the browser: not saved, not receipted, the reason shown', async () => {
  const publisher = await origin.userWithRoles(['publisher']);
  const pub = await origin.call('POST', '/contents?title=Tide%20Tables&genre=news&price=120', { token: publisher.token, body: randomBytes(6 * PIECE), headers: { 'content-type': 'application/octet-stream' } });
  assert.equal(pub.status, 201);
  const contentId: string = pub.body.id;
  const member = await origin.userWithRoles(['member'], 'milo');

  const app = await openApp(browser, `${origin.url}/#/signin`);
  const { page } = app;
  await page.getByLabel('Username').fill('milo');
  await page.getByLabel('Password').fill('correct horse battery');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByText('Signed in as').waitFor();

  // Every copy of piece 3 arrives with one byte flipped.
  let tampered = 0;
  await page.route(`**/pieces/${contentId}/3`, async (route) => {
    const res = await route.fetch();
    const body = await res.body();
    body[100] ^= 0xff;
    tampered++;
    await route.fulfill({ response: res, body });
  });
  let saved = false;
  page.on('download', () => (saved = true));

  await page.goto(`${origin.url}/#/content/${contentId}`);
  await page.getByRole('button', { name: 'Download', exact: true }).click();
  const alert = page.locator('#main .error[role=alert]');
  await alert.waitFor();
  assert.match(await alert.innerText(), /Wrong bytes arrived for piece 3 3 times; nothing unverified was kept\./);
  await screenshot(page, 'content-tampered-piece');
  assert.equal(tampered, 3, 'three copies tried, as a terminal does');
  assert.equal(saved, false, 'nothing saved');

  // The browser's terminal handed in no receipt naming piece 3.
  const terminals = (await origin.call('GET', '/me/terminals', { token: member.token })).body.items;
  assert.equal(terminals.length, 1);
  const receipts = await origin.db.db.selectFrom('receipts').select('pieces').where('receiver_id', '=', terminals[0].id).execute();
  assert.ok(!receipts.flatMap((r) => decodeRanges(r.pieces, 6)!).includes(3), JSON.stringify(receipts));
  assert.deepEqual(app.problems, []);
  await app.close();
});
