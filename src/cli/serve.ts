import type { Command } from 'commander';
import { loadConfig } from '../core/config.ts';
import { startOrigin } from '../server.ts';

export function registerServe(program: Command) {
  program
    .command('serve')
    .description('run the origin: API, coordinator, piece store (PORT, DATA_DIR, DATABASE_URL, NATS_URL from the environment)')
    .action(async () => {
      const origin = await startOrigin({ config: loadConfig() });
      const stop = async () => {
        await origin.close();
        process.exit(0);
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
}
