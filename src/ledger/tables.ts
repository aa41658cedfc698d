import { sql, type Generated, type Kysely, type Migration } from 'kysely';

// Tables the ledger domain owns, created here and in tables-vouchers.ts and tables-settlement.ts: other domains ask its services (boundaries.test.ts).
export const OWNED_TABLES = ['ledger_accounts', 'ledger_transfers', 'vouchers', 'ledger_settlements', 'ledger_holds', 'ledger_purchases', 'ledger_purchase_shares'] as const;

// The ledger's two tables (#4.1, docs/ledger.md). Amounts are integer minor units of
// the one currency, stored as int8 and read back as JS safe integers.

/** An account: four running totals, moved only by transfers (src/ledger/ledger.ts). */
export interface LedgerAccountsTable {
  /** Meaningful, e.g. `wallet:<userId>`, `platform:revenue`, `holds`. */
  id: string;
  kind: string;
  owner_id: string | null;
  /** If set, debits_posted + debits_pending never exceed credits_posted. */
  no_overdraft: boolean;
  debits_posted: Generated<number>;
  credits_posted: Generated<number>;
  debits_pending: Generated<number>;
  credits_pending: Generated<number>;
  created_at: Date;
}

export type TransferKind = 'normal' | 'pending' | 'post' | 'void';

/** An immutable transfer, identified by the caller's ID. Failed transfers are not stored. */
export interface LedgerTransfersTable {
  /** Insertion order; per account it is the order transfers were applied in. */
  seq: Generated<number>;
  id: string;
  debit_account_id: string;
  credit_account_id: string;
  /** For a post: the amount posted; for a void: the pending amount released. */
  amount: number;
  kind: TransferKind;
  /** post/void: the pending transfer resolved. */
  pending_id: string | null;
  timeout_at: Date | null;
  /** ID of the first transfer of the linked chain this one was created in. */
  linked_group: string | null;
  reason: string;
  content_id: string | null;
  ref: string | null;
  /**
   * The record it belongs to in account histories (S1.12): everything one download
   * moves shares `purchase:<user>:<content>:<round>` (holds, releases, every receipt's
   * legs), a play's legs `play:<terminal>:<playId>`. Null: a record of its own.
   */
  record_key: string | null;
  /** Posted balances (credits − debits) of both accounts right after this transfer. */
  debit_balance_after: number;
  credit_balance_after: number;
  /** Hash of the caller-supplied fields: a retry with the same ID must match it. */
  fingerprint: string;
  created_at: Date;
}

export interface LedgerTables {
  ledger_accounts: LedgerAccountsTable;
  ledger_transfers: LedgerTransfersTable;
}

export const ledgerMigration: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('ledger_accounts')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('kind', 'text', (c) => c.notNull())
      .addColumn('owner_id', 'text')
      .addColumn('no_overdraft', 'boolean', (c) => c.notNull())
      .addColumn('debits_posted', 'bigint', (c) => c.notNull().defaultTo(0))
      .addColumn('credits_posted', 'bigint', (c) => c.notNull().defaultTo(0))
      .addColumn('debits_pending', 'bigint', (c) => c.notNull().defaultTo(0))
      .addColumn('credits_pending', 'bigint', (c) => c.notNull().defaultTo(0))
      .addColumn('created_at', 'timestamptz', (c) => c.notNull())
      .addCheckConstraint('ledger_accounts_totals_non_negative', sql`debits_posted >= 0 and credits_posted >= 0 and debits_pending >= 0 and credits_pending >= 0`)
      // Last line of defence: the ledger checks this in memory before it writes.
      .addCheckConstraint('ledger_accounts_no_overdraft', sql`not no_overdraft or debits_posted + debits_pending <= credits_posted`)
      .execute();
    await db.schema.createIndex('ledger_accounts_owner').on('ledger_accounts').column('owner_id').where(sql.ref('owner_id'), 'is not', null).execute();

    await db.schema
      .createTable('ledger_transfers')
      .addColumn('seq', 'bigint', (c) => c.generatedAlwaysAsIdentity().notNull())
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('debit_account_id', 'text', (c) => c.notNull().references('ledger_accounts.id'))
      .addColumn('credit_account_id', 'text', (c) => c.notNull().references('ledger_accounts.id'))
      .addColumn('amount', 'bigint', (c) => c.notNull())
      .addColumn('kind', 'text', (c) => c.notNull())
      .addColumn('pending_id', 'text', (c) => c.references('ledger_transfers.id'))
      .addColumn('timeout_at', 'timestamptz')
      .addColumn('linked_group', 'text')
      .addColumn('reason', 'text', (c) => c.notNull())
      .addColumn('content_id', 'text')
      .addColumn('ref', 'text')
      .addColumn('debit_balance_after', 'bigint', (c) => c.notNull())
      .addColumn('credit_balance_after', 'bigint', (c) => c.notNull())
      .addColumn('fingerprint', 'text', (c) => c.notNull())
      .addColumn('created_at', 'timestamptz', (c) => c.notNull())
      .addCheckConstraint('ledger_transfers_amount_positive', sql`amount > 0`)
      .addCheckConstraint('ledger_transfers_two_accounts', sql`debit_account_id <> credit_account_id`)
      .addCheckConstraint('ledger_transfers_kind', sql`kind in ('normal', 'pending', 'post', 'void')`)
      .addCheckConstraint('ledger_transfers_pending_ref', sql`(kind in ('post', 'void')) = (pending_id is not null)`)
      .addCheckConstraint('ledger_transfers_timeout', sql`timeout_at is null or kind = 'pending'`)
      .execute();
    // History of one account, newest first (seq is the per-account order of application).
    await db.schema.createIndex('ledger_transfers_debit').on('ledger_transfers').columns(['debit_account_id', 'seq']).execute();
    await db.schema.createIndex('ledger_transfers_credit').on('ledger_transfers').columns(['credit_account_id', 'seq']).execute();
    // A pending transfer is resolved (posted, voided or expired) at most once.
    await db.schema.createIndex('ledger_transfers_resolves').on('ledger_transfers').column('pending_id').unique().where(sql.ref('pending_id'), 'is not', null).execute();
    // The expiry sweep looks for pending transfers whose timeout has passed.
    await db.schema.createIndex('ledger_transfers_timeout').on('ledger_transfers').column('timeout_at').where(sql.ref('kind'), '=', 'pending').execute();
  },
};

/**
 * S1.12 (#12): a download's transfers (its reservations, their releases, every receipt's
 * legs) are one record, so each transfer names the record it belongs to. Filled in for
 * transfers written before: holds from their ID, releases from their hold, receipt legs
 * from the receiver's wallet and the purchase round open at that time, plays from their ref.
 */
export const ledgerRecordsMigration: Migration = {
  async up(db: Kysely<any>) {
    await db.schema.alterTable('ledger_transfers').addColumn('record_key', 'text').execute();
    await sql`update ledger_transfers set record_key = regexp_replace(id, '^hold:(.+):[0-9]+$', 'purchase:\\1') where kind = 'pending' and id ~ '^hold:.+:[0-9]+:[0-9]+$'`.execute(db);
    await sql`
      with legs as (
        select ref, min(substring(debit_account_id from 8)) as user_id, min(content_id) as content_id, min(created_at) as at
        from ledger_transfers
        where ref is not null and content_id is not null and kind = 'normal' and debit_account_id like 'wallet:%'
          and reason in ('upload', 'royalty', 'fee', 'rounding')
        group by ref
      )
      update ledger_transfers t set record_key = 'purchase:' || l.user_id || ':' || l.content_id || ':' ||
        coalesce((select max(p.round) from ledger_purchases p where p.user_id = l.user_id and p.content_id = l.content_id and p.created_at <= l.at), 1)
      from legs l
      where t.ref = l.ref and t.record_key is null and t.kind = 'normal' and t.reason in ('upload', 'royalty', 'fee', 'rounding')`.execute(db);
    await sql`update ledger_transfers t set record_key = p.record_key from ledger_transfers p where t.pending_id = p.id and p.record_key is not null and t.record_key is null`.execute(db);
    await sql`update ledger_transfers set record_key = ref where reason = 'play' and ref is not null and record_key is null`.execute(db);
    // A record's transfers, fetched for the page that shows it.
    await db.schema.createIndex('ledger_transfers_record').on('ledger_transfers').column('record_key').where(sql.ref('record_key'), 'is not', null).execute();
  },
};
