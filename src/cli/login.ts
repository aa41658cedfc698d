import type { Command } from 'commander';
import { createInterface } from 'node:readline/promises';
import { Api } from '../core/http-client.ts';
import { readProfile, writeProfile, defaultOrigin } from './profile.ts';
import { badRequest } from '../core/errors.ts';

async function ask(question: string): Promise<string> {
  const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: false });
  try {
    return (await rl.question(question)).trim();
  } finally {
    rl.close();
  }
}

export function registerLogin(program: Command) {
  program
    .command('login')
    .description('sign in and keep an API token for later commands')
    .option('--username <name>', 'account name')
    .option('--password <password>', 'password (default: $CASCADE_PASSWORD, or asked on standard input)')
    .action(async (opts) => {
      const g = program.opts();
      const origin = (g.origin ?? readProfile().origin ?? defaultOrigin()).replace(/\/$/, '');
      const username = opts.username ?? (await ask('username: '));
      const password = opts.password ?? process.env.CASCADE_PASSWORD ?? (await ask('password: '));
      if (!username || !password) throw badRequest('missing_credentials', 'Give a username and a password.');
      const api = new Api(origin);
      const { publicKey } = await api.get('/origin');
      const { token, user } = await api.post('/auth/login', { username, password });
      writeProfile({ origin, token, username: user.username, originKey: publicKey });
      if (g.json) process.stdout.write(JSON.stringify({ origin, user }) + '\n');
      else process.stdout.write(`signed in to ${origin} as ${user.username} (${user.roles.join(', ')})\n`);
    });
}
