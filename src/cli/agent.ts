import type { Command } from 'commander';
import { apiFromProfile, cascadeHome, signedInTo } from './profile.ts';
import { resolveContentId } from './content-id.ts';
import { monotonicMs } from '../core/clock.ts';
import { AppError } from '../core/errors.ts';
import type { ScheduleMode } from '../agent/scheduled.ts';
import { parseRate } from '../transfer/token-bucket.ts';
import { describeSources } from '../transfer/source-report.ts';

// The agent's modules (piece server, downloader, pino) load when `agent` runs, not for every command (#12 point 1).

export function registerAgent(program: Command) {
  program
    .command('agent')
    .description('run a terminal agent: local store, serves pieces to other terminals, fetches from peers and the origin (S1.2–S1.7)')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--port <port>', 'port to serve pieces on (0: any free port)', (v) => Number(v), 0)
    .option('--advertise <url>', 'URL other terminals reach this agent at (default: http://host:port)')
    .option('--slots <n>', 'upload slots (pieces served at once)', (v) => Number(v), 4)
    .option('--up-rate <rate>', 'cap the upload rate, e.g. 8MB/s', parseRate)
    .option('--down-rate <rate>', 'cap the download rate, e.g. 8MB/s', parseRate)
    .option('--name <name>', 'terminal name')
    .option('--region <label>', 'region label, used to pick nearby peers')
    .option('--network <label>', 'network label (e.g. the building or ISP), used to pick nearby peers')
    .option('--get <contentId...>', 'content to fetch once started (full IDs or unique prefixes of 8 or more)')
    .option('--stall-ms <ms>', 'give up on a source after this long without bytes', (v) => Number(v), 5000)
    .option('--schedule <mode>', 'get scheduled deliveries (#5): pull (call in when a window opens), stream (hold a connection the origin pushes down) or address (the origin POSTs to this agent)')
    .option('--cpu-load <share>', 'report this CPU load (0..1) instead of measuring the machine (labs where many agents share one machine)', parseShare)
    .action(async (opts) => {
      const g = program.opts();
      const [{ startAgent }, { SCHEDULE_MODES }, { createLogger }] = await Promise.all([import('../agent/agent.ts'), import('../agent/scheduled.ts'), import('../core/logger.ts')]);
      const schedule = opts.schedule === undefined ? undefined : parseMode(opts.schedule, SCHEDULE_MODES);
      const api = apiFromProfile({ origin: g.origin });
      const profile = signedInTo(api.origin);
      // Resolved before the agent starts: a wrong ID is refused at once, not after start-up.
      const toGet: string[] = [];
      for (const id of opts.get ?? []) toGet.push(await resolveContentId(api, id));
      const say = (event: Record<string, unknown>) => {
        if (g.json) process.stdout.write(JSON.stringify(event) + '\n');
        else process.stderr.write(`${Object.entries(event).map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : v}`).join(' ')}\n`);
      };
      const agent = await startAgent({
        origin: api.origin,
        token: api.token!,
        originKey: profile.originKey,
        home: cascadeHome(),
        host: opts.host,
        port: opts.port,
        advertiseUrl: opts.advertise,
        name: opts.name,
        region: opts.region,
        network: opts.network,
        slots: opts.slots,
        upRate: opts.upRate,
        downRate: opts.downRate,
        downloads: { stallMs: opts.stallMs },
        cpuLoad: opts.cpuLoad === undefined ? undefined : () => opts.cpuLoad,
        schedule,
        onScheduleEvent: (e) => say({ ...e, event: `schedule.${e.event}` }),
        logger: createLogger(process.env.LOG_LEVEL ?? 'warn', 'agent'),
      });
      say({ event: 'ready', terminalId: agent.terminalId, url: agent.url });
      const stop = async () => {
        await agent.close();
        process.exit(0);
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      for (const id of toGet) {
        let last = -Infinity;
        const result = await agent.fetch(id, {
          onProgress: (p) => {
            if (monotonicMs() - last > 500 || p.pieces === p.totalPieces) {
              last = monotonicMs();
              say({ event: 'progress', contentId: id, ...p });
            }
          },
        });
        // S1.5, tell people why: which sources served how much, and why holders were not used.
        const sources = describeSources(result);
        if (g.json) say({ event: 'done', ...result, sources });
        else {
          say({ event: 'done', contentId: id, pieces: result.pieces, bytes: result.bytes, path: result.path });
          process.stderr.write(sources.map((l) => `${l}\n`).join(''));
        }
      }
    });
}

function parseMode(v: string, modes: readonly ScheduleMode[]): ScheduleMode {
  if (!(modes as readonly string[]).includes(v)) throw new AppError('invalid_argument', `--schedule is one of ${modes.join(', ')}, got "${v}".`);
  return v as ScheduleMode;
}

function parseShare(v: string): number {
  const n = Number(v);
  if (!(n >= 0 && n <= 1)) throw new AppError('invalid_argument', `--cpu-load must be a number from 0 to 1, got "${v}".`);
  return n;
}
