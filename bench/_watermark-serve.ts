// The A/B serving figure of `npm run bench -- watermark` (#18 point 3): one real origin and one
// real home edge on loopback holding a video packaged in A/B variants; two rentals of it — one
// whose ticket carries the origin's mark payload (each segment the variant its codeword picks),
// one whose ticket carries none (variant a throughout: the unmarked baseline, same files, same
// sizes) — and every segment fetched over HTTP, alternating between the two, for the same time.

import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { decodeToken } from '../src/core/signed-token.ts';
import { edgeExtensions } from '../src/edge/extensions.ts';
import { startEdge } from '../src/edge/node.ts';
import { RENTAL_TICKET_TYP, signRentalTicket, type RentalTicket } from '../src/edge/rental-ticket.ts';
import { FFMPEG } from '../test/helpers/ffmpeg.ts';
import { startTestOrigin } from '../test/helpers/origin.ts';
import { testVideo } from '../test/marks/material-video.ts';

const PAIRS = 24;
const ROUND_MS = 400;
const CONCURRENCY = 4;

export async function serveRatio(opts: { dir: string; logger: Logger }): Promise<{ ratio: number; markedMBps: number; unmarkedMBps: number; markedPerS: number; unmarkedPerS: number; requests: number }> {
  const o = await startTestOrigin();
  let edge: Awaited<ReturnType<typeof startEdge>> | null = null;
  try {
    const publisher = await o.userWithRoles(['publisher']);
    const operator = await o.userWithRoles(['operator']);
    const member = await o.userWithRoles(['member']);
    mkdirSync(opts.dir, { recursive: true });
    const clip = testVideo(opts.dir, { seconds: 60, size: '640x360' });
    const up = await o.call('POST', '/contents?title=Film&genre=film&price=100', { token: publisher.token, body: readFileSync(clip), headers: { 'content-type': 'application/octet-stream' } });
    if (up.status !== 201) throw new Error(`publish: ${JSON.stringify(up.body)}`);
    edge = await startEdge({ origin: o.url, originKey: o.keys.publicKeyB64, cacheBytes: 1 << 30, policy: 'manual', reportMs: 3_600_000, heartbeatMs: 3_600_000, clock: o.clock, logger: opts.logger, token: operator.token, kind: 'home', label: 'bench/home', home: path.join(opts.dir, 'home'), ffmpeg: FFMPEG, extensions: edgeExtensions('home', { ffmpeg: FFMPEG }) });
    await edge.ensureContent(up.body.id);
    const r = await o.call('POST', `/edges/${edge.edgeId}/rentals`, { token: member.token, json: { contentId: up.body.id, plan: 'days', days: 1 } });
    if (r.status !== 201) throw new Error(`rent: ${JSON.stringify(r.body)}`);
    // The baseline: the same rental's terms under another ID, without the mark payload.
    const real = decodeToken<RentalTicket>(r.body.ticket, o.keys.publicKey, RENTAL_TICKET_TYP);
    if (!real.ok) throw new Error('the rental ticket does not verify');
    const { typ: _typ, wm: _wm, ...terms } = real.payload;
    const plainTicket = signRentalTicket({ ...terms, rentalId: `${terms.rentalId}-plain`, deliveryId: `${terms.deliveryId}-plain` }, o.keys.privateKey);
    const urls: Record<'marked' | 'plain', string[]> = { marked: [], plain: [] };
    for (const [name, ticket] of [['marked', r.body.ticket], ['plain', plainTicket]] as const) {
      const base = `${edge.url}/play/${ticket}/`;
      const list = await (await fetch(base + 'index.m3u8')).text(); // packages the video in A/B once
      urls[name] = list.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => base + l);
    }
    // Short rounds, alternating in ABBA order after a warm-up of each (not counted): the machine's
    // load drifts, so each marked round is compared with the unmarked round next to it and the
    // median of those ratios is the figure.
    const round = async (name: 'marked' | 'plain') => {
      const start = performance.now();
      let i = 0;
      let n = 0;
      let got = 0;
      await Promise.all(
        Array.from({ length: CONCURRENCY }, async () => {
          while (performance.now() - start < ROUND_MS) {
            const res = await fetch(urls[name][i++ % urls[name].length]);
            if (res.status !== 200) throw new Error(`segment: ${res.status} ${await res.text()}`);
            got += (await res.arrayBuffer()).byteLength;
            n++;
          }
        }),
      );
      const seconds = (performance.now() - start) / 1000;
      return { perS: n / seconds, MBps: got / 1e6 / seconds, n };
    };
    await round('marked');
    await round('plain');
    const ratios: number[] = [];
    const totals = { marked: { MBps: 0, perS: 0 }, plain: { MBps: 0, perS: 0 } };
    let requests = 0;
    for (let pair = 0; pair < PAIRS; pair++) {
      const order = pair % 2 === 0 ? (['marked', 'plain'] as const) : (['plain', 'marked'] as const);
      const r: Record<string, { perS: number; MBps: number; n: number }> = {};
      for (const name of order) r[name] = await round(name);
      ratios.push(r.marked.perS / r.plain.perS);
      for (const name of ['marked', 'plain'] as const) {
        totals[name].MBps += r[name].MBps / PAIRS;
        totals[name].perS += r[name].perS / PAIRS;
      }
      requests += r.marked.n;
    }
    ratios.sort((x, y) => x - y);
    const median = (ratios[(PAIRS - 1) >> 1] + ratios[PAIRS >> 1]) / 2;
    return { ratio: median, markedMBps: totals.marked.MBps, unmarkedMBps: totals.plain.MBps, markedPerS: totals.marked.perS, unmarkedPerS: totals.plain.perS, requests };
  } finally {
    await edge?.close();
    await o.close();
  }
}
