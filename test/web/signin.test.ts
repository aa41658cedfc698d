import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Browser } from 'playwright-core';
import { describeViolations, launchBrowser, openApp, screenshot, seriousViolations } from '../helpers/browser.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';

// #13.3 sign up / sign in / sign out, with the mistakes a newcomer makes; #13.5 at 375 px.
let origin: TestOrigin;
let browser: Browser;
before(async () => {
  origin = await startTestOrigin();
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  await origin?.close();
});

test('sign up refuses what the API refuses, with its sentence, then signs in and out', async () => {
  const app = await openApp(browser, `${origin.url}/#/signup`, { width: 375 });
  const { page } = app;
  await page.getByRole('heading', { name: 'Sign up' }).waitFor();
  assert.deepEqual(describeViolations(await seriousViolations(page)), '');
  await screenshot(page, 'signup-375');

  // A name the API refuses: its message, next to the field it names.
  await page.getByLabel('Username').fill('no spaces allowed');
  await page.getByLabel('Password', { exact: true }).fill('correct horse battery');
  await page.getByLabel('Repeat the password').fill('correct horse battery');
  await page.getByRole('button', { name: 'Create account' }).click();
  const apiSays = await origin.call('POST', '/users/signup', { json: { username: 'no spaces allowed', password: 'correct horse battery' } });
  assert.equal(apiSays.status, 400);
  // Beside the field it concerns (aria-describedby), in the API's words.
  const nameError = page.locator('#f-username-error');
  await nameError.waitFor();
  assert.equal(await nameError.innerText(), apiSays.body.error.message);
  assert.match((await page.getByLabel('Username').getAttribute('aria-describedby')) ?? '', /f-username-error/);

  await page.getByLabel('Username').fill('newcomer');
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.getByText('Signed in as').waitFor();
  assert.match(await page.locator('header').innerText(), /newcomer/);
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('link', { name: 'Sign in' }).first().waitFor();

  // Signed out, the catalog is public; then a wrong password: the API's sentence, still signed out.
  await page.getByRole('heading', { name: 'Catalog' }).waitFor();
  assert.equal(describeViolations(await seriousViolations(page)), '');
  await screenshot(page, 'catalog-signed-out-375');
  await page.goto(`${origin.url}/#/signin`);
  await page.getByLabel('Username').fill('newcomer');
  await page.getByLabel('Password').fill('wrong password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  const wrong = await origin.call('POST', '/auth/login', { json: { username: 'newcomer', password: 'wrong password' } });
  await page.getByText(wrong.body.error.message).waitFor();
  assert.equal(await page.evaluate('localStorage.getItem("cascade.session")'), null);
  assert.equal(describeViolations(await seriousViolations(page)), '');
  await screenshot(page, 'signin-refused-375');
  await page.goto(`${origin.url}/#/no-such-page`);
  await page.getByRole('heading', { name: 'Page not found' }).waitFor();
  await screenshot(page, 'not-found-375');
  assert.deepEqual(app.problems, []);
  await app.close();
});

test('an expired session sends the user to sign in and back to the page they were on', async () => {
  const app = await openApp(browser, `${origin.url}/#/signin`);
  const { page } = app;
  const u = await origin.userWithRoles(['member'], 'returning');
  await page.getByLabel('Username').fill(u.username);
  await page.getByLabel('Password').fill('correct horse battery');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByText('Signed in as').waitFor();
  // The token ends (revoked here; an expired one answers the same), then the member opens the wallet.
  const token = JSON.parse((await page.evaluate('localStorage.getItem("cascade.session")')) as string).token;
  assert.equal((await origin.call('POST', '/auth/logout', { token })).status, 204);
  // The member comes back later, straight to the wallet.
  await page.goto('about:blank');
  await page.goto(`${origin.url}/#/wallet`);
  await page.getByText('Your session has ended').waitFor();
  assert.match(page.url(), /#\/signin\?next=%2Fwallet/);
  await page.getByLabel('Username').fill(u.username);
  await page.getByLabel('Password').fill('correct horse battery');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(/#\/wallet$/);
  assert.deepEqual(app.problems, []);
  await app.close();
});
