import { randomInt } from 'node:crypto';
import { AddressRefused, type AddressPolicy } from '../core/address-policy.ts';
import type { Clock } from '../core/clock.ts';
import type { KeyPair } from '../core/crypto.ts';
import { AppError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import { pieceLength } from '../content/manifest.ts';
import type { ContentService } from '../content/service.ts';
import { signGrant } from './grant-token.ts';
import { PieceClient } from './piece-client.ts';

// #3 "holdings claims for content the terminal cannot prove it has": before the origin
// lists a serving terminal as a holder, it asks that terminal for one random piece
// (under a grant naming the origin itself as receiver) and checks it against the
// manifest. A terminal that does not serve (no address) is never offered as a source,
// so its claims are recorded unchecked: they cannot mislead a receiver.
//
// The address is the terminal's choice, so the connection follows the address policy
// (issue 10 #8), and the refusal never carries the terminal's answer: its text would
// make the origin a relay for whatever the address sends back.

export class HoldingProver {
  constructor(private readonly deps: { keys: KeyPair; clock: Clock; content: ContentService; peers: AddressPolicy; timeoutMs?: number }) {}

  /** Throws `holding_unproven` unless `serveUrl` serves a correct piece of `contentId` (one of `among`, if given). */
  async prove(terminalId: string, serveUrl: string, contentId: string, among?: number[]): Promise<void> {
    const manifest = await this.deps.content.getManifest(contentId);
    const count = manifest.body.pieces.length;
    if (count === 0) return;
    const index = among?.length ? among[randomInt(among.length)] : randomInt(count);
    const grant = { id: newId('gr'), content: contentId, receiver: 'origin', receiverKey: this.deps.keys.publicKeyB64, source: terminalId, pieces: `${index}`, exp: this.deps.clock.now() + 60_000 };
    const buf = Buffer.allocUnsafe(pieceLength(manifest.body, index));
    let client: PieceClient | undefined;
    try {
      // Inside the try: an address the client cannot use (e.g. one with a path) is a failed check too, not a server error.
      client = new PieceClient({
        sourceUrl: serveUrl,
        grant: { id: grant.id, token: signGrant(grant, this.deps.keys.privateKey), contentId },
        receiverKey: this.deps.keys.privateKey,
        clock: this.deps.clock,
        connections: 1,
        stallMs: this.deps.timeoutMs ?? 5000,
        resolve: (hostname, port) => this.deps.peers.resolveChecked(hostname, port),
      });
      let got;
      // A busy terminal (all upload slots in use) is asked again a few times, not failed.
      for (let attempt = 1; ; attempt++) {
        try {
          got = await client.fetch(index, buf);
          break;
        } catch (err) {
          if (!(err instanceof AppError && err.code === 'source_busy') || attempt >= 10) throw err;
          await new Promise((r) => setTimeout(r, 200 * attempt));
        }
      }
      if (got.bytes === buf.length && got.sha256 === manifest.body.pieces[index]) return;
      throw new AppError('holding_unproven', `Piece ${index} served from ${serveUrl} does not match the content's manifest.`, 400);
    } catch (err) {
      if (err instanceof AppError && err.code === 'holding_unproven') throw err;
      throw new AppError('holding_unproven', `Could not check piece ${index} at ${serveUrl}: ${whyUnchecked(err)}.`, 400);
    } finally {
      await client?.close();
    }
  }
}

/** Why a spot check failed, in the origin's own words: a status code at most, never the terminal's text. */
function whyUnchecked(err: unknown): string {
  if (err instanceof AddressRefused) return err.message;
  if (err instanceof AppError && err.code === 'piece_oversized') return 'it sent more bytes than the piece holds';
  if (err instanceof AppError) return `it answered HTTP ${err.status}`;
  const code = (err as { code?: unknown })?.code;
  if (code === 'source_stalled') return 'it did not answer in time';
  return 'it could not be reached';
}
