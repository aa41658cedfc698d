import type { Command } from 'commander';

// The origin's modules load when `serve` runs, not for every command (#12 point 1).

export function registerServe(program: Command) {
  program
    .command('serve')
    .description('run the origin: API, coordinator, piece store (PORT, DATA_DIR, DATABASE_URL, NATS_URL from the environment)')
    .action(async () => {
      const [{ loadConfig }, { startOrigin }] = await Promise.all([import('../core/config.ts'), import('../server.ts')]);
      const origin = await startOrigin({ config: loadConfig() });
      const stop = async () => {
        await origin.close();
        process.exit(0);
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
}
