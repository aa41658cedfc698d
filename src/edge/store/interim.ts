import type { FastifyPluginAsync } from 'fastify';
import type { Logger } from 'pino';
import type { SignedManifest } from '../../content/manifest.ts';
import type { WaitClock } from '../../core/clock.ts';
import type { Api } from '../../core/http-client.ts';
import type { AgentStore } from '../../agent/store.ts';

// The edge contracts of docs/edge-plan (#17) that the store server codes against until the
// lead's spine (src/edge/node.ts, src/edge/delivery-hook.ts) and the "bill" helper's delivery
// service and journal are on main. After merging them this file re-exports those instead.

export interface DeliveryMark {
  serial: number;
  deliveryId: string;
  userId: string;
  edgeId: string;
  originId: string;
  contentId: string;
}

export interface DeliveryHook {
  /** Bytes on their way to one receiver; `part` names the file or segment and the offset of `bytes` in it. */
  transform(mark: DeliveryMark, part: { name: string; offset: number }, bytes: Buffer): Buffer | Promise<Buffer>;
}

export const identityHook: DeliveryHook = { transform: (_mark, _part, bytes) => bytes };

export interface EdgeContext {
  edgeId: string;
  terminalId: string;
  kind: 'delivery' | 'home' | 'store';
  label: string;
  home: string;
  originUrl: string;
  originKey: string;
  clock: WaitClock;
  logger: Logger;
  api(): Api;
  store: AgentStore;
  ensureContent(contentId: string): Promise<{ dataPath: string; manifest: SignedManifest }>;
  dropContent(contentId: string): Promise<void>;
  hook: DeliveryHook;
}

export interface EdgeExtension {
  routes?: FastifyPluginAsync;
  start?(): void;
  stop?(): Promise<void>;
}

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
