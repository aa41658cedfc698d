import { writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { LRUCache } from 'lru-cache';
import { monotonicMs, type Clock } from '../core/clock.ts';
import { sha256Hex } from '../core/crypto.ts';
import { AppError, badRequest, conflict, notFound, unauthorized } from '../core/errors.ts';
import type { Principal } from '../core/http.ts';
import { newId, newSecret } from '../core/ids.ts';
import type { Db } from '../db/connection.ts';
import { MAX_EMAIL_LENGTH, normalizeEmail } from '../core/email-address.ts';
import { DEFAULT_SCRYPT_N, hashPassword, verifyPassword } from './passwords.ts';
import { ROLES, type Role } from './tables.ts';

export interface PublicUser {
  id: string;
  username: string;
  roles: Role[];
  createdAt: string;
  /** S3.8: the member's contact address; null: none given. */
  email: string | null;
  /** S3.8: the member's web page; null: none given. */
  webPage: string | null;
}

/** S3.8: what other domains need to write to a member (the live domain's booking mails). */
export interface Contact {
  username: string;
  email: string | null;
  webPage: string | null;
}

/** The longest web page URL a member may give. */
export const MAX_WEB_PAGE_LENGTH = 300;

const USERNAME = /^[a-z0-9][a-z0-9._-]{2,39}$/;

/**
 * How long a resolved API token is taken on trust before the database is asked again (#19: the
 * lookup was the origin's most frequent query — 1,842 of 18,516, 13 % of its database time, in a
 * 32-agent swarm — as every heartbeat, refresh and report of every terminal carries a token).
 * Signing out, revoking, a password change and a change of roles or e-mail drop the account's
 * entries at once in this process; another origin process sharing the database sees such a
 * change within this time. An expiry is checked on every use.
 */
export const TOKEN_CACHE_MS = 2000;
/** Resolved tokens kept at most: an LRU, so many distinct tokens evict one another rather than grow it. */
const TOKEN_CACHE_MAX = 10_000;

export class AccountService {
  /** Resolved tokens by hash (see TOKEN_CACHE_MS); unknown tokens are not kept. */
  private readonly tokens = new LRUCache<string, { principal: Principal; expiresAt: number | null; at: number }>({ max: TOKEN_CACHE_MAX });
  /** Bumped whenever entries are dropped: a lookup that raced a sign-out does not put its (older) answer back. */
  private tokensDropped = 0;

  constructor(
    private readonly db: Db,
    private readonly clock: Clock,
    /** scrypt's cost for new hashes (PASSWORD_SCRYPT_N; passwords.ts). */
    private readonly scryptN = DEFAULT_SCRYPT_N,
  ) {}

  /** A password hash at this origin's cost (PASSWORD_SCRYPT_N). */
  hashPassword(password: string): Promise<string> {
    return hashPassword(password, this.scryptN);
  }

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
      password_hash: await this.hashPassword(password),
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

  /**
   * Changes one's own password: the current one must be right (a stolen session alone cannot
   * lock the owner out). Every other session of the account is signed out; `currentToken`, the
   * one asking, stays.
   */
  async changePassword(userId: string, currentPassword: string, newPassword: string, currentToken?: string): Promise<{ signedOut: number }> {
    const row = await this.db.selectFrom('users').select('password_hash').where('id', '=', userId).executeTakeFirst();
    if (!row || !(await verifyPassword(currentPassword, row.password_hash))) throw unauthorized('bad_credentials', 'The current password is wrong; nothing changed.');
    return this.setPassword(userId, newPassword, currentToken);
  }

  /**
   * Sets an account's password (an operator's reset, or after changePassword's check) and signs
   * out the account's sessions but `keepToken`: whoever knew the old password (or held a session
   * got with it) is out. Terminals' session tokens stay: devices sign in with their own keys.
   */
  async setPassword(userId: string, password: string, keepToken?: string): Promise<{ signedOut: number }> {
    checkStrength(password);
    const hash = await this.hashPassword(password);
    return this.db.transaction().execute(async (trx) => {
      const updated = await trx.updateTable('users').set({ password_hash: hash }).where('id', '=', userId).executeTakeFirst();
      if (!updated.numUpdatedRows) throw notFound('unknown_user', `No user ${userId}.`);
      let q = trx.deleteFrom('api_tokens').where('user_id', '=', userId).where('terminal_id', 'is', null);
      if (keepToken) q = q.where('token_hash', '<>', sha256Hex(keepToken));
      const deleted = await q.executeTakeFirst();
      return { signedOut: Number(deleted.numDeletedRows) };
    }).finally(() => this.forgetTokens(userId, keepToken && sha256Hex(keepToken)));
  }

  async usernames(ids: string[]): Promise<Map<string, string>> {
    if (ids.length === 0) return new Map();
    const rows = await this.db.selectFrom('users').select(['id', 'username']).where('id', 'in', ids).execute();
    return new Map(rows.map((r) => [r.id, r.username]));
  }

  async setRoles(id: string, roles: Role[]): Promise<PublicUser> {
    if (roles.length === 0 || roles.some((r) => !ROLES.includes(r))) throw badRequest('invalid_role', `Roles are some of: ${ROLES.join(', ')}.`);
    const row = await this.db.updateTable('users').set({ roles: [...new Set(roles)] }).where('id', '=', id).returningAll().executeTakeFirst();
    this.forgetTokens(id);
    if (!row) throw notFound('unknown_user', `No user ${id}.`);
    return toPublic(row);
  }

  /**
   * S3.8: sets or clears (null) the member's e-mail address and web page; a field left out
   * stays as it is. Refuses `invalid_email`, `invalid_web_page` and changes nothing then.
   */
  async setContact(userId: string, change: { email?: string | null; webPage?: string | null }): Promise<PublicUser> {
    const set: { email?: string | null; web_page?: string | null } = {};
    if (change.email !== undefined) set.email = change.email === null ? null : checkEmail(change.email);
    if (change.webPage !== undefined) set.web_page = change.webPage === null ? null : checkWebPage(change.webPage);
    const q = Object.keys(set).length ? this.db.updateTable('users').set(set) : null;
    const row = q
      ? await q.where('id', '=', userId).returningAll().executeTakeFirst()
      : await this.db.selectFrom('users').selectAll().where('id', '=', userId).executeTakeFirst();
    if (q) this.forgetTokens(userId);
    if (!row) throw notFound('unknown_user', `No user ${userId}.`);
    return toPublic(row);
  }

  /** S3.8: a member's contact details, for other domains (who to write to). 404 `unknown_user`. */
  async contact(userId: string): Promise<Contact> {
    const row = await this.db.selectFrom('users').select(['username', 'email', 'web_page']).where('id', '=', userId).executeTakeFirst();
    if (!row) throw notFound('unknown_user', `No user ${userId}.`);
    return { username: row.username, email: row.email, webPage: row.web_page };
  }

  /** Checks a password and issues a new API token. */
  async login(username: string, password: string, label = 'login'): Promise<{ token: string; user: PublicUser }> {
    const row = await this.db.selectFrom('users').selectAll().where('username', '=', username).executeTakeFirst();
    // Hash even for unknown users so the reply time does not reveal which names exist.
    const ok = row ? await verifyPassword(password, row.password_hash) : (await this.hashPassword(password), false);
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
    this.tokens.delete(sha256Hex(token));
    this.tokensDropped++;
  }

  resolveToken = async (token: string): Promise<Principal | null> => {
    const hash = sha256Hex(token);
    let entry = this.tokens.get(hash);
    if (!entry || monotonicMs() - entry.at >= TOKEN_CACHE_MS) {
      const dropped = this.tokensDropped;
      const row = await this.db
        .selectFrom('api_tokens')
        .innerJoin('users', 'users.id', 'api_tokens.user_id')
        .select(['users.id', 'users.username', 'users.roles', 'users.email', 'api_tokens.terminal_id', 'api_tokens.expires_at'])
        .where('api_tokens.token_hash', '=', hash)
        .executeTakeFirst();
      if (!row) {
        this.tokens.delete(hash);
        return null;
      }
      entry = { principal: { userId: row.id, username: row.username, roles: row.roles, terminalId: row.terminal_id, email: row.email }, expiresAt: row.expires_at?.getTime() ?? null, at: monotonicMs() };
      if (dropped === this.tokensDropped) this.tokens.set(hash, entry);
    }
    if (entry.expiresAt !== null && entry.expiresAt <= this.clock.now()) return null;
    return { ...entry.principal };
  };

  /** Drops the cached tokens of `userId` (but `keepHash`): what they resolve to changed, or they are gone. */
  private forgetTokens(userId: string, keepHash?: string) {
    const stale: string[] = [];
    for (const [hash, entry] of this.tokens.entries()) if (entry.principal.userId === userId && hash !== keepHash) stale.push(hash);
    for (const hash of stale) this.tokens.delete(hash);
    this.tokensDropped++;
  }

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

function checkEmail(email: string): string {
  const normal = normalizeEmail(email);
  if (!normal) throw badRequest('invalid_email', `An e-mail address looks like name@example.org, at most ${MAX_EMAIL_LENGTH} characters; nothing changed.`);
  return normal;
}

function checkWebPage(webPage: string): string {
  const text = webPage.trim();
  let url: URL | null = null;
  try {
    url = new URL(text);
  } catch {
    // not a URL
  }
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || !url.hostname || url.username || url.password || text.length > MAX_WEB_PAGE_LENGTH) {
    throw badRequest('invalid_web_page', `A web page is an http:// or https:// address without a user name or password, at most ${MAX_WEB_PAGE_LENGTH} characters; nothing changed.`);
  }
  return text;
}

function toPublic(row: { id: string; username: string; roles: Role[]; created_at: Date; email: string | null; web_page: string | null }): PublicUser {
  return { id: row.id, username: row.username, roles: row.roles, createdAt: row.created_at.toISOString(), email: row.email, webPage: row.web_page };
}
