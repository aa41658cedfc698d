import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { Browser, Page } from 'playwright-core';
import { verifySettings } from '../../src/live/settings.ts';
import { checkPage, launchBrowser, openApp, screenshot, type AppPage } from '../helpers/browser.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';

// #14 live pages in headless Chromium (docs/live.md, docs/web.md "Live"): an operator adds and
// changes a channel (S3.2); a premium member picks free slots on the calendar grid (S3.3),
// quotes (charge = slots × tariff) and books (S3.4, S3.5), reconfirms on My channel with the
// reservation ID and saves the signed settings (S3.6), changes the title (S3.7); the guide lists
// the Public program and never a Secret one (S3.11); a member who is not premium is told why they
// cannot book; an outline too long is refused beside the outline field. The browser runs in
// Tokyo and its own clock is not the origin's (a ManualClock): every "today", "past" and countdown
// must come from the origin's clock (GET /time, S3.10).

// Monday 2026-05-04 00:00 UTC = 09:00 in Tokyo (no daylight saving there).
const T0 = Date.parse('2026-05-04T00:00:00.000Z');
const TOKYO = 'Asia/Tokyo';
let origin: TestOrigin;
let browser: Browser;
let op: User;
let channelId: string;
before(async () => {
  origin = await startTestOrigin({ now: T0 });
  browser = await launchBrowser();
  op = await origin.userWithRoles(['operator'], 'live-op');
});
after(async () => {
  await browser?.close();
  await origin?.close();
});

type User = { token: string; userId: string; username: string };

function openAs(user: User | null, roles: string[], route: string, width = 1280): Promise<AppPage> {
  return openApp(browser, `${origin.url}/#${route}`, {
    width,
    timezoneId: TOKYO,
    locale: 'en-GB',
    signedIn: user ? { token: user.token, userId: user.userId, username: user.username, roles } : undefined,
  });
}


const premiumMember = async (name: string, email: string | null) => {
  const u = await origin.userWithRoles(['member', 'premium'], name);
  if (email) assert.equal((await origin.call('PUT', '/me/contact', { token: u.token, json: { email } })).status, 200);
  return u;
};
const bookings = async (u: User) => (await origin.call('GET', '/live/bookings', { token: u.token })).body.items as { id: string; title: string; status: string; charged: boolean; start: string }[];
const slot = (page: Page, iso: string) => page.locator(`td[data-start="${new Date(iso).toISOString()}"]`);

test('S3.2 channels: an operator adds a channel, a refusal beside its field, and changes one in place', async () => {
  const app = await openAs(op, ['operator'], '/admin/channels');
  const { page } = app;
  await page.getByRole('heading', { name: 'Channels', level: 1 }).waitFor();
  await page.getByText('No channel yet').waitFor();
  assert.equal(await page.getByRole('navigation').getByRole('link', { name: 'Channels', exact: true }).count(), 1, 'in the operator’s menu');

  const add = page.locator('section[aria-labelledby="add-channel-h"]');
  await add.getByLabel('Name').fill('Studio A');
  await add.getByLabel('Capacity (viewers)').fill('50');
  await add.getByLabel('Bitrate (kbps)').fill('2500');
  await add.getByLabel('Tariff per slot').fill('40');
  // A slot length that does not divide a day: the API's sentence beside that field, nothing added.
  await add.getByLabel('Slot length (minutes)').fill('7');
  await add.getByRole('button', { name: 'Add channel' }).click();
  const bad = await origin.call('POST', '/live/channels', { token: op.token, json: { name: 'Studio A', capacity: 50, bitrateKbps: 2500, tariffPerSlot: 40, slotMinutes: 7 } });
  assert.equal(bad.body.error.code, 'invalid_slot_length');
  await add.locator('#f-slotMinutes-error').getByText(bad.body.error.message).waitFor();
  assert.equal((await origin.call('GET', '/live/channels')).body.items.length, 0);

  await add.getByLabel('Slot length (minutes)').fill('10');
  await add.getByRole('button', { name: 'Add channel' }).click();
  await page.getByText('Channel Studio A added.').waitFor();
  const table = page.getByRole('table', { name: 'Channels' });
  await table.getByRole('rowheader', { name: 'Studio A' }).waitFor();
  const [ch] = (await origin.call('GET', '/live/channels')).body.items;
  assert.deepEqual([ch.name, ch.capacity, ch.bitrateKbps, ch.tariffPerSlot, ch.slotMinutes, ch.monthlyQuotaSlots], ['Studio A', 50, 2500, 40, 10, 60]);
  channelId = ch.id;
  assert.deepEqual((await table.locator('tbody tr').first().locator('td').allInnerTexts()).slice(0, 5), ['50', '2500', '40', '10', '60']);

  // In place: capacity 80; only that field is sent.
  const patches: string[] = [];
  page.on('request', (r) => r.method() === 'PATCH' && patches.push(r.postData() ?? ''));
  await table.getByRole('button', { name: 'Edit Studio A' }).click();
  await table.getByLabel('Capacity (viewers) of Studio A').fill('80');
  await checkPage(page, 'channels-edit');
  await table.getByRole('button', { name: 'Save Studio A' }).click();
  await page.getByText('Channel Studio A saved.').waitFor();
  await table.getByRole('cell', { name: '80', exact: true }).waitFor();
  assert.deepEqual(patches.map((p) => JSON.parse(p)), [{ capacity: 80 }]);
  assert.equal((await origin.call('GET', `/live/channels/${channelId}`)).body.capacity, 80);
  await checkPage(page, 'channels');
  assert.deepEqual(app.problems, []);
  await app.close();
});

test('S3.3–S3.7 S3.10 a premium member picks slots on the grid, quotes, books, reconfirms with the reservation ID, saves the settings, changes the title', async () => {
  const pm = await premiumMember('hana', 'hana@example.org');
  const app = await openAs(pm, ['member', 'premium'], '/live/calendar');
  const { page } = app;
  await page.getByRole('heading', { name: 'Studio A' }).waitFor();
  // Today by the origin's clock in Tokyo, not by the browser's own date.
  assert.equal(await page.getByLabel('Day', { exact: true }).inputValue(), '2026-05-04');
  assert.match(await page.locator('.channel-facts').innerText(), /Capacity 80 viewers · 2500 kbps · 40 per 10-minute slot/);
  // The origin's 09:00 Tokyo is now: the slot that started then is past, the next is free.
  assert.match((await slot(page, '2026-05-04T00:00:00Z').getAttribute('class'))!, /past/);
  assert.match((await slot(page, '2026-05-04T00:10:00Z').getAttribute('class'))!, /free/);
  // 20:00 Tokyo = 11:00 UTC: its row is headed 20:00.
  assert.equal(await slot(page, '2026-05-04T11:00:00Z').locator('xpath=..').locator('th').innerText(), '20:00');

  // Pick 20:00, then 20:20: three slots, contiguous, on Studio A.
  await slot(page, '2026-05-04T11:00:00Z').getByRole('button').click();
  await slot(page, '2026-05-04T11:20:00Z').getByRole('button').click();
  assert.equal(await page.locator('.slot-btn[aria-pressed="true"]').count(), 3);
  await page.getByText('Selected 20:00–20:30: 3 slots × 40 = 120.').waitFor();
  const form = page.locator('form.book-form');
  await form.waitFor();
  assert.equal(await form.getByLabel('Start (your time)').inputValue(), '2026-05-04T20:00');
  assert.equal(await form.getByLabel('End (your time)').inputValue(), '2026-05-04T20:30');
  assert.equal(await form.getByLabel('Time zone for e-mails').inputValue(), TOKYO);
  // The password field is only there for Password and Secret.
  assert.equal(await form.getByLabel('Password for viewers').count(), 0);
  await form.getByRole('radio', { name: 'Secret' }).check();
  await form.getByLabel('Password for viewers').waitFor();
  await form.getByRole('radio', { name: 'Public' }).check();

  await form.getByLabel('Title').fill('Evening Jazz');
  await form.getByLabel('Genre').fill('music');
  // A mistake on purpose: 21 characters of outline. Refused beside the outline, nothing booked.
  const long = 'A night of jazz tunes';
  assert.equal(long.length, 21);
  await form.getByLabel('Outline').fill(long);
  await form.locator('#f-outline-count').getByText('21/20').waitFor();
  await form.getByRole('button', { name: 'Quote' }).click();
  const body = { channelId, start: '2026-05-04T11:00:00.000Z', end: '2026-05-04T11:30:00.000Z', openLevel: 'public', title: 'Evening Jazz', genre: 'music', outline: long };
  const refused = await origin.call('POST', '/live/quote', { token: pm.token, json: body });
  assert.equal(refused.status, 400);
  assert.equal(refused.body.error.code, 'outline_too_long');
  await form.locator('#f-outline-error').getByText(refused.body.error.message).waitFor();
  assert.equal(await form.getByLabel('Outline').getAttribute('aria-invalid'), 'true');
  assert.equal(await form.getByRole('button', { name: 'Book' }).isDisabled(), true);
  await screenshot(page, 'page-live-outline-refused');
  assert.deepEqual(await bookings(pm), []);

  // Quote: 3 slots × 40 = 120; reconfirm 6 hours before the start: 14:00 Tokyo.
  await form.getByLabel('Outline').fill('Jazz from Tokyo');
  await form.getByRole('button', { name: 'Quote' }).click();
  await form.getByTestId('charge').getByText('3 slots × 40 = 120').waitFor();
  assert.match(await form.getByTestId('deadline').innerText(), /4 May 2026, 14:00/);
  const quote = form.locator('.quote');
  assert.match(await quote.innerText(), /6 hours before the start/);
  assert.match(await quote.innerText(), /3 of 60 slots on Studio A in 2026-05 after this booking/);
  assert.match(await quote.innerText(), /covers the charge/);
  await checkPage(page, 'live-quote');

  // Book: the reservation ID, prominent, with how to reconfirm.
  await form.getByRole('button', { name: 'Book' }).click();
  const rsvEl = page.getByTestId('reservation-id');
  await rsvEl.waitFor();
  const reservationId = (await rsvEl.innerText()).trim();
  assert.match(reservationId, /^rsv_[A-Za-z0-9_-]{20,}$/);
  assert.match(await page.locator('.booked').innerText(), /e-mailed to you\. Reconfirm before .*4 May 2026, 14:00/);
  await page.getByRole('button', { name: 'Copy reservation ID' }).click();
  await page.locator('.booked [role="status"]').getByText(/Copied|Selected/).waitFor();
  const [booked] = await bookings(pm);
  assert.equal(booked.status, 'awaiting_reconfirmation');
  assert.equal(booked.start, '2026-05-04T11:00:00.000Z');
  // The grid now shows the slots as the member's own.
  await slot(page, '2026-05-04T11:10:00Z').and(page.locator('td.mine')).waitFor();
  assert.match(await slot(page, '2026-05-04T11:10:00Z').innerText(), /Evening Jazz/);
  await checkPage(page, 'live-calendar');
  assert.deepEqual(app.problems, []);
  await app.close();

  // My channel: the origin's clock, the countdown by it (the browser's own clock is elsewhere).
  const mine = await openAs(pm, ['member', 'premium'], '/live/mine');
  const mp = mine.page;
  const card = mp.locator(`li[data-booking="${booked.id}"]`);
  await card.waitFor();
  assert.match(await card.innerText(), /awaiting reconfirmation/);
  assert.match(await card.innerText(), /4 May 2026, 20:00–20:30 · Studio A · 3 slots/);
  await mp.getByTestId('origin-clock').waitFor();
  assert.match(await mp.getByTestId('origin-clock').innerText(), /4 May 2026, 09:0\d:\d\d/);
  assert.match(await card.getByTestId('countdown').innerText(), /^(5 h 00|4 h 5\d) min left$/);
  assert.match(await mp.getByTestId('clock-offset').innerText(), /This browser’s clock is .*(behind|ahead of|in step)/);

  // Reconfirm: a wrong ID beside the field, then the right one; the settings download.
  await card.getByRole('button', { name: 'Reconfirm Evening Jazz' }).click();
  await card.getByLabel('Reservation ID for “Evening Jazz”').fill('rsv_nottherightoneatallxx');
  await card.getByRole('button', { name: 'Reconfirm and pay 120' }).click();
  const unknown = await origin.call('POST', '/live/reconfirm', { token: pm.token, json: { reservationId: 'rsv_nottherightoneatallxx' } });
  assert.equal(unknown.body.error.code, 'unknown_reservation');
  await card.locator('#f-reservationId-error').getByText(unknown.body.error.message).waitFor();
  await card.getByLabel('Reservation ID for “Evening Jazz”').fill(reservationId);
  await card.getByRole('button', { name: 'Reconfirm and pay 120' }).click();
  await card.getByText('Reconfirmed.').waitFor();
  assert.match(await card.getByText('Charged 120.').innerText(), /Charged 120/);
  assert.match(await card.getByTestId('ingest-url').innerText(), new RegExp(`^rtmp://.*/live/${reservationId}$`));
  const [download] = await Promise.all([mp.waitForEvent('download'), card.getByRole('link', { name: 'Download settings.json' }).click()]);
  assert.equal(download.suggestedFilename(), 'settings.json');
  const settings = JSON.parse(readFileSync((await download.path())!, 'utf8'));
  assert.equal(settings.document.reservationId, reservationId);
  assert.equal(settings.document.bookingId, booked.id);
  const originKey = (await origin.call('GET', '/origin')).body.publicKey;
  assert.equal(settings.originKey, originKey);
  assert.ok(verifySettings(settings, originKey), 'the origin’s signature holds');
  await checkPage(mp, 'live-reconfirmed');
  await card.getByRole('button', { name: 'Done' }).click();
  await card.getByText('confirmed', { exact: true }).waitFor();
  assert.match(await card.innerText(), /Charged 120/);
  assert.deepEqual((await bookings(pm)).map((b) => [b.status, b.charged]), [['confirmed', true]]);

  // Change the title; the history tells it.
  await card.getByRole('button', { name: 'Change Evening Jazz' }).click();
  await card.getByLabel('Title').fill('Evening Jazz Trio');
  await card.getByRole('button', { name: 'Save changes' }).click();
  await card.getByRole('heading', { name: /Evening Jazz Trio/ }).waitFor();
  assert.equal((await bookings(pm))[0].title, 'Evening Jazz Trio');
  await card.locator('summary').click();
  assert.match(await card.locator('details.history').innerText(), /booked[\s\S]*reconfirmed[\s\S]*changed \(confirmed\) — title/);

  // S3.15: record the program; it is listed under My recordings, to be made when it is over.
  await card.getByRole('button', { name: 'Record Evening Jazz Trio' }).click();
  await card.getByLabel('Price of the recording (minor units)').fill('-5');
  await card.getByRole('button', { name: 'Record this program' }).click();
  // The browser itself refuses a negative price (the field's minimum) and says so beside it.
  assert.equal(await card.getByLabel('Price of the recording (minor units)').evaluate((el) => (el as HTMLInputElement).validity.rangeUnderflow), true);
  assert.equal((await origin.call('GET', '/live/recordings', { token: pm.token })).body.items.length, 0, 'a refused price records nothing');
  await card.getByLabel('Price of the recording (minor units)').fill('50');
  await card.getByRole('button', { name: 'Record this program' }).click();
  const rec = mp.locator(`li[data-recording="${booked.id}"]`);
  await rec.waitFor();
  assert.match(await rec.innerText(), /Evening Jazz Trio[\s\S]*to be made when the program is over[\s\S]*price 50/);
  assert.equal(await card.getByRole('button', { name: 'Record Evening Jazz Trio' }).count(), 0, 'asked once');
  const recs = (await origin.call('GET', '/live/recordings', { token: pm.token })).body.items;
  assert.deepEqual(recs.map((r: { programId: string; price: number; status: string }) => [r.programId, r.price, r.status]), [[booked.id, 50, 'requested']]);

  // The cancel dialog says the charge stands; keep it.
  await card.getByRole('button', { name: 'Cancel booking Evening Jazz Trio' }).click();
  const dialog = mp.getByRole('dialog', { name: 'Cancel “Evening Jazz Trio”?' });
  await dialog.getByText('the charge of 120 stands').waitFor();
  await dialog.getByRole('button', { name: 'Keep it' }).click();
  await dialog.waitFor({ state: 'hidden' });

  // The calendar feed's private address.
  await mp.getByRole('button', { name: 'Calendar feed' }).click();
  assert.match(await mp.getByTestId('feed-url').innerText(), /\/live\/feeds\/[A-Za-z0-9_-]{32}\.ics$/);
  await checkPage(mp, 'live-mine');
  assert.deepEqual(mine.problems, []);
  await mine.close();
});

test('S3.11 the guide: today’s Public program in the browser’s zone, never a Secret one; the program page; no sign-in needed', async () => {
  const pm = await premiumMember('kenji', 'kenji@example.org');
  const secret = await origin.call('POST', '/live/bookings', {
    token: pm.token,
    json: { channelId, start: '2026-05-04T12:00:00Z', end: '2026-05-04T12:30:00Z', openLevel: 'secret', password: 'hush-hush', title: 'Hidden Session', genre: 'talk' },
  });
  assert.equal(secret.status, 201, JSON.stringify(secret.body));
  const secretId = secret.body.booking.id;

  const app = await openAs(null, [], '/live');
  const { page } = app;
  const today = page.getByRole('list', { name: 'Today’s programs' });
  await today.getByRole('link', { name: 'Evening Jazz Trio' }).waitFor();
  assert.match(await today.innerText(), /20:00–20:30 Evening Jazz Trio Studio A · music · Jazz from Tokyo/);
  await page.getByRole('heading', { name: 'Program guide: May 2026' }).waitFor();
  await page.getByRole('heading', { name: /4 May 2026/, level: 3 }).waitFor();
  const main = await page.locator('main').innerText();
  assert.doesNotMatch(main, /Hidden Session/);
  assert.equal(await page.getByRole('navigation').getByRole('link', { name: 'Live', exact: true }).count(), 1, 'Live is in the menu without signing in');
  await checkPage(page, 'live-guide');
  // Next month and back.
  await page.getByRole('button', { name: /June 2026/ }).click();
  await page.getByRole('heading', { name: 'Program guide: June 2026' }).waitFor();
  await page.getByText('No program this month.').waitFor();
  await page.goBack();
  await page.getByRole('heading', { name: 'Program guide: May 2026' }).waitFor();

  // The program page.
  await today.getByRole('link', { name: 'Evening Jazz Trio' }).click();
  await page.getByRole('heading', { name: 'Evening Jazz Trio', level: 1 }).waitFor();
  const facts = await page.locator('dl.program-facts').innerText();
  assert.match(facts, /4 May 2026, 20:00–20:30 \(Asia\/Tokyo\)/);
  assert.match(facts, /Studio A/);
  assert.match(facts, /Public: open to everyone/);
  assert.match(facts, /hana/);
  assert.doesNotMatch(facts, /hana@example\.org/, 'the e-mail was not disclosed');
  assert.match(facts, /confirmed/);
  await checkPage(page, 'live-program');
  // A Secret program's page is reached by its link only, and says it needs a password.
  await page.goto(`${origin.url}/#/live/${secretId}`);
  await page.getByRole('heading', { name: 'Hidden Session', level: 1 }).waitFor();
  assert.match(await page.locator('dl.program-facts').innerText(), /Secret: needs a password/);
  const guide = await origin.call('GET', '/live/guide?month=2026-05&tz=Asia/Tokyo');
  assert.doesNotMatch(JSON.stringify(guide.body), /Hidden Session/);
  assert.deepEqual(app.problems, []);
  await app.close();
});

test('S3.1 a member who is not premium sees the calendar and why they cannot book', async () => {
  const m = await origin.userWithRoles(['member'], 'yuki');
  const app = await openAs(m, ['member'], '/live/calendar');
  const { page } = app;
  await page.getByRole('heading', { name: 'Studio A' }).waitFor();
  await page.getByText('Booking is for premium members').waitFor();
  assert.equal(await page.locator('.slot-btn').count(), 0, 'no slot can be picked');
  assert.equal(await page.getByRole('navigation').getByRole('link', { name: 'My channel' }).count(), 0, 'My channel is for premium members');
  const quote = await origin.call('POST', '/live/quote', { token: m.token, json: { channelId, start: '2026-05-05T11:00:00Z', end: '2026-05-05T11:10:00Z', openLevel: 'public', title: 'x', genre: 'y' } });
  assert.equal(quote.body.error.code, 'premium_required');
  await checkPage(page, 'live-calendar-member');
  assert.deepEqual(app.problems, []);
  await app.close();
});

test('S3.5 S3.8 quoting without an e-mail address: the page says so and links to the contact details, set there', async () => {
  const pm = await premiumMember('aiko', null);
  const app = await openAs(pm, ['member', 'premium'], '/live/calendar?date=2026-05-05');
  const { page } = app;
  await page.getByRole('heading', { name: /5 May 2026/, level: 2 }).waitFor();
  await slot(page, '2026-05-05T03:00:00Z').getByRole('button').click();
  const form = page.locator('form.book-form');
  await form.getByLabel('Title').fill('Morning Talk');
  await form.getByLabel('Genre').fill('talk');
  // The quote runs every check of a booking, the e-mail address included.
  await form.getByRole('button', { name: 'Quote' }).click();
  await form.getByText('Your account has no e-mail address.').waitFor();
  assert.equal(await form.getByRole('button', { name: 'Book' }).isDisabled(), true);
  assert.deepEqual(await bookings(pm), []);
  await form.getByRole('link', { name: 'Account: contact details' }).click();
  await page.getByRole('heading', { name: 'Account', level: 1 }).waitFor();
  await page.getByLabel('E-mail address').fill('not an address');
  await page.getByRole('button', { name: 'Save contact details' }).click();
  await page.locator('#f-email-error').waitFor();
  await page.getByLabel('E-mail address').fill('aiko@example.org');
  await page.getByRole('button', { name: 'Save contact details' }).click();
  await page.getByText('Contact details saved.').waitFor();
  assert.equal((await origin.call('GET', '/auth/me', { token: pm.token })).body.email, 'aiko@example.org');
  await checkPage(page, 'account');
  assert.deepEqual(app.problems, []);
  await app.close();
});
