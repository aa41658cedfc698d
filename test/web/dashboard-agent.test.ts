import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Browser } from 'playwright-core';
import type { Agent } from '../../src/agent/agent.ts';
import { formatBytes } from '../../src/core/units.ts';
import { startTestAgent } from '../helpers/agents.ts';
import { waitFor } from '../helpers/wait.ts';
import { describeViolations, launchBrowser, openApp, screenshot, seriousViolations } from '../helpers/browser.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';

// #13.6: the operator's dashboard shows a running agent transfer (receiver, source, progress)
// as it happens, refreshing itself, and the origin's egress on its chart once the bytes are
// receipted. The origin's upload cap runs on its ManualClock, so the agent's transfer stays
// under way until the test moves the clock (a few seconds: proofs stay within ±120 s).

const PIECE = 64 * 1024;
let origin: TestOrigin;
let browser: Browser;
let agent: Agent;
let work: string;

before(async () => {
  origin = await startTestOrigin({ config: { pieceSize: PIECE, originUpRate: PIECE } });
  browser = await launchBrowser();
  work = mkdtempSync(path.join(os.tmpdir(), 'cascade-dash-'));
});
after(async () => {
  await agent?.close().catch(() => {});
  await browser?.close();
  await origin?.close();
  rmSync(work, { recursive: true, force: true });
});

test('the dashboard shows an agent’s transfer while it runs, then the origin’s egress', async () => {
  const file = randomBytes(8 * PIECE);
  const publisher = await origin.userWithRoles(['publisher']);
  const pub = await origin.call('POST', '/contents?title=Night%20Ferry&genre=drama&price=100', { token: publisher.token, body: file, headers: { 'content-type': 'application/octet-stream' } });
  assert.equal(pub.status, 201);
  const contentId = pub.body.id;

  // Patient stall limits: the transfer is held by the origin's cap, which is the point here.
  agent = await startTestAgent(origin, work, 'kiosk-7', { downloads: { stallMs: 600_000, refreshMs: 200 } });
  await agent.heartbeat();
  const fetching = agent.fetch(contentId);

  const op = await origin.userWithRoles(['operator'], 'dora');
  const app = await openApp(browser, `${origin.url}/#/signin`);
  const { page } = app;
  await page.getByLabel('Username').fill(op.username);
  await page.getByLabel('Password').fill('correct horse battery');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('link', { name: 'Dashboard' }).click();

  // The running transfer appears by itself (the page refreshes every few seconds).
  const row = page.getByRole('row').filter({ hasText: 'Night Ferry' }).filter({ hasText: 'kiosk-7' });
  await row.waitFor({ timeout: 20_000 });
  assert.match(await row.innerText(), /origin/);
  assert.match(await row.innerText(), /of 8 pieces/);
  assert.equal(describeViolations(await seriousViolations(page)), '');
  await screenshot(page, 'dashboard-running-transfer');

  // Let the origin's cap release the rest: the agent finishes, the receipts are stored.
  let done = false;
  fetching.then(() => (done = true), () => (done = true));
  // A second of the origin's clock at a time (a piece's worth of its cap), until the agent is done.
  await waitFor(() => { if (!done) origin.clock.advance(1000); return done; }, 'the agent to finish under the origin cap', 30_000, 50);
  const result = await fetching;
  assert.equal(result.fetchedPieces, 8);
  // Once the receipts are in, the chart's summary (its accessible name) counts the bytes.
  await page.getByRole('img', { name: new RegExp(`${formatBytes(file.length).replace('.', '\\.')} in all`) }).waitFor({ timeout: 20_000 });
  await row.waitFor({ state: 'detached', timeout: 20_000 });
  await screenshot(page, 'dashboard-after-transfer');
  assert.deepEqual(app.problems, []);
  await app.close();
});
