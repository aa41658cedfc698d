import path from 'node:path';
import type { FastifyPluginAsync } from 'fastify';
import type { AccountService } from '../accounts/service.ts';
import type { Clock } from '../core/clock.ts';
import type { Config } from '../core/config.ts';
import type { KeyPair } from '../core/crypto.ts';
import type { EventBus } from '../core/event-bus.ts';
import type { Db } from '../db/connection.ts';
import { PieceStore } from './piece-store.ts';
import { contentRoutes } from './routes.ts';
import { ContentService } from './service.ts';

// Content: publishing (cut into pieces, hashed, a signed manifest), the catalog and the
// origin's piece store. Owns `contents`; other domains read it through queries.ts.

export { ContentService, CONTENT_ID, type CatalogItem } from './service.ts';
export { contentsByIds, existingContents, newestMatching, rankedContents, thumbnailUrl, type ContentFacts, type ContentSelection, type RankedContent } from './queries.ts';
export { checkThumbnail, THUMBNAIL_MAX_BYTES, THUMBNAIL_MIMES } from './thumbnail-image.ts';
export { checkManifest, type SignedManifest, type ManifestBody } from './manifest.ts';
export { OWNED_TABLES } from './tables.ts';

export function contentDomain(deps: { db: Db; clock: Clock; config: Config; keys: KeyPair; bus: EventBus; accounts: AccountService }) {
  const pieces = new PieceStore(path.join(deps.config.dataDir, 'pieces'));
  const content = new ContentService({ db: deps.db, pieces, keys: deps.keys, clock: deps.clock, config: deps.config, bus: deps.bus });
  const plugin: FastifyPluginAsync = contentRoutes({ content, accounts: deps.accounts, config: deps.config });
  return {
    content,
    plugin,
    close() {
      pieces.close();
    },
  };
}
