#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { AppError } from '../core/errors.ts';
import { registerServe } from './serve.ts';
import { registerLogin } from './login.ts';
import { registerPublish } from './publish.ts';
import { registerGet } from './get.ts';
import { registerTerminal } from './terminal.ts';
import { registerAgent } from './agent.ts';
import { registerEdge } from './edge.ts';
import { registerVoucher } from './voucher.ts';
import { registerWallet } from './wallet.ts';
import { registerSchedule } from './schedule.ts';
import { registerRecords } from './records.ts';
import { registerCatalog } from './catalog.ts';
import { registerUser } from './user.ts';
import { registerChannel } from './channel.ts';
import { registerReserve, registerTime } from './reserve.ts';
import { registerLive } from './live.ts';
import { registerBroadcast } from './broadcast.ts';
import { registerOutbox } from './outbox.ts';
import { registerTrace } from './trace.ts';
import { endQuietlyOnClosedPipe } from './output.ts';

endQuietlyOnClosedPipe();

// One `cascade` command for every role (ARCHITECTURE.md "Processes").
const program = new Command('cascade')
  .description('Cascade content distribution: origin server, agents and client commands')
  .option('--origin <url>', 'origin URL (default: from login, $CASCADE_ORIGIN or http://127.0.0.1:8080)')
  .option('--json', 'print machine-readable JSON instead of text')
  .exitOverride();

registerServe(program);
registerLogin(program);
registerPublish(program);
registerGet(program);
registerTerminal(program);
registerAgent(program);
registerEdge(program);
registerVoucher(program);
// `wallet` with its `history` and `topup` (from voucher.ts) subcommands.
registerWallet(program);
registerSchedule(program);
// `statement`, `payout` (operators) and `receipts`.
registerRecords(program);
registerCatalog(program);
registerUser(program);
// Live channels (S3): `channel` (operators), `reserve` (premium members) and `time` (S3.10).
registerChannel(program);
registerReserve(program);
registerTime(program);
registerLive(program);
// `broadcast` (S3.16): the broadcaster's sending tool, ffmpeg with effects.
registerBroadcast(program);
// `outbox` (operators: the mail outbox, S3.8).
registerOutbox(program);
registerTrace(program);

program.parseAsync(process.argv).catch((err) => {
  if (err instanceof CommanderError) process.exit(err.exitCode);
  const json = process.argv.includes('--json');
  if (err instanceof AppError) {
    if (json) process.stdout.write(JSON.stringify({ error: { code: err.code, message: err.message } }) + '\n');
    else process.stderr.write(`error (${err.code}): ${err.message}\n`);
  } else {
    process.stderr.write(`error: ${err?.stack ?? err}\n`);
  }
  process.exit(1);
});
