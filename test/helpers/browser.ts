import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { ROOT } from './processes.ts';
import { waitFor } from './wait.ts';

// Debian's Chromium driven by playwright-core, for the web app's tests (#13.6). Each page
// records console errors and uncaught exceptions (a test asserts there are none), runs
// axe-core inside the page, and writes screenshots under test-results/.

export const SCREENSHOTS = path.join(ROOT, 'test-results');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

export async function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
  });
}

export interface AppPage {
  context: BrowserContext;
  page: Page;
  /** Console errors, failed requests other than the API's own 4xx answers, and uncaught exceptions, in order. */
  problems: string[];
  close(): Promise<void>;
}

/** The account session the app keeps in localStorage (web/src/session.ts). */
export interface SignedIn {
  token: string;
  userId: string;
  username: string;
  roles: string[];
}

/**
 * A new browser context (its own storage) on `url`, `width` px wide; `signedIn`: the app
 * starts with that session, as after a sign-in; `timezoneId`/`locale`: the browser's own.
 */
export async function openApp(
  browser: Browser,
  url: string,
  opts: { width?: number; height?: number; acceptDownloads?: boolean; signedIn?: SignedIn; timezoneId?: string; locale?: string } = {},
): Promise<AppPage> {
  const context = await browser.newContext({
    viewport: { width: opts.width ?? 1280, height: opts.height ?? 900 },
    acceptDownloads: opts.acceptDownloads ?? true,
    timezoneId: opts.timezoneId,
    locale: opts.locale,
  });
  if (opts.signedIn) await context.addInitScript(`localStorage.setItem('cascade.session', ${JSON.stringify(JSON.stringify(opts.signedIn))})`);
  const page = await context.newPage();
  const problems: string[] = [];
  page.on('console', (m) => {
    // A 4xx answer the app handles (shown to the user) still logs "Failed to load resource"; it is
    // the API's answer, not an app error. Everything else logged as an error is a problem.
    if (m.type() === 'error' && !/Failed to load resource: the server responded with a status of 4\d\d/.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`exception: ${e.message}`));
  await page.goto(url);
  return { context, page, problems, close: () => context.close() };
}

export interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: { target: string[] }[];
}

/** axe-core run in the page: the serious and critical violations (#13.5). */
export async function seriousViolations(page: Page): Promise<AxeViolation[]> {
  // Evaluated through the DevTools protocol, so the page's Content-Security-Policy does not block it.
  if (!(await page.evaluate('typeof window.axe === "object"'))) await page.evaluate(AXE_SOURCE);
  const result = (await page.evaluate('window.axe.run(document, { resultTypes: ["violations"] })')) as { violations: AxeViolation[] };
  return result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

/** A readable summary of violations for an assertion message. */
export function describeViolations(v: AxeViolation[]): string {
  return v.map((x) => `${x.id} (${x.impact}): ${x.help} at ${x.nodes.map((n) => n.target.join(' ')).join(', ')}`).join('\n');
}

/** Writes test-results/<name>.png (full page). */
export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(SCREENSHOTS, { recursive: true });
  const file = path.join(SCREENSHOTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/**
 * The page at 1280 and 375 px: no serious axe violation, nothing wider than the screen but the
 * scrolling table wrappers, and a screenshot of each (test-results/page-<name>[-375].png).
 */
export async function checkPage(page: Page, name: string): Promise<void> {
  for (const width of [1280, 375]) {
    await page.setViewportSize({ width, height: 900 });
    assert.equal(describeViolations(await seriousViolations(page)), '', `${name} at ${width} px`);
    const overflow = await page.evaluate(() => {
      const w = document.documentElement.clientWidth;
      const wide = [...document.querySelectorAll('main *')].filter((e) => e.getBoundingClientRect().right > w + 1 && !e.closest('.table-wrap'));
      return { by: document.documentElement.scrollWidth - w, wide: wide.slice(0, 3).map((e) => `${e.tagName}.${e.className}: ${(e.textContent ?? '').slice(0, 40)}`) };
    });
    assert.ok(overflow.by <= 0, `${name} at ${width} px scrolls sideways by ${overflow.by} px: ${overflow.wide.join('; ')}`);
    await screenshot(page, width === 1280 ? `page-${name}` : `page-${name}-375`);
  }
  await page.setViewportSize({ width: 1280, height: 900 });
}

/** The page's video element's current time (s). */
export const videoTime = (page: Page): Promise<number> => page.locator('video').evaluate((v: HTMLVideoElement) => v.currentTime);

/** The page's video plays: it has started, is not paused, and its time advances by more than a second. */
export async function videoAdvances(page: Page, what: string): Promise<void> {
  await waitFor(async () => (await videoTime(page)) > 0, `${what}: the video starts`, 20_000, 200);
  const t1 = await videoTime(page);
  await waitFor(async () => (await videoTime(page)) > t1 + 1, `${what}: the video's time advances`, 20_000, 200);
  assert.equal(await page.locator('video').evaluate((v: HTMLVideoElement) => v.paused), false, `${what}: playing`);
}
