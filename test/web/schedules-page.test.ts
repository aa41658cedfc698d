import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import type { Browser, Page } from 'playwright-core';
import { generateKeyPair } from '../../src/core/crypto.ts';
import { describeViolations, launchBrowser, openApp, screenshot, seriousViolations } from '../helpers/browser.ts';
import { recorder } from '../helpers/deliveries.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';

// #13 schedules page (S0.1, S0.5, S0.7): the member's terminals, the schedule editor round
// trip through the account-session routes, the week view in the browser's own time zone, the
// plan and the delivery history; refusals shown with the API's sentence, nothing created.

// Monday 2026-05-04 00:00 UTC = Monday 09:00 in Tokyo (no daylight saving there).
const T0 = Date.parse('2026-05-04T00:00:00.000Z');
let origin: TestOrigin;
let browser: Browser;
before(async () => {
  origin = await startTestOrigin({ now: T0 });
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  await origin?.close();
});

/** A signed-in page (the session the app keeps in localStorage) in a browser set to `timezoneId`. */
function openAs(user: { token: string; userId: string; username: string }, roles: string[], path: string, opts: { timezoneId?: string; width?: number } = {}) {
  return openApp(browser, `${origin.url}/#${path}`, { ...opts, locale: 'en-GB', signedIn: { token: user.token, userId: user.userId, username: user.username, roles } });
}

async function axeClean(page: Page) {
  assert.equal(describeViolations(await seriousViolations(page)), '');
}

/** The week view's cells (day column, local hour) that name a schedule. */
async function openCells(page: Page): Promise<string[]> {
  return page.locator('table.week td.open').evaluateAll((tds) => tds.map((td) => `${td.getAttribute('data-day')}@${td.getAttribute('data-hour')}:${td.textContent!.replace('open: schedule ', '')}`).sort());
}

test('S0.1 a member without a terminal is told how to add one', async () => {
  const m = await origin.userWithRoles(['member']);
  const app = await openAs(m, ['member'], '/schedules');
  await app.page.getByText('You have no terminal yet').waitFor();
  assert.match(await app.page.locator('main').innerText(), /cascade terminal register/);
  await axeClean(app.page);
  assert.deepEqual(app.problems, []);
  await app.close();
});

test('S0.1 S0.5 S0.7 schedule editor round trip: refusals next to the field, add, week view in local hours, plan, history, remove', async () => {
  const m = await origin.userWithRoles(['member']);
  const reg = await origin.registerTerminal(m.token, generateKeyPair(), { name: 'living-room' });
  assert.equal(reg.status, 201, JSON.stringify(reg.body));
  const tid = reg.body.terminal.id as string;
  const pub = await origin.userWithRoles(['publisher']);
  const published = await origin.content.publish({ id: pub.userId, username: pub.username }, { title: 'Alpine Lakes', genre: 'Nature', price: 0 }, Readable.from([randomBytes(3000)]));
  const contentId = (published as { id: string }).id;
  // A past delivery of it, as the scheduler records one (S0.7).
  const rec = recorder(origin.schedules.deliveries, () => origin.clock.now());
  const due = await rec.due({ terminalId: tid, contentId, dueAt: T0 - 86_400_000 });
  const ran = await rec.start(due, 'origin');
  await rec.end(ran, 'deferred', { reason: 'window_closed', bytes: 1500 });

  const listed = async () => (await origin.call('GET', `/me/terminals/${tid}/schedules`, { token: m.token })).body.schedules as unknown[];
  const app = await openAs(m, ['member'], '/schedules', { timezoneId: 'Asia/Tokyo' });
  const { page } = app;
  await page.getByLabel('Terminal', { exact: true }).waitFor();
  assert.match(await page.getByLabel('Terminal', { exact: true }).innerText(), /living-room/);
  await page.getByText('No schedule yet').waitFor();
  // The history: due, start, end, bytes, source, outcome.
  const history = page.getByRole('table', { name: 'Scheduled deliveries, newest first' });
  await history.waitFor();
  const row = await history.locator('tbody tr').innerText();
  assert.match(row, /Alpine Lakes/);
  assert.match(row, /1\.5 kB/);
  assert.match(row, /origin/);
  assert.match(row, /deferred window_closed/);

  // Refused: an empty selection. The API's sentence, next to the selection field; nothing stored.
  const form = page.locator('form.schedule-form');
  await page.getByRole('radio', { name: 'A genre' }).check();
  await page.getByRole('button', { name: 'Add schedule' }).click();
  const empty = await origin.call('POST', `/me/terminals/${tid}/schedules`, { token: m.token, json: { select: { genre: '' }, windows: [{ days: 'weekdays', start: '01:00', end: '05:00', timeZone: 'UTC' }] } });
  assert.equal(empty.status, 400);
  assert.equal(empty.body.error.code, 'empty_selection');
  await form.locator('#f-select-error').getByText(empty.body.error.message).waitFor();
  assert.equal(await page.getByLabel('Genre', { exact: true }).getAttribute('aria-invalid'), 'true');

  // Refused: a start the API does not take, shown inside that window's group.
  await page.getByLabel('Genre', { exact: true }).fill('Nature');
  await page.getByLabel('Start (HH:MM)').fill('25:00');
  await page.getByRole('button', { name: 'Add schedule' }).click();
  const bad = await origin.call('POST', `/me/terminals/${tid}/schedules`, { token: m.token, json: { select: { genre: 'Nature' }, windows: [{ days: ['mon', 'tue', 'wed', 'thu', 'fri'], start: '25:00', end: '05:00', timeZone: 'Asia/Tokyo' }] } });
  assert.equal(bad.body.error.code, 'invalid_window');
  await page.locator('#w0-error').getByText(bad.body.error.message).waitFor();
  assert.deepEqual(await listed(), []);
  await screenshot(page, 'page-schedules-refused');

  // Added: Nature, Mondays 01:00–05:00 UTC, capped at 2 MB/s.
  await page.getByLabel('Start (HH:MM)').fill('01:00');
  await page.getByLabel('End (HH:MM)').fill('05:00');
  for (const d of ['Tue', 'Wed', 'Thu', 'Fri']) await page.getByRole('checkbox', { name: d, exact: true }).uncheck();
  await page.getByLabel('Time zone').fill('UTC');
  await page.getByLabel('Bandwidth cap, MB/s (optional)').fill('2');
  await page.getByRole('button', { name: 'Add schedule' }).click();
  await page.getByText('Schedule added.').waitFor();
  const stored = (await listed()) as { select: unknown; windows: unknown[] }[];
  assert.equal(stored.length, 1);
  assert.deepEqual(stored[0].select, { genre: 'Nature' });
  assert.deepEqual(stored[0].windows, [{ days: ['mon'], start: '01:00', end: '05:00', timeZone: 'UTC', capBytesPerSecond: 2_000_000 }]);
  const list = page.getByRole('table', { name: 'Schedules of this terminal' });
  await list.getByText('genre “Nature”').waitFor();
  assert.match(await list.innerText(), /Mon 01:00–05:00 UTC, cap 2\.0 MB\/s/);

  // The week view, in Tokyo: Monday 10:00–14:00 local (01:00–05:00 UTC), column 0 = today (Monday).
  await page.locator('table.week td.open').first().waitFor();
  assert.match(await page.getByRole('table', { name: /Delivery windows by hour/ }).locator('caption').innerText(), /Asia\/Tokyo/);
  assert.match(await page.locator('table.week thead th[data-day="0"]').innerText(), /Mon/);
  assert.deepEqual(await openCells(page), ['0@10:1', '0@11:1', '0@12:1', '0@13:1']);
  await page.getByText(/The same as a list/).click();
  assert.match(await page.locator('details.openings li').first().innerText(), /10:00 – .*14:00: schedule 1, window 1, capped at 2\.0 MB\/s/);
  // The plan: Alpine Lakes, due at the Monday opening, under schedule 1.
  const plan = page.getByRole('table', { name: /Plan: contents due/ });
  await plan.getByText('Alpine Lakes').waitFor();
  assert.match(await plan.locator('tbody tr').innerText(), /waiting for its window/);

  await axeClean(page);
  await screenshot(page, 'page-schedules');
  const narrow = await openAs(m, ['member'], '/schedules', { timezoneId: 'Asia/Tokyo', width: 375 });
  await narrow.page.locator('table.week td.open').first().waitFor();
  await axeClean(narrow.page);
  await screenshot(narrow.page, 'page-schedules-375');
  assert.deepEqual(narrow.problems, []);
  await narrow.close();

  // Removed: gone from the API, the list and the week view.
  await page.getByRole('button', { name: 'Remove schedule 1' }).click();
  await page.getByText('No schedule yet').waitFor();
  assert.deepEqual(await listed(), []);
  await page.getByText('No window opens in the coming 7 days').waitFor();
  assert.deepEqual(await openCells(page), []);
  assert.deepEqual(app.problems, []);
  await app.close();
});

test('S0.1 the week view follows the browser’s zone: New York sees the same window on Sunday evening', async () => {
  const m = await origin.userWithRoles(['member']);
  const reg = await origin.registerTerminal(m.token, generateKeyPair(), { name: 'den' });
  const tid = reg.body.terminal.id as string;
  const add = await origin.call('POST', `/me/terminals/${tid}/schedules`, { token: m.token, json: { select: { genre: 'News' }, windows: [{ days: 'mon', start: '01:00', end: '05:00', timeZone: 'UTC' }] } });
  assert.equal(add.status, 201);
  const app = await openAs(m, ['member'], '/schedules', { timezoneId: 'America/New_York' });
  await app.page.locator('table.week td.open').first().waitFor();
  // T0 is Sunday 20:00 in New York (EDT, UTC−4): the window is Sunday 21:00 – Monday 01:00 there.
  assert.match(await app.page.locator('table.week thead th[data-day="0"]').innerText(), /Sun/);
  assert.deepEqual(await openCells(app.page), ['0@21:1', '0@22:1', '0@23:1', '1@0:1'].sort());
  assert.deepEqual(app.problems, []);
  await app.close();
});
