import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Browser, Page } from 'playwright-core';
import { checkPage, launchBrowser, openApp, screenshot, videoAdvances, type AppPage } from '../helpers/browser.ts';
import { testEngines } from '../helpers/db.ts';
import { broadcast, requireFfmpeg, type Broadcast } from '../helpers/ffmpeg.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';
import { waitFor } from '../helpers/wait.ts';

// #16 point 5 in headless Chromium (docs/web.md "Live"; docs/live.md "Filler and the channel's
// URL"): the operator sets a slate filler; the channel page plays it before the program's start
// (hls.js, the video's time advances, "Filler"), switches by itself to the program when the
// origin's clock reaches the start (joins, "Live: …"), and back to the filler by itself once the
// slot (extended from the broadcaster's page) is over, while ffmpeg still sends; the program
// page's Watch panel shows the filler in the program's place. The origin's clock is a
// ManualClock months away from the browser's, moved a second a second: the page must follow it.

requireFfmpeg();

const M = 60_000;
const T0 = Date.UTC(2026, 5, 15, 8, 3);
const START = Date.UTC(2026, 5, 15, 9, 0);
const LIMIT = { timeout: 240_000 };

let o: TestOrigin;
let browser: Browser;
let live: Broadcast | null = null;
let ticking: NodeJS.Timeout | null = null;
let channelId: string;
let program: string;
let reservationId: string;
let caster: User;

type User = { token: string; userId: string; username: string };

before(async () => {
  // Viewers idle out only after an hour: the clock jumps minutes, and the slot's end must be what ends the program.
  o = await startTestOrigin({ engine: testEngines()[0], now: T0, config: { signupCredit: 0, liveViewerIdleSeconds: 3600 } });
  browser = await launchBrowser();
  const op = (await o.userWithRoles(['operator'])).token;
  const ch = await o.call('POST', '/live/channels', { token: op, json: { name: 'Town TV', capacity: 5, bitrateKbps: 600, tariffPerSlot: 200 } });
  assert.equal(ch.status, 201, JSON.stringify(ch.body));
  channelId = ch.body.id;
  const slate = await o.call('PUT', `/live/channels/${channelId}/filler`, { token: op, json: { slate: 'Town TV — back soon' } });
  assert.equal(slate.status, 200, JSON.stringify(slate.body));
  assert.equal(slate.body.kind, 'slate');
  caster = await o.userWithRoles(['member', 'premium'], 'carla');
  await o.call('PUT', '/me/contact', { token: caster.token, json: { email: 'carla@example.org' } });
  await o.fund(caster.userId, 1000, 'fund-carla');
  // One slot (10 minutes): its last ten minutes, when the extension is offered, start with it.
  const b = await o.call('POST', '/live/bookings', {
    token: caster.token,
    json: { channelId, start: new Date(START).toISOString(), end: new Date(START + 10 * M).toISOString(), openLevel: 'public', title: 'Morning show', genre: 'talk' },
  });
  assert.equal(b.status, 201, JSON.stringify(b.body));
  program = b.body.booking.id;
  reservationId = b.body.reservationId;
  assert.equal((await o.call('POST', '/live/reconfirm', { token: caster.token, json: { reservationId } })).status, 200);
  o.clock.set(START - 3 * M);
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

/** The video plays on from where it is: its time advances by more than a second. */
const advances = (page: Page, what: string) => videoAdvances(page, what);

/** The media the page fetched, in order: 'filler' or 'program' per segment (not playlists). */
function media(page: Page): string[] {
  const seen: string[] = [];
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (u.pathname.startsWith(`/live/channels/${channelId}/filler/`) && u.pathname.endsWith('.m4s')) seen.push('filler');
    else if (u.pathname.startsWith(`/live/programs/${program}/segments/`) && u.pathname.endsWith('.m4s')) seen.push('program');
  });
  return seen;
}
/** The program's POSTs from the page: 'join' and 'leave'. */
function posts(page: Page): string[] {
  const seen: string[] = [];
  page.on('request', (r) => {
    if (r.method() !== 'POST') return;
    const u = new URL(r.url());
    if (u.pathname === `/live/programs/${program}/viewers`) seen.push('join');
    if (u.pathname === `/live/programs/${program}/leave`) seen.push('leave');
  });
  return seen;
}
/** New entries of `list` after `from` satisfy: at least `n` of kind `kind`. */
const fetchedSince = (list: string[], from: number, kind: string, n = 2) => list.slice(from).filter((k) => k === kind).length >= n;

test('S3.13 S3.14 the channel page plays the filler, switches to the program at its start and back after its (extended) end, by the origin’s clock; the broadcaster extends from the live dashboard', LIMIT, async () => {
  // Before the start: the filler, and the next program said.
  const vera = await o.userWithRoles(['member'], 'vera');
  const viewer = await openAs(vera, ['member'], `/channels/${channelId}`);
  const vp = viewer.page;
  const got = media(vp);
  const sent = posts(vp);
  await vp.getByRole('heading', { name: 'Town TV', level: 1 }).waitFor();
  await vp.getByTestId('playing').getByText(/^filler Filler$/).waitFor({ timeout: 10_000 });
  await vp.getByTestId('now-line').getByText('Now: filler — next: Morning show at 09:00', { exact: true }).waitFor();
  await vp.getByTestId('guide-line').getByText(/09:00–09:10 Morning show/).waitFor();
  await advances(vp, 'filler before the start');
  assert.ok(fetchedSince(got, 0, 'filler'), `filler segments fetched: ${got.join(',')}`);
  await checkPage(vp, 'channel-filler');

  // ffmpeg connects three minutes before the start: the channel still carries the filler.
  live = broadcast(`rtmp://127.0.0.1:${o.live.streams.rtmp.address()!.port}/live/${reservationId}`, { seconds: 200 });
  await waitFor(async () => (await o.call('GET', `/live/programs/${program}/manifest`)).body.entries?.length >= 4, 'four entries in the live manifest', 30_000, 100);
  await new Promise((r) => setTimeout(r, 3000)); // a poll or two of the page
  assert.match(await vp.getByTestId('playing').innerText(), /Filler$/);
  assert.equal(sent.length, 0, 'nothing joined before the start');
  assert.ok(!got.includes('program'));

  // The origin's clock reaches the start: the page joins and plays the program by itself.
  o.clock.set(START);
  await vp.getByTestId('playing').getByText(/^live Live: Morning show$/).waitFor({ timeout: 15_000 });
  assert.deepEqual([...sent], ['join']);
  const atSwitch = got.length;
  await waitFor(() => fetchedSince(got, atSwitch, 'program'), 'program segments fetched', 20_000, 200);
  await advances(vp, 'the program');
  await vp.getByTestId('now-line').getByText('Now: Morning show, until 09:10 — no program in the next 24 hours', { exact: true }).waitFor();
  await screenshot(vp, 'page-channel-live');

  // A second member watches on the program page.
  const walt = await o.userWithRoles(['member'], 'walt');
  const watcher = await openAs(walt, ['member'], `/live/${program}`);
  const wp = watcher.page;
  const watch = wp.getByRole('region', { name: 'Watch' });
  await watch.getByRole('button', { name: 'Watch', exact: true }).click();
  await watch.getByRole('status').getByText('Playing live.').waitFor({ timeout: 20_000 });
  const watched = media(wp);
  await advances(wp, 'the program page');

  // The broadcaster's dashboard: distribution on, the extension offered; Extend buys the next slot.
  const board = await openAs(caster, ['member', 'premium'], `/live/${program}/broadcast`);
  const bp = board.page;
  await bp.getByRole('heading', { name: 'Live dashboard: Morning show', level: 1 }).waitFor();
  await bp.getByTestId('distribution').getByText('On: viewers receive what you send until the slot ends at 09:10:00.', { exact: true }).waitFor();
  await bp.getByTestId('extension').getByText(/^The next slot is free: extend to 09:20 UTC for 200/).waitFor();
  await screenshot(bp, 'page-live-dashboard-extension');
  await bp.getByRole('button', { name: 'Extend to 09:20 (charge 200)' }).click();
  await bp.getByTestId('extension-result').getByText('Extended: the slot now ends at 09:20; charged 200.', { exact: true }).waitFor({ timeout: 10_000 });
  await bp.getByTestId('time').getByText(/slot ends 09:20:00 .* connection cut at 09:23:00$/).waitFor({ timeout: 5_000 });
  await bp.getByTestId('distribution').getByText('On: viewers receive what you send until the slot ends at 09:20:00.', { exact: true }).waitFor();
  const booking = (await o.call('GET', `/live/bookings/${program}`, { token: caster.token })).body;
  assert.equal(booking.end, new Date(START + 20 * M).toISOString());
  assert.equal(booking.charge, 400, 'the slot booked and the one added');
  await checkPage(bp, 'live-dashboard-extended');
  await vp.getByTestId('now-line').getByText(/^Now: Morning show, until 09:20/).waitFor({ timeout: 10_000 });

  // Past the old end the program goes on; past the new end the page goes back to the filler by itself.
  o.clock.set(START + 11 * M);
  await new Promise((r) => setTimeout(r, 3000));
  assert.match(await vp.getByTestId('playing').innerText(), /Live: Morning show$/);
  o.clock.set(START + 20 * M);
  await vp.getByTestId('playing').getByText(/^filler Filler$/).waitFor({ timeout: 15_000 });
  await vp.getByRole('alert').getByText('“Morning show” has ended; the filler is on.', { exact: true }).waitFor();
  await waitFor(() => sent.includes('leave'), 'the page leaves the program', 5_000, 100);
  assert.deepEqual([...sent], ['join', 'leave']);
  const back = got.length;
  await waitFor(() => fetchedSince(got, back, 'filler'), 'filler segments fetched again', 20_000, 200);
  await advances(vp, 'filler after the end');
  assert.equal(live.proc.exitCode, null, 'ffmpeg is still sending');
  await screenshot(vp, 'page-channel-back-to-filler');

  // The program page: the filler in the program's place, said.
  await watch.getByRole('status').getByText('The program has ended; Town TV’s filler is on.').waitFor({ timeout: 15_000 });
  const after = watched.length;
  await waitFor(() => fetchedSince(watched, after, 'filler'), 'the program page fetches the filler', 20_000, 200);
  await advances(wp, 'filler on the program page');
  await screenshot(wp, 'page-live-program-filler');

  // The dashboard: stopped at the slot end, still connected.
  await bp.getByTestId('distribution').getByText('Stopped at the slot end (09:20:00): what you still send reaches no one; viewers see the filler. The connection is cut at 09:23:00.', { exact: true }).waitFor({ timeout: 5_000 });
  await bp.locator('.on-air-line').getByText(/on air since/).waitFor();
  await bp.getByTestId('extension').getByText('The slot has ended; extensions are offered only before the end.', { exact: true }).waitFor();
  assert.equal(await bp.getByRole('button', { name: /^Extend to/ }).count(), 0);
  await screenshot(bp, 'page-live-dashboard-stopped');
  assert.equal(live.proc.exitCode, null, 'ffmpeg is still sending');

  assert.deepEqual(viewer.problems, []);
  assert.deepEqual(watcher.problems, []);
  assert.deepEqual(board.problems, []);
  await Promise.all([viewer.close(), watcher.close(), board.close()]);
});

test('S3.14 signed out, the channel page plays the filler (public, no session)', LIMIT, async () => {
  const anon = await openApp(browser, `${o.url}/#/channels/${channelId}`, { timezoneId: 'UTC', locale: 'en-GB' });
  const { page } = anon;
  await page.getByTestId('playing').getByText(/^filler Filler$/).waitFor({ timeout: 10_000 });
  await advances(page, 'filler signed out');
  assert.deepEqual(anon.problems, []);
  await anon.close();
});
