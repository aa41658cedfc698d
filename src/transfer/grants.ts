import type { Clock } from '../core/clock.ts';
import type { Config } from '../core/config.ts';
import type { KeyPair } from '../core/crypto.ts';
import { badRequest, notFound } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import type { Db } from '../db/connection.ts';
import type { ContentService } from '../content/service.ts';
import type { TerminalService } from '../terminals/service.ts';
import { decodeRanges, encodeRanges } from './piece-ranges.ts';
import { signGrant, type GrantPayload } from './grant-token.ts';

export interface IssuedGrant {
  id: string;
  transferId?: string;
  token: string;
  contentId: string;
  sourceId: string;
  pieces: string;
  expiresAt: string;
}

/**
 * Issues grants (S1.6) and remembers them, so receipts can be checked against what
 * was granted. Source selection among peers (S1.5) arrives with #3; until then the
 * only source is the origin itself.
 */
export class GrantService {
  constructor(
    private readonly deps: { db: Db; keys: KeyPair; clock: Clock; config: Config; content: ContentService; terminals: TerminalService },
  ) {}

  async issue(receiverTerminalId: string, req: { contentId: string; sourceId: string; pieces?: string; transferId?: string }): Promise<IssuedGrant> {
    const { db, keys, clock, config, content, terminals } = this.deps;
    const manifest = await content.getManifest(req.contentId);
    const count = manifest.body.pieces.length;
    if (count === 0) throw badRequest('nothing_to_fetch', 'This content has no pieces.');
    let pieces = `0-${count - 1}`;
    if (req.pieces !== undefined) {
      const list = decodeRanges(req.pieces, count);
      if (!list) throw badRequest('invalid_pieces', `Pieces must be ascending ranges within 0-${count - 1}, e.g. "0-9,12".`);
      pieces = encodeRanges(list);
    }
    const receiver = await terminals.get(receiverTerminalId);
    const exp = clock.now() + config.grantTtlMs;
    const payload: Omit<GrantPayload, 'typ'> = {
      id: newId('gr'),
      content: req.contentId,
      receiver: receiver.id,
      receiverKey: receiver.publicKey,
      source: req.sourceId,
      pieces,
      exp,
    };
    await db
      .insertInto('grants')
      .values({ id: payload.id, transfer_id: req.transferId ?? null, content_id: payload.content, receiver_id: payload.receiver, source_id: payload.source, pieces, expires_at: new Date(exp), created_at: new Date(clock.now()) })
      .execute();
    return { id: payload.id, transferId: req.transferId, token: signGrant(payload, keys.privateKey), contentId: req.contentId, sourceId: req.sourceId, pieces, expiresAt: new Date(exp).toISOString() };
  }

  async get(id: string) {
    const row = await this.deps.db.selectFrom('grants').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw notFound('unknown_grant', `No grant ${id}.`);
    return row;
  }
}
