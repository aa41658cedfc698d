
// The edge contracts the store server codes against: the spine's (node.ts, delivery-hook.ts),
// re-exported, and those of the "bill" helper's delivery service and journal as the plan (#17)
// describes them, until they are on main (then these become re-exports too).

export { identityHook, type DeliveryHook, type DeliveryMark } from '../delivery-hook.ts';
export type { EdgeContext, EdgeExtension } from '../node.ts';

/** One delivery report (S2.4), as the edge's delivery journal records and sends it. */
export interface DeliveryReport {
  deliveryId: string;
  fee: number;
  bytes?: number;
  viewedSeconds?: number;
  final: boolean;
}

/** The edge's delivery reporter (src/edge/delivery-journal.ts `DeliveryReporter`, "bill"): journals the report, then sends it until acknowledged. */
export interface DeliveryReporter {
  report(report: DeliveryReport): Promise<unknown>;
}

/** The origin's delivery service (src/edge/deliveries.ts, "bill"), as far as orders use it. */
export interface DeliveryOpener {
  open(
    input: { edgeId: string; kind: 'rental' | 'order'; contentId: string; userId: string; payer: 'wallet' | 'counter'; maxFee: number; terms: Record<string, unknown> },
    trx?: unknown,
  ): Promise<{ id: string; serial: number }>;
}

/** An edge as the origin's edge registry knows it (EdgeService.byTerminal / get, lead). */
export interface EdgeRef {
  id: string;
  ownerId: string;
  kind: 'delivery' | 'home' | 'store';
  label?: string;
}
