import type { FastifyPluginAsync } from 'fastify';
import path from 'node:path';
import type { KeyPair } from '../core/crypto.ts';
import { markSecrets, originIdOf } from './keys.ts';
import { markRoutes } from './routes.ts';
import { TraceService, type TracedDelivery } from './trace.ts';

// The marks domain (S2.3, S2.7; docs/marks.md): forensic watermarks in images, audio and
// segmented video, the payload they carry, and the tracing of suspect copies. It owns no table:
// a mark's serial is the edge domain's delivery serial, resolved through `resolve`.

export { TraceService, type TraceAnswer, type TracedDelivery } from './trace.ts';
export { markSecrets, originIdOf } from './keys.ts';
export { ticketMark } from './payload.ts';

/** What tracing reads of other domains, through their services. */
export interface TraceSources {
  deliveries: { bySerial(serial: number): Promise<{ serial: number; id: string; kind: string; userId: string; edgeId: string; contentId: string; openedAt: string } | null> };
  edges: { get(id: string): Promise<{ label: string }> };
  usernames(ids: string[]): Promise<Map<string, string>>;
  contents: { get(id: string): Promise<{ title: string; publisher: string }> };
}

/** A mark's serial → the delivery, its user's name, its edge's label, the content's title and publisher. */
export function resolveWith(src: TraceSources) {
  return async (serial: number): Promise<TracedDelivery | null> => {
    const d = await src.deliveries.bySerial(serial);
    if (!d) return null;
    const [edge, names, content] = await Promise.all([src.edges.get(d.edgeId).catch(() => null), src.usernames([d.userId]), src.contents.get(d.contentId).catch(() => null)]);
    return {
      serial: d.serial,
      deliveryId: d.id,
      kind: d.kind,
      userId: d.userId,
      username: names.get(d.userId) ?? null,
      edgeId: d.edgeId,
      edgeLabel: edge?.label ?? null,
      contentId: d.contentId,
      title: content?.title ?? null,
      publisher: content?.publisher ?? null,
      deliveredAt: d.openedAt,
    };
  };
}

export function marksDomain(deps: {
  keys: KeyPair;
  dataDir: string;
  traceMaxBytes: number;
  ffmpeg?: string;
  sources: TraceSources;
  edgeOf(terminalId: string): Promise<{ id: string; kind: string } | null>;
}) {
  const secrets = markSecrets(deps.keys);
  const originId = originIdOf(deps.keys.publicKeyB64);
  const traces = new TraceService({ secrets, originId, resolve: resolveWith(deps.sources), ffmpeg: deps.ffmpeg });
  const plugin: FastifyPluginAsync = markRoutes({ traces, secrets, originId, maxBytes: deps.traceMaxBytes, tmpDir: path.join(deps.dataDir, 'tmp'), edgeOf: deps.edgeOf });
  return { secrets, traces, plugin };
}
