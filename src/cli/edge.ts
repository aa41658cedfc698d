import path from 'node:path';
import type { Command } from 'commander';
import { AppError } from '../core/errors.ts';
import { formatBytes, parseSize } from '../core/units.ts';
import { apiFromProfile, cascadeHome, signedInTo } from './profile.ts';
import { table, timeToSecond } from './table.ts';
import { resolveContentId } from './content-id.ts';

// `cascade edge` (S2.1, S2.2, docs/edge.md): run an edge server, and see or steer edges.
// The edge's modules load when it runs, not for every command (#12 point 1).

const KINDS = ['delivery', 'home', 'store'] as const;
const POLICIES: Record<string, string> = { manual: 'manual', 'most-requested': 'most_requested', 'recently-added': 'recently_added' };

interface EdgeView {
  id: string;
  kind: string;
  label: string;
  cacheBytes: number;
  policy: string;
  online: boolean;
  lastReportAt: string | null;
  stats: { hits: number; misses: number; bytesServed: number; load: number; usedBytes: number; filling: string | null; deliveries?: { recorded: number; acknowledged: number; refused: number; pending: number } } | null;
  hitRate: number | null;
  serveUrl: string;
}

interface EdgeDetail extends EdgeView {
  holdings: { contentId: string; title: string | null; bytes: number; complete: boolean; lastUsedAt: string; pinned: boolean }[];
  plan: { fetch: { contentId: string; why: string }[]; evict: { contentId: string; why: string }[]; skipped: { contentId: string; why: string }[] };
}

export function registerEdge(program: Command) {
  const edge = program
    .command('edge')
    .description('run an edge server (delivery, home or store) that caches content near users (S2.1–S2.6); `edge status` lists edges')
    .option('--kind <kind>', `delivery, home or store`, 'delivery')
    .option('--label <location>', 'where it is, wide to narrow: eu/paris/building-7 (receivers are routed to the nearest edge by it)')
    .option('--cache <size>', 'disk it may fill, e.g. 20GB or 500MiB')
    .option('--policy <policy>', 'what the origin pushes to it ahead of demand: manual, most-requested or recently-added', 'most-requested')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--port <port>', 'port to serve on (0: any free port)', (v) => Number(v), 0)
    .option('--advertise <url>', 'URL receivers reach this edge at (default: http://host:port)')
    .option('--home <dir>', 'the edge’s directory: key, cache, journals (default: <cascade home>/edge-<kind>)')
    .option('--slots <n>', 'upload slots (pieces served at once)', (v) => Number(v), 8)
    .option('--report-ms <ms>', 'how often it reports to the origin and gets its plan', (v) => Number(v), 10_000)
    .action(async (opts) => {
      const g = program.opts();
      if (!(KINDS as readonly string[]).includes(opts.kind)) throw new AppError('invalid_argument', `--kind is one of ${KINDS.join(', ')}, got "${opts.kind}".`);
      if (!opts.label) throw new AppError('invalid_argument', '--label is required: where the edge is, e.g. eu/paris/building-7.');
      if (!opts.cache) throw new AppError('invalid_argument', '--cache is required: how much disk it may fill, e.g. 20GB.');
      const policy = POLICIES[opts.policy];
      if (!policy) throw new AppError('invalid_argument', `--policy is one of ${Object.keys(POLICIES).join(', ')}, got "${opts.policy}".`);
      let cacheBytes: number;
      try {
        cacheBytes = parseSize(opts.cache);
      } catch (err) {
        throw new AppError('invalid_argument', `--cache: ${(err as Error).message}`);
      }
      if (!(Number.isInteger(opts.reportMs) && opts.reportMs >= 500)) throw new AppError('invalid_argument', '--report-ms must be a whole number of milliseconds, at least 500.');
      const api = apiFromProfile({ origin: g.origin });
      const profile = signedInTo(api.origin);
      // Refused before anything is registered: the origin would refuse the edge only after its device became a terminal.
      const me = await api.get<{ username: string; roles: string[] }>('/auth/me');
      if (!me.roles.includes('operator')) throw new AppError('operator_required', `Only an operator runs edges; ${me.username} is signed in here (cascade login --username <operator>).`);
      const [{ startEdge }, { createLogger }, { edgeExtensions }] = await Promise.all([import('../edge/node.ts'), import('../core/logger.ts'), import('../edge/extensions.ts')]);
      const node = await startEdge({
        origin: api.origin,
        token: api.token!,
        originKey: profile.originKey,
        home: opts.home ?? path.join(cascadeHome(), `edge-${opts.kind}`),
        kind: opts.kind,
        label: opts.label,
        cacheBytes,
        policy: policy as never,
        host: opts.host,
        port: opts.port,
        advertiseUrl: opts.advertise,
        slots: opts.slots,
        reportMs: opts.reportMs,
        logger: createLogger(process.env.LOG_LEVEL ?? 'warn', 'edge'),
        ffmpeg: process.env.FFMPEG || 'ffmpeg',
        extensions: edgeExtensions(opts.kind, { ffmpeg: process.env.FFMPEG || 'ffmpeg' }),
      });
      const ready = { event: 'ready', edgeId: node.edgeId, terminalId: node.terminalId, kind: node.kind, label: node.label, url: node.url, cacheBytes };
      if (g.json) process.stdout.write(JSON.stringify(ready) + '\n');
      else process.stderr.write(`edge ${node.edgeId} (${node.kind}, ${node.label}) serving at ${node.url}, cache ${formatBytes(cacheBytes)}, policy ${opts.policy}\n`);
      const stop = async () => {
        await node.close();
        process.exit(0);
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });

  edge
    .command('status [edgeId]')
    .description('edges with their caches, hit rates and load (operators); with an ID, what it holds and its plan')
    .action(async (edgeId: string | undefined) => {
      const g = program.opts();
      const api = apiFromProfile({ origin: g.origin });
      if (edgeId) {
        const d = await api.get<EdgeDetail>(`/edges/${encodeURIComponent(edgeId)}`);
        if (g.json) return void process.stdout.write(JSON.stringify(d) + '\n');
        // S2.4: what its deliveries came to on the origin (the edge's own journal: GET /edge on the edge).
        const billed = await api.get<{ counts: { opened: number; open: number; billed: number; billedFees: number } }>(`/edges/${encodeURIComponent(edgeId)}/deliveries?limit=1`);
        const c = billed.counts;
        const j = d.stats?.deliveries;
        const journaled = j ? `; its journal: ${j.recorded} reports recorded, ${j.acknowledged} acknowledged, ${j.refused} refused, ${j.pending} to send` : '';
        process.stdout.write(`${describe(d)}\ndeliveries: ${c.opened} opened, ${c.billed} billed (fees ${c.billedFees}), ${c.open} waiting for their final report${journaled}\n\n`);
        const rows = d.holdings.map((h) => [h.contentId.slice(0, 12), h.title ?? '?', formatBytes(h.bytes), h.complete ? 'yes' : 'arriving', timeToSecond(h.lastUsedAt), h.pinned ? 'pinned' : '']);
        process.stdout.write(rows.length ? table(['CONTENT', 'TITLE', 'SIZE', 'COMPLETE', 'LAST USED', ''], rows, [2]).join('\n') + '\n' : 'It holds nothing yet.\n');
        for (const f of d.plan.fetch) process.stdout.write(`to fetch  ${f.contentId.slice(0, 12)}: ${f.why}\n`);
        for (const e of d.plan.evict) process.stdout.write(`to drop   ${e.contentId.slice(0, 12)}: ${e.why}\n`);
        for (const s of d.plan.skipped) process.stdout.write(`left out  ${s.contentId.slice(0, 12)}: ${s.why}\n`);
        return;
      }
      const { items, scope } = await api.get<{ items: EdgeView[]; scope: 'all' | 'home_and_store' }>('/edges');
      if (g.json) return void process.stdout.write(JSON.stringify(items) + '\n');
      if (scope !== 'all') {
        // A member sees only where home and store servers are (operators see every edge with its figures).
        if (!items.length) return void process.stdout.write('No home or store server yet. (Delivery edges and their figures are listed for operators.)\n');
        process.stdout.write(table(['EDGE', 'KIND', 'LABEL', 'ONLINE'], items.map((e) => [e.id, e.kind, e.label, e.online ? 'yes' : 'no'])).join('\n') + '\n');
        return;
      }
      if (!items.length) return void process.stdout.write('No edges yet: start one with `cascade edge --kind delivery --label eu/paris --cache 20GB`.\n');
      const rows = items.map((e) => [
        e.id,
        e.kind,
        e.label,
        e.online ? 'yes' : 'no',
        `${formatBytes(e.stats?.usedBytes ?? 0)} / ${formatBytes(e.cacheBytes)}`,
        e.hitRate === null ? '-' : `${Math.round(e.hitRate * 100)}%`,
        e.stats ? `${Math.round(e.stats.load * 100)}%` : '-',
        formatBytes(e.stats?.bytesServed ?? 0),
        e.policy.replace('_', '-'),
      ]);
      process.stdout.write(table(['EDGE', 'KIND', 'LABEL', 'ONLINE', 'CACHE USED', 'HITS', 'LOAD', 'SERVED', 'POLICY'], rows, [5, 6, 7]).join('\n') + '\n');
    });

  edge
    .command('pin <edgeId> <content>')
    .description('put a content on an edge ahead of demand (manual placement; operators)')
    .option('--remove', 'take the pin off instead')
    .action(async (edgeId: string, content: string, opts) => {
      const api = apiFromProfile({ origin: program.opts().origin });
      const id = await resolveContentId(api, content);
      if (opts.remove) {
        const res = await api.request<{ removed: boolean }>('DELETE', `/edges/${encodeURIComponent(edgeId)}/pins/${id}`);
        process.stdout.write(res.removed ? `unpinned ${id} from ${edgeId}\n` : `${id} was not pinned on ${edgeId}\n`);
      } else {
        await api.request('PUT', `/edges/${encodeURIComponent(edgeId)}/pins/${id}`);
        process.stdout.write(`pinned ${id} on ${edgeId}: it is fetched at the edge's next report\n`);
      }
    });
}

function describe(e: EdgeView): string {
  const hit = e.hitRate === null ? 'no requests yet' : `hit rate ${Math.round(e.hitRate * 100)}% (${e.stats!.hits} hits, ${e.stats!.misses} misses)`;
  return [
    `${e.id}  ${e.kind} edge at ${e.label}  ${e.online ? 'online' : 'OFFLINE'} (last report ${e.lastReportAt ? timeToSecond(e.lastReportAt) : 'never'})`,
    `cache ${formatBytes(e.stats?.usedBytes ?? 0)} of ${formatBytes(e.cacheBytes)}, policy ${e.policy.replace('_', '-')}, ${hit}, load ${e.stats ? Math.round(e.stats.load * 100) : 0}%, served ${formatBytes(e.stats?.bytesServed ?? 0)}`,
    `serves at ${e.serveUrl}${e.stats?.filling ? `, now fetching ${e.stats.filling.slice(0, 12)}` : ''}`,
  ].join('\n');
}
