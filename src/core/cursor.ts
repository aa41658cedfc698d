import { badRequest } from './errors.ts';

// Keyset paging by (time, id), newest first (the catalog, comments, the mail outbox): the
// cursor is the last row's pair, opaque to the client. One that does not decode is refused
// with `invalid_cursor`.

export function encodeTimeCursor(at: Date, id: string): string {
  return Buffer.from(JSON.stringify([at.toISOString(), id])).toString('base64url');
}

/** The (time, id) of `cursor`; `idOk` says which IDs the listing can hold (default: up to 100 characters). */
export function decodeTimeCursor(cursor: string, idOk: (id: string) => boolean = (id) => id.length <= 100): [Date, string] {
  try {
    const [at, id] = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    const d = new Date(at);
    if (typeof at === 'string' && !Number.isNaN(d.getTime()) && typeof id === 'string' && idOk(id)) return [d, id];
  } catch {
    // fall through
  }
  throw badRequest('invalid_cursor', 'The cursor is not one this server handed out; start again without it.');
}
