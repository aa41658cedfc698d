import { writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import type { Clock } from '../core/clock.ts';
import { sha256Hex } from '../core/crypto.ts';
import { AppError, badRequest, conflict, notFound, unauthorized } from '../core/errors.ts';
import type { Principal } from '../core/http.ts';
import { newId, newSecret } from '../core/ids.ts';
import type { Db } from '../db/connection.ts';
import { hashPassword, verifyPassword } from './passwords.ts';
import { ROLES, type Role } from './tables.ts';

export interface PublicUser {
  id: string;
  username: string;
  roles: Role[];
  createdAt: string;
}

const USERNAME = /^[a-z0-9][a-z0-9._-]{2,39}$/;

export class AccountService {
  constructor(
    private readonly db: Db,
    private readonly clock: Clock,
  ) {}

  async createUser(username: string, password: string, roles: Role[]): Promise<PublicUser> {
    if (!USERNAME.test(username)) {
      throw badRequest('invalid_username', 'A username is 3–40 characters: lower-case letters, digits, ".", "_" or "-".');
    }
    checkStrength(password);
    if (roles.length === 0 || roles.some((r) => !ROLES.includes(r))) {
      throw badRequest('invalid_role', `Roles are some of: ${ROLES.join(', ')}.`);
    }
    const user = {
      id: newId('usr'),
      username,
      password_hash: await hashPassword(password),
      roles: [...new Set(roles)],
      created_at: new Date(this.clock.now()),
    };
    const inserted = await this.db.insertInto('users').values(user).onConflict((oc) => oc.column('username').doNothing()).returningAll().executeTakeFirst();
    if (!inserted) throw conflict('username_taken', `The username "${username}" is taken.`);
    return toPublic(inserted);
  }

  async getUser(id: string): Promise<PublicUser> {
    const row = await this.db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw notFound('unknown_user', `No user ${id}.`);
    return toPublic(row);
  }

  /** Accounts in username order, `limit` at a time after the username `after` (keyset paging). */
  async listUsers(opts: { limit: number; after?: string; username?: string }): Promise<{ items: PublicUser[]; nextCursor: string | null }> {
    let q = this.db.selectFrom('users').selectAll().orderBy('username').limit(opts.limit + 1);
    if (opts.username !== undefined) q = q.where('username', '=', opts.username);
    if (opts.after !== undefined) q = q.where('username', '>', opts.after);
    const rows = await q.execute();
    const items = rows.slice(0, opts.limit).map(toPublic);
    return { items, nextCursor: rows.length > opts.limit ? items.at(-1)!.username : null };
  }

  /** Changes one's own password: the current one must be right (a stolen session alone cannot lock the owner out). */
  async changePassword(userId: string, currentPassword: string, newPassword: string): Promise<void> {
    const row = await this.db.selectFrom('users').select('password_hash').where('id', '=', userId).executeTakeFirst();
    if (!row || !(await verifyPassword(currentPassword, row.password_hash))) throw unauthorized('bad_credentials', 'The current password is wrong; nothing changed.');
    await this.setPassword(userId, newPassword);
  }

  /** Sets an account's password (an operator's reset, or after changePassword's check). */
  async setPassword(userId: string, password: string): Promise<void> {
    checkStrength(password);
    const updated = await this.db.updateTable('users').set({ password_hash: await hashPassword(password) }).where('id', '=', userId).executeTakeFirst();
    if (!updated.numUpdatedRows) throw notFound('unknown_user', `No user ${userId}.`);
  }

  async usernames(ids: string[]): Promise<Map<string, string>> {
    if (ids.length === 0) return new Map();
    const rows = await this.db.selectFrom('users').select(['id', 'username']).where('id', 'in', ids).execute();
    return new Map(rows.map((r) => [r.id, r.username]));
  }

  async setRoles(id: string, roles: Role[]): Promise<PublicUser> {
    if (roles.length === 0 || roles.some((r) => !ROLES.includes(r))) throw badRequest('invalid_role', `Roles are some of: ${ROLES.join(', ')}.`);
    const row = await this.db.updateTable('users').set({ roles: [...new Set(roles)] }).where('id', '=', id).returningAll().executeTakeFirst();
    if (!row) throw notFound('unknown_user', `No user ${id}.`);
    return toPublic(row);
  }

  /** Checks a password and issues a new API token. */
  async login(username: string, password: string, label = 'login'): Promise<{ token: string; user: PublicUser }> {
    const row = await this.db.selectFrom('users').selectAll().where('username', '=', username).executeTakeFirst();
    // Hash even for unknown users so the reply time does not reveal which names exist.
    const ok = row ? await verifyPassword(password, row.password_hash) : (await hashPassword(password), false);
    if (!row || !ok) throw unauthorized('bad_credentials', 'Wrong username or password.');
    const token = await this.issueToken(row.id, null, label, null);
    return { token, user: toPublic(row) };
  }

  /** A new bearer token for `userId` (and, for a terminal session, `terminalId`). Only its hash is kept. */
  async issueToken(userId: string, terminalId: string | null, label: string, expiresAt: Date | null): Promise<string> {
    const token = `cst_${newSecret()}`;
    await this.db
      .insertInto('api_tokens')
      .values({ token_hash: sha256Hex(token), user_id: userId, terminal_id: terminalId, label, created_at: new Date(this.clock.now()), expires_at: expiresAt })
      .execute();
    return token;
  }

  /** An account API token, expiring `expiresInDays` after now on the injected clock (never, without). */
  async createApiToken(userId: string, label: string, expiresInDays?: number): Promise<{ token: string; expiresAt: string | null }> {
    const expires = expiresInDays ? new Date(this.clock.now() + expiresInDays * 86_400_000) : null;
    return { token: await this.issueToken(userId, null, label, expires), expiresAt: expires?.toISOString() ?? null };
  }

  async revokeToken(token: string): Promise<void> {
    await this.db.deleteFrom('api_tokens').where('token_hash', '=', sha256Hex(token)).execute();
  }

  resolveToken = async (token: string): Promise<Principal | null> => {
    const row = await this.db
      .selectFrom('api_tokens')
      .innerJoin('users', 'users.id', 'api_tokens.user_id')
      .select(['users.id', 'users.username', 'users.roles', 'api_tokens.terminal_id', 'api_tokens.expires_at'])
      .where('api_tokens.token_hash', '=', sha256Hex(token))
      .executeTakeFirst();
    if (!row) return null;
    if (row.expires_at && row.expires_at.getTime() <= this.clock.now()) return null;
    return { userId: row.id, username: row.username, roles: row.roles, terminalId: row.terminal_id };
  };

  /**
   * On first start there is no operator: create one and write its credentials to a
   * file readable only by the owner (never to the log). Returns the file path if created.
   */
  async bootstrapOperator(dataDir: string): Promise<string | null> {
    const anyOperator = await this.db
      .selectFrom('users')
      .select('id')
      .where((eb) => eb(eb.val('operator'), '=', eb.fn.any('roles')))
      .executeTakeFirst();
    if (anyOperator) return null;
    const password = newSecret(18);
    const user = await this.createUser('operator', password, ['operator']);
    const file = path.join(dataDir, 'operator-credentials.txt');
    if (existsSync(file)) throw new AppError('bootstrap_conflict', `${file} exists but names no operator in this database`, 500);
    writeFileSync(
      file,
      `# Cascade operator account, created ${new Date(this.clock.now()).toISOString()}.\n` +
        `# Sign in with: cascade login --username operator\n# then change or delete this file.\n` +
        `username=${user.username}\npassword=${password}\n`,
      { mode: 0o600, flag: 'wx' },
    );
    return file;
  }
}

function checkStrength(password: string) {
  if (password.length < 10) throw badRequest('weak_password', 'A password needs at least 10 characters.');
}

function toPublic(row: { id: string; username: string; roles: Role[]; created_at: Date }): PublicUser {
  return { id: row.id, username: row.username, roles: row.roles, createdAt: row.created_at.toISOString() };
}
