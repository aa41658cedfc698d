import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import pino from 'pino';
import { generateKeyPair, sha256Hex } from '../../src/core/crypto.ts';
import type { DeliveryHook, DeliveryMark } from '../../src/edge/delivery-hook.ts';
import { edgeExtensions } from '../../src/edge/extensions.ts';
import { HomeServer as HomeServerClass, homeExtension, type HomeExtensionLike, type HomeServer } from '../../src/edge/home/extension.ts';
import { DAY_MS, VIEWING_WINDOW_MS, rentalReport, type RentalTerms } from '../../src/edge/home/rental-rules.ts';
import { VodPackager } from '../../src/edge/home/vod-packager.ts';
import { startEdge, type EdgeContext, type EdgeNode } from '../../src/edge/node.ts';
import { signRentalTicket, type RentalTicket } from '../../src/edge/rental-ticket.ts';
import type { RentalService } from '../../src/edge/rentals.ts';
import { walletAccount } from '../../src/ledger/accounts.ts';
import { PLATFORM_PROMOTIONS } from '../../src/ledger/wallets.ts';
import { launchBrowser } from '../helpers/browser.ts';
import { FFMPEG, requireFfmpeg } from '../helpers/ffmpeg.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';
import { waitFor } from '../helpers/wait.ts';

// S2.5 (docs/edge.md "Home server"), end to end on loopback: a real origin (database, accounts,
// contents, edge registry, ManualClock) and a real home edge (startEdge with the home extension,
// as `cascade edge --kind home` runs it) that gets its contents over the piece protocol. The
// origin serves the rental routes itself and bills them with its DeliveryService (S2.4): wallets
// held or charged at open, viewing time billed once by the edge's journaled final report. A 60 s
// video made by ffmpeg; real ffmpeg packaging; HTTP Range; ticket refusals; expiry by moving the
// clock, a restart of the home edge in the middle; hls.js in Chromium seeking to the middle.

requireFfmpeg();

const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
// The origin's clock starts at the real time: the edge's piece transfers check grants against real time.
const T0 = Math.floor(Date.now() / 1000) * 1000;
const work = mkdtempSync(path.join(os.tmpdir(), 'cascade-home-'));

let o: TestOrigin;
let node: EdgeNode; // the home edge
let shop: EdgeNode; // a delivery edge
let EDGE = '';
let edgeUrl = '';
let home: HomeServer;
let member: { token: string; userId: string };
let publisher: { token: string; userId: string };
let videoId = '';
let textId = '';
let videoBytes: Buffer;
const dropped: string[] = [];
const marks: { mark: DeliveryMark; name: string }[] = [];
let syncFails = false;
let edgeCtx: EdgeContext;
let rentals: RentalService;
let operator: { token: string; userId: string };
let withHome: (ctx: EdgeContext) => HomeExtensionLike[];

// The delivery hook (S2.3 seam): records the marks of what the home edge serves.
const hook: DeliveryHook = {
  transform(mark, part, bytes) {
    if (marks.length < 10_000 && !part.name.startsWith('piece-')) marks.push({ mark, name: part.name });
    return bytes;
  },
  async fileFor(mark, source) {
    marks.push({ mark, name: 'file' });
    return { path: source, carrier: null, note: 'recorded by the test' };
  },
  release: async () => {},
};

const wallet = async (userId: string) => o.ledger.balance(walletAccount(userId).id);
/** The ledger transfers of a delivery (named after it). */
const transfersOf = (deliveryId: string) =>
  o.db.db.selectFrom('ledger_transfers').select(['id', 'kind', 'amount', 'debit_account_id', 'reason']).where('id', 'like', `${deliveryId}:%`).orderBy('seq').execute();
/** What the member's wallet paid (posted) for a delivery. */
const paid = async (deliveryId: string, userId: string) =>
  (await transfersOf(deliveryId)).filter((t) => t.kind === 'normal' && t.debit_account_id === walletAccount(userId).id).reduce((a, t) => a + Number(t.amount), 0);
const tableCounts = async () => {
  const n = async (t: 'edge_rentals' | 'edge_deliveries' | 'ledger_transfers') => Number((await o.db.db.selectFrom(t).select((e) => e.fn.countAll().as('n')).executeTakeFirstOrThrow()).n);
  return { rentals: await n('edge_rentals'), deliveries: await n('edge_deliveries'), transfers: await n('ledger_transfers') };
};
const operatorList = async () => {
  const r = await o.call('GET', `/edges/${EDGE}/deliveries?limit=1000`, { token: operator.token });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body as { deliveries: any[]; counts: { opened: number; open: number; billed: number; billedFees: number } };
};

async function publish(title: string, file: string, price: number): Promise<string> {
  const res = await o.call('POST', `/contents?title=${title}&genre=film&price=${price}`, { token: publisher.token, body: readFileSync(file), headers: { 'content-type': 'application/octet-stream' } });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return res.body.id;
}

const edgeOptions = (name: string) => ({
  origin: o.url,
  originKey: o.keys.publicKeyB64,
  home: path.join(work, name),
  cacheBytes: 200 * 1024 * 1024,
  policy: 'manual' as const,
  reportMs: 3_600_000, // reports when the test says (node.report())
  heartbeatMs: 3_600_000,
  clock: o.clock,
  logger,
  // The rental and playback mechanics on an unmarked package (copied streams, one file per
  // segment); the marks (A/B packaging, marked copies) are test/marks/trace.test.ts's and video.test.ts's.
  marks: false,
});

before(async () => {
  o = await startTestOrigin({ now: T0 });
  member = await o.userWithRoles(['member']);
  publisher = await o.userWithRoles(['publisher']);
  operator = await o.userWithRoles(['operator']);
  await o.fund(member.userId, 1_000_000, `fund-${member.userId}`);
  const video = path.join(work, 'film.mp4');
  const made = spawnSync(FFMPEG, ['-hide_banner', '-loglevel', 'error', '-f', 'lavfi', '-i', 'testsrc=size=320x180:rate=25', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000', '-t', '60', '-c:v', 'libx264', '-preset', 'ultrafast', '-g', '50', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-b:a', '48k', '-shortest', video]);
  assert.equal(made.status, 0, made.stderr.toString());
  videoBytes = readFileSync(video);
  const text = path.join(work, 'notes.txt');
  writeFileSync(text, 'A plain file, not a video.\n'.repeat(100));
  videoId = await publish('Film', video, 1000);
  textId = await publish('Notes', text, 500);

  rentals = o.rentals;

  // The home edge, with the home extension as edgeExtensions('home') makes it (final reports
  // through the edge's delivery journal); its list of rentals from the origin's route can be cut.
  withHome = (ctx: EdgeContext) => {
    // The context as the edge gives it, deletions noted (a view: edgeId is filled in after this call).
    edgeCtx = Object.assign(Object.create(ctx) as EdgeContext, {
      async dropContent(id: string) {
        const gone = await ctx.dropContent(id);
        if (gone) dropped.push(id);
        return gone;
      },
    });
    const ext = homeExtension(edgeCtx, {
      ffmpeg: FFMPEG,
      // GET /edges/me/rentals on the origin, as the default does, unless the test cuts it.
      fetchRentals: async () => {
        if (syncFails) throw new Error('origin unreachable');
        return (await ctx.api().get<{ tickets: string[] }>('/edges/me/rentals')).tickets;
      },
    });
    home = ext.server;
    return [ext];
  };
  const made1 = edgeExtensions('home', { ffmpeg: FFMPEG })({ home: path.join(work, 'unused'), logger, clock: o.clock } as unknown as EdgeContext);
  assert.ok(made1.length === 1 && made1[0].routes && made1[0].inUse, 'cascade edge --kind home adds the home extension');
  node = await startEdge({
    ...edgeOptions('home-edge'),
    token: operator.token,
    kind: 'home',
    label: 'eu/paris/building-a',
    hook,
    extensions: withHome,
  });
  EDGE = node.edgeId;
  edgeUrl = node.url;
  shop = await startEdge({ ...edgeOptions('delivery-edge'), token: operator.token, kind: 'delivery', label: 'eu/paris/shop' });
  // The building's fast link: the film and the notes arrive before anyone rents them.
  await node.ensureContent(videoId);
  await node.ensureContent(textId);
  await node.report();
});

after(async () => {
  await node?.close();
  await shop?.close();
  await o?.close();
  rmSync(work, { recursive: true, force: true });
});

const require = createRequire(import.meta.url);

async function rent(body: Record<string, unknown>, edgeId = EDGE) {
  return o.call('POST', `/edges/${edgeId}/rentals`, { token: member.token, json: body });
}
const get = (url: string, headers: Record<string, string> = {}) => fetch(url, { headers });

let memberStart = 0;
let textViewing: { rental: { deliveryId: string } };
let viewing: { ticket: string; playUrl: string; fileUrl: string; rental: { id: string; deliveryId: string; serial: number; endsAt: string } };

test('S2.5 origin: renting by viewing time opens a delivery and answers a signed ticket and the URLs on the home edge', async () => {
  memberStart = (await wallet(member.userId)).posted;
  const r = await rent({ contentId: videoId, plan: 'viewing' });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  viewing = r.body;
  assert.equal(viewing.rental.endsAt, new Date(T0 + VIEWING_WINDOW_MS).toISOString());
  assert.match(viewing.playUrl, new RegExp(`^${edgeUrl}/play/[^/]+/index\\.m3u8$`));
  assert.equal(viewing.fileUrl, viewing.playUrl.replace('index.m3u8', 'file'));
  // The origin's delivery: the rental's ID and serial, as the operator lists it; a hold, nothing charged.
  const listed = (await operatorList()).deliveries.find((d) => d.id === viewing.rental.deliveryId);
  assert.deepEqual(
    { serial: listed.serial, kind: listed.kind, userId: listed.userId, contentId: listed.contentId, payer: listed.payer, maxFee: listed.maxFee, state: listed.state, charged: listed.charged },
    { serial: viewing.rental.serial, kind: 'rental', userId: member.userId, contentId: videoId, payer: 'wallet', maxFee: 1000, state: 'open', charged: null },
  );
  const ticket = JSON.parse(Buffer.from(viewing.ticket.split('.')[0], 'base64url').toString()) as RentalTicket;
  assert.deepEqual({ serial: ticket.serial, deliveryId: ticket.deliveryId }, { serial: listed.serial, deliveryId: listed.id }, 'the ticket names the delivery and its serial');
  const t = await transfersOf(viewing.rental.deliveryId);
  assert.deepEqual(t.map((x) => [x.id, x.kind, Number(x.amount), x.debit_account_id]), [[`${viewing.rental.deliveryId}:hold`, 'pending', 1000, walletAccount(member.userId).id]], 'the viewing plan is held at open, billed by the final report');
  const w = await wallet(member.userId);
  assert.equal(w.posted - w.available, 1000, 'the most it may cost is held');
  assert.equal(memberStart - w.posted, 0, 'nothing charged yet');
});

test('S2.5 origin refusals: bad plan or days, unknown content, unknown or non-home edge — nothing written', async () => {
  const before = await tableCounts();
  for (const [body, code, status, edge] of [
    [{ contentId: videoId, plan: 'weeks' }, 'invalid_plan', 400, EDGE],
    [{ contentId: videoId, plan: 'days', days: 31 }, 'invalid_days', 400, EDGE],
    [{ contentId: videoId, plan: 'days', days: 0 }, 'invalid_days', 400, EDGE],
    [{ contentId: videoId, plan: 'days' }, 'invalid_days', 400, EDGE],
    [{ contentId: videoId, plan: 'viewing', days: 2 }, 'invalid_days', 400, EDGE],
    [{ contentId: 'ab'.repeat(32), plan: 'days', days: 1 }, 'unknown_content', 404, EDGE],
    [{ contentId: videoId, plan: 'days', days: 1 }, 'unknown_edge', 404, 'edg_nope'],
    [{ contentId: videoId, plan: 'days', days: 1 }, 'not_a_home_edge', 409, shop.edgeId],
  ] as const) {
    const r = await rent(body, edge);
    assert.equal(r.status, status, `${code}: ${JSON.stringify(r.body)}`);
    assert.equal(r.body.error.code, code);
  }
  assert.deepEqual(await tableCounts(), before);
  // A wallet that cannot hold the most the rental may cost (2 days: 200; it has 199): refused by the delivery, nothing written.
  const poor = await o.userWithRoles(['member']);
  await o.fund(poor.userId, 1, `fund-${poor.userId}`);
  const has = (await wallet(poor.userId)).available;
  await o.ledger.apply([{ id: `drain-${poor.userId}`, debit: walletAccount(poor.userId).id, credit: PLATFORM_PROMOTIONS.id, amount: has - 199, reason: 'topup' }]);
  const poorBefore = await wallet(poor.userId);
  assert.equal(poorBefore.available, 199);
  const countsBefore = await tableCounts();
  const broke = await o.call('POST', `/edges/${EDGE}/rentals`, { token: poor.token, json: { contentId: videoId, plan: 'days', days: 2 } });
  assert.equal(broke.status, 402, JSON.stringify(broke.body));
  assert.equal(broke.body.error.code, 'insufficient_balance');
  assert.deepEqual(await tableCounts(), countsBefore, 'no rental, no delivery, no transfer');
  assert.deepEqual(await wallet(poor.userId), poorBefore);
  const anon = await o.call('POST', `/edges/${EDGE}/rentals`, { json: { contentId: videoId, plan: 'viewing' } });
  assert.equal(anon.status, 401);
  assert.deepEqual(await tableCounts(), countsBefore);
});

test('S2.5 origin: the home edge catalogue with both plans’ prices, and my rentals', async () => {
  const c = await o.call('GET', `/edges/${EDGE}/catalog`, { token: member.token });
  assert.equal(c.status, 200);
  const film = c.body.items.find((i: any) => i.contentId === videoId);
  assert.deepEqual({ perDay: film.pricePerDay, perMinute: film.pricePerMinute, cap: film.viewingCap }, { perDay: 100, perMinute: 10, cap: 1000 });
  const mine = await o.call('GET', '/rentals/mine', { token: member.token });
  const mineRental = mine.body.rentals.find((r: any) => r.id === viewing.rental.id);
  assert.equal(mineRental.active, true);
  assert.equal(mineRental.playUrl, viewing.playUrl);
  assert.deepEqual([...(await rentals.inUse(EDGE))], [videoId], 'the edge must keep what is rented (the spine’s in-use source)');
});

test('S2.5 edge: the video is packaged once into VOD HLS (fMP4, ~4 s, ENDLIST) and segments served match their hashes', async () => {
  const pl = await get(viewing.playUrl, { origin: 'http://elsewhere.example' });
  assert.equal(pl.status, 200);
  assert.equal(pl.headers.get('access-control-allow-origin'), '*');
  const text = await pl.text();
  assert.match(text, /#EXT-X-PLAYLIST-TYPE:VOD/);
  assert.match(text, /#EXT-X-ENDLIST/);
  assert.match(text, /#EXT-X-MAP:URI="seg\/init\.mp4"/);
  const segs = text.split('\n').filter((l) => l.startsWith('seg/seg_'));
  assert.ok(segs.length >= 14 && segs.length <= 16, `${segs.length} segments of about 4 s for 60 s`);
  const pkg = (await home.packager.peek(videoId))!;
  assert.equal(pkg.mode, 'copy', 'H.264/AAC is copied, not re-encoded');
  assert.ok(Math.abs(pkg.totalMs - 60_000) < 500, `${pkg.totalMs} ms`);
  const base = viewing.playUrl.replace(/index\.m3u8$/, '');
  const seg = await get(base + segs[3]);
  assert.equal(seg.status, 200);
  const bytes = Buffer.from(await seg.arrayBuffer());
  assert.equal(sha256Hex(bytes), pkg.segments[3].sha256);
  assert.equal(marks.at(-1)!.name, pkg.segments[3].name);
  assert.deepEqual(marks.at(-1)!.mark, { serial: viewing.rental.serial, deliveryId: viewing.rental.deliveryId, userId: member.userId, edgeId: EDGE, originId: node.originId, contentId: videoId, bits: null, videoBits: null }, "an unmarked edge: no codewords");
  // The same segment again counts once; another adds its duration.
  await get(base + segs[3]).then((r) => r.arrayBuffer());
  await get(base + segs[4]).then((r) => r.arrayBuffer());
  const state = home.list().find((r) => r.ticket.rentalId === viewing.rental.id)!;
  assert.equal(state.segmentMs, pkg.segments[3].durationMs + pkg.segments[4].durationMs);
  // A name that is not in the package.
  for (const name of ['seg_99999.m4s', '..%2Fpackage.json', 'package.json']) {
    const r = await get(base + 'seg/' + name);
    assert.equal(r.status, 404, name);
  }
});

test('S2.5 edge: HTTP Range on the file — first bytes, middle, suffix, whole; bad ranges 416', async () => {
  const size = videoBytes.length;
  const cases: [string | undefined, number, number, number][] = [
    ['bytes=0-99', 206, 0, 99],
    ['bytes=100000-100999', 206, 100000, 100999],
    ['bytes=-500', 206, size - 500, size - 1],
    [`bytes=${size - 10}-`, 206, size - 10, size - 1],
    [`bytes=${size - 10}-${size + 1000}`, 206, size - 10, size - 1],
    [undefined, 200, 0, size - 1],
  ];
  for (const [range, status, start, end] of cases) {
    const r = await get(viewing.fileUrl, range ? { range } : {});
    assert.equal(r.status, status, String(range));
    const body = Buffer.from(await r.arrayBuffer());
    assert.ok(body.equals(videoBytes.subarray(start, end + 1)), `bytes of ${range}`);
    assert.equal(r.headers.get('accept-ranges'), 'bytes');
    if (status === 206) assert.equal(r.headers.get('content-range'), `bytes ${start}-${end}/${size}`);
  }
  for (const range of [`bytes=${size}-`, 'bytes=5-2', 'bytes=0-1,5-9', 'bytes=abc', 'bytes=-0', 'items=0-5', `bytes=0-${'9'.repeat(300)}`]) {
    const r = await get(viewing.fileUrl, { range });
    assert.equal(r.status, 416, range);
    assert.equal(r.headers.get('content-range'), `bytes */${size}`);
    assert.equal((await r.json()).error.code, 'range_not_satisfiable');
  }
  assert.ok(marks.some((m) => m.name === 'file' && m.mark.deliveryId === viewing.rental.deliveryId), 'file bytes go through the hook');
});

test('S2.5 edge: bad, forged, foreign and expired tickets are refused, and nothing changes', async () => {
  const stateBefore = JSON.stringify(home.list());
  const marksBefore = marks.length;
  const originBefore = { tables: await tableCounts(), deliveries: JSON.stringify((await operatorList()).deliveries) };
  const real = viewing.ticket;
  const payload = JSON.parse(Buffer.from(real.split('.')[0], 'base64url').toString()) as RentalTicket;
  const other = generateKeyPair();
  const { typ: _typ, ...fields } = payload;
  const cases: [string, number, string][] = [
    ['garbage', 401, 'rental_invalid'],
    [`${real.split('.')[0]}.${'A'.repeat(86)}`, 401, 'rental_invalid'], // signature does not verify
    [signRentalTicket({ ...fields, serial: 999 }, other.privateKey), 401, 'rental_invalid'], // another key
    [`${Buffer.from(JSON.stringify({ ...payload, endsAt: payload.endsAt + DAY_MS })).toString('base64url')}.${real.split('.')[1]}`, 401, 'rental_invalid'], // altered
    ['x'.repeat(3000), 401, 'rental_invalid'], // over the bound, unread
    [signRentalTicket({ ...fields, rentalId: `rnt_${'x'.repeat(2100)}` }, o.keys.privateKey), 401, 'rental_invalid'], // signed, but over the bound
    [signRentalTicket({ ...fields, edgeId: 'edg_other' }, o.keys.privateKey), 403, 'rental_invalid'], // for another home edge
    [signRentalTicket({ ...fields, rentalId: 'rnt_old', endsAt: T0 - 1 }, o.keys.privateKey), 403, 'rental_over'],
  ];
  for (const [ticket, status, code] of cases) {
    for (const what of ['file', 'index.m3u8', 'seg/seg_00000.m4s']) {
      const r = await get(`${edgeUrl}/play/${ticket}/${what}`);
      assert.equal(r.status, status, `${ticket.slice(0, 30)}… ${what}`);
      assert.equal((await r.json()).error.code, code);
      assert.equal(r.headers.get('access-control-allow-origin'), '*', 'a browser player can read the refusal');
    }
  }
  // A packaged segment whose bytes changed on disk is not sent.
  const pkg = (await home.packager.peek(videoId))!;
  const last = pkg.segments.at(-1)!.name;
  const file = path.join(work, 'home-edge', 'home', 'vod', videoId, last);
  const good = readFileSync(file);
  writeFileSync(file, Buffer.concat([good.subarray(0, 100), Buffer.from('tampered'), good.subarray(108)]));
  const bad = await get(`${edgeUrl}/play/${real}/seg/${last}`);
  assert.equal(bad.status, 500);
  assert.equal((await bad.json()).error.code, 'segment_corrupt');
  writeFileSync(file, good);
  assert.equal(JSON.stringify(home.list()), stateBefore);
  assert.equal(marks.length, marksBefore, 'no byte went out');
  assert.deepEqual({ tables: await tableCounts(), deliveries: JSON.stringify((await operatorList()).deliveries) }, originBefore, 'nothing changed on the origin');
});

test('S2.5 edge: a plain file plays by Range only; its viewing-time rental is refused (nothing to time)', async () => {
  const days = await rent({ contentId: textId, plan: 'days', days: 1 });
  assert.equal(days.status, 201);
  // Charged once, at open: 1 day × 10 % of 500 = 50, split on the total (edge 25, royalty 20, fee 5).
  const id = days.body.rental.deliveryId;
  assert.deepEqual(
    (await transfersOf(id)).map((t) => [t.id, t.kind, Number(t.amount), t.reason]),
    [
      [`${id}:hold`, 'pending', 50, 'reservation'],
      [`${id}:release`, 'void', 50, 'reservation'],
      [`${id}:edge`, 'normal', 25, 'edge'],
      [`${id}:royalty`, 'normal', 20, 'royalty'],
      [`${id}:fee`, 'normal', 5, 'fee'],
    ],
  );
  assert.equal(await paid(id, member.userId), 50);
  const d = (await operatorList()).deliveries.find((x) => x.id === id);
  assert.deepEqual({ state: d.state, fee: d.fee, charged: d.charged, serial: d.serial }, { state: 'billed', fee: 50, charged: 50, serial: days.body.rental.serial });
  const r = await get(days.body.fileUrl, { range: 'bytes=0-8' });
  assert.equal(r.status, 206);
  assert.equal(await r.text(), 'A plain f');
  const pl = await get(days.body.playUrl);
  const plBody = await pl.json();
  assert.equal(pl.status, 404, JSON.stringify(plBody));
  assert.equal(plBody.error.code, 'not_video');
  const v = await rent({ contentId: textId, plan: 'viewing' });
  textViewing = v.body;
  const refused = await get(v.body.fileUrl);
  assert.equal(refused.status, 409);
  assert.equal((await refused.json()).error.code, 'rental_plan_unsuited');
});

test('S2.5 packaging: a video that is not H.264/AAC is re-encoded into ~4 s segments', async () => {
  const webm = path.join(work, 'clip.webm');
  const made = spawnSync(FFMPEG, ['-hide_banner', '-loglevel', 'error', '-f', 'lavfi', '-i', 'testsrc=size=160x90:rate=10', '-t', '9', '-c:v', 'libvpx', '-b:v', '100k', webm]);
  assert.equal(made.status, 0, made.stderr.toString());
  const packager = new VodPackager({ dir: path.join(work, 'vod-encode'), ffmpeg: FFMPEG, logger });
  const pkg = await packager.get('cd'.repeat(32), webm);
  assert.equal(pkg.mode, 'encode');
  assert.deepEqual(pkg.segments.map((s) => s.durationMs), [4000, 4000, 1000]);
  assert.match(VodPackager.playlist(pkg, (n) => n), /#EXT-X-TARGETDURATION:4\n/);
  // Packaged once: asked again, the record answers (ffmpeg is not run: the data file may even be gone).
  assert.equal(await new VodPackager({ dir: path.join(work, 'vod-encode'), ffmpeg: '/nonexistent/ffmpeg', logger }).get('cd'.repeat(32), '/nonexistent').then((p) => p.mode), 'encode');
});

test('S2.5 edge: a rental the origin lists is made ready before its first play (copy fetched, video packaged)', async () => {
  const short = path.join(work, 'short.mp4');
  const made = spawnSync(FFMPEG, ['-hide_banner', '-loglevel', 'error', '-f', 'lavfi', '-i', 'testsrc=size=160x90:rate=10', '-t', '6', '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', short]);
  assert.equal(made.status, 0, made.stderr.toString());
  const id = await publish('Short', short, 100);
  const r = await rent({ contentId: id, plan: 'days', days: 1 });
  assert.equal(r.status, 201);
  assert.equal(await home.packager.peek(id), null);
  await home.job.nextRound();
  await home.ready();
  assert.equal((await home.packager.peek(id))?.video, true);
  // The edge's last plan knows nothing of it, yet it is not deleted while the rental plays: the extension uses it.
  assert.ok(!node.lastPlan()!.keep.includes(id));
  assert.equal(await node.dropContent(id), false);
  assert.ok(node.store.isComplete(id));
});

test('S2.5 browser: hls.js in Chromium loads the playlist from another origin, seeks to the middle and plays', { timeout: 120_000 }, async () => {
  const browser = await launchBrowser();
  try {
    const page = await browser.newPage();
    const problems: string[] = [];
    page.on('pageerror', (e) => problems.push(e.message));
    await page.goto(`${o.url}/health`); // the page's origin is the origin server's: the edge is cross-origin
    await page.setContent('<!doctype html><html><body><video id="v" muted playsinline width="320" height="180"></video></body></html>');
    await page.addScriptTag({ content: readFileSync(require.resolve('hls.js/dist/hls.min.js'), 'utf8') });
    await page.evaluate((src) => {
      const w = window as any;
      const video = document.getElementById('v') as HTMLVideoElement;
      const hls = new w.Hls();
      w.errors = [];
      hls.on(w.Hls.Events.ERROR, (_: unknown, d: any) => d.fatal && w.errors.push(`${d.type}: ${d.details}`));
      hls.on(w.Hls.Events.MANIFEST_PARSED, () => {
        w.parsed = true;
      });
      hls.loadSource(src);
      hls.attachMedia(video);
    }, viewing.playUrl);
    await waitFor(() => page.evaluate(() => (window as any).parsed === true || (window as any).errors.length > 0), 'the playlist parsed', 20_000, 100);
    assert.deepEqual(await page.evaluate(() => (window as any).errors), []);
    await page.evaluate(async () => {
      const v = document.getElementById('v') as HTMLVideoElement;
      v.currentTime = 30;
      await v.play();
    });
    const time = () => page.evaluate(() => (document.getElementById('v') as HTMLVideoElement).currentTime);
    await waitFor(async () => (await time()) > 31, 'the video playing past 31 s', 30_000, 200);
    assert.ok((await time()) >= 30, 'it played from the middle, not from the start');
    assert.deepEqual(problems, []);
    assert.deepEqual(await page.evaluate(() => (window as any).errors), []);
  } finally {
    await browser.close();
  }
});

test('S2.5 edge restart: the rentals and the viewing time counted so far are read back', async () => {
  const again = new HomeServerClass(edgeCtx, { ffmpeg: FFMPEG, report: async () => assert.fail('nothing is due') });
  assert.equal(await again.round(), Math.min(...home.list().map((r) => r.ticket.endsAt)));
  assert.deepEqual(again.list(), home.list());
});

test('S2.5 expiry: at the rental’s end (clock moved) the final report bills the total viewed time once, and the copy and its package are deleted', async () => {
  const state = home.list().find((r) => r.ticket.rentalId === viewing.rental.id)!;
  assert.ok(state.segmentMs > 8000, `segments fetched (${state.segmentMs} ms)`);
  const dataPath = node.store.paths(videoId).data;
  const vodDir = path.join(work, 'home-edge', 'home', 'vod', videoId);
  assert.ok(existsSync(vodDir));

  // A second rental of the same film, longer: the copy must stay until it ends too.
  const second = await rent({ contentId: videoId, plan: 'days', days: 3 });
  assert.equal(second.status, 201);
  await get(second.body.fileUrl, { range: 'bytes=0-9' }).then((r) => r.arrayBuffer());
  // The edge reports while the film is rented: the origin's plan keeps it (in use).
  const plan = await node.report();
  assert.ok(plan.keep.includes(videoId), 'a rented content is in the plan’s keep');
  assert.deepEqual(plan.evict, []);

  // A viewing rental no player ever showed the edge, and the edge cannot reach the origin's list
  // until after it ended: it learns it then, and still sends its final report.
  syncFails = true;
  const unplayed = await rent({ contentId: videoId, plan: 'viewing' });
  assert.equal(unplayed.body.rental.endsAt, viewing.rental.endsAt);
  const viewingIds = [viewing.rental.deliveryId, textViewing.rental.deliveryId, unplayed.body.rental.deliveryId];

  // The viewing rentals end: the round journals their final reports (the reporter sends them);
  // the home edge is closed at once and started again over the same home.
  o.clock.set(Date.parse(viewing.rental.endsAt));
  await home.job.nextRound();
  assert.equal(node.deliveries.status().recorded, 2, 'the two rentals it knew: journaled');
  assert.ok(existsSync(dataPath));
  assert.ok(!home.list().some((r) => r.ticket.rentalId === unplayed.body.rental.id));
  await node.close();
  node = await startEdge({ ...edgeOptions('home-edge'), token: operator.token, kind: 'home', label: 'eu/paris/building-a', hook, extensions: withHome });
  assert.equal(node.edgeId, EDGE);
  syncFails = false;
  await home.job.nextRound();
  await waitFor(() => node.deliveries.status().pending === 0, () => JSON.stringify(node.deliveries.status()));
  assert.deepEqual((({ recorded, acknowledged, refused }) => ({ recorded, acknowledged, refused }))(node.deliveries.status()), { recorded: 3, acknowledged: 3, refused: 0 });

  // Billed once, on the total viewed time: the segments fetched (each once) plus the whole file
  // fetched once by Range (its 60 s, once however often asked).
  const byId = new Map((await operatorList()).deliveries.map((d) => [d.id, d]));
  const film = byId.get(viewing.rental.deliveryId);
  const seconds = Math.floor((state.segmentMs + (await home.packager.peek(videoId))!.totalMs) / 1000);
  const terms: RentalTerms = { plan: 'viewing', days: null, unitPrice: 10, maxFee: 1000, startsAt: T0, endsAt: Date.parse(viewing.rental.endsAt) };
  const fee = rentalReport(terms, seconds, o.clock.now())!.fee;
  assert.equal(fee, Math.min(1000, Math.ceil(seconds / 60) * 10), 'per started minute of the total');
  assert.deepEqual({ state: film.state, viewedSeconds: film.viewedSeconds, fee: film.fee, charged: film.charged, reports: film.reports }, { state: 'billed', viewedSeconds: seconds, fee, charged: fee, reports: 1 });
  assert.equal(await paid(viewing.rental.deliveryId, member.userId), fee);
  assert.deepEqual((await transfersOf(viewing.rental.deliveryId)).filter((t) => t.kind === 'void').map((t) => t.id), [`${viewing.rental.deliveryId}:release`], 'the hold released once');
  for (const id of viewingIds.slice(1)) {
    assert.deepEqual([byId.get(id).state, byId.get(id).fee, byId.get(id).viewedSeconds], ['billed', 0, 0], 'never played: its final report bills 0');
    assert.equal(await paid(id, member.userId), 0);
  }
  // Still rented on the days plan: kept.
  assert.ok(existsSync(dataPath), 'the copy stays while another rental plays it');
  assert.deepEqual(dropped.filter((d) => d === videoId), []);
  const marksBefore = marks.length;
  const over = await get(viewing.playUrl.replace(edgeUrl, node.url)); // the restarted edge listens on a new port
  assert.equal(over.status, 403);
  assert.equal((await over.json()).error.code, 'rental_over');
  assert.equal(marks.length, marksBefore, 'nothing sent');

  // The days rental ends: no report (charged at open); the package goes at once, the copy once the
  // origin's plan lets it go: the edge's last plan (above) still keeps it.
  o.clock.set(Date.parse(second.body.rental.endsAt));
  await home.job.nextRound();
  assert.equal(existsSync(vodDir), false);
  assert.ok(existsSync(dataPath), 'the last plan still keeps it');
  // The edge restarts (days later: a new session): its first plan no longer keeps the film, and the
  // deletion it still owed is done.
  await node.close();
  node = await startEdge({ ...edgeOptions('home-edge'), token: operator.token, kind: 'home', label: 'eu/paris/building-a', hook, extensions: withHome });
  assert.equal(node.edgeId, EDGE);
  assert.ok(!(await node.report()).keep.includes(videoId));
  await home.job.nextRound();
  assert.deepEqual(dropped.filter((d) => d === videoId), [videoId]);
  assert.equal(existsSync(dataPath), false);
  assert.equal(existsSync(vodDir), false);
  // A later round sends nothing again.
  await home.job.nextRound();
  assert.equal(node.deliveries.status().recorded, 3, 'nothing more journaled: the days rental was charged at open');
  assert.deepEqual(await readdir(path.join(work, 'home-edge', 'home', 'vod')), []);
  // The edge's and the origin's counts agree: every rental billed once, the viewing ones by the
  // edge's three journaled reports, the days ones at open; the member paid exactly the fees.
  await waitFor(() => node.deliveries.status().pending === 0, 'all sent');
  const { deliveries: all, counts } = await operatorList();
  assert.deepEqual(await node.api().get('/edges/me/deliveries/counts'), counts);
  assert.deepEqual({ open: counts.open, billed: counts.billed }, { open: 0, billed: counts.opened });
  assert.equal(all.length, counts.opened);
  const status = node.deliveries.status();
  assert.deepEqual({ recorded: status.recorded, acknowledged: status.acknowledged, pending: status.pending, refused: status.refused }, { recorded: viewingIds.length, acknowledged: viewingIds.length, pending: 0, refused: 0 });
  assert.deepEqual(all.filter((d) => d.reports > 0 && viewingIds.includes(d.id)).length, status.acknowledged);
  assert.equal(counts.billedFees, all.reduce((a, d) => a + d.fee, 0));
  assert.equal(memberStart - (await wallet(member.userId)).posted, counts.billedFees, 'the member paid each rental once');
  assert.equal((await wallet(member.userId)).pending, 0, 'no hold left');
  const mine = await o.call('GET', '/rentals/mine', { token: member.token });
  assert.equal(mine.body.rentals.find((r: any) => r.id === viewing.rental.id).active, false);
  // The origin still lists the ended rentals for a week; the edge remembers it closed them: nothing is reported or deleted twice.
  o.clock.advance(DAY_MS);
  await home.job.nextRound();
  assert.equal(node.deliveries.status().recorded, 3);
  assert.equal(dropped.filter((d) => d === videoId).length, 1);
  assert.ok((await rentals.forEdge(EDGE)).length > 0);
  // Past the week, the edge forgets them and the origin no longer lists them.
  o.clock.advance(8 * DAY_MS);
  await home.job.nextRound();
  assert.deepEqual(await rentals.forEdge(EDGE), []);
  assert.deepEqual(home.list(), []);
  assert.deepEqual(await rentals.inUse(EDGE), new Set());

  assert.ok((await o.ledger.checkConservation()).ok);
});

test('S2.5 origin: a member whose wallet was never opened can rent (the wallet opens with its sign-up credit)', async () => {
  const newcomer = await o.userWithRoles(['member']);
  const r = await o.call('POST', `/edges/${EDGE}/rentals`, { token: newcomer.token, json: { contentId: textId, plan: 'days', days: 1 } });
  assert.equal(r.status, 201, JSON.stringify(r.body));
});

test('S2.5 origin: GET /edges/me/rentals is for an edge’s terminal session', async () => {
  const r = await o.call('GET', '/edges/me/rentals', { token: member.token });
  assert.equal(r.status, 403);
  assert.equal(r.body.error.code, 'terminal_required');
});
