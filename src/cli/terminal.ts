import type { Command } from 'commander';
import os from 'node:os';
import { Api } from '../core/http-client.ts';
import { resolveContentId } from './content-id.ts';
import { apiFromProfile, cascadeHome } from './profile.ts';
import { badRequest } from '../core/errors.ts';
import { deviceSession } from '../terminals/device.ts';
import type { Holder } from '../terminals/service.ts';

// `cascade terminal …`: register this device, send a test heartbeat, list holders (S1.2, S1.3).

function out(json: boolean, data: unknown, textLine: string) {
  process.stdout.write(json ? JSON.stringify(data) + '\n' : textLine + '\n');
}

/** CPU use as a ratio: the 1-minute load average per core, capped at 1 (S1.2). */
export function measuredCpu(): number {
  const cores = Math.max(os.cpus().length, 1);
  return Math.min(os.loadavg()[0] / cores, 1);
}

function bps(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw badRequest('invalid_option', `"${v}" is not a rate in bits/s.`);
  return n;
}

export function registerTerminal(program: Command) {
  const terminal = program.command('terminal').description('this device as a Cascade terminal: register, heartbeat, holder lists');
  const api = () => apiFromProfile({ origin: program.opts().origin });

  terminal
    .command('register')
    .description('register this device with the origin (once) and log it in with its device key')
    .option('--name <name>', 'terminal name (default: host name)')
    .option('--region <region>', 'region, used to pick nearby holders')
    .option('--network <network>', 'network (e.g. ISP or AS), used to pick nearby holders')
    .action(async (opts) => {
      const s = await deviceSession(api(), cascadeHome(), { name: opts.name, region: opts.region, network: opts.network });
      out(program.opts().json, { terminalId: s.terminalId, publicKey: s.keys.publicKeyB64 }, `terminal ${s.terminalId} (key ${s.keys.publicKeyB64})`);
    });

  terminal
    .command('heartbeat')
    .description('send one heartbeat with this machine’s CPU load (for testing; the agent beats on its own)')
    .option('--uptime <ratio>', 'uptime ratio 0..1', '1')
    .option('--up-bps <n>', 'upstream capacity, bits/s', bps, 0)
    .option('--down-bps <n>', 'downstream capacity, bits/s', bps, 0)
    .option('--send-bps <n>', 'current send rate, bits/s', bps, 0)
    .option('--recv-bps <n>', 'current receive rate, bits/s', bps, 0)
    .action(async (opts) => {
      const base = api();
      const s = await deviceSession(base, cascadeHome());
      const state = {
        uptimeRatio: Number(opts.uptime),
        upBps: opts.upBps,
        downBps: opts.downBps,
        sendLoadBps: opts.sendBps,
        recvLoadBps: opts.recvBps,
        cpu: measuredCpu(),
      };
      await new Api(base.origin, s.token).post('/terminals/heartbeat', state);
      out(program.opts().json, { terminalId: s.terminalId, state }, `heartbeat sent for ${s.terminalId}: cpu ${(state.cpu * 100).toFixed(0)}%`);
    });

  terminal
    .command('holders')
    .argument('<contentId>', 'content ID (64 hex characters, or a unique prefix of 8 or more)')
    .description('list the terminals holding a content, online first, with their last state (S1.3)')
    .action(async (given: string) => {
      const contentId = await resolveContentId(api(), given);
      const res = await api().get<{ contentId: string; holders: Holder[] }>(`/contents/${encodeURIComponent(contentId)}/holders`);
      if (program.opts().json) return out(true, res, '');
      if (res.holders.length === 0) return out(false, res, `no terminal holds ${contentId}`);
      const lines = res.holders.map((h) => {
        const st = h.state;
        const link = st ? `up ${fmtBps(st.upBps)} down ${fmtBps(st.downBps)} cpu ${(st.cpu * 100).toFixed(0)}%` : 'no heartbeat yet';
        return `${h.online ? 'online ' : 'offline'}  ${h.terminalId}  ${h.name}  ${h.region || '-'}/${h.network || '-'}  ${link}  last seen ${h.lastSeenAt ?? 'never'}`;
      });
      out(false, res, lines.join('\n'));
    });
}

function fmtBps(n: number): string {
  const units = ['bit/s', 'kbit/s', 'Mbit/s', 'Gbit/s', 'Tbit/s'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) (n /= 1000), i++;
  return `${n.toFixed(n < 10 && i > 0 ? 1 : 0)} ${units[i]}`;
}
