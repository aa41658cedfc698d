import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Browser, Page, Response } from 'playwright-core';
import { checkPage, launchBrowser, openApp, screenshot, videoAdvances, type AppPage } from '../helpers/browser.ts';
import { testEngines } from '../helpers/db.ts';
import { broadcast, requireFfmpeg, type Broadcast } from '../helpers/ffmpeg.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';
import { waitFor } from '../helpers/wait.ts';

// #15 pages in headless Chromium (docs/live.md "Watching", "Broadcasting"; docs/web.md "Live"):
// Debian's ffmpeg broadcasts into a confirmed Public booking on a channel of capacity 1; a member
// presses Watch on the program page and hls.js plays it (the video's time advances, no fatal
// error); when the session ends under the player the page joins again by itself; a second
// member is told the channel is full, and gets in once the first leaves the page; the
// broadcaster's live dashboard shows the channel, a bitrate and the viewers from the origin's
// server-sent events. The origin's clock is a ManualClock months away from the browser's,
// moved a second a second while the pages run: every figure must come from it.

requireFfmpeg();

const M = 60_000;
const T0 = Date.UTC(2026, 5, 15, 8, 3);
const START = Date.UTC(2026, 5, 15, 9, 0);
const LIMIT = { timeout: 90_000 };

let o: TestOrigin;
let browser: Browser;
let live: Broadcast | null = null;
let ticking: NodeJS.Timeout | null = null;
let program: string;
let quietProgram: string;
let caster: User;

type User = { token: string; userId: string; username: string };

before(async () => {
  o = await startTestOrigin({ engine: testEngines()[0], now: T0, config: { signupCredit: 0 } });
  browser = await launchBrowser();
  const op = (await o.userWithRoles(['operator'])).token;
  const ch = await o.call('POST', '/live/channels', { token: op, json: { name: 'Stage', capacity: 1, bitrateKbps: 600, tariffPerSlot: 0 } });
  assert.equal(ch.status, 201, JSON.stringify(ch.body));
  caster = await o.userWithRoles(['member', 'premium'], 'carla');
  await o.call('PUT', '/me/contact', { token: caster.token, json: { email: 'carla@example.org' } });
  const b = await o.call('POST', '/live/bookings', {
    token: caster.token,
    json: { channelId: ch.body.id, start: new Date(START).toISOString(), end: new Date(START + 30 * M).toISOString(), openLevel: 'public', title: 'Morning Show', genre: 'talk' },
  });
  assert.equal(b.status, 201, JSON.stringify(b.body));
  program = b.body.booking.id;
  assert.equal((await o.call('POST', '/live/reconfirm', { token: caster.token, json: { reservationId: b.body.reservationId } })).status, 200);
  // A Password program at the same time on another channel, reconfirmed, that nobody broadcasts.
  const studio = await o.call('POST', '/live/channels', { token: op, json: { name: 'Studio', capacity: 5, bitrateKbps: 600, tariffPerSlot: 0 } });
  const quiet = await o.call('POST', '/live/bookings', {
    token: caster.token,
    json: { channelId: studio.body.id, start: new Date(START).toISOString(), end: new Date(START + 10 * M).toISOString(), openLevel: 'password', password: 'open sesame', title: 'Quiet Hour', genre: 'talk' },
  });
  assert.equal(quiet.status, 201, JSON.stringify(quiet.body));
  quietProgram = quiet.body.booking.id;
  assert.equal((await o.call('POST', '/live/reconfirm', { token: caster.token, json: { reservationId: quiet.body.reservationId } })).status, 200);
  o.clock.set(START - 4 * M); // the connectable window opened a minute ago
  live = broadcast(`rtmp://127.0.0.1:${o.live.streams.rtmp.address()!.port}/live/${b.body.reservationId}`, { seconds: 80 });
  await waitFor(async () => (await o.call('GET', `/live/programs/${program}/manifest`)).body.entries?.length >= 4, 'four entries in the live manifest', 30_000, 100);
  // The origin's clock runs from here, a second a second (the status events are a second of it apart).
  ticking = setInterval(() => o.clock.advance(1000), 1000);
});
after(async () => {
  if (ticking) clearInterval(ticking);
  await live?.stop();
  await browser?.close();
  await o?.close();
});

function openAs(user: User, roles: string[], route: string): Promise<AppPage> {
  return openApp(browser, `${o.url}/#${route}`, { timezoneId: 'UTC', locale: 'en-GB', signedIn: { ...user, roles } });
}

/** The video plays (its time advances by more than a second); a screenshot. */
async function advances(page: Page, what: string) {
  await videoAdvances(page, what);
  await screenshot(page, `page-live-watching-${what.replace(/\W+/g, '-')}`);
}
/** The join answers (POST …/viewers) the page received: status and body. */
function joins(page: Page): { status: number; body: any }[] {
  const seen: { status: number; body: any }[] = [];
  page.on('response', async (r: Response) => {
    if (r.request().method() === 'POST' && r.url().endsWith(`/live/programs/${program}/viewers`)) seen.push({ status: r.status(), body: await r.json().catch(() => null) });
  });
  return seen;
}

test('S3.11 S3.12 S3.10 a member watches with hls.js, joins again when the session ends; a second is told the channel is full; the broadcaster sees the viewer, channel and bitrate', LIMIT, async () => {
  const vera = await o.userWithRoles(['member'], 'vera');
  const viewer = await openAs(vera, ['member'], `/live/${program}`);
  const vp = viewer.page;
  const veraJoins = joins(vp);
  await vp.getByRole('heading', { name: 'Morning Show', level: 1 }).waitFor();
  const watch = vp.getByRole('region', { name: 'Watch' });
  await watch.getByRole('button', { name: 'Watch', exact: true }).click();
  await watch.getByRole('status').getByText('Playing live.').waitFor({ timeout: 20_000 });
  await advances(vp, 'the first session');
  await watch.getByTestId('audience').getByText(/1 watching now of 1/).waitFor();
  assert.deepEqual(veraJoins.map((j) => j.status), [201]);

  // The session ends under the player (as when it idles out): the page joins again by itself.
  const first = veraJoins[0].body.session as string;
  assert.equal((await o.call('POST', `/live/programs/${program}/leave?s=${encodeURIComponent(first)}`)).status, 204);
  await waitFor(() => veraJoins.length === 2, 'the page joins again', 15_000, 100);
  assert.equal(veraJoins[1].status, 201, JSON.stringify(veraJoins[1].body));
  await advances(vp, 'the second session');
  await checkPage(vp, 'live-watch');

  // A second member: the channel is full, said with its figures.
  const walt = await o.userWithRoles(['member'], 'walt');
  const second = await openAs(walt, ['member'], `/live/${program}`);
  const sp = second.page;
  const waltJoins = joins(sp);
  const watch2 = sp.getByRole('region', { name: 'Watch' });
  await watch2.getByRole('button', { name: 'Watch', exact: true }).click();
  await watch2.getByRole('alert').getByText('This channel is full (1 of 1 watching) — try again in a little while.').waitFor({ timeout: 10_000 });
  assert.deepEqual(waltJoins.map((j) => [j.status, j.body?.error?.code]), [[503, 'channel_full']]);
  assert.equal(await sp.locator('video').isVisible(), false);
  await screenshot(sp, 'page-live-full');

  // The broadcaster's dashboard, from My channel: the origin's figures as events arrive.
  const board = await openAs(caster, ['member', 'premium'], '/live/mine');
  const bp = board.page;
  await bp.getByRole('link', { name: 'Live dashboard of Morning Show' }).click();
  await bp.getByRole('heading', { name: 'Live dashboard: Morning Show', level: 1 }).waitFor();
  await bp.getByTestId('viewers').getByText(/^1 now of 1 · peak 1 · total 1$/).waitFor();
  assert.match(await bp.getByTestId('channel').innerText(), /^Stage \(capacity 1 viewers, 600 kbit\/s\)$/);
  await bp.locator('.on-air-line').getByText(/on air since \d\d:\d\d:\d\d \(take 1\)/).waitFor();
  await waitFor(async () => Number(/^(\d+) kbit\/s received; the channel carries 600 kbit\/s$/.exec(await bp.getByTestId('bitrate').innerText())?.[1] ?? 0) > 0, 'a bitrate received', 10_000, 200);
  await screenshot(bp, 'page-live-dashboard');
  // The origin's clock, not the browser's: 15 June, the browser being months ahead of it.
  assert.match(await bp.getByTestId('origin-clock').innerText(), /^Mon,? 15 Jun 2026, 08:5\d:\d\d$/);
  assert.ok(Date.now() - o.clock.now() > 86_400_000, 'the browser’s clock is days ahead of the origin’s');
  assert.match(await bp.getByTestId('clock-offset').innerText(), /^Your clock is \d+ d \d+ h ahead of the origin’s\./);
  assert.match(await bp.getByTestId('time').innerText(), /^starts in 0:0\d:\d\d · slot ends 09:30:00 \(in 0:3\d:\d\d\) · connection cut at 09:33:00$/);
  // A second of the origin's clock later, the figures follow it.
  const before = await bp.getByTestId('origin-clock').innerText();
  await waitFor(async () => (await bp.getByTestId('origin-clock').innerText()) !== before, 'the next status event', 5_000, 100);
  await checkPage(bp, 'live-broadcast');

  // The first viewer leaves the page: the place is free at once, and the second gets in.
  // (Within seconds: not by idling out, which takes 15 s of the origin's clock.)
  await vp.goto(`${o.url}/#/live`);
  await bp.getByTestId('viewers').getByText(/^0 now of 1 · peak 1 · total 1$/).waitFor({ timeout: 5_000 });
  await watch2.getByRole('button', { name: 'Watch', exact: true }).click();
  await watch2.getByRole('status').getByText('Playing live.').waitFor({ timeout: 20_000 });
  await bp.getByTestId('viewers').getByText(/^1 now of 1 · peak 1 · total 2$/).waitFor();

  assert.deepEqual(viewer.problems, []);
  // The only console error of the second page is the browser's note of the refusal the page showed.
  assert.deepEqual(second.problems, ['console: Failed to load resource: the server responded with a status of 503 (Service Unavailable)']);
  assert.deepEqual(board.problems, []);
  await Promise.all([viewer.close(), second.close(), board.close()]);
});

test('S3.11 a Password program asks for its password; one not on air says when it starts, in the viewer’s time; signed out, the page says to sign in', LIMIT, async () => {
  const nina = await o.userWithRoles(['member'], 'nina');
  const app = await openAs(nina, ['member'], `/live/${quietProgram}`);
  const { page } = app;
  const watch = page.getByRole('region', { name: 'Watch' });
  await watch.getByTestId('audience').getByText(/not on air 0 watching now of 5/).waitFor();
  await watch.getByLabel('Program password').fill('open sesame');
  await watch.getByRole('button', { name: 'Watch', exact: true }).click();
  const refused = await o.call('POST', `/live/programs/${quietProgram}/viewers`, { token: nina.token, json: { password: 'open sesame' } });
  assert.equal(refused.body.error.code, 'not_live');
  await watch.getByRole('alert').getByText('The program is not on air: it starts at Mon, 15 Jun 2026, 09:00 (your time). Try again then.').waitFor({ timeout: 10_000 });
  assert.equal(await page.locator('video').isVisible(), false);
  assert.deepEqual(app.problems, []);
  await app.close();

  const anon = await openApp(browser, `${o.url}/#/live/${program}`, { timezoneId: 'UTC', locale: 'en-GB' });
  const w = anon.page.getByRole('region', { name: 'Watch' });
  await w.getByRole('link', { name: 'Sign in' }).waitFor();
  assert.equal(await w.getByRole('button', { name: 'Watch', exact: true }).count(), 0);
  assert.equal(await w.getByRole('link', { name: 'Sign in' }).getAttribute('href'), `#/signin?next=${encodeURIComponent(`/live/${program}`)}`);
  assert.deepEqual(anon.problems, []);
  await anon.close();
});
