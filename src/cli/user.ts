import type { Command } from 'commander';
import { Api } from '../core/http-client.ts';
import { checkReachable, signIn } from './login.ts';
import { ask, askNewPassword, doneAsking } from './prompt.ts';
import { apiFromProfile, chooseOrigin } from './profile.ts';
import { AppError, badRequest } from '../core/errors.ts';
import { ROLES, type Role } from '../core/roles.ts';

// Accounts from the CLI alone (issue 12 #2): `cascade signup` for oneself (a member, S3.1),
// `cascade user …` for operators (accounts and roles: publisher, store, …) and for one's own
// password and contact details (S3.8). Passwords come from $CASCADE_PASSWORD, or are asked
// without echo.

interface User {
  id: string;
  username: string;
  roles: Role[];
  createdAt: string;
  email: string | null;
  webPage: string | null;
}

const out = (json: boolean, data: unknown, text: string): void => void process.stdout.write((json ? JSON.stringify(data) : text) + '\n');

function parseRoles(v: string, prev: Role[] = []): Role[] {
  const roles = v.split(',').map((r) => r.trim()).filter(Boolean);
  const bad = roles.filter((r) => !(ROLES as readonly string[]).includes(r));
  if (bad.length || roles.length === 0) throw new AppError('invalid_argument', `Roles are some of ${ROLES.join(', ')}; got "${v}".`);
  return [...prev, ...(roles as Role[])];
}

/** The account named `username`, found through the operators' list. */
async function findUser(api: Api, username: string): Promise<User> {
  const { items } = await api.get<{ items: User[] }>(`/users?${new URLSearchParams({ username, limit: '1' })}`);
  if (!items[0]) throw new AppError('unknown_user', `No account is named "${username}" (\`cascade user list\` lists them).`, 404);
  return items[0];
}

const newPassword = async () => process.env.CASCADE_PASSWORD || (await askNewPassword());

export function registerUser(program: Command) {
  program
    .command('signup')
    .description('create your own account (a member: downloads, a wallet, terminals) and sign in with it')
    .option('--username <name>', '3–40 characters: a-z, 0-9, ".", "_", "-" (default: asked)')
    .action(async (opts: { username?: string }) => {
      const g = program.opts();
      const origin = chooseOrigin(g.origin);
      await checkReachable(origin);
      const username = opts.username ?? (await ask('username: '));
      const password = await newPassword();
      doneAsking();
      await new Api(origin).post('/users/signup', { username, password });
      const user = await signIn(origin, username, password);
      out(g.json, { origin, user }, `signed up and signed in to ${origin} as ${user.username} (${user.roles.join(', ')}); an operator can give more roles`);
    });

  const user = program.command('user').description('accounts: operators add and list them and set their roles; anyone changes their own password');
  const api = () => apiFromProfile({ origin: program.opts().origin });

  user
    .command('add')
    .description('create an account with roles (operator)')
    .argument('<username>', '3–40 characters: a-z, 0-9, ".", "_", "-"')
    .option('--role <roles>', `role(s), comma-separated or repeated: ${ROLES.join(', ')} (default: member)`, parseRoles)
    .action(async (username: string, opts: { role?: Role[] }) => {
      const password = await newPassword();
      doneAsking();
      const created = await api().post<User>('/users', { username, password, roles: opts.role ?? ['member'] });
      out(program.opts().json, created, `created ${created.username} (${created.roles.join(', ')})`);
    });

  user
    .command('list')
    .description('every account with its roles (operator)')
    .option('--after <username>', 'the next page: start after this name')
    .action(async (opts: { after?: string }) => {
      const query = new URLSearchParams({ limit: '200', ...(opts.after ? { after: opts.after } : {}) });
      const page = await api().get<{ items: User[]; nextCursor: string | null }>(`/users?${query}`);
      if (program.opts().json) return out(true, page, '');
      const width = Math.max(8, ...page.items.map((u) => u.username.length));
      for (const u of page.items) process.stdout.write(`${u.username.padEnd(width)}  ${u.roles.join(',').padEnd(30)}  ${u.createdAt.slice(0, 10)}  ${u.id}\n`);
      if (page.nextCursor) process.stderr.write(`more: cascade user list --after ${page.nextCursor}\n`);
    });

  user
    .command('roles')
    .description('show an account’s roles, or change them (operator)')
    .argument('<username>')
    .option('--add <roles>', 'give these role(s)', parseRoles)
    .option('--remove <roles>', 'take these role(s) away', parseRoles)
    .option('--set <roles>', 'exactly these role(s)', parseRoles)
    .action(async (username: string, opts: { add?: Role[]; remove?: Role[]; set?: Role[] }) => {
      const a = api();
      const found = await findUser(a, username);
      let roles = opts.set ?? found.roles;
      roles = [...new Set([...roles, ...(opts.add ?? [])])].filter((r) => !(opts.remove ?? []).includes(r));
      if (!opts.add && !opts.remove && !opts.set) return out(program.opts().json, found, `${found.username}: ${found.roles.join(', ')}`);
      if (roles.length === 0) throw badRequest('invalid_role', 'An account keeps at least one role; nothing changed.');
      const updated = await a.request<User>('PUT', `/users/${found.id}/roles`, { json: { roles } });
      out(program.opts().json, updated, `${updated.username}: ${updated.roles.join(', ')}`);
    });

  user
    .command('contact')
    .description('your e-mail address and web page (S3.8): shown without options; set or cleared with them')
    .option('--email <address>', 'your e-mail address')
    .option('--web-page <url>', 'your web page, an http(s) URL')
    .option('--clear-email', 'remove your e-mail address')
    .option('--clear-web-page', 'remove your web page')
    .action(async (opts: { email?: string; webPage?: string; clearEmail?: boolean; clearWebPage?: boolean }) => {
      if ((opts.email !== undefined && opts.clearEmail) || (opts.webPage !== undefined && opts.clearWebPage)) {
        throw new AppError('invalid_argument', 'Give a value or clear it, not both; nothing changed.');
      }
      const change = {
        ...(opts.email !== undefined ? { email: opts.email } : opts.clearEmail ? { email: null } : {}),
        ...(opts.webPage !== undefined ? { webPage: opts.webPage } : opts.clearWebPage ? { webPage: null } : {}),
      };
      const a = api();
      const me = Object.keys(change).length ? await a.request<User>('PUT', '/me/contact', { json: change }) : await a.get<User>('/auth/me');
      const contact = { username: me.username, email: me.email, webPage: me.webPage };
      out(program.opts().json, contact, `${me.username}\n  e-mail    ${me.email ?? '(none)'}\n  web page  ${me.webPage ?? '(none)'}`);
    });

  user
    .command('passwd')
    .description('change your own password; an operator may name another account to reset its password')
    .argument('[username]', 'another account (operator)')
    .action(async (username: string | undefined) => {
      const a = api();
      if (username) {
        const found = await findUser(a, username);
        const password = await newPassword();
        doneAsking();
        await a.request('PUT', `/users/${found.id}/password`, { json: { password } });
        return out(program.opts().json, { username: found.username, changed: true }, `password of ${found.username} reset; its sessions are signed out (its terminals stay signed in)`);
      }
      const currentPassword = await ask('current password: ', { secret: true });
      const password = await askNewPassword();
      doneAsking();
      await a.request('PUT', '/auth/password', { json: { currentPassword, newPassword: password } });
      out(program.opts().json, { changed: true }, 'password changed; your other sessions are signed out (this one and your terminals stay)');
    });
}
