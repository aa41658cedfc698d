import { sql, type Kysely, type Migration } from 'kysely';
import type { Role } from '../core/roles.ts';

export { ROLES, type Role } from '../core/roles.ts';

// Tables the accounts domain owns: other domains ask AccountService (boundaries.test.ts).
export const OWNED_TABLES = ['users', 'api_tokens'] as const;

export interface UsersTable {
  id: string;
  username: string;
  password_hash: string;
  roles: Role[];
  created_at: Date;
  /** S3.8: where the member is written to (their own, unverified); null: none given. */
  email: string | null;
  /** S3.8: the member's web page, an http(s) URL; null: none given. */
  web_page: string | null;
}

/** Bearer tokens, stored as SHA-256 of the secret. A terminal session token names its terminal. */
export interface ApiTokensTable {
  token_hash: string;
  user_id: string;
  terminal_id: string | null;
  label: string;
  created_at: Date;
  expires_at: Date | null;
}

export interface AccountTables {
  users: UsersTable;
  api_tokens: ApiTokensTable;
}

export const accountsMigration: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('users')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('username', 'text', (c) => c.notNull().unique())
      .addColumn('password_hash', 'text', (c) => c.notNull())
      .addColumn('roles', sql`text[]`, (c) => c.notNull())
      .addColumn('created_at', 'timestamptz', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('api_tokens')
      .addColumn('token_hash', 'text', (c) => c.primaryKey())
      .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
      .addColumn('terminal_id', 'text')
      .addColumn('label', 'text', (c) => c.notNull())
      .addColumn('created_at', 'timestamptz', (c) => c.notNull())
      .addColumn('expires_at', 'timestamptz')
      .execute();
    await db.schema.createIndex('api_tokens_user').on('api_tokens').column('user_id').execute();
  },
};

/** S3.8: members' contact details, given by each member (`PUT /me/contact`). */
export const accountContactMigration: Migration = {
  async up(db: Kysely<any>) {
    await db.schema.alterTable('users').addColumn('email', 'text').addColumn('web_page', 'text').execute();
  },
};
