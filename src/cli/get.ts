import type { Command } from 'commander';
import path from 'node:path';
import { Api } from '../core/http-client.ts';
import { apiFromProfile, cascadeHome, signedInTo } from './profile.ts';
import { resolveContentId } from './content-id.ts';
import { monotonicMs, systemClock } from '../core/clock.ts';
import { AppError } from '../core/errors.ts';
import type { Progress } from '../transfer/downloader.ts';
import type { Reservation } from '../ledger/reservations.ts';
import { parseRate } from '../transfer/token-bucket.ts';
import { describeSources } from '../transfer/source-report.ts';

// The downloader loads when `get` runs, not for every command (#12 point 1).

export function registerGet(program: Command) {
  program
    .command('get')
    .description('download a content, verifying every piece; resumes after an interruption (S1.6)')
    .argument('<contentId>', 'content ID (64 hex characters, or a unique prefix of 8 or more)')
    .option('-o, --output <file>', 'where to write it (default: the content ID in the current directory)')
    .option('--concurrency <n>', 'piece requests in flight', (v) => Number(v), 8)
    .option('--down-rate <rate>', 'cap the download rate, e.g. 8MB/s', parseRate)
    .action(async (given: string, opts) => {
      const g = program.opts();
      const [{ deviceSession }, { download, fileTarget }, { default: cliProgress }] = await Promise.all([
        import('../terminals/device.ts'),
        import('../transfer/downloader.ts'),
        import('cli-progress'),
      ]);
      const userApi = apiFromProfile({ origin: g.origin });
      const profile = signedInTo(userApi.origin);
      const contentId = await resolveContentId(userApi, given);
      const device = await deviceSession(userApi, cascadeHome());
      const api = new Api(userApi.origin, device.token);
      const outPath = path.resolve(opts.output ?? contentId);

      const bar = g.json
        ? undefined
        : new cliProgress.SingleBar(
            { format: '{bar} {percentage}% | {mb}/{totalMb} MiB | {speed} MB/s | {pieces}/{totalPieces} pieces', hideCursor: true, stream: process.stderr },
            cliProgress.Presets.shades_classic,
          );
      const started = monotonicMs();
      let lastJson = -Infinity;
      let firstBytes = -1;
      const onProgress = (p: Progress) => {
        if (firstBytes < 0) firstBytes = p.bytes;
        const seconds = (monotonicMs() - started) / 1000;
        const speed = seconds > 0 ? ((p.bytes - firstBytes) / 1e6 / seconds).toFixed(1) : '0';
        if (bar) {
          if (!bar.isActive) bar.start(p.totalBytes, p.bytes, { mb: 0, totalMb: (p.totalBytes / 2 ** 20).toFixed(1), speed, pieces: 0, totalPieces: p.totalPieces });
          bar.update(p.bytes, { mb: (p.bytes / 2 ** 20).toFixed(1), speed, pieces: p.pieces });
        } else if (monotonicMs() - lastJson > 200 || p.pieces === p.totalPieces || p.pieces === p.resumedPieces) {
          lastJson = monotonicMs();
          process.stdout.write(JSON.stringify({ event: 'progress', ...p }) + '\n');
        }
      };
      // Ctrl-C stops cleanly: verified pieces stay, their receipts are handed in, and the user is told
      // what stays reserved and how to resume (#10 point 2).
      const stop = new AbortController();
      const onSigint = () => stop.abort();
      process.once('SIGINT', onSigint);
      let reservation: Reservation | null = null;
      try {
        const result = await download({
          signal: stop.signal,
          onReservation: (r) => {
            reservation = r;
            if (!g.json) process.stderr.write(`${r.why}\n`);
          },
          api,
          originKey: profile.originKey,
          device,
          contentId,
          files: fileTarget(outPath),
          concurrency: opts.concurrency,
          downRate: opts.downRate,
          clock: systemClock,
          onProgress,
        });
        bar?.stop();
        // S1.5, tell people why: which sources served how much, and why holders were not used.
        if (g.json) process.stdout.write(JSON.stringify({ event: 'done', ...result, sources: describeSources(result) }) + '\n');
        else {
          const resumed = result.resumedPieces ? ` (resumed: ${result.resumedPieces} pieces were already verified)` : '';
          process.stdout.write(`${result.title}: ${result.totalBytes} bytes verified, written to ${result.path}${resumed}\n`);
          process.stdout.write(describeSources(result).map((l) => `${l}\n`).join(''));
          if (result.refusedReceipts.length) {
            process.stderr.write(`${result.refusedReceipts.length} receipt(s) were refused by the origin and not charged: ${result.refusedReceipts.map((r) => r.code).join(', ')}\n`);
          }
          if (!result.endReported) process.stderr.write('The origin could not be told that the download finished (it was out of reach); what stays reserved is released when the reservation times out.\n');
          if (result.receiptsWaiting) process.stderr.write(`${result.receiptsWaiting} receipt(s) wait for their source to report serving them; they are charged when it does.\n`);
        }
      } catch (err) {
        if (!(err instanceof AppError && err.code === 'aborted')) throw err;
        bar?.stop();
        const d = (err.details ?? {}) as { pieces?: number; totalPieces?: number };
        const r = reservation as Reservation | null;
        const held =
          r && r.held > 0
            ? `What is left of the ${r.held} reserved for this content stays reserved until ${new Date(r.heldUntil!).toISOString()}: the pieces received are paid from it, the rest is released when the download finishes (or then). `
            : '';
        const message = `Stopped at ${d.pieces}/${d.totalPieces} pieces; the verified ones are kept in ${outPath}.part. ${held}Run the same command again to resume.`;
        if (g.json) process.stdout.write(JSON.stringify({ event: 'stopped', pieces: d.pieces, totalPieces: d.totalPieces, reservation: r, message }) + '\n');
        else process.stderr.write(`\n${message}\n`);
        process.exitCode = 130;
      } finally {
        process.off('SIGINT', onSigint);
        bar?.stop();
      }
    });
}
