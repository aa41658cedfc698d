import { createReadStream, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { statfs } from 'node:fs/promises';
import path from 'node:path';
import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import { every } from '../../core/clock.ts';
import { AppError, conflict, forbidden, notFound } from '../../core/errors.ts';
import { decodeToken } from '../../core/signed-token.ts';
import { TICKET_TYP, type Order, type OrderTicket } from '../orders.ts';
import { deliveryMark } from '../delivery-hook.ts';
import type { DeliveryReporter } from '../delivery-journal.ts';
import type { EdgeContext, EdgeExtension } from '../node.ts';
import { removeWork, sanitiseFileName, writePackage } from './package-writer.ts';

// S2.6 (#17 point 3; docs/edge.md "Store server"), the store edge's half. A job asks the origin
// for the edge's placed orders, claims each, makes sure the content is here, writes the package
// through the delivery hook (so the copy carries the orderer's mark, #18), and reports it ready.
// The orderer downloads it with the origin-signed ticket (`GET /orders/:id/package?ticket=…`), or the
// staff hand it over at the counter (the origin records that). After either, the edge deletes
// the package and the working copy (and its copy of the content unless another order here
// needs it), records the delivery's report (final, fee = the price) in the delivery journal,
// and tells the origin its copy is gone. Orders it cannot make (too little space, a content it
// cannot fetch, a packaging failure) are failed with the reason the member sees.
// Each order's local state is a small file beside its package (orders/<id>/order.json), so a
// restart picks up where it was.

export interface StoreOptions {
  /** Where delivery reports go (default the edge's journal, `ctx.deliveries`). */
  reporter?: Pick<DeliveryReporter, 'report'>;
  /** How often the job asks the origin for new orders (default 5 s). */
  pollMs?: number;
  /** Free bytes on the edge's disk (default: statfs of its home). */
  freeBytes?: () => Promise<number>;
  /** Bytes to leave free beyond what an order needs (default 64 MiB). */
  reserveBytes?: number;
  /** The xorriso program (default XORRISO, else `xorriso`). */
  xorriso?: string;
}

export interface StoreExtension extends EdgeExtension {
  /** One round of the job: prepare placed orders, release finished ones (tests call it instead of waiting). */
  poll(): Promise<void>;
  /** Local orders and their state, for `cascade edge status`. */
  status(): { preparing: number; ready: number; releasing: number };
}

/** What the edge keeps about one order it packaged. */
interface LocalOrder {
  id: string;
  userId: string;
  contentId: string;
  title: string;
  format: 'iso' | 'zip';
  payment: 'wallet' | 'counter';
  price: number;
  deliveryId: string;
  serial: number;
  packagePath: string;
  bytes: number;
  sha256: string;
  /** ready: waiting for pickup or download; downloaded: the origin is still to be told. */
  state: 'ready' | 'downloaded';
}

const MEDIA_TYPES = { iso: 'application/x-iso9660-image', zip: 'application/zip' } as const;

export function storeExtension(ctx: EdgeContext, opts: StoreOptions = {}): StoreExtension {
  const dir = path.join(ctx.home, 'store-orders');
  mkdirSync(dir, { recursive: true });
  const orders = new Map<string, LocalOrder>();
  for (const id of readdirSync(dir)) {
    const file = path.join(dir, id, 'order.json');
    if (existsSync(file)) orders.set(id, JSON.parse(readFileSync(file, 'utf8')) as LocalOrder);
  }
  /** Orders being packaged now, with their contents. */
  const preparing = new Map<string, string>();
  const releasing = new Set<string>();
  // The edge's delivery journal (node.ts): durable first, then sent until the origin acknowledges it.
  const reporter: Pick<DeliveryReporter, 'report'> = opts.reporter ?? ctx.deliveries;
  const reserve = opts.reserveBytes ?? 64 * 1024 * 1024;
  const freeBytes =
    opts.freeBytes ??
    (async () => {
      const s = await statfs(ctx.home);
      return s.bavail * s.bsize;
    });
  const xorriso = opts.xorriso ?? process.env.XORRISO ?? 'xorriso';
  const log = ctx.logger.child({ part: 'store' });

  const save = (o: LocalOrder) => {
    const file = path.join(dir, o.id, 'order.json');
    writeFileSync(`${file}.tmp`, JSON.stringify(o));
    renameSync(`${file}.tmp`, file);
    orders.set(o.id, o);
  };

  async function prepare(o: Order, claimed = false): Promise<void> {
    if (!claimed) {
      try {
        await ctx.api().post(`/edges/me/orders/${o.id}/claim`);
      } catch (err) {
        if ((err as AppError).code === 'order_not_placed') return; // taken meanwhile (cancelled)
        throw err;
      }
    }
    preparing.set(o.id, o.contentId);
    const work = path.join(dir, o.id);
    try {
      // The content (unless it is here), the marked working copy and the package.
      const held = ctx.store.isComplete(o.contentId);
      const needed = (held ? 0 : o.contentBytes) + 2 * o.contentBytes + 1024 * 1024;
      const free = await freeBytes();
      if (free - reserve < needed) {
        throw new AppError('no_space', `The store has ${Math.max(0, free - reserve)} bytes free for packages; this order needs ${needed}. Try again later or at another store.`, 507);
      }
      const { dataPath, manifest } = await ctx.ensureContent(o.contentId);
      // S2.3: the orderer's marked copy goes into the package (made once per delivery, released with the order).
      const copy = await ctx.hook.fileFor(deliveryMark({ ...o, originId: ctx.originId }, ctx.edgeId, ctx.markKey), dataPath);
      log.info({ order: o.id, mark: copy.note }, 'copy for the package');
      const pkg = await writePackage({ format: o.format, dataPath: copy.path, contentId: o.contentId, title: manifest.body.title, serial: o.serial, workDir: work, xorriso });
      save({ id: o.id, userId: o.userId, contentId: o.contentId, title: manifest.body.title, format: o.format, payment: o.payment, price: o.price, deliveryId: o.deliveryId, serial: o.serial, packagePath: pkg.path, bytes: pkg.bytes, sha256: pkg.sha256, state: 'ready' });
      await ctx.api().post(`/edges/me/orders/${o.id}/ready`, { bytes: pkg.bytes, sha256: pkg.sha256 });
      log.info({ order: o.id, content: o.contentId, format: o.format, bytes: pkg.bytes }, 'package ready');
    } catch (err) {
      const reason = err instanceof AppError ? err.message : `The package could not be made: ${(err as Error).message ?? err}`;
      log.warn({ order: o.id, err: String(err) }, 'order failed');
      orders.delete(o.id);
      await removeWork(work);
      await ctx.api().post(`/edges/me/orders/${o.id}/fail`, { reason: reason.slice(0, 500) });
    } finally {
      preparing.delete(o.id);
      // The package holds the marked copy: the hook's own goes now.
      await ctx.hook.release(o.deliveryId).catch((err) => log.warn({ order: o.id, err: String(err) }, 'could not delete the marked copy'));
    }
  }

  /** The order is over (picked up, downloaded, failed or cancelled): delete, report, tell the origin. */
  async function release(o: Pick<Order, 'id' | 'contentId' | 'state' | 'deliveryId' | 'price' | 'packageBytes'>): Promise<void> {
    if (releasing.has(o.id)) return;
    releasing.add(o.id);
    try {
      orders.delete(o.id);
      await removeWork(path.join(dir, o.id));
      const stillNeeded = [...orders.values()].some((x) => x.contentId === o.contentId) || [...preparing.values()].includes(o.contentId);
      if (!stillNeeded) await ctx.dropContent(o.contentId);
      if (o.state === 'picked_up') await reporter.report({ deliveryId: o.deliveryId, fee: o.price, bytes: o.packageBytes ?? undefined, final: true });
      await ctx.api().post(`/edges/me/orders/${o.id}/released`);
      log.info({ order: o.id, state: o.state }, 'package deleted');
    } finally {
      releasing.delete(o.id);
    }
  }

  /** The member has the whole package: the origin records the pickup, then the copy goes. */
  async function downloaded(local: LocalOrder): Promise<void> {
    if (local.state !== 'downloaded') save({ ...local, state: 'downloaded' });
    const o = await ctx.api().post<Order>(`/edges/me/orders/${local.id}/downloaded`);
    await release(o);
  }

  let round: Promise<void> | null = null;
  async function pollOnce(): Promise<void> {
    // Downloads the origin was not told about yet (it was unreachable, or the edge restarted).
    for (const local of [...orders.values()].filter((x) => x.state === 'downloaded')) await downloaded(local);
    // Orders claimed before a restart or a lost answer: made again, or reported ready again.
    const claimed = await ctx.api().get<{ items: Order[] }>('/edges/me/orders?state=preparing');
    for (const o of claimed.items) {
      const local = orders.get(o.id);
      if (local) await ctx.api().post(`/edges/me/orders/${o.id}/ready`, { bytes: local.bytes, sha256: local.sha256 });
      else if (!preparing.has(o.id)) await prepare(o, true);
    }
    const placed = await ctx.api().get<{ items: Order[] }>('/edges/me/orders?state=placed');
    for (const o of placed.items) await prepare(o);
    const over = await ctx.api().get<{ items: Order[] }>('/edges/me/orders?state=picked_up,failed,cancelled&released=false');
    for (const o of over.items) await release(o);
  }
  const poll = () => (round ??= pollOnce().finally(() => (round = null)));

  const routes: FastifyPluginAsync = async (app) => {
    app.get<{ Params: { id: string }; Querystring: { ticket: string } }>('/orders/:id/package', {
      config: { access: 'public' },
      schema: {
        summary: 'Download my ordered package (S2.6) with the ticket the origin gave with the order (?ticket=…); Range requests are answered',
        description: 'Refusals: invalid_ticket, wrong_edge (403), no_package (404: not made yet, or already handed over), pay_at_counter (409), range_not_satisfiable (416).',
        params: { type: 'object', required: ['id'], properties: { id: { type: 'string', maxLength: 64 } } },
        querystring: { type: 'object', required: ['ticket'], properties: { ticket: { type: 'string', maxLength: 2000 } } },
      },
      handler: async (req, reply) => {
        const t = decodeToken<OrderTicket>(req.query.ticket, ctx.originKey, TICKET_TYP);
        if (!t.ok || t.payload.orderId !== req.params.id) throw forbidden('invalid_ticket', `This order ticket is not valid for order ${req.params.id} (${t.ok ? 'another order' : t.reason}): use the one shown with your order.`);
        if (t.payload.edgeId !== ctx.edgeId) throw forbidden('wrong_edge', `This order is at edge ${t.payload.edgeId}, not here (${ctx.edgeId}).`);
        const local = orders.get(t.payload.orderId);
        if (!local || local.state !== 'ready') throw notFound('no_package', `The package of order ${t.payload.orderId} is not here: it is not made yet, or it was already handed over.`);
        if (local.payment === 'counter') throw conflict('pay_at_counter', 'This order is paid at the counter: collect it at the store with your pickup code.');
        return sendPackage(reply, local, req.headers.range, () => void downloaded(local).catch((err) => log.warn({ order: local.id, err: String(err) }, 'pickup not reported yet; retried')));
      },
    });
  };

  const stopping = new AbortController();
  let loop: Promise<void> | null = null;
  return {
    routes,
    poll,
    // Contents of packages being made or waiting: the edge's placement never evicts them.
    inUse: () => new Set([...orders.values()].map((o) => o.contentId).concat([...preparing.values()])),
    start() {
      loop = every(ctx.clock, opts.pollMs ?? 5000, stopping.signal, () => poll().catch((err) => log.warn({ err: String(err) }, 'store orders round failed')));
      void poll().catch((err) => log.warn({ err: String(err) }, 'store orders round failed'));
    },
    async stop() {
      stopping.abort();
      await loop;
      await round?.catch(() => {});
    },
    status: () => ({ preparing: preparing.size, ready: [...orders.values()].filter((o) => o.state === 'ready').length, releasing: releasing.size }),
  };
}

/** The package, whole or one byte range; `done` runs once a response that carried its last byte was sent in full. */
function sendPackage(reply: FastifyReply, o: LocalOrder, range: string | undefined, done: () => void) {
  let start = 0;
  let end = o.bytes - 1;
  if (range) {
    const m = /^bytes=(\d*)-(\d*)$/.exec(range.trim());
    if (m && (m[1] || m[2])) {
      if (m[1]) {
        start = Number(m[1]);
        if (m[2]) end = Math.min(Number(m[2]), o.bytes - 1);
      } else start = Math.max(0, o.bytes - Number(m[2]));
      if (start > end || start >= o.bytes) {
        reply.header('content-range', `bytes */${o.bytes}`);
        throw new AppError('range_not_satisfiable', `The package has ${o.bytes} bytes; ${range} asks for none of them.`, 416);
      }
      reply.code(206).header('content-range', `bytes ${start}-${end}/${o.bytes}`);
    }
  }
  const name = `${sanitiseFileName(o.title)}.${o.format}`;
  reply
    .header('content-type', MEDIA_TYPES[o.format])
    .header('content-length', String(end - start + 1))
    .header('accept-ranges', 'bytes')
    .header('content-disposition', `attachment; filename="${name}"`);
  if (end === o.bytes - 1) reply.raw.once('finish', done);
  return reply.send(createReadStream(o.packagePath, { start, end }));
}
