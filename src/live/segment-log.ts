import canonicalizeModule from 'canonicalize';
import type { KeyObject } from 'node:crypto';
import { sha256Hex, signBytes, verifyBytes } from '../core/crypto.ts';
import type { Db } from '../db/connection.ts';

const canonicalize = canonicalizeModule as unknown as (v: unknown) => string;

// #15 point 2: a program's live manifest. Every HLS segment ffmpeg finishes is hashed and
// appended as an origin-signed entry; each entry carries the hash of the one before it, so the
// log is append-only in a way anyone with the origin's public key can check (a relay, a viewer,
// a recording). A segment is then a piece like any content's: named by its SHA-256, verified
// on arrival. Each publish of the program (a "take": the broadcaster may reconnect) starts with
// its fMP4 initialisation segment (duration 0); media segments name the init they need.

export interface SegmentEntry {
  type: 'cascade.live.segment';
  v: 1;
  program: string;
  seq: number;
  /** The file name in the program's playlist (t1_init.mp4, t1_seg_000001.m4s …). */
  name: string;
  /** The initialisation segment this one is decoded with (its own name for an init entry). */
  init: string;
  /** Media sequence number (HLS), counting media segments only from 1; an init entry has its next segment's. */
  media: number;
  sha256: string;
  bytes: number;
  durationMs: number;
  /** When the origin appended it (its clock). */
  at: string;
  /** SHA-256 of the previous entry's canonical JSON; "" for entry 0. */
  prev: string;
}

export interface SignedSegmentEntry {
  entry: SegmentEntry;
  /** base64url Ed25519 over the entry's canonical JSON. */
  signature: string;
}

export const entryBytes = (e: SegmentEntry) => canonicalize(e);
export const entryHash = (e: SegmentEntry) => sha256Hex(entryBytes(e));

export function signEntry(e: SegmentEntry, key: KeyObject): SignedSegmentEntry {
  return { entry: e, signature: signBytes(key, entryBytes(e)) };
}

/**
 * Checks a run of entries of one program: signatures, consecutive seq, each `prev` the hash of
 * the one before (`before` is the entry preceding the first, if the run does not start at 0).
 * Returns the first problem, or null.
 */
export function verifySegmentLog(entries: SignedSegmentEntry[], originKey: string, before?: SegmentEntry): string | null {
  let prev = before;
  for (const { entry, signature } of entries) {
    if (!verifyBytes(originKey, entryBytes(entry), signature)) return `entry ${entry.seq}: signature does not verify`;
    const expectedSeq = prev ? prev.seq + 1 : 0;
    if (entry.seq !== expectedSeq) return `entry ${entry.seq}: expected seq ${expectedSeq}`;
    if (entry.prev !== (prev ? entryHash(prev) : '')) return `entry ${entry.seq}: prev is not the previous entry's hash`;
    if (prev && entry.program !== prev.program) return `entry ${entry.seq}: another program`;
    prev = entry;
  }
  return null;
}

/** The log's rows in the live domain's table `live_segments`. */
export class SegmentLog {
  constructor(private readonly deps: { db: Db; key: KeyObject }) {}

  /** Appends the next entry of `program` after `last` (null for the first); returns it signed. */
  async append(program: string, last: SegmentEntry | null, seg: { name: string; init: string; sha256: string; bytes: number; durationMs: number }, at: number): Promise<SignedSegmentEntry> {
    const entry: SegmentEntry = {
      type: 'cascade.live.segment',
      v: 1,
      program,
      seq: last ? last.seq + 1 : 0,
      name: seg.name,
      init: seg.init,
      media: last ? (last.durationMs > 0 ? last.media + 1 : last.media) : 1,
      sha256: seg.sha256,
      bytes: seg.bytes,
      durationMs: seg.durationMs,
      at: new Date(at).toISOString(),
      prev: last ? entryHash(last) : '',
    };
    const signed = signEntry(entry, this.deps.key);
    // The primary key (program, seq) refuses a second entry at one position: two writers cannot fork the log.
    await this.deps.db
      .insertInto('live_segments')
      .values({ program_id: program, seq: entry.seq, entry: entryBytes(entry), signature: signed.signature, name: seg.name, sha256: seg.sha256, bytes: seg.bytes, duration_ms: seg.durationMs, at: new Date(at) })
      .execute();
    return signed;
  }

  /** Entries of `program` with seq > `after`, in order, at most `limit`. */
  async list(program: string, after = -1, limit = 10_000): Promise<SignedSegmentEntry[]> {
    const rows = await this.deps.db
      .selectFrom('live_segments')
      .select(['entry', 'signature'])
      .where('program_id', '=', program)
      .where('seq', '>', after)
      .orderBy('seq')
      .limit(limit)
      .execute();
    return rows.map((r) => ({ entry: JSON.parse(r.entry) as SegmentEntry, signature: r.signature }));
  }

  /** The last `n` media entries of `program`, in order (what a live playlist lists). */
  async tail(program: string, n: number): Promise<SegmentEntry[]> {
    const rows = await this.deps.db
      .selectFrom('live_segments')
      .select('entry')
      .where('program_id', '=', program)
      .where('duration_ms', '>', 0)
      .orderBy('seq', 'desc')
      .limit(n)
      .execute();
    return rows.map((r) => JSON.parse(r.entry) as SegmentEntry).reverse();
  }

  /** How many takes (initialisation entries) `program` has had. */
  async takes(program: string): Promise<number> {
    const r = await this.deps.db
      .selectFrom('live_segments')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('program_id', '=', program)
      .where('duration_ms', '=', 0)
      .executeTakeFirstOrThrow();
    return Number(r.n);
  }

  /** The last entry of `program`, to append after. */
  async last(program: string): Promise<SegmentEntry | null> {
    const r = await this.deps.db.selectFrom('live_segments').select('entry').where('program_id', '=', program).orderBy('seq', 'desc').limit(1).executeTakeFirst();
    return r ? (JSON.parse(r.entry) as SegmentEntry) : null;
  }

  /** The file name of `program`'s segment `name`, if the log holds it (segment requests are checked against it). */
  async has(program: string, name: string): Promise<{ sha256: string; bytes: number } | undefined> {
    return this.deps.db.selectFrom('live_segments').select(['sha256', 'bytes']).where('program_id', '=', program).where('name', '=', name).executeTakeFirst();
  }
}

/**
 * The HLS media playlist of a program from its log (RFC 8216, fMP4): the last media segments
 * while live, #EXT-X-ENDLIST once over. A change of initialisation segment (the broadcaster
 * reconnected) is a discontinuity with a new map. `uri` adds the viewer's session to every URI (a
 * relative URI does not keep the playlist's query).
 */
export function renderPlaylist(p: { media: SegmentEntry[]; ended: boolean; uri: (name: string) => string; targetSeconds: number }): string {
  const target = Math.max(p.targetSeconds, ...p.media.map((m) => Math.round(m.durationMs / 1000)));
  const lines = ['#EXTM3U', '#EXT-X-VERSION:7', `#EXT-X-TARGETDURATION:${target}`, `#EXT-X-MEDIA-SEQUENCE:${p.media[0]?.media ?? 1}`, '#EXT-X-INDEPENDENT-SEGMENTS'];
  let init = '';
  for (const m of p.media) {
    if (m.init !== init) {
      if (init) lines.push('#EXT-X-DISCONTINUITY');
      lines.push(`#EXT-X-MAP:URI="${p.uri(m.init)}"`);
      init = m.init;
    }
    lines.push(`#EXTINF:${(m.durationMs / 1000).toFixed(3)},`, p.uri(m.name));
  }
  if (p.ended) lines.push('#EXT-X-ENDLIST');
  return lines.join('\n') + '\n';
}
