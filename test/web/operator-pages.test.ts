import { waitFor } from '../helpers/wait.ts';
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import type { Browser, Page } from 'playwright-core';
import { generateKeyPair } from '../../src/core/crypto.ts';
import { describeViolations, launchBrowser, openApp, screenshot, seriousViolations } from '../helpers/browser.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';
import { beat } from '../terminals/fixture.ts';

// #13 operator pages: users (list, paging, find by name, roles, create, password reset) and the
// operations dashboard (figures as GET /ops/dashboard gives them, refreshing by itself, the
// egress chart with its text alternative). Refusals: the API's sentence beside the field, and
// nothing changed. axe at 1280 and 375 px; no console problems (the page runs under its CSP).

let origin: TestOrigin;
let browser: Browser;
let op: { token: string; userId: string; username: string };
before(async () => {
  origin = await startTestOrigin();
  browser = await launchBrowser();
  op = await origin.userWithRoles(['operator'], 'root-op');
});
after(async () => {
  await browser?.close();
  await origin?.close();
});

function openAs(user: { token: string; userId: string; username: string }, roles: string[], path: string, width = 1280) {
  return openApp(browser, `${origin.url}/#${path}`, { width, locale: 'en-GB', signedIn: { token: user.token, userId: user.userId, username: user.username, roles } });
}

async function axeClean(page: Page) {
  assert.equal(describeViolations(await seriousViolations(page)), '');
}

const rolesOf = async (id: string) => (await origin.call('GET', `/users/${id}`, { token: op.token })).body.roles as string[];

test('#13 users: pages, find by name, grant a role, refusals beside the field with nothing changed, reset a password, create an account', async () => {
  for (let i = 0; i < 21; i++) await origin.accounts.createUser(`pager-${String(i).padStart(2, '0')}`, 'correct horse battery', ['member']);
  const alice = await origin.userWithRoles(['member'], 'alice');
  const app = await openAs(op, ['operator'], '/admin/users');
  const { page } = app;
  const table = page.getByRole('table', { name: /Accounts/ });
  await table.getByRole('rowheader', { name: 'alice' }).waitFor();
  assert.equal(await table.locator('tbody tr').count(), 20);
  // Paging: the next page goes on where this one ended, and back.
  await page.getByRole('button', { name: 'Next page' }).click();
  await table.getByRole('rowheader', { name: 'root-op' }).waitFor();
  assert.match(await table.locator('caption').innerText(), /page 2/);
  await page.getByRole('button', { name: 'Previous page' }).click();
  await table.getByRole('rowheader', { name: 'alice' }).waitFor();
  await axeClean(page);
  await screenshot(page, 'page-users');

  // Find by name.
  await page.getByLabel('Find an account by its exact username').fill('alice');
  await page.getByRole('button', { name: 'Find', exact: true }).click();
  await page.getByRole('table', { name: 'Accounts named “alice”' }).waitFor();
  // The caption can change a moment before the rows do (seen on a loaded machine): wait for the one row.
  await waitFor(async () => (await page.locator('table.users tbody tr').count()) === 1, 'one row for alice');

  // Grant publisher: it shows in the list and the API has it.
  await page.getByRole('button', { name: 'Manage alice' }).click();
  const roles = page.getByRole('group', { name: 'Roles of alice' });
  await roles.getByRole('checkbox', { name: /publisher/ }).check();
  await page.getByRole('button', { name: 'Save roles' }).click();
  await page.getByText('Roles of alice: member, publisher.').waitFor();
  await page.locator('table.users tbody tr', { hasText: 'member, publisher' }).waitFor();
  assert.deepEqual(await rolesOf(alice.userId), ['member', 'publisher']);

  // Refused: no role at all. The API's sentence beside the roles; alice keeps hers.
  await roles.getByRole('checkbox', { name: /member/ }).uncheck();
  await roles.getByRole('checkbox', { name: /publisher/ }).uncheck();
  await page.getByRole('button', { name: 'Save roles' }).click();
  const none = await origin.call('PUT', `/users/${alice.userId}/roles`, { token: op.token, json: { roles: [] } });
  assert.equal(none.status, 400);
  await page.locator('#edit-roles-error').getByText(none.body.error.message).waitFor();
  assert.deepEqual(await rolesOf(alice.userId), ['member', 'publisher']);

  // Password reset: a weak one refused beside the field (the old one still works), then a good one.
  await page.getByLabel('New password for alice').fill('short');
  await page.getByRole('button', { name: 'Reset password' }).click();
  const weak = await origin.call('PUT', `/users/${alice.userId}/password`, { token: op.token, json: { password: 'short' } });
  assert.equal(weak.body.error.code, 'weak_password');
  await page.locator('#f-password-error').getByText(weak.body.error.message).first().waitFor();
  assert.equal((await origin.call('POST', '/auth/login', { json: { username: 'alice', password: 'correct horse battery' } })).status, 200);
  await page.getByLabel('New password for alice').fill('a much better secret');
  await page.getByRole('button', { name: 'Reset password' }).click();
  await page.getByText('New password set for alice').waitFor();
  const relogin = await origin.call('POST', '/auth/login', { json: { username: 'alice', password: 'a much better secret' } });
  assert.equal(relogin.status, 200);
  assert.equal((await origin.call('GET', '/auth/me', { token: alice.token })).status, 401, "the reset signed alice's sessions out");
  await page.getByRole('button', { name: 'Close' }).click();

  // Create: a name the API refuses (its sentence beside the username, nobody created), then a store account.
  const create = page.locator('section[aria-labelledby="create-h"]');
  await create.getByLabel('Username').fill('Bad Name');
  await create.getByLabel('Password').fill('correct horse battery');
  await create.getByRole('button', { name: 'Create account' }).click();
  const badName = await origin.call('POST', '/users', { token: op.token, json: { username: 'Bad Name', password: 'correct horse battery', roles: ['member'] } });
  assert.equal(badName.body.error.code, 'invalid_username');
  await create.locator('#f-username-error').getByText(badName.body.error.message).waitFor();
  await create.getByLabel('Username').fill('carol');
  await create.getByRole('checkbox', { name: /store/ }).check();
  await create.getByRole('button', { name: 'Create account' }).click();
  await page.getByText('Account carol created with roles member, store.').waitFor();
  await page.getByRole('table', { name: 'Accounts named “carol”' }).waitFor();
  const carol = await origin.call('GET', '/users?username=carol', { token: op.token });
  assert.deepEqual(carol.body.items.map((u: { roles: string[] }) => u.roles), [['member', 'store']]);

  const narrow = await openAs(op, ['operator'], '/admin/users', 375);
  await narrow.page.getByRole('rowheader', { name: 'alice' }).waitFor();
  await narrow.page.getByRole('button', { name: 'Manage alice' }).click();
  await axeClean(narrow.page);
  await screenshot(narrow.page, 'page-users-375');
  assert.deepEqual(narrow.problems, []);
  await narrow.close();
  assert.deepEqual(app.problems, []);
  await app.close();

  // A member is told the page is not for them.
  const m = await openAs({ ...alice, token: relogin.body.token }, ['member'], '/admin/users');
  await m.page.getByRole('heading', { name: 'Not available' }).waitFor();
  await m.close();
});

test('#13 dashboard: the API’s figures, refreshed by itself, a running transfer with its source, the egress chart and its table', async () => {
  const owner = await origin.userWithRoles(['member']);
  const keys = generateKeyPair();
  const reg = await origin.registerTerminal(owner.token, keys, { name: 'reader-box' });
  assert.equal(reg.status, 201, JSON.stringify(reg.body));
  const tid: string = reg.body.terminal.id;
  const session = await origin.accounts.issueToken(owner.userId, tid, 'test terminal session', null);
  assert.equal((await origin.call('POST', '/terminals/heartbeat', { token: session, json: beat() })).status < 300, true);
  const pub = await origin.userWithRoles(['publisher']);
  const content = await origin.content.publish({ id: pub.userId, username: pub.username }, { title: 'Harbour Lights', genre: 'Film', price: 0 }, Readable.from([randomBytes(5000)]));
  // A transfer under way: the terminal asked for sources (the origin here) and has no piece yet.
  const grants = await origin.call('POST', '/grants/auto', { token: session, json: { contentId: content.id } });
  assert.equal(grants.status, 200, JSON.stringify(grants.body));

  const api = (await origin.call('GET', '/ops/dashboard', { token: op.token })).body;
  assert.equal(api.transfers.length, 1);
  const app = await openAs(op, ['operator'], '/admin/dashboard');
  const { page } = app;
  await page.getByText(/Updated at/).waitFor();
  const figure = (name: string) => page.locator(`[data-figure="${name}"]`).innerText();
  assert.equal(await figure('terminals'), `${api.terminals.online} / ${api.terminals.total}`);
  assert.equal(await figure('transfers'), '1');
  assert.equal(await figure('backlog'), String(api.schedule.backlog));
  assert.equal(await figure('ledger'), api.ledger.ok ? 'OK' : 'BROKEN');
  await page.getByText(api.ledger.message).waitFor();
  const transfers = page.getByRole('table', { name: 'Running transfers with their sources' });
  const row = await transfers.locator('tbody tr').innerText();
  assert.match(row, /Harbour Lights/);
  assert.match(row, /reader-box/);
  assert.match(row, /origin/);
  // The chart: drawn (a canvas), named by its summary, and its numbers as a table.
  const chart = page.getByRole('img', { name: /Origin egress per minute/ });
  await chart.locator('canvas').waitFor();
  await page.getByText('Egress per minute as a table').click();
  assert.equal(await page.locator('table.egress tbody tr').count(), api.egress.points.length);
  await axeClean(page);
  await screenshot(page, 'page-dashboard');

  // It refreshes by itself: a second terminal shows without a reload.
  const before = await figure('terminals');
  const reg2 = await origin.registerTerminal(owner.token, generateKeyPair(), { name: 'second-box' });
  assert.equal(reg2.status, 201);
  await page.waitForFunction((was) => document.querySelector('[data-figure="terminals"]')?.textContent !== was, before, { timeout: 12_000 });
  assert.match(await figure('terminals'), new RegExp(`/ ${api.terminals.total + 1}$`));

  const narrow = await openAs(op, ['operator'], '/admin/dashboard', 375);
  await narrow.page.getByRole('img', { name: /Origin egress/ }).locator('canvas').waitFor();
  await axeClean(narrow.page);
  await screenshot(narrow.page, 'page-dashboard-375');
  const width = await narrow.page.evaluate('document.documentElement.scrollWidth');
  assert.ok((width as number) <= 375, `the page is ${width} px wide at 375`);
  assert.deepEqual(narrow.problems, []);
  await narrow.close();
  assert.deepEqual(app.problems, []);
  await app.close();
});
