import type { AccountTables } from '../accounts/tables.ts';
import type { ContentTables } from '../content/tables.ts';
import type { LedgerTables } from '../ledger/tables.ts';
import type { VoucherTables } from '../ledger/tables-vouchers.ts';
import type { SettlementTables } from '../ledger/tables-settlement.ts';
import type { TerminalTables } from '../terminals/tables.ts';
import type { TransferTables } from '../transfer/tables.ts';
import type { ScheduleTables } from '../schedule/tables.ts';
import type { DiscoveryTables } from '../discovery/tables.ts';
import type { LiveTables } from '../live/tables.ts';
import type { MailTables } from '../mail/tables.ts';
import type { EdgeTables } from '../edge/tables.ts';
import type { DeliveryTables } from '../edge/tables-deliveries.ts';
import type { RentalTables } from '../edge/tables-rentals.ts';
import type { OrderTables } from '../edge/tables-orders.ts';

// The whole database as Kysely sees it. Each domain owns (and alone queries) its tables.
export type Database = AccountTables & ContentTables & TerminalTables & TransferTables & LedgerTables & VoucherTables & SettlementTables & ScheduleTables & DiscoveryTables & MailTables & LiveTables & EdgeTables & DeliveryTables & RentalTables & OrderTables;
