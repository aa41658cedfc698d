// The A/B serving figure of `npm run bench -- watermark` (#18 point 3): one real origin, two real
// home edges on loopback — one handing out marked copies (each segment the A or B variant the
// renter's codeword picks), one unmarked (EdgeOptions.marks false) — the same rented video on
// each, and every segment fetched over HTTP, alternating between the two, for the same time.

import path from 'node:path';
import type { Logger } from 'pino';
import { edgeExtensions } from '../src/edge/extensions.ts';
import { startEdge } from '../src/edge/node.ts';
import { FFMPEG } from '../test/helpers/ffmpeg.ts';
import { startTestOrigin } from '../test/helpers/origin.ts';
import { testVideo } from '../test/marks/material-video.ts';
import { readFileSync } from 'node:fs';

const ROUNDS = 6;
const ROUND_MS = 1500;
const CONCURRENCY = 4;

export async function serveRatio(opts: { dir: string; logger: Logger }): Promise<{ markedMBps: number; unmarkedMBps: number; requests: number }> {
  const o = await startTestOrigin();
  const edges: Awaited<ReturnType<typeof startEdge>>[] = [];
  try {
    const publisher = await o.userWithRoles(['publisher']);
    const operator = await o.userWithRoles(['operator']);
    const member = await o.userWithRoles(['member']);
    const clip = testVideo(opts.dir, { seconds: 60, size: '640x360' });
    const up = await o.call('POST', '/contents?title=Film&genre=film&price=100', { token: publisher.token, body: readFileSync(clip), headers: { 'content-type': 'application/octet-stream' } });
    if (up.status !== 201) throw new Error(`publish: ${JSON.stringify(up.body)}`);
    const base = { origin: o.url, originKey: o.keys.publicKeyB64, cacheBytes: 1 << 30, policy: 'manual' as const, reportMs: 3_600_000, heartbeatMs: 3_600_000, clock: o.clock, logger: opts.logger, token: operator.token, kind: 'home' as const, extensions: edgeExtensions('home', { ffmpeg: FFMPEG }) };
    const marked = await startEdge({ ...base, home: path.join(opts.dir, 'marked'), label: 'bench/marked' });
    edges.push(marked);
    const plain = await startEdge({ ...base, home: path.join(opts.dir, 'plain'), label: 'bench/plain', marks: false });
    edges.push(plain);
    const urls: Record<'marked' | 'plain', string[]> = { marked: [], plain: [] };
    for (const [name, edge] of [['marked', marked], ['plain', plain]] as const) {
      await edge.ensureContent(up.body.id);
      const r = await o.call('POST', `/edges/${edge.edgeId}/rentals`, { token: member.token, json: { contentId: up.body.id, plan: 'days', days: 1 } });
      if (r.status !== 201) throw new Error(`rent: ${JSON.stringify(r.body)}`);
      const list = await (await fetch(r.body.playUrl)).text(); // packages the video (A/B on the marked edge)
      const segBase = r.body.playUrl.replace(/index\.m3u8$/, '');
      urls[name] = list.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => segBase + l);
      const init = /URI="([^"]+)"/.exec(list)?.[1];
      if (init) urls[name].push(segBase + init);
    }
    const bytes = { marked: 0, plain: 0 };
    const ms = { marked: 0, plain: 0 };
    let requests = 0;
    for (let round = 0; round < ROUNDS * 2; round++) {
      const name = round % 2 === 0 ? 'marked' : 'plain';
      const start = performance.now();
      let i = 0;
      let n = 0;
      await Promise.all(
        Array.from({ length: CONCURRENCY }, async () => {
          while (performance.now() - start < ROUND_MS) {
            const res = await fetch(urls[name][i++ % urls[name].length]);
            if (res.status !== 200) throw new Error(`segment: ${res.status}`);
            bytes[name] += (await res.arrayBuffer()).byteLength;
            n++;
          }
        }),
      );
      ms[name] += performance.now() - start;
      if (name === 'marked') requests += n;
    }
    return { markedMBps: bytes.marked / 1e6 / (ms.marked / 1000), unmarkedMBps: bytes.plain / 1e6 / (ms.plain / 1000), requests };
  } finally {
    for (const e of edges) await e.close();
    await o.close();
  }
}
