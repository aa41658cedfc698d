import type { Command } from 'commander';
import { Api } from '../core/http-client.ts';
import { ask, doneAsking } from './prompt.ts';
import { chooseOrigin, writeProfile } from './profile.ts';
import { AppError, badRequest } from '../core/errors.ts';

/** Issue 12 #2: is anything answering there? Asked before a password is, so nobody types one for nothing. */
export async function checkReachable(origin: string): Promise<void> {
  let status: number;
  try {
    status = (await fetch(`${origin}/health`, { signal: AbortSignal.timeout(5000) })).status;
  } catch (err: any) {
    const why = err?.name === 'TimeoutError' ? 'no answer within 5 s' : (err?.cause?.code ?? err?.message ?? String(err));
    throw new AppError(
      'origin_unreachable',
      `Cannot reach the origin at ${origin} (${why}). Is it running (\`npm start\`)? Give its address with --origin URL or CASCADE_ORIGIN=URL.`,
      503,
    );
  }
  if (status !== 200) throw new AppError('origin_unreachable', `${origin}/health answered ${status}: is that a Cascade origin, and is it healthy?`, 503);
}

/** Signs in at `origin` and keeps the token and the origin's key (pinned) in the profile. */
export async function signIn(origin: string, username: string, password: string) {
  const api = new Api(origin);
  const { publicKey } = await api.get('/origin');
  const { token, user } = await api.post('/auth/login', { username, password });
  writeProfile({ origin, token, username: user.username, originKey: publicKey });
  return user as { username: string; roles: string[] };
}

export function registerLogin(program: Command) {
  program
    .command('login')
    .description('sign in and keep an API token for later commands (checks the origin answers first)')
    .option('--username <name>', 'account name (default: asked)')
    .option('--password <password>', 'password (default: $CASCADE_PASSWORD, or asked without echo)')
    .action(async (opts) => {
      const g = program.opts();
      const origin = chooseOrigin(g.origin);
      await checkReachable(origin);
      const username = opts.username ?? (await ask('username: '));
      const password = opts.password ?? (process.env.CASCADE_PASSWORD || (await ask('password: ', { secret: true })));
      doneAsking();
      if (!username || !password) throw badRequest('missing_credentials', 'Give a username and a password.');
      const user = await signIn(origin, username, password);
      if (g.json) process.stdout.write(JSON.stringify({ origin, user }) + '\n');
      else process.stdout.write(`signed in to ${origin} as ${user.username} (${user.roles.join(', ')})\n`);
    });
}
